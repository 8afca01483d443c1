/**
 * Naive TypeScript peer for the ptemu benchmarks.
 *
 * Implements the same model as the WASM core and the C peer (x86-64 4-level
 * page tables, a frame pool with a free list, per-page fault-in, mprotect,
 * a read-only walk and MADV_DONTNEED) the way one would write it in
 * idiomatic TypeScript without thinking about performance: nested Maps for
 * the tables, a plain object per PTE and per frame, and JS numbers for
 * addresses (48-bit virtual addresses fit a double exactly, but not the
 * 32-bit bitwise operators, hence the divisions).
 *
 * It exists to show what the WASM core buys over the obvious
 * implementation, so it must do the same work: frames really come from and
 * return to the allocator, page-table pages take frames too, and tables
 * survive MADV_DONTNEED.
 *
 * With `faultIn(..., { thp: true })` each aligned 2 MiB becomes one huge
 * entry object in the page directory (512 consecutive frames as a folio);
 * only mirrorFault understands those, the other operations skip them. The
 * device mirror (mirrorFault / mirrorInvalidate) is the seed's hmm mirror
 * written the same naive way: directory objects with a count of valid
 * entries and Map children, an object per entry.
 */

/** 2 MiB aligned start of the benchmarked range, shared by all peers. */
export const RANGE_START = 0x7f00_0000_0000;

export const PAGE_SIZE = 4096;
const ENTRIES_PER_TABLE = 512;
/** Bytes mapped by a PMD-level (huge) entry. */
const HUGE_SIZE = 2 * 1024 * 1024;
const HUGE_PAGES = HUGE_SIZE / PAGE_SIZE;

/** Bytes covered by one entry of a table at `level` (0 = PT ... 3 = PML4). */
function levelSpan(level: number): number {
  return 2 ** (12 + 9 * level);
}

/** Tag of a frame holding a page table (anonymous frames use 0). */
const TAG_PAGETABLE = 1;

export interface Pte {
  present: boolean;
  write: boolean;
  user: boolean;
  accessed: boolean;
  dirty: boolean;
  nx: boolean;
  pfn: number;
  /** Contiguous hint (arm64 PTE_CONT, emulated): set on 16 aligned entries of one block. */
  cont?: boolean;
  /** userfaultfd write-protected. */
  uffdWp?: boolean;
}

export interface Frame {
  refcount: number;
  mapcount: number;
  anon: boolean;
  exclusive: boolean;
  tag: number;
  /** Written through a device mirror (folio dirty). */
  dirty?: boolean;
}

/** A PMD-level leaf: one entry of a page directory mapping 512 consecutive frames (a 2 MiB folio) from `pfn`. */
export interface HugePmd extends Pte {
  huge: true;
}

/** A device mirror entry; it is valid while it is in its directory. */
export interface MirrorEntry {
  pfn: number;
  write: boolean;
  dirty: boolean;
}

/** A mirror directory: a frame, its valid entries and their count (the seed's refcount). */
interface MirrorDir<Child> {
  pfn: number;
  count: number;
  children: Map<number, Child>;
}

type MirrorLeaf = MirrorDir<MirrorEntry>;   // entries at shift 12
type MirrorMiddle = MirrorDir<MirrorLeaf>;  // shift 21
type MirrorTop = MirrorDir<MirrorMiddle>;   // shift 30

/** A page-table page: the frame backing it and its populated entries. */
interface Table<Entry> {
  pfn: number;
  entries: Map<number, Entry>;
}

type PageTable = Table<Pte>;
type PageDirectory = Table<PageTable | HugePmd>;
type Pdpt = Table<PageDirectory>;
type Pml4 = Table<Pdpt>;

function indexAt(va: number, level: number): number {
  return Math.floor(va / levelSpan(level)) % ENTRIES_PER_TABLE;
}

function isHuge(entry: object): entry is HugePmd {
  return 'huge' in entry;
}

/** Frames needed for a range: 25% spare, like the C peer, plus tables. */
export function framesForRange(pages: number): number {
  const tables = Math.floor(pages / 512) + Math.floor(pages / (512 * 512)) + 8;
  return pages + Math.floor(pages / 4) + tables;
}

export class NaivePageTables {
  private readonly frames: Frame[] = [];
  /** Free pfns, used as a stack so recently freed frames are reused first. */
  private readonly freeList: number[] = [];
  private readonly root: Pml4;
  /** The device mirror's root (shift 39): not a directory, not counted. */
  private readonly mirrorRoot = new Map<number, MirrorTop>();

  constructor(frameCount: number) {
    for (let pfn = 0; pfn < frameCount; pfn++) {
      this.frames.push({ refcount: 0, mapcount: 0, anon: false, exclusive: false, tag: 0 });
    }
    // Descending, so that popping hands out pfn 0 first.
    for (let pfn = frameCount - 1; pfn >= 0; pfn--) {
      this.freeList.push(pfn);
    }
    this.root = this.newTable<Pdpt>();
  }

  /** A machine sized for a range of `pages`, as the benchmarks use it. */
  static forRange(pages: number): NaivePageTables {
    return new NaivePageTables(framesForRange(pages));
  }

  get freeFrames(): number {
    return this.freeList.length;
  }

  frame(pfn: number): Readonly<Frame> | undefined {
    return this.frames[pfn];
  }

  /**
   * Anonymous write fault on each page, walking from the root every time
   * as the fault handler would, allocating missing tables on the way.
   * With `thp`, an aligned 2 MiB of the range whose directory entry is
   * still empty is faulted as one huge entry (512 consecutive frames).
   */
  faultIn(start: number, pages: number, opts: { thp?: boolean } = {}): void {
    const end = start + pages * PAGE_SIZE;
    for (let i = 0; i < pages; i++) {
      const va = start + i * PAGE_SIZE;
      const pdpt = this.childTable(this.root, indexAt(va, 3));
      const pd = this.childTable(pdpt, indexAt(va, 2));
      if (opts.thp && va % HUGE_SIZE === 0 && va + HUGE_SIZE <= end && !pd.entries.has(indexAt(va, 1))) {
        this.faultHuge(pd, indexAt(va, 1));
        i += HUGE_PAGES - 1;
        continue;
      }
      const pt = this.pageTable(pd, indexAt(va, 1));
      if (pt === undefined) {
        continue; // inside a huge entry: already mapped
      }
      const index = indexAt(va, 0);
      if (pt.entries.get(index)?.present) {
        continue; // spurious fault: already mapped
      }
      const pfn = this.allocFrame();
      const frame = this.frameAt(pfn);
      frame.refcount = 1;
      frame.mapcount = 1;
      frame.anon = true;
      frame.exclusive = true;
      frame.tag = 0;
      pt.entries.set(index, {
        present: true,
        write: true,
        user: true,
        accessed: true,
        dirty: true,
        nx: true,
        pfn,
      });
    }
  }

  /** A THP fault: a 2 MiB folio mapped by one huge entry at `index` of the page directory. */
  private faultHuge(pd: PageDirectory, index: number): void {
    const pfn = this.allocFolio(HUGE_PAGES);
    for (let i = 0; i < HUGE_PAGES; i++) {
      const frame = this.frameAt(pfn + i);
      frame.refcount = i === 0 ? 1 : 0; // the folio's reference is the head's
      frame.mapcount = 1;
      frame.anon = true;
      frame.exclusive = true;
      frame.tag = 0;
    }
    pd.entries.set(index, {
      huge: true,
      present: true,
      write: true,
      user: true,
      accessed: true,
      dirty: true,
      nx: true,
      pfn,
    });
  }

  /**
   * Change the protection of every present PTE, as pte_modify() does: the
   * pfn, accessed and dirty are kept (the cache and software bits the
   * kernel also keeps are not modelled here); present, user and NX come
   * from the new protection, write from `writable`. Returns how many PTEs
   * changed.
   */
  mprotect(start: number, pages: number, writable: boolean): number {
    let changed = 0;
    this.walkRange(start, pages, (pte) => {
      if (!pte.present) {
        return;
      }
      const unchanged = pte.write === writable && pte.user && pte.accessed && pte.nx;
      if (!unchanged) {
        pte.write = writable;
        pte.user = true;
        pte.accessed = true;
        pte.nx = true;
        changed++;
      }
    });
    return changed;
  }

  /** Count present PTEs and sum their pfns. */
  walk(start: number, pages: number): { present: number; pfnSum: number } {
    let present = 0;
    let pfnSum = 0;
    this.walkRange(start, pages, (pte) => {
      if (pte.present) {
        present++;
        pfnSum += pte.pfn;
      }
    });
    return { present, pfnSum };
  }

  /**
   * MADV_DONTNEED: unmap every present page, dropping the mapping and the
   * reference it held, and free frames nobody references any more. Page
   * tables stay. Returns the number of frames freed.
   */
  dontneed(start: number, pages: number): number {
    let freed = 0;
    this.walkRange(start, pages, (pte, pt, index) => {
      if (!pte.present) {
        return;
      }
      pt.entries.delete(index);
      const frame = this.frameAt(pte.pfn);
      frame.mapcount--;
      frame.refcount--;
      if (frame.refcount === 0) {
        this.freeFrame(pte.pfn);
        freed++;
      }
    });
    return freed;
  }

  /**
   * fork's copy_page_range over the range: a new root whose tables map the
   * same frames; every present PTE is write-protected on both sides and its
   * frame gains a reference and a mapping and loses exclusivity. Returns
   * the child's root, for forkExit.
   */
  fork(start: number, pages: number): object {
    const child = this.newTable<Pdpt>();
    this.walkRangeFrom(this.root, start, pages, (pte, _pt, index, va) => {
      if (!pte.present) {
        return;
      }
      const pt = this.pageTable(this.childTable(this.childTable(child, indexAt(va, 3)), indexAt(va, 2)), indexAt(va, 1))!;
      pte.write = false;
      pt.entries.set(index, { ...pte, accessed: false });
      const frame = this.frameAt(pte.pfn);
      frame.refcount++;
      frame.mapcount++;
      frame.exclusive = false;
    });
    return child;
  }

  /** The pfn mapped at va (for verification). */
  walkFirstPfn(va: number): number {
    let pfn = -1;
    this.walkRange(va, 1, (pte) => { pfn = pte.pfn; });
    return pfn;
  }

  /** The child exits: its mappings and references go, then its tables. */
  forkExit(child: object, start: number, pages: number): void {
    const root = child as Pml4;
    this.walkRangeFrom(root, start, pages, (pte) => {
      const frame = this.frameAt(pte.pfn);
      frame.mapcount--;
      frame.refcount--;
      if (frame.refcount === 0) {
        this.freeFrame(pte.pfn);
      }
    });
    for (const pdpt of root.entries.values()) {
      for (const pd of pdpt.entries.values()) {
        for (const pt of pd.entries.values()) if (!isHuge(pt)) this.freeFrame(pt.pfn);
        this.freeFrame(pd.pfn);
      }
      this.freeFrame(pdpt.pfn);
    }
    this.freeFrame(root.pfn);
  }

  /** Sets write and/or dirty on every `stride`-th present PTE of the range and clears them on the others (benchmark setup). */
  setBits(start: number, pages: number, stride: number, bits: { write: boolean; dirty: boolean }): void {
    let i = 0;
    this.walkRange(start, pages, (pte) => {
      const on = i++ % stride === 0;
      if (bits.write) pte.write = on;
      if (bits.dirty) pte.dirty = on;
    });
  }

  /**
   * wp_shared_mapping_range over one mapping: write-protects the writable
   * PTEs and returns how many, with the range a TLB flush would cover.
   */
  writeProtect(start: number, pages: number): { total: number; flushStart: number; flushEnd: number } {
    let total = 0, flushStart = Infinity, flushEnd = 0;
    this.walkRangeFrom(this.root, start, pages, (pte, _pt, _i, va) => {
      if (!pte.present || !pte.write) return;
      pte.write = false;
      total++;
      flushStart = Math.min(flushStart, va);
      flushEnd = Math.max(flushEnd, va + PAGE_SIZE);
    });
    return { total, flushStart, flushEnd };
  }

  /** clean_record_shared_mapping_range over one mapping: bit (page index) per dirty PTE cleaned. */
  cleanRecord(start: number, pages: number, bitmap: Uint8Array): { total: number; bitStart: number; bitEnd: number } {
    let total = 0, bitStart = pages, bitEnd = 0;
    this.walkRangeFrom(this.root, start, pages, (pte, _pt, _i, va) => {
      if (!pte.present || !pte.dirty) return;
      pte.dirty = false;
      const bit = (va - start) / PAGE_SIZE;
      bitmap[Math.floor(bit / 8)]! |= 1 << (bit % 8);
      bitStart = Math.min(bitStart, bit);
      bitEnd = Math.max(bitEnd, bit + 1);
      total++;
    });
    return { total, bitStart, bitEnd };
  }

  /**
   * UFFDIO_WRITEPROTECT (protect) or its undoing over the range: present
   * PTEs gain uffd-wp and lose write permission, or lose uffd-wp and get it
   * back; returns how many changed, with the range a TLB flush would cover.
   */
  uffdWriteProtect(start: number, pages: number, protect: boolean): number {
    let total = 0, flushStart = Infinity, flushEnd = 0;
    this.walkRangeFrom(this.root, start, pages, (pte, _pt, _i, va) => {
      if (!pte.present || (pte.uffdWp ?? false) === protect) return;
      pte.uffdWp = protect;
      pte.write = !protect;
      total++;
      flushStart = Math.min(flushStart, va);
      flushEnd = Math.max(flushEnd, va + PAGE_SIZE);
    });
    return total;
  }

  /** Benchmark setup: a write to every `stride`-th page in async mode (the uffd-wp bit goes, write permission comes back). */
  writeEvery(start: number, pages: number, stride: number): void {
    let i = 0;
    this.walkRange(start, pages, (pte) => { if (i++ % stride === 0) { pte.uffdWp = false; pte.write = true; pte.dirty = true; } });
  }

  /**
   * PAGEMAP_SCAN with category and return mask WRITTEN: regions of adjacent
   * present pages without uffd-wp; with wpMatching they are protected again.
   */
  scanWritten(start: number, pages: number, wpMatching: boolean): { start: number; end: number }[] {
    const regions: { start: number; end: number }[] = [];
    this.walkRangeFrom(this.root, start, pages, (pte, _pt, _i, va) => {
      if (!pte.present || pte.uffdWp) return;
      const last = regions[regions.length - 1];
      if (last && last.end === va) last.end = va + PAGE_SIZE; else regions.push({ start: va, end: va + PAGE_SIZE });
      if (wpMatching) { pte.uffdWp = true; pte.write = false; }
    });
    return regions;
  }

  /**
   * Benchmark setup: every aligned block of 16 entries renumbered onto 16
   * consecutive aligned frame numbers (as a 64 KiB folio would be; the frame
   * objects are not consulted by the scan) and marked folded.
   */
  foldAll(start: number, pages: number): void {
    let i = 0;
    this.walkRange(start, pages, (pte) => { pte.pfn = 0x100000 + i++; pte.cont = true; });
  }

  /**
   * The contiguous-block census: per aligned block of 16 entries, folded (all
   * present and cont, consecutive frames from an aligned one, same
   * attributes A/D aside), foldable (the same without cont), or broken.
   */
  contScan(start: number, pages: number): { folded: number; foldable: number; broken: number } {
    const r = { folded: 0, foldable: 0, broken: 0 };
    let block: Pte[] = [];
    this.walkRangeFrom(this.root, start, pages, (pte, _pt, _i, va) => {
      if (((va / PAGE_SIZE) % 16) === 0) block = [];
      block.push(pte);
      if (block.length !== 16 || ((va / PAGE_SIZE) % 16) !== 15) return;
      const first = block[0]!;
      const same = first.present && first.pfn % 16 === 0 && block.every((e, i) =>
        e.present && e.pfn === first.pfn + i && e.write === first.write && e.user === first.user && e.nx === first.nx);
      const conts = block.filter((e) => e.cont).length;
      if (conts === 0) { if (same) r.foldable++; } else if (conts === 16 && same) r.folded++; else r.broken++;
    });
    return r;
  }

  /** contpte_convert without CONT on every folded block: clear all 16, gather A/D, rewrite. Returns the blocks unfolded. */
  unfoldAll(start: number, pages: number): number {
    let n = 0;
    let block: Pte[] = [];
    this.walkRangeFrom(this.root, start, pages, (pte, _pt, _i, va) => {
      if (((va / PAGE_SIZE) % 16) === 0) block = [];
      block.push(pte);
      if (block.length !== 16 || !block[0]!.cont) return;
      let accessed = false, dirty = false;
      const saved = block.map((e) => ({ ...e }));
      for (const e of block) { accessed ||= e.accessed; dirty ||= e.dirty; e.present = false; }
      block.forEach((e, i) => Object.assign(e, saved[i], { present: true, cont: false, accessed, dirty }));
      n++;
    });
    return n;
  }

  private walkRange(start: number, pages: number, visit: (pte: Pte, pt: PageTable, index: number) => void): void {
    this.walkRangeFrom(this.root, start, pages, visit);
  }

  /**
   * Visit every populated PTE in the range, each table once, skipping
   * missing tables and entries.
   */
  private walkRangeFrom(
    root: Pml4,
    start: number,
    pages: number,
    visit: (pte: Pte, pt: PageTable, index: number, va: number) => void,
  ): void {
    const end = start + pages * PAGE_SIZE;
    for (const [pdpt, pdptStart, pdptEnd] of this.children(root, 3, start, end)) {
      for (const [pd, pdStart, pdEnd] of this.children(pdpt, 2, pdptStart, pdptEnd)) {
        for (const [pt, ptStart, ptEnd] of this.children(pd, 1, pdStart, pdEnd)) {
          if (isHuge(pt)) {
            continue; // huge entries are not walked by these operations
          }
          const first = indexAt(ptStart, 0);
          const count = (ptEnd - ptStart) / PAGE_SIZE;
          for (let index = first; index < first + count; index++) {
            const pte = pt.entries.get(index);
            if (pte) {
              visit(pte, pt, index, ptStart + (index - first) * PAGE_SIZE);
            }
          }
        }
      }
    }
  }

  /**
   * The populated children of `table` (at `level`) within [start, end),
   * each with the part of the range it covers.
   */
  private *children<Child>(
    table: Table<Child>,
    level: number,
    start: number,
    end: number,
  ): Generator<[Child, number, number]> {
    const span = levelSpan(level);
    let addr = start;
    while (addr < end) {
      const next = Math.min((Math.floor(addr / span) + 1) * span, end);
      const child = table.entries.get(indexAt(addr, level));
      if (child !== undefined) {
        yield [child, addr, next];
      }
      addr = next;
    }
  }

  private childTable<Child>(table: Table<Table<Child>>, index: number): Table<Child> {
    let child = table.entries.get(index);
    if (child === undefined) {
      child = this.newTable<Child>();
      table.entries.set(index, child);
    }
    return child;
  }

  /** The page table at `index` of a page directory, created if missing; undefined where a huge entry is. */
  private pageTable(pd: PageDirectory, index: number): PageTable | undefined {
    let child = pd.entries.get(index);
    if (child === undefined) {
      child = this.newTable<Pte>();
      pd.entries.set(index, child);
    }
    return isHuge(child) ? undefined : child;
  }

  /** The CPU's leaf for va: a PTE, a huge entry, or undefined where nothing is mapped. */
  private cpuLeaf(va: number): Pte | undefined {
    const pd = this.root.entries.get(indexAt(va, 3))?.entries.get(indexAt(va, 2));
    const entry = pd?.entries.get(indexAt(va, 1));
    if (entry === undefined || isHuge(entry)) {
      return entry;
    }
    return entry.entries.get(indexAt(va, 0));
  }

  /**
   * The seed's device read fault over the range into the mirror: every page
   * filled from the CPU tables (a page the CPU has not mapped is faulted in
   * first, as the seed retries after hmm_mm_fault), a huge entry as all 512
   * entries of its 2 MiB. Returns how many entries became valid.
   */
  mirrorFault(start: number, pages: number): number {
    const end = start + pages * PAGE_SIZE;
    let added = 0;
    let va = start;
    while (va < end) {
      let leaf = this.cpuLeaf(va);
      if (leaf === undefined || !leaf.present) {
        this.faultIn(va, 1);
        leaf = this.cpuLeaf(va)!;
      }
      if (isHuge(leaf)) {
        const base = va - (va % HUGE_SIZE);
        for (let i = 0; i < HUGE_PAGES; i++) {
          added += this.mirrorSet(base + i * PAGE_SIZE, leaf.pfn + i, leaf.write);
        }
        va = base + HUGE_SIZE;
      } else {
        added += this.mirrorSet(va, leaf.pfn, leaf.write);
        va += PAGE_SIZE;
      }
    }
    return added;
  }

  /**
   * An mmu-notifier invalidation of the range: every valid mirror entry is
   * cleared (a dirty writable one marks its frame dirty first), and a
   * directory whose count drops to 0 is removed from its parent and its
   * frame freed, up the tree. Returns how many entries were cleared.
   */
  mirrorInvalidate(start: number, pages: number): number {
    let cleared = 0;
    for (let i = 0; i < pages; i++) {
      const va = start + i * PAGE_SIZE;
      const top = this.mirrorRoot.get(indexAt(va, 3));
      const middle = top?.children.get(indexAt(va, 2));
      const leaf = middle?.children.get(indexAt(va, 1));
      const entry = leaf?.children.get(indexAt(va, 0));
      if (top === undefined || middle === undefined || leaf === undefined || entry === undefined) {
        continue;
      }
      if (entry.write && entry.dirty) {
        this.frameAt(entry.pfn).dirty = true;
      }
      leaf.children.delete(indexAt(va, 0));
      cleared++;
      if (--leaf.count > 0) continue;
      middle.children.delete(indexAt(va, 1));
      this.freeFrame(leaf.pfn);
      if (--middle.count > 0) continue;
      top.children.delete(indexAt(va, 2));
      this.freeFrame(middle.pfn);
      if (--top.count > 0) continue;
      this.mirrorRoot.delete(indexAt(va, 3));
      this.freeFrame(top.pfn);
    }
    return cleared;
  }

  /** The mirror's directories and valid entries (for checks). */
  mirrorStats(): { directories: number; valid: number } {
    let directories = 0, valid = 0;
    for (const top of this.mirrorRoot.values()) {
      directories++;
      for (const middle of top.children.values()) {
        directories++;
        for (const leaf of middle.children.values()) {
          directories++;
          valid += leaf.children.size;
        }
      }
    }
    return { directories, valid };
  }

  /** Sets the mirror entry for va, creating directories on the way; 1 if it was not valid before. */
  private mirrorSet(va: number, pfn: number, write: boolean): number {
    let top = this.mirrorRoot.get(indexAt(va, 3));
    if (top === undefined) {
      top = this.newMirrorDir<MirrorMiddle>();
      this.mirrorRoot.set(indexAt(va, 3), top);
    }
    const middle = this.mirrorChild(top, indexAt(va, 2));
    const leaf = this.mirrorChild(middle, indexAt(va, 1));
    const index = indexAt(va, 0);
    const old = leaf.children.get(index);
    // A refill of the same frame keeps the device's dirty bit.
    leaf.children.set(index, { pfn, write, dirty: old !== undefined && old.pfn === pfn && old.dirty });
    if (old !== undefined) {
      return 0;
    }
    leaf.count++;
    return 1;
  }

  private mirrorChild<Child>(dir: MirrorDir<MirrorDir<Child>>, index: number): MirrorDir<Child> {
    let child = dir.children.get(index);
    if (child === undefined) {
      child = this.newMirrorDir<Child>();
      dir.children.set(index, child);
      dir.count++;
    }
    return child;
  }

  private newMirrorDir<Child>(): MirrorDir<Child> {
    const pfn = this.allocFrame();
    const frame = this.frameAt(pfn);
    frame.refcount = 1;
    frame.tag = TAG_PAGETABLE;
    return { pfn, count: 0, children: new Map<number, Child>() };
  }

  private newTable<Entry>(): Table<Entry> {
    const pfn = this.allocFrame();
    const frame = this.frameAt(pfn);
    frame.refcount = 1;
    frame.tag = TAG_PAGETABLE;
    return { pfn, entries: new Map<number, Entry>() };
  }

  private frameAt(pfn: number): Frame {
    const frame = this.frames[pfn];
    if (frame === undefined) {
      throw new Error(`no frame ${pfn}`);
    }
    return frame;
  }

  private allocFrame(): number {
    const pfn = this.freeList.pop();
    if (pfn === undefined) {
      throw new Error('out of physical frames');
    }
    return pfn;
  }

  /**
   * `count` consecutive free frames as one folio: the top of the free stack
   * when it holds such a run (a fresh pool hands frames out in order), else
   * the first run found among all free frames.
   */
  private allocFolio(count: number): number {
    const n = this.freeList.length;
    if (n >= count) {
      const first = this.freeList[n - 1]!;
      let run = true;
      for (let i = 1; i < count && run; i++) run = this.freeList[n - 1 - i] === first + i;
      if (run) {
        this.freeList.length = n - count;
        return first;
      }
    }
    const free = new Set(this.freeList);
    for (let base = 0; base + count <= this.frames.length; base++) {
      let i = 0;
      while (i < count && free.has(base + i)) i++;
      if (i < count) {
        base += i; // no run can start before the frame that is not free
        continue;
      }
      let kept = 0;
      for (const pfn of this.freeList) {
        if (pfn < base || pfn >= base + count) this.freeList[kept++] = pfn;
      }
      this.freeList.length = kept;
      return base;
    }
    throw new Error(`no ${count} consecutive free frames`);
  }

  private freeFrame(pfn: number): void {
    // Reset the frame the way the page allocator would on free.
    this.frames[pfn] = { refcount: 0, mapcount: 0, anon: false, exclusive: false, tag: 0 };
    this.freeList.push(pfn);
  }
}
