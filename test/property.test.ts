// The property fuzzer (bench/fuzz) on a CI budget: random machines x random
// operation lists, every operation checked against the reference model and
// m.check(). Seeds are fixed so CI is reproducible; PTEMU_FUZZ_SEED and
// PTEMU_FUZZ_RUNS explore further. A failure prints the shrunk case as a
// `ptemu run` scenario.
//
// The injected-bug test is the fuzzer's own test: with a wrong kernel
// (m.debug.injectBug('skip-cow-copy')) it must fail, shrink to a handful of
// steps, and the printed scenario must reproduce the failure under
// `ptemu run` — and pass without the bug.

import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import type { MachineOptions } from '../src/index.js';
import type { ScenarioResult } from '../src/cli/scenario-run.js';
import { machineArb, opsArb, type Op } from '../bench/fuzz/ops.js';
import { execute } from '../bench/fuzz/execute.js';
import { replayOps, runScenarioText } from '../bench/fuzz/scenario.js';

const SEED = Number(process.env.PTEMU_FUZZ_SEED ?? 20261122);
const RUNS = Number(process.env.PTEMU_FUZZ_RUNS ?? 400);

/** What went wrong in a `ptemu run` result: failed checks and a step that threw. */
function problemsOf(r: ScenarioResult): string[] {
  return [
    ...r.checks.filter((c) => !c.passed).map((c) => `${c.pos.line}: ${c.subject} ${c.message ?? JSON.stringify(c.diff)}`),
    ...(r.error ? [`${r.error.pos.line}: ${r.error.step} threw ${r.error.message}`] : []),
  ];
}

/** fast-check's verdict, with the shrunk case printed as a scenario when it failed. */
async function fuzz(arch: 'x86_64' | 'arm64', seed: number, numRuns: number, maxLen: number, bug?: 'skip-cow-copy') {
  let ops = 0;
  const prop = fc.asyncProperty(machineArb(arch), opsArb(maxLen), async (machine: MachineOptions, list: Op[]) => {
    ops += (await execute(machine, list, bug ? { bug } : {})).ops;
  });
  const out = await fc.check(prop, { seed, numRuns });
  if (!out.failed) return { failed: false as const, ops };
  const [machine, list] = out.counterexample! as [MachineOptions, Op[]];
  const replay = await replayOps(machine, list, { ...(bug ? { bug } : {}), header: [`fuzz seed ${seed} ${arch}`] });
  return { failed: true as const, ops, machine, list, replay };
}

describe('property fuzzer', () => {
  for (const [i, arch] of (['x86_64', 'arm64'] as const).entries()) {
    it(`${arch}: ${RUNS} random machines and operation lists run clean against the model and m.check()`, async () => {
      const r = await fuzz(arch, SEED + i, RUNS, 80);
      if (r.failed) console.log(`--- shrunk failure (${r.replay.steps} steps) ---\n${r.replay.yaml}`);
      expect(r.failed ? r.replay.failure?.message : null).toBeNull();
      expect(r.ops).toBeGreaterThan(RUNS * 10);
    });
  }

  it('finds an injected COW bug and prints a minimal scenario that `ptemu run` reproduces', async () => {
    const r = await fuzz('x86_64', SEED, 400, 60, 'skip-cow-copy');
    expect(r.failed).toBe(true);
    if (!r.failed) return;
    console.log(`--- injected skip-cow-copy, shrunk to ${r.replay.steps} steps ---\n${r.replay.yaml}`);
    expect(r.replay.ok).toBe(false);
    // Minimal: inject, spawn, mmap, write, fork, write, and the check that fails (a read or m.check()).
    expect(r.replay.steps).toBeLessThanOrEqual(8);
    const steps = r.replay.yaml.split('\n').filter((l) => l.startsWith('  - ')).map((l) => l.slice(4, l.indexOf(':')));
    expect(steps[0]).toBe('inject-bug');
    expect(steps).toContain('fork');
    expect(steps.indexOf('write', steps.indexOf('fork'))).toBeGreaterThan(0);
    // The printed scenario fails under `ptemu run` with the bug, and runs clean without it.
    const withBug = await runScenarioText(r.replay.yaml);
    expect(withBug.ok).toBe(false);
    const without = await runScenarioText(r.replay.yaml.replace(/^ {2}- inject-bug:.*\n/m, ''));
    expect(problemsOf(without)).toEqual([]);
  });

  it('a recorded run is a scenario `ptemu run` replays with every expectation met', async () => {
    // Operations with no scenario step (pagemap scans, kernel primitives, notifier ranges) are left out:
    // they change state the scenario could not reproduce.
    const noStep = new Set(['scan', 'kprim', 'invalidate']);
    const runs = 60;
    await fc.assert(fc.asyncProperty(machineArb(), opsArb(60), async (machine: MachineOptions, list: Op[]) => {
      const r = await replayOps(machine, list.filter((o) => !noStep.has(o.t)));
      expect(r.ok).toBe(true);
      const s = await runScenarioText(r.yaml);
      if (!s.ok) console.log(r.yaml);
      expect(problemsOf(s)).toEqual([]);
    }), { seed: SEED, numRuns: runs });
  });
});
