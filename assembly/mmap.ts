// Address-space operations behind the syscalls: mmap, munmap, mprotect,
// madvise, exit. Arguments arrive validated by the TypeScript layer; what can
// only be judged here (holes, overlaps, permissions, memory) is checked
// before anything changes, so an error leaves the mm as it was.

import { Mm, mmAllocStruct, mmFreeStruct } from "./mm";
import {
  Vma, vmaAt, findVmaIndex, vmaInsert, vmaSplit, vmaRemove, vmaReserve, vmaTryMergeNext, vmaSetPageProt, vmaWantsManualWriteUpgrade,
  linearPageIndex,
} from "./vma";
import { allocTable, freeTable, tablePtr, levelShift, levelSize } from "./pgtable";
import { isTableEntry, tableEntryPfn, softDirtySupported } from "./arch/index";
import { walkPageRange } from "./walk";
import { ZapOp } from "./ops/zap";
import { ChangeProtOp } from "./ops/changeprot";
import { PageoutOp } from "./ops/pageout";
import { fileOf } from "./file";
import { immapReserve } from "./immap";
import { uffdForgetMm, uffdRemove } from "./uffd";
import { punchHole } from "./truncate";
import { gatherBegin, gatherEnd, currentGather, tlbFreePteTable, tlbFreeUpperTable } from "./gather";
import { forgetMm } from "./cpu";
import { mmuNotifierInvalidateStart, mmuNotifierInvalidateEnd, MMU_NOTIFY_UNMAP, MMU_NOTIFY_CLEAR, MMU_NOTIFY_PROTECTION_VMA } from "./notifier";
import {
  ENOMEM, EINVAL, EEXIST, EACCES, VM_READ, VM_WRITE, VM_EXEC, VM_SHARED, VM_MAYWRITE, VM_SOFTDIRTY, VM_LOCKED, VM_PFNMAP, VM_HUGETLB,
  VM_DONTCOPY, VM_HUGEPAGE, VM_NOHUGEPAGE, PMD_SIZE,
} from "./constants";

const zapOp = new ZapOp();
const changeProtOp = new ChangeProtOp();
const pageoutOp = new PageoutOp();

export const MMAP_MIN_ADDR: u64 = 65536;

/** mm_init + pgd_alloc; null when out of memory. */
export function mmCreate(levels: u32, taskSize: u64): Mm | null {
  const mm = mmAllocStruct(levels, taskSize);
  if (mm == null) return null;
  mm.root = allocTable(mm);
  if (mm.root == 0) { mmFreeStruct(mm); return null; }
  return mm;
}

/** Whether any VMA overlaps [start, end). */
export function rangeHasVma(mm: Mm, start: u64, end: u64): bool {
  const i = findVmaIndex(mm, start);
  return i < mm.nrVmas && vmaAt(mm, i).start < end;
}

/** Whether every page of [start, end) is covered by VMAs. */
export function rangeFullyMapped(mm: Mm, start: u64, end: u64): bool {
  let addr = start;
  let i = findVmaIndex(mm, start);
  while (addr < end) {
    if (i >= mm.nrVmas) return false;
    const v = vmaAt(mm, i);
    if (v.start > addr) return false;
    addr = v.end;
    i++;
  }
  return true;
}

/**
 * get_unmapped_area, top-down from mmap_base: the highest gap that fits,
 * aligned to `align` (PMD-size for THP-able anonymous mappings). 0 if none.
 */
export function getUnmappedArea(mm: Mm, len: u64, align: u64, mmapBase: u64): u64 {
  let hi = mmapBase;
  let i = findVmaIndex(mm, mmapBase);
  for (;;) {
    // Gap [lo, hi) below VMA i (or below mmap_base).
    while (i > 0 && vmaAt(mm, i - 1).end > hi) i--;
    const lo = i > 0 ? vmaAt(mm, i - 1).end : MMAP_MIN_ADDR;
    if (i < mm.nrVmas && vmaAt(mm, i).start < hi) hi = vmaAt(mm, i).start;
    if (hi >= len) {
      const addr = (hi - len) & ~(align - 1);
      if (addr >= lo && addr >= MMAP_MIN_ADDR && addr + len <= hi) return addr;
    }
    if (i == 0) return 0;
    i--;
    hi = vmaAt(mm, i).start;
  }
  return 0;
}

/**
 * mmap_region: maps [start, start+len). With `replace` (MAP_FIXED) existing
 * mappings there are unmapped first; otherwise an overlap is EEXIST.
 */
export function mmapRegion(mm: Mm, start: u64, len: u64, flags: u32, file: u32, pgoff: u64, replace: bool): i32 {
  const end = start + len;
  if (rangeHasVma(mm, start, end)) {
    if (!replace) return -EEXIST;
    if (!vmaReserve(mm, 3)) return -ENOMEM;
    const r = doMunmap(mm, start, end);
    if (r != 0) return r;
  }
  if (!vmaReserve(mm, 1) || (file != 0 && !immapReserve(fileOf(file), 1))) return -ENOMEM;
  // New VMAs start soft-dirty: everything in them counts as written until clear_refs.
  if (softDirtySupported) flags |= VM_SOFTDIRTY;
  const i = vmaInsert(mm, start, end, flags, file, pgoff);
  mergeAround(mm, i);
  return 0;
}

function mergeAround(mm: Mm, i: u32): void {
  if (i + 1 < mm.nrVmas) vmaTryMergeNext(mm, i);
  if (i > 0) vmaTryMergeNext(mm, i - 1);
}

/**
 * Reserves what splitting at start and at end can need: two VMA slots and an
 * i_mmap record per split file VMA, so that the splits themselves cannot fail.
 */
function splitsReserve(mm: Mm, start: u64, end: u64): bool {
  if (!vmaReserve(mm, 2)) return false;
  const a = straddlingFile(mm, start), b = straddlingFile(mm, end);
  if (a != 0 && a == b) return immapReserve(fileOf(a), 2);
  return (a == 0 || immapReserve(fileOf(a), 1)) && (b == 0 || immapReserve(fileOf(b), 1));
}

/** The file of the VMA that strictly contains addr (a split there adds an i_mmap record), or 0. */
function straddlingFile(mm: Mm, addr: u64): u32 {
  const i = findVmaIndex(mm, addr);
  if (i >= mm.nrVmas) return 0;
  const v = vmaAt(mm, i);
  return v.start < addr && addr < v.end ? v.file : 0;
}

/** Splits the VMAs straddling start and end (what a per-range VMA change needs first); false when out of memory. */
export function splitVmasAt(mm: Mm, start: u64, end: u64): bool {
  if (!splitsReserve(mm, start, end)) return false;
  splitAt(mm, start);
  splitAt(mm, end);
  return true;
}

/** Splits VMAs so that none straddles `addr`. Capacity must be reserved (splitsReserve). */
function splitAt(mm: Mm, addr: u64): void {
  const i = findVmaIndex(mm, addr);
  if (i < mm.nrVmas) {
    const v = vmaAt(mm, i);
    if (v.start < addr && addr < v.end) {
      vmaSplit(mm, i, addr);
      splitHugeAt(mm, addr);
    }
  }
}

/**
 * A VMA boundary inside a huge PMD splits the PMD (vma_adjust_trans_huge), so
 * that no leaf spans two VMAs.
 */
function splitHugeAt(mm: Mm, addr: u64): void {
  if ((addr & (PMD_SIZE - 1)) == 0) return;
  const s = addr & ~(PMD_SIZE - 1);
  // A zero-effect walk with SUBTREE on the PMD forces the split; the walker needs the VMA.
  walkPageRange<SplitOp>(splitOp, mm, s, s + 4096);
}

/** Visits nothing: walking into a huge PMD with SUBTREE is what splits it. */
@final class SplitOp {
  // @ts-ignore: decorator
  @inline pteRange(ptep: usize, addr: u64, end: u64): i32 { return 0; }
  // @ts-ignore: decorator
  @inline upperEntry(level: u32, ep: usize, addr: u64, next: u64): i32 { return 0; }
  // @ts-ignore: decorator
  @inline hole(addr: u64, next: u64, depth: i32): i32 { return 0; }
  // @ts-ignore: decorator
  @inline testWalk(vma: Vma): i32 { return 0; }
  // @ts-ignore: decorator
  @inline preVma(vma: Vma, start: u64, end: u64): i32 { return 0; }
  // @ts-ignore: decorator
  @inline postVma(vma: Vma, start: u64, end: u64): void {}
}
const splitOp = new SplitOp();

/** munmap: split at the edges, zap (dropping markers), remove the VMAs, free the tables no VMA needs. */
export function doMunmap(mm: Mm, start: u64, end: u64): i32 {
  if (!splitsReserve(mm, start, end) || !gatherBegin(mm, false)) return -ENOMEM;
  // The kernel returns before any notifier when no VMA is in the range.
  const notify = rangeHasVma(mm, start, end);
  // Edge splits (vma_adjust_trans_huge) notify on their own, before the unmap.
  splitAt(mm, start);
  splitAt(mm, end);
  // unmap_vmas: one MMU_NOTIFY_UNMAP over the whole munmap range; ended after the flush.
  if (notify) mmuNotifierInvalidateStart(mm, MMU_NOTIFY_UNMAP, start, end);
  zapOp.dropMarkers = true;
  zapOp.evenCows = true;
  walkPageRange<ZapOp>(zapOp, mm, start, end);
  let i = findVmaIndex(mm, start);
  while (i < mm.nrVmas && vmaAt(mm, i).start < end) vmaRemove(mm, i);
  const floor = i > 0 ? vmaAt(mm, i - 1).end : 0;
  const ceiling = i < mm.nrVmas ? vmaAt(mm, i).start : <u64>-1;
  freePgtables(mm, mm.levels - 1, mm.root, start, end, floor, ceiling);
  gatherEnd();
  if (notify) mmuNotifierInvalidateEnd(mm, MMU_NOTIFY_UNMAP, start, end);
  return 0;
}

/**
 * free_pgd_range: frees every table under [start, end) whose whole span lies
 * in [floor, ceiling), the gap no VMA covers. Their entries are all none.
 */
function freePgtables(mm: Mm, level: u32, table: u32, start: u64, end: u64, floor: u64, ceiling: u64): void {
  const shift = levelShift(level);
  const size = levelSize(level);
  let addr = start & ~(size - 1);
  const base = tablePtr(table);
  while (addr < end) {
    const ep = base + (<usize>((addr >> shift) & 511) << 3);
    const e = load<u64>(ep);
    if (e != 0 && isTableEntry(e)) {
      const child = <u32>tableEntryPfn(e);
      if (addr >= floor && addr + size - 1 <= ceiling - 1) {
        store<u64>(ep, 0);
        freeSubtree(mm, level - 1, child);
        // pte_free_tlb / pmd_free_tlb: the flush must also drop cached paging structures.
        if (level == 1) tlbFreePteTable(currentGather, addr); else tlbFreeUpperTable(currentGather, addr);
      } else if (level > 1) {
        const lo = addr > start ? addr : start;
        const hi = addr + size < end ? addr + size : end;
        freePgtables(mm, level - 1, child, lo, hi, floor, ceiling);
      }
    }
    addr += size;
    if (addr == 0) break;
  }
}

/** Frees a table and every table below it. */
function freeSubtree(mm: Mm, level: u32, table: u32): void {
  if (level > 0) {
    const base = tablePtr(table);
    for (let i: u32 = 0; i < 512; i++) {
      const e = load<u64>(base + (<usize>i << 3));
      if (e != 0 && isTableEntry(e)) freeSubtree(mm, level - 1, <u32>tableEntryPfn(e));
    }
  }
  freeTable(mm, table);
}

/** exit_mmap: unmap everything, free every table, free the mm. */
export function exitMmap(mm: Mm): bool {
  if (!gatherBegin(mm, true)) return false;
  // exit_mmap calls mmu_notifier_release first (a ->release callback, no
  // range pair; not modelled), then unmap_vmas(0, ULONG_MAX) as one
  // MMU_NOTIFY_UNMAP: here one UNMAP over [0, taskSize). No VMA: no unmap_vmas.
  const notify = mm.nrVmas > 0;
  if (notify) mmuNotifierInvalidateStart(mm, MMU_NOTIFY_UNMAP, 0, mm.taskSize);
  zapOp.dropMarkers = true;
  zapOp.evenCows = true;
  walkPageRange<ZapOp>(zapOp, mm, 0, mm.taskSize);
  while (mm.nrVmas > 0) vmaRemove(mm, mm.nrVmas - 1);
  currentGather.freedTables = true;
  gatherEnd();
  if (notify) mmuNotifierInvalidateEnd(mm, MMU_NOTIFY_UNMAP, 0, mm.taskSize);
  freeSubtree(mm, mm.levels - 1, mm.root);
  forgetMm(mm);
  uffdForgetMm(mm.id);
  mmFreeStruct(mm);
  return true;
}


/** mprotect: -ENOMEM on a hole, -EACCES beyond VM_MAY*; then per VMA: split, new flags, change_protection, merge. */
export function doMprotect(mm: Mm, start: u64, end: u64, prot: u32): i32 {
  if (!rangeFullyMapped(mm, start, end)) return -ENOMEM;
  for (let i = findVmaIndex(mm, start); i < mm.nrVmas && vmaAt(mm, i).start < end; i++) {
    const v = vmaAt(mm, i);
    // VM_MAYREAD/WRITE/EXEC sit four bits above READ/WRITE/EXEC.
    if ((prot & ~(v.flags >> 4) & (VM_READ | VM_WRITE | VM_EXEC)) != 0) return -EACCES;
  }
  if (!splitsReserve(mm, start, end) || !gatherBegin(mm, false)) return -ENOMEM;
  splitAt(mm, start);
  splitAt(mm, end);
  // change_protection: MMU_NOTIFY_PROTECTION_VMA, here one range per VMA part.
  // The kernel starts it lazily in change_pud_range at the first populated
  // PUD (none at all for an unpopulated range), one per P4D span: finer.
  // The ends wait for the gather's flush; the VMAs do not change until the merge.
  for (let i = findVmaIndex(mm, start); i < mm.nrVmas && vmaAt(mm, i).start < end; i++) {
    const v = vmaAt(mm, i);
    v.flags = (v.flags & ~(VM_READ | VM_WRITE | VM_EXEC)) | prot;
    vmaSetPageProt(v);
    changeProtOp.prot = v.pageProt;
    changeProtOp.tryChangeWritable = vmaWantsManualWriteUpgrade(v);
    mmuNotifierInvalidateStart(mm, MMU_NOTIFY_PROTECTION_VMA, v.start, v.end);
    walkPageRange<ChangeProtOp>(changeProtOp, mm, v.start, v.end);
  }
  gatherEnd();
  for (let i = findVmaIndex(mm, start); i < mm.nrVmas && vmaAt(mm, i).start < end; i++) {
    const v = vmaAt(mm, i);
    mmuNotifierInvalidateEnd(mm, MMU_NOTIFY_PROTECTION_VMA, v.start, v.end);
  }
  mergeRange(mm, start, end);
  return 0;
}

/** Merges compatible neighbours from just before start to just after end. */
function mergeRange(mm: Mm, start: u64, end: u64): void {
  let i = findVmaIndex(mm, start);
  if (i > 0) i--;
  while (i + 1 < mm.nrVmas && vmaAt(mm, i).start <= end) {
    if (!vmaTryMergeNext(mm, i)) i++;
  }
}

export const MADV_DONTNEED: u32 = 4;
export const MADV_REMOVE: u32 = 9;
export const MADV_DONTFORK: u32 = 10;
export const MADV_DOFORK: u32 = 11;
export const MADV_HUGEPAGE: u32 = 14;
export const MADV_NOHUGEPAGE: u32 = 15;
export const MADV_PAGEOUT: u32 = 21;

/** madvise for the advice values the core implements; -ENOMEM if any page is unmapped (checked first). */
export function doMadvise(mm: Mm, start: u64, end: u64, advice: u32): i32 {
  if (!rangeFullyMapped(mm, start, end)) return -ENOMEM;
  if (advice == MADV_DONTNEED) {
    for (let i = findVmaIndex(mm, start); i < mm.nrVmas && vmaAt(mm, i).start < end; i++) {
      if ((vmaAt(mm, i).flags & (VM_LOCKED | VM_PFNMAP | VM_HUGETLB)) != 0) return -EINVAL;
    }
    // madvise_dontneed_free: zap_page_range_single per VMA, each with its own gather.
    zapOp.dropMarkers = false;
    zapOp.evenCows = true;
    for (let i = findVmaIndex(mm, start); i < mm.nrVmas && vmaAt(mm, i).start < end; i++) {
      const v = vmaAt(mm, i);
      const from = v.start > start ? v.start : start, to = v.end < end ? v.end : end;
      uffdRemove(v, from, to);
      if (!gatherBegin(mm, false)) return -ENOMEM;
      // zap_page_range_single: MMU_NOTIFY_CLEAR over the VMA's part, ended after the flush.
      mmuNotifierInvalidateStart(mm, MMU_NOTIFY_CLEAR, from, to);
      walkPageRange<ZapOp>(zapOp, mm, from, to);
      gatherEnd();
      mmuNotifierInvalidateEnd(mm, MMU_NOTIFY_CLEAR, from, to);
    }
    return 0;
  }
  if (advice == MADV_REMOVE) {
    // madvise_remove: shared writable file mappings only; the file gets a hole.
    for (let i = findVmaIndex(mm, start); i < mm.nrVmas && vmaAt(mm, i).start < end; i++) {
      const v = vmaAt(mm, i);
      if ((v.flags & VM_LOCKED) != 0 || v.file == 0) return -EINVAL;
      if ((v.flags & (VM_SHARED | VM_MAYWRITE)) != (VM_SHARED | VM_MAYWRITE)) return -EACCES;
    }
    for (let i = findVmaIndex(mm, start); i < mm.nrVmas && vmaAt(mm, i).start < end; i++) {
      const v = vmaAt(mm, i);
      const from = v.start > start ? v.start : start, to = v.end < end ? v.end : end;
      uffdRemove(v, from, to);
      if (!punchHole(fileOf(v.file), linearPageIndex(v, from), linearPageIndex(v, to))) return -ENOMEM;
      i = findVmaIndex(mm, from);
    }
    return 0;
  }
  if (advice == MADV_PAGEOUT) {
    // Reclaim unmaps with one batched flush of the mm, then frees.
    if (!gatherBegin(mm, true)) return -ENOMEM;
    pageoutOp.notifyBegin();
    walkPageRange<PageoutOp>(pageoutOp, mm, start, end);
    gatherEnd();
    pageoutOp.notifyFlushed(mm);
    return 0;
  }
  let set: u32 = 0, clear: u32 = 0;
  if (advice == MADV_DONTFORK) set = VM_DONTCOPY;
  else if (advice == MADV_DOFORK) clear = VM_DONTCOPY;
  else if (advice == MADV_HUGEPAGE) { set = VM_HUGEPAGE; clear = VM_NOHUGEPAGE; }
  else if (advice == MADV_NOHUGEPAGE) { set = VM_NOHUGEPAGE; clear = VM_HUGEPAGE; }
  else return -EINVAL;
  if (!splitsReserve(mm, start, end)) return -ENOMEM;
  splitAt(mm, start);
  splitAt(mm, end);
  for (let i = findVmaIndex(mm, start); i < mm.nrVmas && vmaAt(mm, i).start < end; i++) {
    const v = vmaAt(mm, i);
    v.flags = (v.flags | set) & ~clear;
  }
  mergeRange(mm, start, end);
  return 0;
}

export function pageoutReclaimed(): u64 { return pageoutOp.reclaimed; }
