/**
 * Naive TypeScript peer for the trace-replay benchmark (bench/replay.ts).
 *
 * The same algorithm as the WASM core's replay path (assembly/access.ts,
 * tlb.ts, cpu.ts, fault.ts leafLookup, pgtable.ts pmdTableLookup,
 * arch/x86_64.ts), written the way one would write it in idiomatic
 * TypeScript without thinking about performance: entries, TLB ways, walk-
 * cache slots and frame descriptors are plain objects, tables are arrays of
 * entry objects, flags are booleans, addresses are JS numbers (48-bit virtual
 * addresses fit a double exactly, but not the 32-bit bitwise operators, hence
 * the divisions), lookups return small result objects.
 *
 * What must match the core exactly is the per-access path, so that the peer
 * does the same work and its counters can be checked against the core's:
 * probe order (L1 arrays of the access's kind, then L2), LRU stamps and
 * victims, fills of L2 then L1, walk-cache lookups and fills, the references
 * a walk counts, the hardware A/D update, the permission check on cached
 * entries (with the dirty re-walk), and the data op (a write stores tag 0 in
 * the frame's descriptor).
 *
 * Tables are located the way the core does it: a table entry holds a pfn, the
 * frame descriptor's `index` names the table block. The fault path is not
 * ported: the range is mapped up front (untimed), and an access that would
 * fault throws.
 */
import type { AccessKind } from '../../src/index.js';

export const PAGE_SIZE = 4096;
const ENTRIES_PER_TABLE = 512;
const LEVELS = 4;
const FUNC_SLOTS = 4096;

/** Page-size codes, as in the core: 4K, 64K (arm64 only), 2M, 1G. */
export type SizeCode = 0 | 1 | 2 | 3;
/** log2 of the 4 KiB pages in each size. */
const SIZE_SHIFT: Record<SizeCode, number> = { 0: 0, 1: 4, 2: 9, 3: 18 };

/** One access of a trace. */
export interface Access {
  addr: number;
  kind: AccessKind;
}

// ---- page tables ---------------------------------------------------------------------

/** A present leaf (x86 bits as booleans). */
interface LeafEntry {
  kind: 'leaf';
  present: boolean;
  writable: boolean;
  user: boolean;
  accessed: boolean;
  dirty: boolean;
  softDirty: boolean;
  global: boolean;
  /** PSE: a 2M or 1G leaf in an upper table. */
  huge: boolean;
  noExec: boolean;
  pfn: number;
}

/** An entry pointing at the next table down: only its frame. */
interface TableEntry {
  kind: 'table';
  pfn: number;
}

type Entry = LeafEntry | TableEntry;
type TableBlock = (Entry | undefined)[];

interface FrameDescriptor {
  refcount: number;
  /** The page's content. */
  tag: number;
  /** Table frames: the table's block in `blocks`. */
  index: number;
  info: number;
}

/** Where a lookup ended: the table holding the entry, its slot, and the level. */
interface EntrySlot {
  block: TableBlock;
  index: number;
  level: number;
}

function indexAt(addr: number, level: number): number {
  return Math.floor(addr / 2 ** (12 + 9 * level)) % ENTRIES_PER_TABLE;
}

// ---- what a cached translation allows --------------------------------------------------

interface Perms {
  read: boolean;
  /** A write completes without touching the PTE (RW and D at fill time). */
  write: boolean;
  /** Writable but clean: a write re-walks to set D. */
  writeNeedsDirty: boolean;
  exec: boolean;
  global: boolean;
}

function tlbPerms(e: LeafEntry): Perms {
  return {
    read: e.present && e.user,
    write: e.writable && e.dirty,
    writeNeedsDirty: e.writable && !e.dirty,
    exec: !e.noExec,
    global: e.global,
  };
}

function permits(perms: Perms, kind: AccessKind): boolean {
  if (!perms.read) return false;
  if (kind === 'w') return perms.write;
  if (kind === 'x') return perms.exec;
  return true;
}

/** The MMU on a user access: false for a fault, else A (and D on a write) set in the entry. */
function hwAccess(e: LeafEntry, kind: AccessKind): boolean {
  if (!e.present || !e.user) return false;
  if (kind === 'w' && !e.writable) return false;
  if (kind === 'x' && e.noExec) return false;
  const dirty = e.dirty || kind === 'w';
  if (!e.accessed || e.dirty !== dirty) {
    e.accessed = true;
    e.dirty = dirty;
  }
  return true;
}

// ---- TLB arrays ----------------------------------------------------------------------

export type ArrayKind = 'data' | 'instruction' | 'unified';

export interface TlbArraySpec {
  level: 1 | 2;
  kind: ArrayKind;
  /** Page sizes held, ascending. */
  sizes: SizeCode[];
  sets: number;
  ways: number;
  policy: 'lru' | 'plru';
}

class TlbEntry {
  constructor(
    public valid: boolean,
    public pageNo: number,
    public size: SizeCode,
    public asid: number,
    public global: boolean,
    public pfn: number,
    public perms: Perms,
    public stamp: number,
  ) {}

  static empty(): TlbEntry {
    return new TlbEntry(false, 0, 0, 0, false, 0, { read: false, write: false, writeNeedsDirty: false, exec: false, global: false }, 0);
  }
}

class TlbArray {
  readonly level: 1 | 2;
  readonly kind: ArrayKind;
  readonly sizes: SizeCode[];
  private readonly policy: 'lru' | 'plru';
  private readonly sets: TlbEntry[][];
  /** Tree-PLRU bits per set. */
  private readonly plru: number[];

  constructor(spec: TlbArraySpec) {
    this.level = spec.level;
    this.kind = spec.kind;
    this.sizes = [...spec.sizes].sort((a, b) => a - b);
    this.policy = spec.policy;
    this.sets = Array.from({ length: spec.sets }, () => Array.from({ length: spec.ways }, () => TlbEntry.empty()));
    this.plru = new Array<number>(spec.sets).fill(0);
  }

  serves(kind: AccessKind): boolean {
    return this.kind === 'unified' || (this.kind === 'instruction') === (kind === 'x');
  }

  holds(size: SizeCode): boolean {
    return this.sizes.includes(size);
  }

  lookup(vpn: number, size: SizeCode, asid: number, stamp: number): TlbEntry | undefined {
    const pageNo = Math.floor(vpn / 2 ** SIZE_SHIFT[size]);
    const setIndex = pageNo % this.sets.length;
    const set = this.sets[setIndex]!;
    for (let way = 0; way < set.length; way++) {
      const e = set[way]!;
      if (e.valid && e.pageNo === pageNo && e.size === size && (e.global || e.asid === asid)) {
        this.touch(setIndex, way, e, stamp);
        return e;
      }
    }
    return undefined;
  }

  /** Inserts a translation in place of the set's victim; `pfn` is the first frame of the page. */
  fill(vpn: number, size: SizeCode, asid: number, pfn: number, perms: Perms, stamp: number): TlbEntry {
    const span = 2 ** SIZE_SHIFT[size];
    const pageNo = Math.floor(vpn / span);
    const setIndex = pageNo % this.sets.length;
    const way = this.victim(setIndex);
    const e = new TlbEntry(true, pageNo, size, perms.global ? 0 : asid, perms.global, pfn - (pfn % span), perms, stamp);
    this.sets[setIndex]![way] = e;
    this.touch(setIndex, way, e, stamp);
    return e;
  }

  private touch(setIndex: number, way: number, e: TlbEntry, stamp: number): void {
    if (this.policy === 'lru') {
      e.stamp = stamp;
      return;
    }
    // Tree-PLRU: every node on the path points away from the way just used.
    let bits = this.plru[setIndex]!;
    let node = 1;
    let span = this.sets[setIndex]!.length;
    while (span > 1) {
      span /= 2;
      const right = Math.floor(way / span) % 2 === 1;
      if (right) bits &= ~(1 << node);
      else bits |= 1 << node;
      node = node * 2 + (right ? 1 : 0);
    }
    this.plru[setIndex] = bits;
  }

  private victim(setIndex: number): number {
    const set = this.sets[setIndex]!;
    let oldest = 0;
    let best = Infinity;
    for (let way = 0; way < set.length; way++) {
      const e = set[way]!;
      if (!e.valid) return way;
      if (this.policy === 'lru' && e.stamp < best) {
        best = e.stamp;
        oldest = way;
      }
    }
    if (this.policy === 'lru') return oldest;
    // Tree-PLRU: follow the bits (1 = go right) from the root.
    const bits = this.plru[setIndex]!;
    let node = 1;
    let way = 0;
    let span = set.length;
    while (span > 1) {
      span /= 2;
      if ((bits & (1 << node)) !== 0) {
        way += span;
        node = node * 2 + 1;
      } else {
        node = node * 2;
      }
    }
    return way;
  }
}

// ---- paging-structure caches ---------------------------------------------------------------

interface WalkCacheSlot {
  valid: boolean;
  prefix: number;
  asid: number;
  stamp: number;
}

/** 4-way set associative (fully associative up to 4 entries), LRU. */
class WalkCache {
  private readonly sets: WalkCacheSlot[][];

  constructor(entries: number) {
    const ways = Math.min(entries, 4);
    const sets = entries === 0 ? 0 : Math.ceil(entries / ways);
    this.sets = Array.from({ length: sets }, () =>
      Array.from({ length: ways }, () => ({ valid: false, prefix: 0, asid: 0, stamp: 0 })),
    );
  }

  lookup(prefix: number, asid: number, stamp: number): boolean {
    if (this.sets.length === 0) return false;
    for (const slot of this.sets[prefix % this.sets.length]!) {
      if (slot.valid && slot.prefix === prefix && slot.asid === asid) {
        slot.stamp = stamp;
        return true;
      }
    }
    return false;
  }

  fill(prefix: number, asid: number, stamp: number): void {
    if (this.sets.length === 0) return;
    const set = this.sets[prefix % this.sets.length]!;
    let victim = 0;
    let best = Infinity;
    for (let i = 0; i < set.length; i++) {
      const slot = set[i]!;
      if (!slot.valid || (slot.prefix === prefix && slot.asid === asid)) {
        victim = i;
        break;
      }
      if (slot.stamp < best) {
        best = slot.stamp;
        victim = i;
      }
    }
    set[victim] = { valid: true, prefix, asid, stamp };
  }
}

// ---- the CPU and its counters ------------------------------------------------------------

/** The core's per-CPU counters that a replay moves, by name. */
export interface ReplayCounters {
  accesses: number;
  l1Hits: number[];
  l2Hits: number[];
  walks: number;
  walkRefs: number;
  walkCacheHits: number;
  pageFaults: number;
  dirtyRewalks: number;
  walksBySize: number[];
}

interface FunctionalSlot {
  vpn: number;
  asid: number;
  pfn: number;
  perms: Perms;
}

/** A TLB hit or fill: the array, the entry, and the page size it holds. */
interface Hit {
  array: TlbArray;
  entry: TlbEntry;
  size: SizeCode;
}

export interface NaiveReplayOptions {
  mode: 'model' | 'functional';
  /** Start of the mapping (page aligned) and its pages, all mapped and faulted in. */
  start: number;
  pages: number;
  /** Frame of each mapped page (the core's, so that both reach the same frames); default: in order. */
  dataPfns?: ArrayLike<number>;
  /** Physical frames (descriptors). */
  frames: number;
  /** The address space id tagging TLB entries. */
  asid: number;
  arrays: TlbArraySpec[];
  /** Walk-cache entries for cached PMD, PUD, P4D, PGD entries. */
  walkCache: [number, number, number, number];
}

export class NaiveReplay {
  readonly counters: ReplayCounters = {
    accesses: 0,
    l1Hits: [0, 0, 0, 0],
    l2Hits: [0, 0, 0, 0],
    walks: 0,
    walkRefs: 0,
    walkCacheHits: 0,
    pageFaults: 0,
    dirtyRewalks: 0,
    walksBySize: [0, 0, 0, 0],
  };

  private readonly mode: 'model' | 'functional';
  private readonly frames: FrameDescriptor[];
  private readonly blocks: TableBlock[] = [];
  private readonly usedPfns = new Set<number>([0]);
  private nextTablePfn = 1;
  private readonly mm: { id: number; root: number; tlbSizes: Set<SizeCode> };
  private readonly arrays: TlbArray[];
  /** Index = level of the cached entry (1 PMD ... 4 PGD); 0 unused. */
  private readonly walkCaches: WalkCache[];
  private readonly functional: (FunctionalSlot | undefined)[] = new Array<FunctionalSlot | undefined>(FUNC_SLOTS).fill(undefined);
  private stamp = 0;
  /** The one-entry cache of the PMD table covering the last 1 GiB region looked up. */
  private pmdCache: { region: number; table: number } | null = null;

  constructor(opts: NaiveReplayOptions) {
    this.mode = opts.mode;
    this.frames = Array.from({ length: opts.frames }, () => ({ refcount: 0, tag: 0, index: 0, info: 0 }));
    this.blocks.push([]); // block 0 names no table
    this.arrays = opts.arrays.map((spec) => new TlbArray(spec));
    this.walkCaches = [new WalkCache(0), ...opts.walkCache.map((n) => new WalkCache(n))];
    const dataPfns = opts.dataPfns ?? Array.from({ length: opts.pages }, (_, i) => 2 + i + Math.floor(i / 512) + 1);
    for (let i = 0; i < opts.pages; i++) this.usedPfns.add(dataPfns[i]!);
    this.mm = { id: opts.asid, root: this.allocTable(), tlbSizes: new Set() };
    this.mapRange(opts.start, opts.pages, dataPfns);
  }

  /** Replays the trace; with `pfnsOut`, records the frame each access reached. Returns the accesses completed. */
  replay(trace: readonly Access[], pfnsOut?: number[]): number {
    const functional = this.mode === 'functional';
    if (!functional) this.counters.accesses += trace.length;
    let completed = 0;
    for (const { addr, kind } of trace) {
      const pfn = functional ? this.translateFunctional(addr, kind) : this.translateModel(addr, kind);
      if (pfn === null) {
        throw new Error(`naive replay: access at 0x${addr.toString(16)} faulted; the fault path is not ported`);
      }
      if (kind === 'w') this.frames[pfn]!.tag = 0;
      completed++;
      pfnsOut?.push(pfn);
    }
    return completed;
  }

  // ---- setup (untimed) ----

  private allocTable(): number {
    while (this.usedPfns.has(this.nextTablePfn)) this.nextTablePfn++;
    const pfn = this.nextTablePfn;
    if (pfn >= this.frames.length) throw new Error('naive replay: out of frames for tables');
    this.usedPfns.add(pfn);
    this.blocks.push(new Array<Entry | undefined>(ENTRIES_PER_TABLE).fill(undefined));
    this.frames[pfn] = { refcount: 1, tag: 0, index: this.blocks.length - 1, info: 0 };
    return pfn;
  }

  /** Maps every page as the core's write fault-in leaves it: present, user, writable, accessed, dirty, NX. */
  private mapRange(start: number, pages: number, dataPfns: ArrayLike<number>): void {
    for (let i = 0; i < pages; i++) {
      const addr = start + i * PAGE_SIZE;
      let table = this.mm.root;
      for (let level = LEVELS - 1; level > 0; level--) {
        const block = this.tableOf(table);
        const index = indexAt(addr, level);
        let e = block[index];
        if (e === undefined) {
          e = { kind: 'table', pfn: this.allocTable() };
          block[index] = e;
        }
        table = e.pfn;
      }
      const pfn = dataPfns[i]!;
      this.frames[pfn] = { refcount: 1, tag: 1, index: 0, info: 0 };
      this.tableOf(table)[indexAt(addr, 0)] = {
        kind: 'leaf', present: true, writable: true, user: true, accessed: true, dirty: true, softDirty: true,
        global: false, huge: false, noExec: true, pfn,
      };
    }
  }

  // ---- table lookups ----

  /** A table frame's entries, found through its descriptor's index. */
  private tableOf(pfn: number): TableBlock {
    return this.blocks[this.frames[pfn]!.index]!;
  }

  /** The PMD table covering addr (pfn), or null when a level above is missing or a huge leaf. */
  private pmdTableLookup(addr: number): number | null {
    const region = Math.floor(addr / 2 ** 30);
    if (this.pmdCache !== null && this.pmdCache.region === region) return this.pmdCache.table;
    let table = this.mm.root;
    for (let level = LEVELS - 1; level > 1; level--) {
      const e = this.tableOf(table)[indexAt(addr, level)];
      if (e === undefined || e.kind !== 'table') return null;
      table = e.pfn;
    }
    this.pmdCache = { region, table };
    return table;
  }

  /** The PTE mapping addr, or the upper entry that ends the walk (none or a huge leaf). */
  private leafLookup(addr: number): EntrySlot {
    const pmdTable = this.pmdTableLookup(addr);
    if (pmdTable !== null) {
      const block = this.tableOf(pmdTable);
      const index = indexAt(addr, 1);
      const pmd = block[index];
      if (pmd === undefined || pmd.kind !== 'table') return { block, index, level: 1 };
      return { block: this.tableOf(pmd.pfn), index: indexAt(addr, 0), level: 0 };
    }
    let table = this.mm.root;
    for (let level = LEVELS - 1; ; level--) {
      const block = this.tableOf(table);
      const index = indexAt(addr, level);
      const e = block[index];
      if (level === 0 || e === undefined || e.kind !== 'table') return { block, index, level };
      table = e.pfn;
    }
  }

  /** The leaf a lookup found, or null when the walk ended on nothing usable. */
  private static leafAt(slot: EntrySlot): LeafEntry | null {
    const e = slot.block[slot.index];
    if (e === undefined || e.kind !== 'leaf' || (slot.level !== 0 && !e.huge)) return null;
    return e;
  }

  // ---- model mode ----

  private translateModel(addr: number, kind: AccessKind): number | null {
    const vpn = Math.floor(addr / PAGE_SIZE);
    const asid = this.mm.id;
    const stamp = ++this.stamp;
    let hit = this.probeLevel(1, vpn, kind, asid, stamp);
    if (hit !== null) {
      this.counters.l1Hits[hit.size]!++;
    } else {
      hit = this.probeLevel(2, vpn, kind, asid, stamp);
      if (hit === null) return this.walkAndFill(addr, kind, stamp);
      this.counters.l2Hits[hit.size]!++;
      const { entry, size } = hit;
      const l1 = this.fillLevel(1, vpn, kind, asid, size, alignVpn(vpn, size), entry.pfn, entry.perms, stamp);
      if (l1 !== null) {
        hit = l1;
        this.mm.tlbSizes.add(l1.size);
      }
    }
    return this.checkEntry(addr, kind, hit);
  }

  /** Probes the arrays of one level, sizes this address space has had cached only. */
  private probeLevel(level: 1 | 2, vpn: number, kind: AccessKind, asid: number, stamp: number): Hit | null {
    for (const array of this.arrays) {
      if (array.level !== level || !array.serves(kind)) continue;
      for (const size of array.sizes) {
        if (!this.mm.tlbSizes.has(size)) continue;
        const entry = array.lookup(vpn, size, asid, stamp);
        if (entry !== undefined) return { array, entry, size };
      }
    }
    return null;
  }

  /** Fills the first array of `level` that holds the page's size, else the first that holds a fragment of it. */
  private fillLevel(
    level: 1 | 2, vpn: number, kind: AccessKind, asid: number, size: SizeCode, leafVbase: number, leafPfnBase: number,
    perms: Perms, stamp: number,
  ): Hit | null {
    const candidates = this.arrays.filter((a) => a.level === level && a.serves(kind) && fitSize(a, size) !== null);
    const array = candidates.find((a) => fitSize(a, size) === size) ?? candidates[0];
    if (array === undefined) return null;
    const fit = fitSize(array, size)!;
    const fragVbase = alignVpn(vpn, fit);
    const entry = array.fill(vpn, fit, asid, leafPfnBase + (fragVbase - leafVbase), perms, stamp);
    return { array, entry, size: fit };
  }

  /** Applies the cached permissions of a hit; a clean writable entry re-walks to set dirty. */
  private checkEntry(addr: number, kind: AccessKind, hit: Hit): number | null {
    const vpn = Math.floor(addr / PAGE_SIZE);
    const { entry } = hit;
    if (!permits(entry.perms, kind)) {
      if (kind === 'w' && entry.perms.read && entry.perms.writeNeedsDirty) {
        const perms = this.dirtyRewalk(addr);
        if (perms !== null && permits(perms, kind)) {
          entry.perms = perms;
          return entry.pfn + (vpn - alignVpn(vpn, hit.size));
        }
      }
      entry.valid = false;
      return null;
    }
    return entry.pfn + (vpn - alignVpn(vpn, hit.size));
  }

  /** The hardware's dirty update for a write through a clean writable entry. */
  private dirtyRewalk(addr: number): Perms | null {
    this.counters.dirtyRewalks++;
    const e = NaiveReplay.leafAt(this.leafLookup(addr));
    if (e === null || !hwAccess(e, 'w')) return null;
    return tlbPerms(e);
  }

  /** The page walk: counts the table reads the walk caches do not save, updates A/D, fills L2 then L1. */
  private walkAndFill(addr: number, kind: AccessKind, stamp: number): number | null {
    this.counters.walks++;
    const slot = this.leafLookup(addr);
    const { level } = slot;
    const asid = this.mm.id;
    const top = LEVELS - 1;
    let refs = top - level + 1;
    for (let k = level + 1; k <= top; k++) {
      if (this.walkCaches[k]!.lookup(prefixAt(addr, k), asid, stamp)) {
        refs = k - level;
        this.counters.walkCacheHits++;
        break;
      }
    }
    this.counters.walkRefs += refs;
    const e = NaiveReplay.leafAt(slot);
    if (e === null || !hwAccess(e, kind)) return null;
    for (let k = level + 1; k <= top; k++) this.walkCaches[k]!.fill(prefixAt(addr, k), asid, stamp);
    const size: SizeCode = level === 0 ? 0 : level === 1 ? 2 : 3;
    this.counters.walksBySize[size]!++;
    const span = 2 ** SIZE_SHIFT[size];
    const vpn = Math.floor(addr / PAGE_SIZE);
    const vbase = vpn - (vpn % span);
    const leafBase = e.pfn - (e.pfn % span);
    const perms = tlbPerms(e);
    const l2 = this.fillLevel(2, vpn, kind, asid, size, vbase, leafBase, perms, stamp);
    if (l2 !== null) this.mm.tlbSizes.add(l2.size);
    const l1 = this.fillLevel(1, vpn, kind, asid, size, vbase, leafBase, perms, stamp);
    if (l1 !== null) this.mm.tlbSizes.add(l1.size);
    if (!permits(perms, kind)) return null;
    return leafBase + (vpn - vbase);
  }

  // ---- functional mode ----

  /** A direct-mapped cache of 4 KiB translations with the same cached permissions. */
  private translateFunctional(addr: number, kind: AccessKind): number | null {
    const vpn = Math.floor(addr / PAGE_SIZE);
    const asid = this.mm.id;
    const index = vpn % FUNC_SLOTS;
    const cached = this.functional[index];
    if (cached !== undefined && cached.vpn === vpn && cached.asid === asid) {
      if (permits(cached.perms, kind)) return cached.pfn;
      if (kind === 'w' && cached.perms.read && cached.perms.writeNeedsDirty) {
        const perms = this.dirtyRewalk(addr);
        if (perms !== null && permits(perms, kind)) {
          cached.perms = perms;
          return cached.pfn;
        }
      }
      this.functional[index] = undefined;
      return null;
    }
    const slot = this.leafLookup(addr);
    const e = NaiveReplay.leafAt(slot);
    if (e === null || !hwAccess(e, kind)) return null;
    const pfn = e.pfn + (slot.level === 0 ? 0 : vpn % 2 ** (9 * slot.level));
    const perms = tlbPerms(e);
    this.functional[index] = { vpn, asid, pfn, perms };
    return permits(perms, kind) ? pfn : null;
  }
}

function alignVpn(vpn: number, size: SizeCode): number {
  return vpn - (vpn % 2 ** SIZE_SHIFT[size]);
}

/** The address bits above the entries a level-`level` entry maps: what a walk cache is tagged with. */
function prefixAt(addr: number, level: number): number {
  return Math.floor(addr / 2 ** (12 + 9 * level));
}

/** Largest size the array holds that is no larger than `size` (a big page is cached in fragments). */
function fitSize(array: TlbArray, size: SizeCode): SizeCode | null {
  for (let s = size; s >= 0; s--) {
    if (array.holds(s as SizeCode)) return s as SizeCode;
  }
  return null;
}

/** Decodes a trace into access objects (done before timing). */
export function accessesOf(trace: { length: number; at(i: number): Access }): Access[] {
  return Array.from({ length: trace.length }, (_, i) => trace.at(i));
}
