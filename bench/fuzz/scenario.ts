// A fuzzer's operation list as a `ptemu run` scenario: execute() records the
// steps it took (the exact calls, the model's expectations as `expect:`
// blocks, the errors a step threw as `error:`), and this file prints them as
// YAML that `ptemu run` replays. What has no step in the scenario language
// (pagemapScan, m.kernel primitives and invalidateRange) is printed as a
// comment; those operations are shrunk away unless the failure needs them,
// in which case the op list (printed as JSON beside it) is the exact replay:
// `node dist/bench/fuzz/run.js --replay case.json`.

import { stringify } from 'yaml';
import type { MachineOptions, InjectableBug } from '../../src/index.js';
import { parseScenario } from '../../src/cli/scenario.js';
import { runScenario, type ScenarioResult } from '../../src/cli/scenario-run.js';
import { MACHINE_DEFAULTS, type Op } from './ops.js';
import { execute, FuzzFailure, type ExecResult, type ScenarioItem } from './execute.js';

const flow = (v: unknown): string => stringify(v, { collectionStyle: 'flow', lineWidth: 0 }).trim();

/** The machine options worth printing: the arbitrary's defaults are left out. */
export function machineForScenario(opts: MachineOptions): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(opts)) {
    if (v === undefined) continue;
    if (k in MACHINE_DEFAULTS && JSON.stringify(MACHINE_DEFAULTS[k]) === JSON.stringify(v)) continue;
    if (k === 'mthp' && Object.keys(v as object).length === 0) continue;
    out[k] = v;
  }
  return out;
}

/** Steps (not comments) in a recorded run. */
export function stepCount(items: readonly ScenarioItem[]): number {
  return items.filter((i) => 'step' in i).length;
}

export interface ScenarioText {
  name?: string;
  /** Lines for the header comment. */
  header?: string[];
}

/** The YAML of a scenario: machine options and the recorded steps, one per line. */
export function toScenario(machine: MachineOptions, items: readonly ScenarioItem[], t: ScenarioText = {}): string {
  const lines: string[] = [];
  for (const h of t.header ?? []) lines.push(`# ${h}`);
  if (t.name) lines.push(`name: ${flow(t.name)}`);
  lines.push(`machine: ${flow(machineForScenario(machine))}`);
  lines.push('steps:');
  for (const it of items) {
    if ('comment' in it) { lines.push(`  # ${it.comment}`); continue; }
    const [k, v] = Object.entries(it.step)[0]!;
    lines.push(`  - ${k}: ${typeof v === 'object' && v !== null ? flow(v) : flow(v)}`);
  }
  return `${lines.join('\n')}\n`;
}

/** `ptemu run` on scenario text. */
export async function runScenarioText(yaml: string, file = 'fuzz.yaml'): Promise<ScenarioResult> {
  return runScenario(parseScenario(yaml, file));
}

export interface Replay {
  ok: boolean;
  /** The check that failed, if one did. */
  failure?: FuzzFailure;
  result: ExecResult;
  /** The scenario: every step taken, up to the failing check. */
  yaml: string;
  steps: number;
}

/** Runs an op list directly (execute with the scenario recorded) and prints it as a scenario. */
export async function replayOps(machine: MachineOptions, ops: readonly Op[], opts: { bug?: InjectableBug; header?: string[]; name?: string } = {}): Promise<Replay> {
  try {
    const result = await execute(machine, ops, { log: true, ...(opts.bug ? { bug: opts.bug } : {}) });
    return { ok: true, result, yaml: toScenario(machine, result.items, { header: opts.header ?? [], ...(opts.name ? { name: opts.name } : {}) }), steps: stepCount(result.items) };
  } catch (e) {
    if (!(e instanceof FuzzFailure)) throw e;
    const header = [...(opts.header ?? []), ...e.message.split('\n').map((l) => `failed: ${l}`)];
    return { ok: false, failure: e, result: e.result, yaml: toScenario(machine, e.result.items, { header, ...(opts.name ? { name: opts.name } : {}) }), steps: stepCount(e.result.items) };
  }
}

/** One failing case as JSON: enough to replay it with `run.js --replay`. */
export interface CaseFile { machine: MachineOptions; ops: Op[]; seed?: number; bug?: InjectableBug }
