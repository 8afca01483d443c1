// The long run of the property fuzzer:
//
//   node dist/bench/fuzz/run.js --ops 1000000 [--seed S] [--arch x86_64|arm64] [--max-len N]
//                               [--bug skip-cow-copy] [--out case.json]
//   node dist/bench/fuzz/run.js --replay case.json [--bug skip-cow-copy]
//
// Random machines x random operation lists (fast-check, in rounds of
// sequences with seeds seed, seed+1, ...) until --ops operations have acted
// (operations skipped for want of a target, e.g. an munmap before any mmap,
// are counted apart);
// every operation checked against the model and m.check(). Prints the number
// of operations run clean, sequences and time. On a failure, fast-check
// shrinks the case; the shrunk case is printed as a `ptemu run` scenario and
// as JSON (written to --out too), and the exit status is 1. --replay runs a
// case file again and prints its scenario. --bug injects a core bug on every
// machine (m.debug.injectBug) to see the fuzzer find it.

import { writeFileSync, readFileSync } from 'node:fs';
import fc from 'fast-check';
import type { MachineOptions, InjectableBug } from '../../src/index.js';
import { machineArb, opsArb, type Op } from './ops.js';
import { execute } from './execute.js';
import { replayOps, type CaseFile } from './scenario.js';

interface Args { ops: number; seed: number; arch?: 'x86_64' | 'arm64'; maxLen: number; bug?: InjectableBug; out?: string; replay?: string; round: number }

function parseArgs(argv: string[]): Args {
  const a: Args = { ops: 100_000, seed: Date.now() % 1_000_000, maxLen: 120, round: 50 };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i]!, v = argv[i + 1];
    const need = (): string => { if (v === undefined) throw new Error(`${k} needs a value`); i++; return v; };
    switch (k) {
      case '--ops': a.ops = Number(need()); break;
      case '--seed': a.seed = Number(need()); break;
      case '--arch': { const x = need(); if (x !== 'x86_64' && x !== 'arm64') throw new Error('--arch is x86_64 or arm64'); a.arch = x; break; }
      case '--max-len': a.maxLen = Number(need()); break;
      case '--round': a.round = Number(need()); break;
      case '--bug': { const b = need(); if (b !== 'skip-cow-copy') throw new Error('--bug is skip-cow-copy'); a.bug = b; break; }
      case '--out': a.out = need(); break;
      case '--replay': a.replay = need(); break;
      case '-h': case '--help':
        console.log('usage: run.js --ops N [--seed S] [--arch x86_64|arm64] [--max-len N] [--round N] [--bug NAME] [--out case.json] | --replay case.json');
        process.exit(0);
        break;
      default: throw new Error(`unknown argument ${k}`);
    }
  }
  if (!Number.isSafeInteger(a.ops) || a.ops < 1) throw new Error('--ops must be a positive integer');
  return a;
}

async function printCase(c: CaseFile, out: string | undefined, how: string): Promise<boolean> {
  const r = await replayOps(c.machine, c.ops, { ...(c.bug ? { bug: c.bug } : {}), header: [how] });
  // What follows the failing operation played no part.
  if (r.failure && r.failure.opIndex >= 0) c = { ...c, ops: c.ops.slice(0, r.failure.opIndex + 1) };
  console.log(`\n--- scenario (${r.steps} steps; ptemu run) ---\n${r.yaml}`);
  console.log(`--- case (${c.ops.length} ops; run.js --replay) ---\n${JSON.stringify(c)}`);
  if (out) { writeFileSync(out, `${JSON.stringify(c, null, 1)}\n`); console.log(`written to ${out}`); }
  if (r.ok) console.log('the case ran clean this time');
  else console.log(`\nFAILED: ${r.failure!.message}`);
  return r.ok;
}

async function main(): Promise<void> {
  const a = parseArgs(process.argv.slice(2));
  if (a.replay) {
    const c = JSON.parse(readFileSync(a.replay, 'utf8')) as CaseFile;
    if (a.bug) c.bug = a.bug;
    process.exit((await printCase(c, undefined, `replay of ${a.replay}`)) ? 0 : 1);
  }
  let ops = 0, sequences = 0, skipped = 0;
  const counts: Record<string, number> = {}, tolerated: Record<string, number> = {};
  const t0 = performance.now();
  let lastReport = t0;
  const prop = fc.asyncProperty(machineArb(a.arch), opsArb(a.maxLen), async (machine: MachineOptions, list: Op[]) => {
    const r = await execute(machine, list, a.bug ? { bug: a.bug } : {});
    ops += r.ops - r.skipped;
    skipped += r.skipped;
    sequences++;
    for (const [k, v] of Object.entries(r.counts)) counts[k] = (counts[k] ?? 0) + v;
    for (const [k, v] of Object.entries(r.tolerated)) tolerated[k] = (tolerated[k] ?? 0) + v;
    const now = performance.now();
    if (now - lastReport > 10_000) {
      lastReport = now;
      console.log(`  ${ops} ops, ${sequences} sequences, ${((now - t0) / 1000).toFixed(0)} s, ${(ops / ((now - t0) / 1000)).toFixed(0)} ops/s`);
    }
  });
  console.log(`fuzz: ${a.ops} operations, ${a.arch ?? 'both arches'}, sequences of up to ${a.maxLen}, seed ${a.seed}${a.bug ? `, bug ${a.bug} injected` : ''}`);
  for (let round = 0; ops < a.ops; round++) {
    const seed = a.seed + round;
    const before = ops;
    const out = await fc.check(prop, { seed, numRuns: a.round, endOnFailure: false });
    if (out.failed) {
      const secs = (performance.now() - t0) / 1000;
      console.log(`\nFAILURE after ${before} operations clean (${sequences} sequences, ${secs.toFixed(1)} s): round seed ${seed}, path ${out.counterexamplePath}, ${out.numShrinks} shrinks`);
      const [machine, list] = out.counterexample! as [MachineOptions, Op[]];
      await printCase({ machine, ops: list, seed, ...(a.bug ? { bug: a.bug } : {}) }, a.out, `fuzz seed ${seed} (path ${out.counterexamplePath}), shrunk`);
      process.exit(1);
    }
  }
  const secs = (performance.now() - t0) / 1000;
  console.log(`\nclean: ${ops} operations acted (and ${skipped} skipped for want of a target) in ${sequences} sequences, ${secs.toFixed(1)} s (${(ops / secs).toFixed(0)} ops/s), every one followed by m.check() and the model's checks`);
  console.log(`per kind: ${Object.entries(counts).sort((x, y) => y[1] - x[1]).map(([k, v]) => `${k} ${v}`).join(', ')}`);
  console.log(`tolerated: ${Object.entries(tolerated).sort((x, y) => y[1] - x[1]).map(([k, v]) => `${k} ${v}`).join(', ') || 'none'}`);
}

main().catch((e: unknown) => { console.error(e); process.exit(2); });
