/**
 * Trace-replay benchmark: millions of accesses per second through the WASM
 * core's replay engine (m.replay), a naive TypeScript peer and a C peer, both
 * peers running the same per-access algorithm as the core
 * (peers/replay-naive.ts, peers/replay-native.c), so the C column measures
 * code generation rather than a simpler algorithm.
 *
 *   node dist/bench/replay.js [--quick]
 *
 * Every benchmark maps 1 GiB (262144 pages) of private anonymous memory on a
 * 4-level x86-64 machine with THP off and faults it all in before timing;
 * the peers build the same tables directly, with the core's frames. Then
 * every subject starts with empty TLBs and replays the same xorshift trace
 * (Trace.random, same seed): untimed warm-up calls, timed calls, and one more
 * call collecting the frame of every access. The run stops unless all three
 * agree on the counters of the whole sequence and on the frame and kind of
 * every access.
 *
 * Warm-up is by time on the WASM side: V8 compiles the optimizing tier of a
 * WASM function in the background once it has run for a while, one function
 * at a time, and a running call never switches (no OSR), so two short calls
 * can leave the timed ones partly in baseline code. The peers then make the
 * same number of warm-up calls, so that all three go through the same
 * sequence and their counters stay comparable.
 *
 * Timed calls are interleaved (one call of each subject per round, the order
 * rotating), because on a shared host the speed of the same code drifts by
 * up to 2x over a few hundred milliseconds: back-to-back series would compare
 * the subjects under different conditions.
 */
import os from 'node:os';
import { parseArgs } from 'node:util';

import { Machine, Trace, type Process, type TlbPreset, type TlbStats } from '../src/index.js';
import { resolveTlb, type ResolvedTlb } from '../src/tlb.js';
import { NaiveReplay, accessesOf, type Access, type ArrayKind, type ReplayCounters, type SizeCode, type TlbArraySpec } from './peers/replay-naive.js';
import { NativeReplayPeer, type NativeReplaySession } from './peers/replay-native.js';
import { formatTable, num, ratio } from './table.js';

const PAGE_SIZE = 4096;
/** The mapping every benchmark faults in: 1 GiB. */
const MAP_PAGES = 262144;
const MEMORY_BYTES = 2 * 2 ** 30;
const FRAMES = MEMORY_BYTES / PAGE_SIZE;
const SEED = 1;
/** Bounds the time-based warm-up when calls are very short. */
const MAX_WARMUP_CALLS = 64;

type Mode = 'model' | 'functional';

interface Benchmark {
  /** Short name for the table. */
  name: string;
  mode: Mode;
  tlb: TlbPreset;
  /** Pages the trace spans, from the start of the mapping. */
  pages: number;
  writeRatio: number;
  /** Accesses per call as a fraction of the configured count (walk-heavy runs are shortened for the naive peer's sake). */
  countScale: number;
  /** Target for the WASM core, million accesses per second (reads only). */
  target?: number;
}

/** Reads, and the same trace with 30% writes (writes hit dirty pages: no re-walks, a tag store each). */
function withWrites(b: Benchmark): Benchmark[] {
  return [b, { ...b, name: `${b.name}, 30% writes`, writeRatio: 0.3, target: undefined }];
}

const BENCHMARKS: Benchmark[] = [
  ...withWrites({ name: 'A functional, hits (32 pages)', mode: 'functional', tlb: 'skylake', pages: 32, writeRatio: 0, countScale: 1, target: 100 }),
  ...withWrites({ name: 'B model skylake, L1 hits (32 pages)', mode: 'model', tlb: 'skylake', pages: 32, writeRatio: 0, countScale: 1, target: 30 }),
  ...withWrites({ name: 'C model no TLB, all walk (512 pages)', mode: 'model', tlb: 'none', pages: 512, writeRatio: 0, countScale: 1, target: 20 }),
  // Nearly every access walks: a quarter of the count keeps the naive peer's part short.
  ...withWrites({ name: 'D model skylake, random 1 GiB', mode: 'model', tlb: 'skylake', pages: MAP_PAGES, writeRatio: 0, countScale: 0.25 }),
];

interface Config {
  quick: boolean;
  count: number;
  /** Warm-up: at least this many calls, and calls until this much time has passed (WASM side). */
  warmupCalls: number;
  warmupMs: number;
  /** Timed rounds: one call of each subject per round. */
  rounds: number;
}

function parseConfig(argv: string[]): Config {
  const { values } = parseArgs({
    args: argv,
    options: { quick: { type: 'boolean', default: false }, help: { type: 'boolean', default: false } },
  });
  if (values.help) {
    process.stdout.write(
      'usage: node dist/bench/replay.js [--quick]\n' +
        '  --quick  1M accesses per call, 5 timed rounds, 0.25 s warm-up (default: 4M, 9, 0.5 s)\n',
    );
    process.exit(0);
  }
  const quick = values.quick === true;
  return { quick, count: quick ? 1 << 20 : 1 << 22, warmupCalls: 2, warmupMs: quick ? 250 : 500, rounds: quick ? 5 : 9 };
}

// ---- subjects -----------------------------------------------------------------------------

/** The core's per-CPU counters that a replay moves (the naive peer keeps the same record). */
type Counters = ReplayCounters;

/** What a subject did over all its calls. */
interface Outcome {
  calls: number;
  completed: number;
  /**
   * FNV-1a over the frame and kind of every access of the verification call:
   * the kinds prove the C peer generated the same trace (with every page
   * dirty, a different read/write mix would leave every counter the same).
   */
  accessHash: number;
  /** null in functional mode: the core keeps no TLB counters there. */
  counters: Counters | null;
}

/** A subject driven call by call, so that subjects can be interleaved. */
interface Subject {
  label: string;
  warm(calls: number): Promise<void>;
  /** One timed call: nanoseconds per access. */
  timed(): Promise<number>;
  /** The verification call, then what every call did. */
  finish(): Promise<Outcome>;
  /** Releases what the subject holds (a child process). */
  close(): void;
}

/** FNV-1a over (frame, kind) of each access, as u32 words: the same hash the C peer prints. */
function hashAccesses(pfns: ArrayLike<number>, kindAt: (i: number) => number): number {
  let h = 2166136261;
  for (let i = 0; i < pfns.length; i++) {
    h = Math.imul(h ^ pfns[i]!, 16777619) >>> 0;
    h = Math.imul(h ^ kindAt(i), 16777619) >>> 0;
  }
  return h;
}

const KIND_CODES: Record<Access['kind'], number> = { r: 0, w: 1, x: 2 };

function emptyCounters(): Counters {
  return { accesses: 0, l1Hits: [0, 0, 0, 0], l2Hits: [0, 0, 0, 0], walks: 0, walkRefs: 0, walkCacheHits: 0, pageFaults: 0, dirtyRewalks: 0, walksBySize: [0, 0, 0, 0] };
}

function addTlbStats(sum: Counters, s: TlbStats): void {
  const bySize = (r: TlbStats['l1Hits']): number[] => [r['4K'], r['64K'], r['2M'], r['1G']];
  sum.accesses += s.accesses;
  bySize(s.l1Hits).forEach((v, i) => (sum.l1Hits[i]! += v));
  bySize(s.l2Hits).forEach((v, i) => (sum.l2Hits[i]! += v));
  sum.walks += s.walks;
  sum.walkRefs += s.walkRefs;
  sum.walkCacheHits += s.walkCacheHits;
  sum.pageFaults += s.pageFaults;
  sum.dirtyRewalks += s.dirtyRewalks;
  bySize(s.walksBySize).forEach((v, i) => (sum.walksBySize[i]! += v));
}

/** The C peer's raw counter slots (assembly/cpu.ts ST_*) as named counters. */
function countersFromSlots(v: readonly number[]): Counters {
  const four = (base: number): number[] => v.slice(base, base + 4);
  return { accesses: v[0]!, l1Hits: four(1), l2Hits: four(5), walks: v[9]!, walkRefs: v[10]!, walkCacheHits: v[11]!, pageFaults: v[12]!, dirtyRewalks: v[13]!, walksBySize: four(16) };
}

function countersFromNaive(c: ReplayCounters): Counters {
  return { ...c, l1Hits: [...c.l1Hits], l2Hits: [...c.l2Hits], walksBySize: [...c.walksBySize] };
}

function elapsedNs(t0: number, accesses: number): number {
  return ((performance.now() - t0) * 1e6) / accesses;
}

/** The WASM core through the public API: whole m.replay calls. */
function wasmSubject(m: Machine, p: Process, trace: Trace, mode: Mode): Subject {
  const sum = emptyCounters();
  let completed = 0;
  let calls = 0;
  const call = (collectPfns: boolean): Uint32Array | undefined => {
    const r = m.replay(p, trace, { collectPfns });
    if (r.faults.minor !== 0 || r.faults.major !== 0) throw new Error('the WASM replay faulted: the mapping was not fully faulted in');
    completed += r.completed;
    calls++;
    if (r.tlb !== undefined) addTlbStats(sum, r.tlb);
    return r.pfns;
  };
  return {
    label: 'WASM',
    warm: async (n) => {
      for (let i = 0; i < n; i++) call(false);
    },
    timed: async () => {
      const t0 = performance.now();
      call(false);
      return elapsedNs(t0, trace.length);
    },
    finish: async () => {
      const pfns = call(true)!;
      // Record kinds straight from the words m.replay copied into the core (kind in bits 0-1).
      const words = trace.view(0, trace.length);
      return { calls, completed, accessHash: hashAccesses(pfns, (i) => words[2 * i]! & 3), counters: mode === 'model' ? sum : null };
    },
    close: () => {},
  };
}

const KIND_NAMES: ArrayKind[] = ['data', 'instruction', 'unified'];

/** The core's resolved array (size bit per size code) in the naive peer's terms. */
function naiveArraySpec(a: ResolvedTlb['arrays'][number]): TlbArraySpec {
  const sizes = ([0, 1, 2, 3] as SizeCode[]).filter((s) => (a.sizes & (1 << s)) !== 0);
  return { level: a.level, kind: KIND_NAMES[a.kind]!, sizes, sets: a.sets, ways: a.ways, policy: a.policy === 1 ? 'plru' : 'lru' };
}

function naiveSubject(b: Benchmark, start: number, asid: number, pfns: Uint32Array, tlb: ResolvedTlb, accesses: Access[]): Subject {
  const peer = new NaiveReplay({
    mode: b.mode, start, pages: MAP_PAGES, dataPfns: pfns, frames: FRAMES, asid,
    arrays: tlb.arrays.map(naiveArraySpec), walkCache: tlb.walkCache,
  });
  let completed = 0;
  let calls = 0;
  return {
    label: 'naive TS',
    warm: async (n) => {
      for (let i = 0; i < n; i++, calls++) completed += peer.replay(accesses);
    },
    timed: async () => {
      const t0 = performance.now();
      completed += peer.replay(accesses);
      calls++;
      return elapsedNs(t0, accesses.length);
    },
    finish: async () => {
      const out: number[] = [];
      completed += peer.replay(accesses, out);
      calls++;
      return { calls, completed, accessHash: hashAccesses(out, (i) => KIND_CODES[accesses[i]!.kind]), counters: b.mode === 'model' ? countersFromNaive(peer.counters) : null };
    },
    close: () => {},
  };
}

function nativeSubject(b: Benchmark, session: NativeReplaySession): Subject {
  return {
    label: 'C',
    warm: (n) => session.warm(n),
    timed: () => session.timed(),
    finish: async () => {
      const r = await session.finish();
      return { calls: r.calls, completed: r.completed, accessHash: r.accessHash, counters: b.mode === 'model' ? countersFromSlots(r.stats) : null };
    },
    close: () => session.kill(),
  };
}

// ---- one benchmark --------------------------------------------------------------------------

/** A machine with 1 GiB mapped, written once (every page present, dirty, tag 1), and its TLBs flushed. */
async function prepareMachine(b: Benchmark): Promise<{ m: Machine; p: Process; start: number; pfns: Uint32Array }> {
  const m = await Machine.create({ memory: MEMORY_BYTES, thp: 'never', tlb: b.tlb, mode: b.mode });
  const p = m.spawn();
  const a = p.mmap({ length: MAP_PAGES * PAGE_SIZE, prot: 'rw' });
  const touched = p.touch(a.start, a.length, 'w', 1);
  if (!touched.ok || touched.pages !== MAP_PAGES) throw new Error('fault-in of the mapping failed');
  // Fault-in went through the TLB too: start every subject from empty TLBs and walk caches.
  m.kernel.flushTlbAll();
  const raw = p.pagemapRange(a.start, a.length);
  const pfns = new Uint32Array(MAP_PAGES);
  for (let i = 0; i < MAP_PAGES; i++) {
    if (raw[i]! >> 63n === 0n) throw new Error(`page ${i} of the mapping is not present`);
    pfns[i] = Number(raw[i]! & ((1n << 55n) - 1n));
  }
  return { m, p, start: Number(a.start), pfns };
}

/** Throws unless a peer did exactly what the core did: same calls, completions, frames and counters. */
function checkAgreement(b: Benchmark, peer: string, core: Outcome, other: Outcome): void {
  const diffs: string[] = [];
  if (other.calls !== core.calls) diffs.push(`calls ${other.calls} vs ${core.calls}`);
  if (other.completed !== core.completed) diffs.push(`completed ${other.completed} vs ${core.completed}`);
  if (other.accessHash !== core.accessHash) diffs.push(`frames or kinds of the accesses differ (hash ${other.accessHash} vs ${core.accessHash})`);
  if (core.counters !== null && other.counters !== null) {
    for (const key of Object.keys(core.counters) as (keyof Counters)[]) {
      const mine = JSON.stringify(other.counters[key]);
      const theirs = JSON.stringify(core.counters[key]);
      if (mine !== theirs) diffs.push(`${key} ${mine} vs ${theirs}`);
    }
  }
  if (diffs.length > 0) throw new Error(`${b.name}: ${peer} disagrees with the WASM core: ${diffs.join('; ')}`);
}

function collectGarbage(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

interface Measured {
  count: number;
  /** ns/access of each subject's timed calls: WASM, naive TS, C (absent without a compiler). */
  ns: { wasm: number[]; naive: number[]; c: number[] | null };
  core: Outcome;
}

async function measure(b: Benchmark, config: Config, native: NativeReplayPeer | null): Promise<Measured> {
  const tlb = resolveTlb(b.tlb, 'x86_64');
  const { m, p, start, pfns } = await prepareMachine(b);
  const count = Math.round(config.count * b.countScale);
  const trace = Trace.random({ start, length: b.pages * PAGE_SIZE, count, seed: SEED, writeRatio: b.writeRatio });
  // The mm id tags TLB entries: the peers use the same one.
  const asid = p.pid;

  const wasm = wasmSubject(m, p, trace, b.mode);
  const naive = naiveSubject(b, start, asid, pfns, tlb, accessesOf(trace));
  const subjects: Subject[] = [wasm, naive];
  if (native !== null) {
    const session = await native.start({
      mode: b.mode, start, mapPages: MAP_PAGES, tracePages: b.pages, count, seed: SEED, writeRatio: b.writeRatio,
      asid, frames: FRAMES, arrays: tlb.arrays, walkCache: tlb.walkCache, pfns,
    });
    subjects.push(nativeSubject(b, session));
  }
  try {
    let warmupCalls = 0;
    const warmupStart = performance.now();
    while (warmupCalls < config.warmupCalls || (performance.now() - warmupStart < config.warmupMs && warmupCalls < MAX_WARMUP_CALLS)) {
      await wasm.warm(1);
      warmupCalls++;
    }
    for (const s of subjects.slice(1)) await s.warm(warmupCalls);

    const ns = subjects.map((): number[] => []);
    for (let round = 0; round < config.rounds; round++) {
      for (let k = 0; k < subjects.length; k++) {
        const i = (round + k) % subjects.length;
        collectGarbage();
        ns[i]!.push(await subjects[i]!.timed());
      }
    }

    const [core, ...peers] = await Promise.all(subjects.map((s) => s.finish()));
    peers.forEach((o, i) => checkAgreement(b, `the ${subjects[i + 1]!.label} peer`, core!, o));
    return { count, ns: { wasm: ns[0]!, naive: ns[1]!, c: ns[2] ?? null }, core: core! };
  } finally {
    for (const s of subjects) s.close();
  }
}

/** What m.replay spends copying records into core memory (in chunks of 1M), per access: part of the WASM figure. */
function copyCostNs(count: number): number {
  const trace = Trace.random({ start: 0x7f00_0000_0000, length: 32 * PAGE_SIZE, count, seed: SEED });
  const chunk = Math.min(count, 1 << 20);
  const scratch = new Uint32Array(chunk * 2);
  const once = (): number => {
    const t0 = performance.now();
    for (let i = 0; i < count; i += chunk) scratch.set(trace.view(i, Math.min(chunk, count - i)));
    return elapsedNs(t0, count);
  };
  once();
  return Math.min(once(), once(), once());
}

// ---- report -----------------------------------------------------------------------------

const median = (values: readonly number[]): number => {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};

/** Best and median throughput (M accesses/s) of a series of ns/access. */
function throughput(ns: readonly number[] | null): { best: number; median: number } | null {
  return ns === null || ns.length === 0 ? null : { best: 1e3 / Math.min(...ns), median: 1e3 / median(ns) };
}

function cell(t: { best: number; median: number } | null): string {
  return t === null ? '—' : `${num(t.best, 1)} (${num(t.median, 1)})`;
}

const sumOf = (values: readonly number[]): number => values.reduce((a, b) => a + b, 0);

async function main(): Promise<void> {
  const config = parseConfig(process.argv.slice(2));
  const cpus = os.cpus();
  const host = `${cpus[0]?.model.trim() ?? 'unknown CPU'} ×${cpus.length}, ${os.platform()} ${os.arch()}, Node ${process.version}`;
  const notes: string[] = [];

  const native = await NativeReplayPeer.build();
  if (native.peer === null) notes.push(`C peer skipped: ${native.note}`);

  const rows: string[][] = [];
  const counterRows: string[][] = [];
  const targetNotes: string[] = [];
  try {
    for (const b of BENCHMARKS) {
      process.stderr.write(`${b.name}...`);
      const r = await measure(b, config, native.peer);
      process.stderr.write(' counters agree\n');
      const w = throughput(r.ns.wasm)!;
      const n = throughput(r.ns.naive)!;
      const c = throughput(r.ns.c);
      rows.push([b.name, cell(w), cell(n), cell(c), ratio(w.best, n.best), ratio(w.best, c?.best)]);
      if (b.target !== undefined) {
        const verdict = w.best >= b.target ? (w.median >= b.target ? 'met' : 'met at best, not at median') : 'NOT met';
        targetNotes.push(`target ${b.name.split(' ')[0]} ≥ ${b.target} M/s: WASM ${num(w.best, 1)} best, ${num(w.median, 1)} median: ${verdict}`);
      }
      const k = r.core.counters;
      const calls = `${r.core.calls} × ${r.count}`;
      counterRows.push(
        k === null
          ? [b.name, calls, String(r.core.completed), '—', '—', '—', '—', '—', String(r.core.accessHash)]
          : [b.name, calls, String(r.core.completed), String(sumOf(k.l1Hits)), String(sumOf(k.l2Hits)), String(k.walks), String(k.walkRefs), String(k.walkCacheHits), String(r.core.accessHash)],
      );
    }
  } finally {
    await native.peer?.dispose();
  }

  notes.unshift(
    `M acc/s: million accesses per second, best (median) of ${config.rounds} timed calls per subject, interleaved one call per subject per round; higher is better`,
    'WASM÷naive and WASM÷C: WASM best ÷ the peer\'s best (above 1× the core is faster; 1.00× = C speed)',
    `warm-up: WASM calls until ${config.warmupMs} ms have passed (at least ${config.warmupCalls}), then the peers make as many; the counters table gives calls × accesses per call`,
    `WASM figures are whole m.replay calls, including its copy of the trace into core memory (alone: ${num(copyCostNs(config.count), 2)} ns/access) and the counter reads; the peers replay from their own memory`,
    'naive TS replays a pre-decoded array of { addr, kind } objects; C generates the same xorshift trace itself',
    'every subject starts from empty TLBs over the same tables and frames (the core\'s); counters and an FNV-1a hash of the frame and kind of every access agree exactly (the run stops otherwise)',
    ...targetNotes,
  );
  if (native.peer !== null) notes.push(`C: ${native.peer.description}`);
  if (typeof (globalThis as { gc?: unknown }).gc !== 'function') {
    notes.push('run without --expose-gc: no full GC between timed calls');
  }

  const header =
    `ptemu trace replay — ${host}\n` +
    `1 GiB mapped and faulted in (x86-64 4-level, THP off), uniformly random page accesses from Trace.random, seed ${SEED}${config.quick ? ', --quick' : ''}`;
  const table = formatTable(['benchmark', 'WASM M acc/s', 'naive TS M acc/s', 'C M acc/s', 'WASM÷naive', 'WASM÷C'], rows);
  const counters = formatTable(
    ['benchmark', 'calls', 'completed', 'L1 hits', 'L2 hits', 'walks', 'walk refs', 'walk-cache hits', 'frame+kind hash'],
    counterRows,
  );
  process.stdout.write(
    `\n${header}\n\n${table}\n\nCounters over all calls (identical in WASM, naive TS and C):\n\n${counters}\n\n${notes.map((note) => `- ${note}`).join('\n')}\n`,
  );
}

main().catch((error: unknown) => {
  process.stderr.write(`\nbench: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
