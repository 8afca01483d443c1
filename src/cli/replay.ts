// `ptemu replay`: replays a trace file from a real tool through a fresh
// machine with one process, in large batches straight from the file reader
// to the core, and sums up what the TLBs and the kernel did.
//
// Address space: without a snapshot, memory is mapped on first touch, by
// 2 MiB-aligned regions: before a batch is replayed, every region its
// accesses touch that is not mapped yet is mmapped (MAP_FIXED, private
// anonymous, rw, and x when a fetch lands in it; a region first mapped rw
// that later sees a fetch is mprotected to rwx, which flushes it as the
// kernel would). 2 MiB rather than 1 GiB: a region is the unit THP maps with
// one PMD, so 'thp' gets huge pages wherever the trace lives, while no more
// is mapped than the trace could plausibly own (accesses far from others
// still get their own VMA). Region 0 starts at mmap_min_addr (64 KiB) and the
// last one ends at TASK_SIZE: accesses outside those (and beyond user space)
// end in SIGSEGV, counted as signals, and the replay goes on.

import { readFile, writeFile } from 'node:fs/promises';
import { Machine, type MachineOptions, type ReplayStats } from '../machine.js';
import { Trace } from '../trace.js';
import { TLB_PRESETS, type TlbConfig, type TlbPreset } from '../tlb.js';
import type { Process } from '../process.js';
import type { Size } from '../units.js';
import { TraceReader, KIND_FETCH, KIND_LOAD, KIND_STORE } from './traceformats.js';
import type { PagePolicy, ReplayFileOptions, ReplaySummary } from './types.js';

export const PAGE_POLICIES: readonly PagePolicy[] = ['4k', 'thp', 'mthp-64k', 'contpte'];

/** log2 of the first-touch mapping unit (2 MiB). */
export const REGION_SHIFT = 21;
const REGION_BYTES = 1n << BigInt(REGION_SHIFT);
/** mmap_min_addr. */
const MIN_ADDR = 0x10000n;

/** replayFile's options beyond the contract (types.ts). */
export interface ReplayRunOptions extends ReplayFileOptions {
  /** Emulated physical memory. Default 4 GiB (the Machine default); swap is as large. */
  memory?: Size;
  /** Accesses per batch, and so the round-robin quantum with several CPUs. Default 256 Ki (DEFAULT_BATCH). */
  batch?: number;
}

/** The summary, and what only a file replay knows. */
export interface ReplayFileResult extends ReplaySummary {
  cpus: number;
  /** Accesses that ended in a signal (no mapping there, or a protection the snapshot sets). */
  signals: number;
  /** First-touch regions mapped (or snapshot VMAs). */
  regions: number;
}

/** Machine options of a page-size policy. */
export function pagePolicyOptions(pages: PagePolicy, arch: 'x86_64' | 'arm64'): MachineOptions {
  switch (pages) {
    case '4k': return { thp: 'never' };
    case 'thp': return { thp: 'always' };
    case 'mthp-64k': return { thp: 'never', mthp: { '64K': 'always' }, contpte: false };
    case 'contpte':
      if (arch !== 'arm64') throw new Error(`pages 'contpte' needs arch arm64 (contiguous PTEs are an arm64 feature), got ${arch}`);
      return { thp: 'never', mthp: { '64K': 'always' }, contpte: true };
    default:
      throw new Error(`pages must be one of ${PAGE_POLICIES.join(', ')}, got ${String(pages)}`);
  }
}

/** A preset name, or the path of a JSON TlbConfig. */
export async function resolveTlbOption(tlb: string | undefined, arch: 'x86_64' | 'arm64'): Promise<{ spec: TlbPreset | TlbConfig; name: string }> {
  if (tlb === undefined) { const name = arch === 'arm64' ? 'neoverse-n1' : 'skylake'; return { spec: name, name }; }
  if (Object.hasOwn(TLB_PRESETS, tlb)) return { spec: tlb as TlbPreset, name: tlb };
  let text: string;
  try {
    text = await readFile(tlb, 'utf8');
  } catch (e) {
    throw new Error(`tlb ${JSON.stringify(tlb)} is neither a preset (${Object.keys(TLB_PRESETS).join(', ')}) nor a readable file: ${e instanceof Error ? e.message : String(e)}`);
  }
  try {
    return { spec: JSON.parse(text) as TlbConfig, name: tlb };
  } catch (e) {
    throw new Error(`${tlb}: not a JSON TLB config: ${e instanceof Error ? e.message : String(e)}`);
  }
}

const RW = 1, RWX = 2, NONE = 3;
/** Entries of the region cache (direct-mapped): 2^(32 - CACHE_SHIFT). */
const CACHE_SHIFT = 22;
const CACHE = 1 << (32 - CACHE_SHIFT);

const HASH = 0x9e3779b1 | 0;

/**
 * The hot loop of RegionMapper.prepare, alone in its function so that V8
 * optimises it once and for all (code it has never run, such as the slow
 * path, would make it deoptimise): the index of the first access of
 * w[from, count) whose region the cache does not cover, or count. Kinds are
 * counted in registers without branches (bit 0 of a kind is a store, bit 1
 * a fetch) and added to tally ([0] fetches, [1] stores) at the end.
 */
function scanCached(w: Int32Array, from: number, count: number, cHi: Int32Array, cLo: Int32Array, cState: Uint8Array, tally: Float64Array): number {
  let fetches = 0, stores = 0, i = from;
  for (let j = 2 * from; i < count; i++, j += 2) {
    const lo = w[j]!, hi = w[j + 1]!;
    const f = (lo >>> 1) & 1;
    const r = lo >>> REGION_SHIFT;
    const slot = Math.imul(r ^ hi, HASH) >>> CACHE_SHIFT;
    // A hit needs any state for data (RW, RWX, NONE > 0) and more than RW for a fetch.
    if (cLo[slot] !== r || cHi[slot] !== hi || cState[slot]! <= f) break;
    fetches += f;
    stores += lo & 1;
  }
  tally[0]! += fetches;
  tally[1]! += stores;
  return i;
}

/**
 * Maps 2 MiB regions on first touch (see the top of the file). The scan of a
 * batch also counts the kinds, so that replay makes one pass over a batch in
 * JS (the reader's aside). A small direct-mapped cache of regions, compared
 * as two int32 keys, keeps it off the Map: programs interleave text, stack
 * and heap, so "the same region as the last access" alone misses half the
 * time.
 */
export class RegionMapper {
  /** Regions mapped (or found unmappable). */
  regions = 0;
  /** Region index (address >> 21, up to 2^43) → RW | RWX | NONE. */
  private readonly state = new Map<number, number>();
  /** The cache: address bits 32-63 and 21-31 of a region, and its state (0: empty) once this batch is mapped. */
  private readonly cHi = new Int32Array(CACHE);
  private readonly cLo = new Int32Array(CACHE);
  private readonly cState = new Uint8Array(CACHE);
  /** Fetches and stores counted by scanCached. */
  private readonly tally = new Float64Array(2);
  private readonly p: Process;
  private readonly taskSize: bigint;

  constructor(p: Process, taskSize: bigint) {
    this.p = p;
    this.taskSize = taskSize;
  }

  /** Maps what words[0, count) need; adds the kinds to kinds[0..2]. */
  prepare(words: Uint32Array, count: number, kinds: Float64Array): void {
    // Signed view: V8 handles Uint32Array values above 2^31 as doubles.
    const w = new Int32Array(words.buffer, words.byteOffset, count * 2);
    const cHi = this.cHi, cLo = this.cLo, cState = this.cState, tally = this.tally;
    tally.fill(0);
    let pending: Map<number, boolean> | undefined;
    let i = 0;
    while ((i = scanCached(w, i, count, cHi, cLo, cState, tally)) < count) {
      // The slow path: once per region and batch, unless regions collide in the cache.
      const lo = w[2 * i]!, hi = w[2 * i + 1]!;
      const exec = (lo & 3) === KIND_FETCH;
      tally[0]! += exec ? 1 : 0;
      tally[1]! += lo & 1;
      const r = lo >>> REGION_SHIFT;
      const key = (hi >>> 0) * 2048 + r;
      const known = this.state.get(key);
      let next = known ?? RW;
      if (known === undefined || (exec && known === RW)) {
        pending ??= new Map();
        const x = exec || pending.get(key) === true;
        pending.set(key, x);
        next = x ? RWX : RW;
      }
      const slot = Math.imul(r ^ hi, HASH) >>> CACHE_SHIFT;
      cLo[slot] = r; cHi[slot] = hi; cState[slot] = next;
      i++;
    }
    kinds[KIND_LOAD]! += count - tally[0]! - tally[1]!;
    kinds[KIND_STORE]! += tally[1]!;
    kinds[KIND_FETCH]! += tally[0]!;
    if (pending) {
      this.map(pending);
      // Regions outside user space turned out NONE: forget the guesses.
      cState.fill(0);
    }
  }

  /** mmap (or mprotect to rwx) the pending regions, runs of neighbours in one call each. */
  private map(pending: Map<number, boolean>): void {
    const keys = [...pending.keys()].sort((a, b) => a - b);
    let i = 0;
    while (i < keys.length) {
      const first = keys[i]!;
      const exec = pending.get(first)!;
      const upgrade = this.state.get(first) === RW;
      let j = i + 1;
      while (j < keys.length && keys[j] === keys[j - 1]! + 1 && pending.get(keys[j]!) === exec && (this.state.get(keys[j]!) === RW) === upgrade) j++;
      let start = BigInt(first) << BigInt(REGION_SHIFT);
      let end = BigInt(keys[j - 1]!) * REGION_BYTES + REGION_BYTES;
      if (start < MIN_ADDR) start = MIN_ADDR;
      if (end > this.taskSize) end = this.taskSize;
      if (start < end) {
        const prot = exec ? 'rwx' : 'rw';
        if (upgrade) this.p.mprotect(start, end - start, prot);
        else this.p.mmap({ addr: start, length: end - start, prot, fixed: true });
      }
      for (let k = i; k < j; k++) {
        if (!upgrade) this.regions++;
        // A region wholly outside user space stays NONE: its accesses signal, and are not looked at again.
        const key = keys[k]!;
        const rs = BigInt(key) << BigInt(REGION_SHIFT);
        this.state.set(key, rs + REGION_BYTES <= MIN_ADDR || rs >= this.taskSize ? NONE : exec ? RWX : RW);
      }
      i = j;
    }
  }
}

/** Counts kinds when nothing is mapped on first touch (a snapshot). */
function countKinds(words: Uint32Array, count: number, kinds: Float64Array): void {
  const w = new Int32Array(words.buffer, words.byteOffset, count * 2);
  let fetches = 0, stores = 0;
  for (let j = 0; j < 2 * count; j += 2) { fetches += (w[j]! >>> 1) & 1; stores += w[j]! & 1; }
  kinds[KIND_LOAD]! += count - fetches - stores;
  kinds[KIND_STORE]! += stores;
  kinds[KIND_FETCH]! += fetches;
}

/**
 * One VMA of a snapshot, as `ptemu snapshot` writes them at the top level of
 * its scenario (src/cli/snapshot.ts SnapshotVma); addresses may also be
 * strings ("0x7f00...", decimal), and other fields (path, ...) are ignored.
 */
export interface ReplaySnapshotVma { start: number | string; end: number | string; prot?: string; shared?: boolean }

/**
 * Maps the VMAs of a snapshot file: JSON `{ vmas: [{ start, end, prot,
 * shared }] }` (prot as 'rw-', 'r-x', ..., default 'rw'), each anonymous
 * (shared ones as shmem), MAP_FIXED. The scenario's steps (which pages were
 * present) are not run: replay faults pages in as the trace touches them.
 */
export async function mapSnapshot(p: Process, path: string): Promise<number> {
  let doc: unknown;
  try {
    doc = JSON.parse(await readFile(path, 'utf8'));
  } catch (e) {
    throw new Error(`snapshot ${path}: ${e instanceof Error ? e.message : String(e)}`);
  }
  const vmas = (doc as { vmas?: unknown } | null)?.vmas;
  if (!Array.isArray(vmas)) throw new Error(`snapshot ${path}: expected { "vmas": [{ "start", "end", "prot" }] }`);
  const addr = (v: unknown, i: number, field: string): bigint => {
    if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return BigInt(v);
    if (typeof v === 'string' && /^(0x[0-9a-f]+|\d+)$/i.test(v.trim())) return BigInt(v.trim());
    throw new Error(`snapshot ${path}: vmas[${i}].${field} must be an address (a number or a "0x..." string), got ${JSON.stringify(v)}`);
  };
  vmas.forEach((raw: unknown, i) => {
    const v = raw as Partial<ReplaySnapshotVma> | null;
    if (v === null || typeof v !== 'object') throw new Error(`snapshot ${path}: vmas[${i}] must be an object`);
    const start = addr(v.start, i, 'start'), end = addr(v.end, i, 'end');
    if (end <= start) throw new Error(`snapshot ${path}: vmas[${i}] is empty or reversed`);
    const prot = v.prot ?? 'rw';
    if (typeof prot !== 'string') throw new Error(`snapshot ${path}: vmas[${i}].prot must be a string such as "rw-"`);
    if (v.shared !== undefined && typeof v.shared !== 'boolean') throw new Error(`snapshot ${path}: vmas[${i}].shared must be a boolean`);
    try {
      p.mmap({ addr: start, length: end - start, prot, fixed: true, shared: v.shared === true });
    } catch (e) {
      throw new Error(`snapshot ${path}: vmas[${i}] (0x${start.toString(16)}-0x${end.toString(16)} ${prot}): ${e instanceof Error ? e.message : String(e)}`);
    }
  });
  return vmas.length;
}

/** A progress line on stderr, redrawn at most ten times a second. */
class ProgressBar {
  private lastDraw = 0;
  private drawn = false;
  constructor(private readonly stream: NodeJS.WriteStream, private readonly enabled: boolean) {}

  update(fraction: number, accesses: number, elapsedMs: number, force = false): void {
    if (!this.enabled) return;
    const now = performance.now();
    if (!force && now - this.lastDraw < 100) return;
    this.lastDraw = now;
    const f = Math.max(0, Math.min(1, fraction));
    const width = 24;
    const full = Math.round(f * width);
    const rate = elapsedMs > 0 ? accesses / (elapsedMs / 1000) : 0;
    const eta = f > 0.001 ? (elapsedMs / 1000) * (1 - f) / f : NaN;
    const line = `[${'#'.repeat(full)}${'-'.repeat(width - full)}] ${(f * 100).toFixed(1).padStart(5)}%  ${fmtCount(accesses)} accesses  ${(rate / 1e6).toFixed(2)} M/s  ETA ${fmtDuration(eta)}`;
    this.stream.write(`\r${line}\x1b[K`);
    this.drawn = true;
  }

  done(): void {
    if (this.drawn) this.stream.write('\r\x1b[K');
  }
}

function fmtDuration(s: number): string {
  if (!Number.isFinite(s)) return '--:--';
  const t = Math.round(s);
  const h = Math.floor(t / 3600), m = Math.floor((t % 3600) / 60), sec = t % 60;
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${String(sec).padStart(2, '0')}` : `${m}:${String(sec).padStart(2, '0')}`;
}

function fmtCount(n: number): string {
  return n >= 1e9 ? `${(n / 1e9).toFixed(2)}G` : n >= 1e6 ? `${(n / 1e6).toFixed(2)}M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)}k` : String(n);
}

function sumBySize(r: { '4K': number; '64K': number; '2M': number; '1G': number }): number {
  return r['4K'] + r['64K'] + r['2M'] + r['1G'];
}

/**
 * Replays a trace file (see the top of the file for how memory is mapped).
 * Batches go to the CPUs round-robin. `seconds` and `rate` cover reading,
 * parsing, mapping and simulating, not building the machine.
 */
export async function replayFile(opts: ReplayRunOptions): Promise<ReplayFileResult> {
  if (opts === null || typeof opts !== 'object' || typeof opts.trace !== 'string') throw new Error('replayFile needs { trace: path }');
  const arch = opts.arch ?? 'x86_64';
  if (arch !== 'x86_64' && arch !== 'arm64') throw new Error(`arch must be x86_64 or arm64, got ${String(arch)}`);
  const pages = opts.pages ?? '4k';
  const mode = opts.mode ?? 'model';
  const cpus = opts.cpus ?? 1;
  const limit = opts.limit;
  if (limit !== undefined && (!Number.isSafeInteger(limit) || limit < 0)) throw new Error(`limit must be a non-negative integer, got ${String(limit)}`);
  const tlb = await resolveTlbOption(opts.tlb, arch);
  const m = await Machine.create({
    arch, cpus, mode, tlb: tlb.spec, ...pagePolicyOptions(pages, arch),
    ...(opts.memory !== undefined ? { memory: opts.memory } : {}),
  });
  const p = m.spawn();
  let mapper: RegionMapper | undefined;
  let regions = 0;
  if (opts.snapshot !== undefined) regions = await mapSnapshot(p, opts.snapshot);
  else mapper = new RegionMapper(p, m.geometry.taskSize);

  const reader = new TraceReader(opts.trace, { format: opts.format, skipBad: opts.skipBad, batchSize: opts.batch });
  const bar = new ProgressBar(process.stderr, opts.progress ?? process.stderr.isTTY === true);
  const kinds = new Float64Array(4);
  let accesses = 0, batches = 0, l1 = 0, l2 = 0, walks = 0, walkRefs = 0, minor = 0, major = 0, signals = 0;
  const add = (s: ReplayStats): void => {
    if (s.tlb) { l1 += sumBySize(s.tlb.l1Hits); l2 += sumBySize(s.tlb.l2Hits); walks += s.tlb.walks; walkRefs += s.tlb.walkRefs; }
    minor += s.faults.minor;
    major += s.faults.major;
    signals += s.accesses - s.completed;
  };
  const t0 = performance.now();
  try {
    if (limit !== 0) {
      for await (const b of reader.batches()) {
        const n = limit === undefined ? b.count : Math.min(b.count, limit - accesses);
        if (mapper) mapper.prepare(b.words, n, kinds);
        else countKinds(b.words, n, kinds);
        // A view of the batch's buffer: the one copy is m.replay's into the core's memory.
        add(m.replay(p, Trace.fromWords(b.words, n), { cpu: batches % cpus }));
        accesses += n;
        batches++;
        bar.update(limit === undefined ? reader.progress : Math.max(reader.progress, accesses / limit), accesses, performance.now() - t0);
        if (limit !== undefined && accesses >= limit) break;
      }
    }
  } finally {
    bar.done();
  }
  const seconds = (performance.now() - t0) / 1000;
  const rss = p.rss;
  return {
    trace: opts.trace,
    format: reader.format ?? opts.format ?? 'lackey',
    arch, pages, tlb: tlb.name, mode, cpus,
    accesses, loads: kinds[KIND_LOAD]!, stores: kinds[KIND_STORE]!, ifetches: kinds[KIND_FETCH]!,
    skipped: reader.skipped,
    l1Hits: l1, l2Hits: l2, walks, walkRefs,
    missRate: accesses > 0 ? walks / accesses : 0,
    walksPer1k: accesses > 0 ? (walks * 1000) / accesses : 0,
    walkRefsPer1k: accesses > 0 ? (walkRefs * 1000) / accesses : 0,
    faults: { minor, major },
    pageTableBytes: p.pageTableBytes,
    rss: rss.anon + rss.file + rss.shmem,
    seconds,
    rate: seconds > 0 ? accesses / seconds : 0,
    signals,
    regions: mapper ? mapper.regions : regions,
  };
}

// ---- reports ---------------------------------------------------------------------------------

const int = (n: number): string => Math.round(n).toLocaleString('en-US');
const pct = (a: number, b: number): string => (b > 0 ? `${((a * 100) / b).toFixed(2)}%` : '—');

function bytes(n: number): string {
  return n >= 1 << 30 ? `${(n / 2 ** 30).toFixed(2)} GiB` : n >= 1 << 20 ? `${(n / 2 ** 20).toFixed(2)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`;
}

/** The summary as a two-column table for the terminal. */
export function formatSummary(s: ReplaySummary): string {
  const x = s as Partial<ReplayFileResult>;
  const model = s.mode === 'model';
  const rows: [string, string][] = [
    ['trace', `${s.trace} (${s.format})`],
    ['machine', `${s.arch}, pages ${s.pages}, tlb ${s.tlb}, mode ${s.mode}${x.cpus !== undefined ? `, ${x.cpus} CPU${x.cpus > 1 ? 's' : ''}` : ''}`],
    ['accesses', `${int(s.accesses)}  (loads ${int(s.loads)}, stores ${int(s.stores)}, fetches ${int(s.ifetches)})`],
  ];
  if (s.skipped > 0) rows.push(['skipped', `${int(s.skipped)} malformed records`]);
  if (x.signals) rows.push(['signals', `${int(x.signals)} accesses ended in a signal (nothing mapped there)`]);
  if (model) {
    rows.push(
      ['L1 hits', `${int(s.l1Hits)}  (${pct(s.l1Hits, s.accesses)})`],
      ['L2 hits', `${int(s.l2Hits)}  (${pct(s.l2Hits, s.accesses)})`],
      ['walks', `${int(s.walks)}  (miss rate ${pct(s.walks, s.accesses)}, ${s.walksPer1k.toFixed(2)} per 1k accesses)`],
      ['walk refs', `${int(s.walkRefs)}  (${s.walkRefsPer1k.toFixed(2)} per 1k accesses)`],
    );
  } else {
    rows.push(['TLB', 'not modelled in functional mode']);
  }
  rows.push(
    ['faults', `${int(s.faults.minor)} minor, ${int(s.faults.major)} major`],
    ['page tables', bytes(s.pageTableBytes)],
    ['rss', `${int(s.rss)} pages (${bytes(s.rss * 4096)})`],
  );
  if (x.regions !== undefined) rows.push(['regions', `${int(x.regions)} mapped`]);
  rows.push(['time', `${s.seconds.toFixed(3)} s  (${(s.rate / 1e6).toFixed(2)} M accesses/s)`]);
  const w = Math.max(...rows.map((r) => r[0].length));
  return rows.map(([k, v]) => `${k.padEnd(w)}  ${v}`).join('\n') + '\n';
}

/** CSV columns: the summary flattened (faults.minor → faultsMinor), then the file-replay extras. */
export const CSV_COLUMNS = [
  'trace', 'format', 'arch', 'pages', 'tlb', 'mode', 'cpus', 'accesses', 'loads', 'stores', 'ifetches', 'skipped', 'signals',
  'l1Hits', 'l2Hits', 'walks', 'walkRefs', 'missRate', 'walksPer1k', 'walkRefsPer1k', 'faultsMinor', 'faultsMajor',
  'pageTableBytes', 'rss', 'regions', 'seconds', 'rate',
] as const;

function csvCell(v: unknown): string {
  if (v === undefined || v === null) return '';
  const s = String(v);
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** Summaries as CSV: a header and one row each (a sweep writes many). */
export function summaryCsv(rows: ReplaySummary | readonly ReplaySummary[]): string {
  const list: readonly ReplaySummary[] = Array.isArray(rows) ? rows : [rows as ReplaySummary];
  const lines = [CSV_COLUMNS.join(',')];
  for (const s of list) {
    const flat: Record<string, unknown> = { ...s, faultsMinor: s.faults.minor, faultsMajor: s.faults.major };
    lines.push(CSV_COLUMNS.map((c) => csvCell(flat[c])).join(','));
  }
  return lines.join('\n') + '\n';
}

export function summaryJson(s: ReplaySummary | readonly ReplaySummary[]): string {
  return JSON.stringify(s, null, 2) + '\n';
}

/** Writes a summary as JSON or CSV ('-' is stdout). */
export async function writeSummary(path: string, s: ReplaySummary, kind: 'json' | 'csv'): Promise<void> {
  const text = kind === 'json' ? summaryJson(s) : summaryCsv(s);
  if (path === '-') process.stdout.write(text);
  else await writeFile(path, text);
}
