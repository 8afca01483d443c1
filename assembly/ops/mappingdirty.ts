// mm/mapping_dirty_helpers.c: write-protect and clean-and-record of the PTEs
// that map a range of a file, in every shared writable mapping of it
// (wp_shared_mapping_range, clean_record_shared_mapping_range). Built for
// drivers that track which pages of a shared buffer were written.
//
// Per-VMA staging, exactly as the kernel's: pre_vma opens an mmu-notifier
// range (PROTECTION_PAGE), flushes caches and raises tlb_flush_pending; the
// PTE edits record the tight range of entries actually modified; post_vma
// flushes only that range (nothing when nothing changed) unless another
// flush is pending on the mm, in which case the whole notifier range, then
// closes the notifier range and drops pending. Deliberately no mmu_gather:
// it would flush the full range while usually only a few PTEs change.
//
// Huge PMD/PUD leaves are never split (splitting would lose the dirty state;
// the fault path splits when it must): they are skipped, with a warning if
// writable or dirty. Only present PTEs are touched: the kernel's callbacks do
// not check pte_present, which on x86 lets a migration entry with swp
// soft-dirty (bit 1, the RW position) read as writable; ptemu does not
// reproduce that latent hazard.

import { Vma } from "../vma";
import { Mm } from "../mm";
import { File } from "../file";
import { walkMm, walkPageMapping, setWalkAction, ACTION_CONTINUE } from "../walk";
import {
  ptePresent, pteWrite, pteDirty, pteWrprotect, pteMkclean, isTableEntry, isUpperLeaf, wrprotect4, mkclean4,
} from "../arch/index";
import { flushTlbRange } from "../flush";
import { mmuNotifierInvalidateStart, mmuNotifierInvalidateEnd, MMU_NOTIFY_PROTECTION_PAGE } from "../notifier";
import { warn, WARN_WP_CLEAN_HUGE } from "../warn";
import { stepping, yieldStep, STEP_ENTRY, STEP_FLUSH, STEP_VMA_START, STEP_VMA_END } from "../step";
import { contpteMm, ptepGet, ptepGetAndClear, setPtes } from "../arch/contpte";
import { VM_SHARED, VM_MAYWRITE, VM_HUGETLB } from "../constants";

/** flush_cache_range calls (a no-op on x86 and arm64, whose caches are physically tagged; counted). */
export let cacheFlushes: u64 = 0;

@final export class MappingDirtyOp {
  /** false: wp_pte (write-protect writable PTEs); true: clean_record_pte. */
  clean: bool = false;
  /** PTEs changed. */
  total: u64 = 0;
  // clean_record_pte's output: the caller's bitmap (bit = pgoff - bitmapPgoff) and the set bits' [start, end).
  bitmap: usize = 0;
  bitmapPgoff: u64 = 0;
  cstart: u64 = 0;
  cend: u64 = 0;
  // Per VMA: the notifier range, the tight range of modified PTEs, vpn -> bitmap index.
  rangeStart: u64 = 0;
  rangeEnd: u64 = 0;
  flushStart: u64 = 0;
  flushEnd: u64 = 0;
  bitBase: u64 = 0;

  pteRange(ptep: usize, addr: u64, end: u64): i32 {
    const last = ptep + <usize>((end - addr) >> 9);
    // The loops note only the first and last entry they change and how many;
    // addresses, the flush range and the bit range are derived once per table.
    let first: usize = 0, final: usize = 0, n: u64 = 0;
    let p = ptep;
    const clean = this.clean, bitmap = this.bitmap;
    const bit0 = (addr >> 12) + this.bitBase;
    // arm64 user mms go one by one: every commit may fold a block (set_pte_at), every edit of a folded one unfolds it.
    const mm = walkMm, cont = contpteMm(mm);
    if (!stepping && !cont) {
      // Four entries at a time, branch-free (arch/index.ts); the tail goes one by one below.
      for (; p + 32 <= last; p += 32) {
        const m = clean ? mkclean4(p) : wrprotect4(p);
        if (m == 0) continue;
        if (first == 0) first = p + (<usize>ctz(m) << 3);
        final = p + (<usize>(31 - clz(m)) << 3);
        n += <u64>popcnt(m);
        if (clean) setBits(bitmap, bit0 + (<u64>(p - ptep) >> 3), m);
      }
    }
    for (; p < last; p += 8) {
      const e = cont ? ptepGet(p) : load<u64>(p);
      if (clean) {
        if (!pteDirty(e) || !ptePresent(e)) continue;
        // Write permission stays: the next write re-dirties.
        if (cont) modifyProt(mm, addr + (<u64>(p - ptep) << 9), p, true);
        else store<u64>(p, pteMkclean(e));
        setBits(bitmap, bit0 + (<u64>(p - ptep) >> 3), 1);
      } else {
        if (!pteWrite(e) || !ptePresent(e)) continue;
        // ptep_modify_prot_start/commit: read-and-clear, then the new value (A/D kept).
        if (cont) modifyProt(mm, addr + (<u64>(p - ptep) << 9), p, false);
        else store<u64>(p, pteWrprotect(e));
      }
      if (first == 0) first = p;
      final = p;
      n++;
      if (stepping) this.step(ptep, addr, p);
    }
    if (n != 0) this.account(ptep, addr, first, final, n);
    return 0;
  }

  /** Folds one table's changes into the VMA's flush range, the bit range and the total. */
  private account(ptep: usize, addr: u64, first: usize, final: usize, n: u64): void {
    const lo = addr + (<u64>(first - ptep) << 9), hi = addr + (<u64>(final - ptep) << 9) + 4096;
    if (lo < this.flushStart) this.flushStart = lo;
    if (hi > this.flushEnd) this.flushEnd = hi;
    if (this.clean) {
      const bs = (lo >> 12) + this.bitBase, be = ((hi - 4096) >> 12) + this.bitBase + 1;
      if (bs < this.cstart) this.cstart = bs;
      if (be > this.cend) this.cend = be;
    }
    this.total += n;
  }

  /** A yield point after the entry at p was changed (its table stays locked). */
  private step(ptep: usize, addr: u64, p: usize): void {
    const a = addr + (<u64>(p - ptep) << 9);
    yieldStep(STEP_ENTRY, walkMm, a, a + 4096, ptep & ~<usize>4095);
  }

  /** wp_clean_pmd_entry / wp_clean_pud_entry: never split a huge leaf, never descend into one. */
  upperEntry(level: u32, ep: usize, addr: u64, next: u64): i32 {
    const e = load<u64>(ep);
    if (isTableEntry(e)) return 0;
    if (isUpperLeaf(e) && ptePresent(e) && (pteWrite(e) || pteDirty(e))) warn(WARN_WP_CLEAN_HUGE, walkMm.id, addr, e);
    setWalkAction(ACTION_CONTINUE);
    return 0;
  }

  // @ts-ignore: decorator
  @inline hole(addr: u64, next: u64, depth: i32): i32 { return 0; }

  /** wp_clean_test_walk: shared writable, not hugetlb. */
  // @ts-ignore: decorator
  @inline testWalk(vma: Vma): i32 {
    return (vma.flags & (VM_SHARED | VM_MAYWRITE | VM_HUGETLB)) == (VM_SHARED | VM_MAYWRITE) ? 0 : 1;
  }

  /** wp_clean_pre_vma. */
  preVma(vma: Vma, start: u64, end: u64): i32 {
    const mm = walkMm;
    this.flushStart = end;
    this.flushEnd = start;
    this.rangeStart = start;
    this.rangeEnd = end;
    this.bitBase = vma.pgoff - (vma.start >> 12) - this.bitmapPgoff;
    mmuNotifierInvalidateStart(mm, MMU_NOTIFY_PROTECTION_PAGE, start, end);
    cacheFlushes++;
    mm.flushPending++;
    if (stepping) yieldStep(STEP_VMA_START, mm, start, end, 0);
    return 0;
  }

  /** wp_clean_post_vma. */
  postVma(vma: Vma, start: u64, end: u64): void {
    const mm: Mm = walkMm;
    if (mm.flushPending > 1) {
      // Another thread is batching on this mm: it may have skipped the flush of entries we changed.
      if (stepping) yieldStep(STEP_FLUSH, mm, this.rangeStart, this.rangeEnd, 0);
      flushTlbRange(mm, this.rangeStart, this.rangeEnd, 12);
    } else if (this.flushEnd > this.flushStart) {
      if (stepping) yieldStep(STEP_FLUSH, mm, this.flushStart, this.flushEnd, 0);
      flushTlbRange(mm, this.flushStart, this.flushEnd, 12);
    }
    mmuNotifierInvalidateEnd(mm, MMU_NOTIFY_PROTECTION_PAGE, this.rangeStart, this.rangeEnd);
    mm.flushPending--;
    if (stepping) yieldStep(STEP_VMA_END, mm, start, end, 0);
  }
}

/** ptep_modify_prot_start/commit through the contpte layer: clean or write-protect one entry. */
function modifyProt(mm: Mm, addr: u64, p: usize, clean: bool): void {
  const old = ptepGetAndClear(mm, addr, p);
  setPtes(mm, addr, p, clean ? pteMkclean(old) : pteWrprotect(old), 1);
}

/**
 * Sets the bits of `mask` (up to 4) starting at bit `bit` of the bitmap, in
 * 64-bit little-endian words like the kernel's unsigned longs.
 */
// @ts-ignore: decorator
@inline function setBits(bitmap: usize, bit: u64, mask: u32): void {
  const w = bitmap + <usize>((bit >> 6) << 3);
  const sh = bit & 63;
  store<u64>(w, load<u64>(w) | (<u64>mask << sh));
  if (sh > 60 && (<u64>mask >> (64 - sh)) != 0) store<u64>(w, load<u64>(w, 8) | (<u64>mask >> (64 - sh)), 8);
}

const op = new MappingDirtyOp();

/** The set bits' [start, end) after the last clean-and-record. */
export let cleanStart: u64 = 0;
export let cleanEnd: u64 = 0;

/** wp_shared_mapping_range: write-protects the PTEs mapping pgoffs [first, first+nr); returns how many were writable. */
export function wpSharedMappingRange(f: File, first: u64, nr: u64, walkOnSkip: bool): u64 {
  op.clean = false;
  op.total = 0;
  op.bitmapPgoff = 0;
  walkPageMapping<MappingDirtyOp>(op, f, first, nr, walkOnSkip);
  return op.total;
}

/**
 * clean_record_shared_mapping_range: cleans every dirty PTE mapping pgoffs
 * [first, first+nr), setting bit (pgoff - bitmapPgoff) for each and widening
 * [start, end) over the set bits (start >= end on entry means "none set").
 */
export function cleanRecordSharedMappingRange(
  f: File, first: u64, nr: u64, bitmapPgoff: u64, bitmap: usize, start: u64, end: u64, walkOnSkip: bool,
): u64 {
  const noneSet = start >= end;
  op.clean = true;
  op.total = 0;
  op.bitmap = bitmap;
  op.bitmapPgoff = bitmapPgoff;
  op.cstart = noneSet ? nr : start;
  op.cend = noneSet ? 0 : end;
  walkPageMapping<MappingDirtyOp>(op, f, first, nr, walkOnSkip);
  cleanStart = op.cstart;
  cleanEnd = op.cend;
  return op.total;
}
