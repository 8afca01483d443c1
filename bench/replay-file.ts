/**
 * Trace-file replay benchmark: end-to-end throughput of `ptemu replay`
 * (read, parse, map on first touch, simulate) from a raw (.ptr) file and a
 * valgrind-lackey text file, against the in-memory replay of the same
 * accesses (a Trace through m.replay, its regions mapped beforehand), all in
 * one run.
 *
 *   node dist/bench/replay-file.js [--quick] [--count N] [--mode model|functional] [--keep DIR]
 *
 * The workload looks like a program: instruction fetches running through
 * 256-instruction functions picked among 64 hot ones in 512 KiB of text, a
 * load for 30% of instructions and a store for 10%, 60% of data accesses on
 * a 16 KiB stack and 40% streaming through a 64 MiB heap array 64 bytes at a
 * time (a new page every 64 heap accesses). Addresses are aligned to the
 * access size, so no access crosses a page and the lackey file holds exactly
 * the accesses of the Trace. Both files are written to a temporary directory
 * first (the page cache then holds them, as it would a trace just recorded).
 *
 * Every subject builds a fresh machine per round (x86-64, skylake TLB, THP
 * off, 1 GiB); machine creation is not timed, first-touch faults are (in all
 * subjects). Rounds interleave the subjects, because the speed of the same
 * code drifts on a shared host; the best and the median round are printed.
 * The run fails unless all three count the same walks, hits and faults.
 */
import { mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { Machine, Trace } from '../src/index.js';
import { TraceWriter } from '../src/cli/traceformats.js';
import { replayFile, RegionMapper, type ReplayFileResult } from '../src/cli/replay.js';
import { formatTable, num, ratio } from './table.js';

const TEXT = 0x40_0000, STACK_TOP = 0x7ffd_0000_0000, HEAP = 0x7f00_0000_0000;
const HEAP_BYTES = 64 << 20;
const MEMORY = '1GiB';
const TARGETS: Record<string, number> = { raw: 20, lackey: 5 };

interface Config { count: number; rounds: number; mode: 'model' | 'functional'; keep: string | undefined }

function parseConfig(argv: string[]): Config {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean', default: false }, count: { type: 'string' }, mode: { type: 'string', default: 'model' },
      keep: { type: 'string' }, help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(
      'usage: node dist/bench/replay-file.js [--quick] [--count N] [--mode model|functional] [--keep DIR]\n' +
      '  --quick   2M accesses, 3 rounds (default: 10M, 5 rounds)\n' +
      '  --count   accesses in the trace\n' +
      '  --mode    translation mode of every subject (default model)\n' +
      '  --keep    write the trace files into DIR and leave them there\n',
    );
    process.exit(0);
  }
  const quick = values.quick === true;
  const count = values.count !== undefined ? Number(values.count) : quick ? 2_000_000 : 10_000_000;
  if (!Number.isSafeInteger(count) || count < 1000) throw new Error('--count must be an integer of at least 1000');
  const mode = values.mode === 'functional' ? 'functional' : 'model';
  return { count, rounds: quick ? 3 : 5, mode, keep: values.keep };
}

/** The workload: byte addresses and kinds (0 load, 1 store, 2 fetch). */
function workload(count: number): { addrs: Float64Array; kinds: Uint8Array } {
  const addrs = new Float64Array(count), kinds = new Uint8Array(count);
  let x = 0x9e3779b9;
  const rnd = (): number => { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; return x; };
  let fn = 0, pc = 0, heap = 0;
  let n = 0;
  while (n < count) {
    if (pc === 256) { fn = rnd() % 64; pc = 0; }
    addrs[n] = TEXT + fn * 8192 + pc * 4; kinds[n] = 2; n++; pc++;
    const r = rnd() % 100;
    if (r >= 40 || n === count) continue;
    const store = r < 10;
    let a: number;
    if (rnd() % 100 < 60) a = STACK_TOP - 16384 + (rnd() % 2048) * 8;
    else { a = HEAP + heap; heap = (heap + 64) % HEAP_BYTES; }
    addrs[n] = a; kinds[n] = store ? 1 : 0; n++;
  }
  return { addrs, kinds };
}

const KIND = ['r', 'w', 'x'] as const;

interface Counters { walks: number; l1: number; l2: number; walkRefs: number; minor: number }

function countersOf(s: ReplayFileResult): Counters {
  return { walks: s.walks, l1: s.l1Hits, l2: s.l2Hits, walkRefs: s.walkRefs, minor: s.faults.minor };
}

/** The in-memory subject: a Trace through m.replay; regions mapped as the file replay maps them, before the clock starts. */
async function inMemory(trace: Trace, mode: Config['mode']): Promise<{ rate: number; counters: Counters }> {
  const m = await Machine.create({ thp: 'never', tlb: 'skylake', mode, memory: MEMORY });
  const p = m.spawn();
  new RegionMapper(p, m.geometry.taskSize).prepare(trace.words, trace.length, new Float64Array(4));
  const t0 = performance.now();
  const s = m.replay(p, trace);
  const seconds = (performance.now() - t0) / 1000;
  const sum = (b: Record<string, number> | undefined): number => (b ? Object.values(b).reduce((a, v) => a + v, 0) : 0);
  return {
    rate: trace.length / seconds,
    counters: { walks: s.tlb?.walks ?? 0, l1: sum(s.tlb?.l1Hits), l2: sum(s.tlb?.l2Hits), walkRefs: s.tlb?.walkRefs ?? 0, minor: s.faults.minor },
  };
}

async function main(): Promise<void> {
  const cfg = parseConfig(process.argv.slice(2));
  const dir = cfg.keep ?? mkdtempSync(join(tmpdir(), 'ptemu-bench-replay-file-'));
  if (cfg.keep !== undefined) mkdirSync(dir, { recursive: true });
  try {
    process.stderr.write(`generating ${cfg.count.toLocaleString('en-US')} accesses ...\n`);
    const { addrs, kinds } = workload(cfg.count);
    const trace = new Trace(cfg.count);
    for (let i = 0; i < cfg.count; i++) trace.push(addrs[i]!, KIND[kinds[i]!]!);
    const rawPath = join(dir, 'bench.ptr'), lackeyPath = join(dir, 'bench.lackey');
    const raw = new TraceWriter(rawPath, 'raw');
    raw.addWords(trace.words, trace.length);
    await raw.close();
    const lk = new TraceWriter(lackeyPath, 'lackey');
    for (let i = 0; i < cfg.count; i++) lk.add(addrs[i]!, KIND[kinds[i]!]!, kinds[i] === 2 ? 4 : 8);
    await lk.close();
    const mb = (p: string): string => `${(statSync(p).size / 2 ** 20).toFixed(1)} MiB`;
    process.stderr.write(`files: ${rawPath} (${mb(rawPath)}), ${lackeyPath} (${mb(lackeyPath)})\n`);

    const subjects = ['in-memory', 'raw', 'lackey'] as const;
    const rates: Record<(typeof subjects)[number], number[]> = { 'in-memory': [], raw: [], lackey: [] };
    const seen = new Map<string, Counters>();
    for (let round = 0; round < cfg.rounds; round++) {
      // Rotate the order, so no subject always runs first (or right after the biggest allocation).
      for (let k = 0; k < subjects.length; k++) {
        const name = subjects[(k + round) % subjects.length]!;
        let rate: number, counters: Counters;
        if (name === 'in-memory') ({ rate, counters } = await inMemory(trace, cfg.mode));
        else {
          const s = await replayFile({ trace: name === 'raw' ? rawPath : lackeyPath, mode: cfg.mode, pages: '4k', tlb: 'skylake', memory: MEMORY, progress: false });
          if (s.accesses !== cfg.count || s.signals !== 0) throw new Error(`${name}: replayed ${s.accesses} accesses with ${s.signals} signals, expected ${cfg.count} and none`);
          rate = s.rate;
          counters = countersOf(s);
        }
        rates[name].push(rate);
        seen.set(name, counters);
      }
    }
    const ref = JSON.stringify(seen.get('in-memory'));
    for (const [name, c] of seen) if (JSON.stringify(c) !== ref) throw new Error(`${name} counted ${JSON.stringify(c)}, the in-memory replay ${ref}`);

    const best = (v: number[]): number => Math.max(...v) / 1e6;
    const median = (v: number[]): number => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]! / 1e6;
    const memBest = best(rates['in-memory']), memMedian = median(rates['in-memory']);
    const rows = subjects.map((name) => [
      name === 'in-memory' ? 'in-memory Trace + m.replay' : name === 'raw' ? 'raw file (.ptr), replayFile' : 'lackey text file, replayFile',
      `${num(best(rates[name]))} (${num(median(rates[name]))})`,
      ratio(best(rates[name]), memBest),
      ratio(median(rates[name]), memMedian),
      TARGETS[name] !== undefined ? `≥ ${TARGETS[name]}${best(rates[name]) >= TARGETS[name]! ? ' met' : ' NOT met'}` : '',
    ]);
    const c = seen.get('in-memory')!;
    process.stdout.write(`\nTrace-file replay, ${cfg.count.toLocaleString('en-US')} accesses, x86-64 skylake ${cfg.mode} mode, THP off; best (median) of ${cfg.rounds} rounds\n`);
    process.stdout.write(`per run: ${c.walks.toLocaleString('en-US')} walks, ${c.l1.toLocaleString('en-US')} L1 hits, ${c.minor.toLocaleString('en-US')} faults (the same in every subject)\n\n`);
    process.stdout.write(formatTable(['subject', 'M acc/s', '÷ in-memory (best)', '÷ in-memory (median)', 'target M/s'], rows) + '\n');
  } finally {
    if (cfg.keep === undefined) rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
  process.exitCode = 1;
});
