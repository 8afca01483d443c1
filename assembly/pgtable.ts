// Page-table pages and the mm's table geometry.
//
// A table is a 4 KiB block of the core's heap (512 x 8-byte entries) backed by
// an emulated frame of kind TABLE, so page tables consume emulated memory
// exactly like the kernel's do, and entries hold real physical addresses. The
// frame's index field names the heap block (ptr >> 12): one load turns a
// table pfn into a pointer.
//
// Levels are numbered from the leaves: 0 PTE, 1 PMD, 2 PUD, 3 P4D (5-level
// only) or PGD, 4 PGD. Level L maps 2^(12 + 9L) bytes per entry.

import { allocPages, desc, indexOf, setIndex, setInfo, setRefcount, freePages, KIND_TABLE, KIND_SHIFT, tagOf, setTag } from "./frames";
import { kzalloc, kfree } from "./heap";
import { Mm } from "./mm";
import { isTableEntry, tableEntryPfn, mkTableEntry } from "./arch/index";

// @ts-ignore: decorator
@inline export function levelShift(level: u32): u64 { return 12 + 9 * <u64>level; }
// @ts-ignore: decorator
@inline export function levelSize(level: u32): u64 { return <u64>1 << levelShift(level); }
// @ts-ignore: decorator
@inline export function tableIndex(addr: u64, level: u32): u32 { return <u32>(addr >> levelShift(level)) & 511; }
// @ts-ignore: decorator
@inline export function tablePtr(pfn: u32): usize { return <usize>indexOf(pfn) << 12; }
// @ts-ignore: decorator
@inline export function entryPtr(tablePfn: u32, addr: u64, level: u32): usize {
  return tablePtr(tablePfn) + (<usize>tableIndex(addr, level) << 3);
}
/** End of the level-`level` entry span containing addr, clipped to end (pXd_addr_end). */
// @ts-ignore: decorator
@inline export function levelAddrEnd(addr: u64, end: u64, level: u32): u64 {
  const next = (addr + levelSize(level)) & ~(levelSize(level) - 1);
  return next - 1 < end - 1 ? next : end;
}

/** A zeroed table page (a heap block behind a TABLE frame), charged to nobody; 0 when out of memory. */
export function allocTablePage(): u32 {
  const ptr = kzalloc(4096);
  if (ptr == 0) return 0;
  const pfn = allocPages(0);
  if (pfn == 0) { kfree(ptr, 4096); return 0; }
  setRefcount(pfn, 1);
  setInfo(pfn, KIND_TABLE << KIND_SHIFT);
  setIndex(pfn, <u32>(ptr >> 12));
  setTag(pfn, 0);
  return pfn;
}

export function freeTablePage(pfn: u32): void {
  kfree(tablePtr(pfn), 4096);
  memory.fill(desc(pfn), 0, 16);
  freePages(pfn, 0);
}

/** pte_alloc_one & friends: a zeroed table page charged to the mm; 0 when out of memory. */
export function allocTable(mm: Mm): u32 {
  const pfn = allocTablePage();
  if (pfn != 0) mm.nrTables++;
  return pfn;
}

/** Frees a table page (its entries must already be none). */
export function freeTable(mm: Mm, pfn: u32): void {
  pmdCacheMm = 0;
  freeTablePage(pfn);
  mm.nrTables--;
}

// Deposited tables (pgtable_trans_huge_deposit): every anon huge PMD keeps a
// preallocated PTE table so that a later split cannot fail. They are stacked
// on the PMD table that holds the huge entry: the PMD table's frame tag word
// is the stack head (pfn), and each deposited table's first entry links to
// the next one.

/** Deposits `ptePfn` on the PMD table `pmdTablePfn`. */
export function depositTable(pmdTablePfn: u32, ptePfn: u32): void {
  store<u64>(tablePtr(ptePfn), <u64>tagOf(pmdTablePfn));
  setTag(pmdTablePfn, ptePfn);
}

/** Withdraws a deposited table (zeroed), or 0 if none. */
export function withdrawTable(pmdTablePfn: u32): u32 {
  const pfn = tagOf(pmdTablePfn);
  if (pfn == 0) return 0;
  const p = tablePtr(pfn);
  setTag(pmdTablePfn, <u32>load<u64>(p));
  store<u64>(p, 0);
  return pfn;
}

// A one-entry cache of the PMD table covering the last 1 GiB region looked
// up (the emulator's own paging-structure cache, for speed only: it is not
// the modelled TLB). Tables are only ever freed through freeTable, which
// drops the cache, so a cached pointer is never stale.
let pmdCacheMm: u32 = 0;
let pmdCacheRegion: u64 = 0;
let pmdCacheTable: u32 = 0;

/** Drops the PMD-table cache (after writing upper-level entries behind the core's back). */
export function pmdCacheInvalidate(): void { pmdCacheMm = 0; }

/**
 * The PMD table covering addr, walking from the root; with `alloc`, missing
 * upper tables are allocated. 0 when absent (or a huge PUD leaf is in the way),
 * or when allocation fails.
 */
// @ts-ignore: decorator
@inline export function pmdTableLookup(mm: Mm, addr: u64, alloc: bool): u32 {
  if (pmdCacheMm == mm.id && pmdCacheRegion == addr >> 30) return pmdCacheTable;
  return pmdTableWalk(mm, addr, alloc);
}

function pmdTableWalk(mm: Mm, addr: u64, alloc: bool): u32 {
  const region = addr >> 30;
  let table = mm.root;
  for (let level = mm.levels - 1; level > 1; level--) {
    const ep = entryPtr(table, addr, level);
    let e = load<u64>(ep);
    if (e == 0) {
      if (!alloc) return 0;
      const t = allocTable(mm);
      if (t == 0) return 0;
      e = mkTableEntry(<u64>t);
      store<u64>(ep, e);
    }
    if (!isTableEntry(e)) return 0;
    table = <u32>tableEntryPfn(e);
  }
  pmdCacheMm = mm.id;
  pmdCacheRegion = region;
  pmdCacheTable = table;
  return table;
}
