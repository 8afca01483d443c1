// /proc/PID/clear_refs (fs/proc/task_mmu.c): what a process can do to track
// its own writes. "4" (soft-dirty) clears VM_SOFTDIRTY on every VMA and, in
// every present entry, write-protects and clears the soft-dirty bit, so that
// the next write faults and pte_mkdirty sets it again (pagemap bit 55).
// "1"/"2"/"3" clear the accessed bit of all / anonymous / file-mapped pages.
//
// Pages that may be DMA-pinned in a COW mapping keep their state
// (pte_is_pinned): write-protecting them would make the next write copy the
// page away from the device's view of it.

import { Vma, isCowMapping, vmaAt, vmaSetPageProt } from "../vma";
import { Mm, MMF_HAS_PINNED } from "../mm";
import { walkMm, walkPageRange, setWalkAction, ACTION_CONTINUE } from "../walk";
import { mmuNotifierInvalidateStart, mmuNotifierInvalidateEnd, MMU_NOTIFY_SOFT_DIRTY } from "../notifier";
import {
  ptePresent, pteSpecial, pteWrprotect, pteClearSoftDirty, pteMkold, leafPfn, isUpperLeaf, isSwapPte, swpSoftDirtyBit,
} from "../arch/index";
import { isZeroPfn, folioHead, folioMaybeDmaPinned } from "../frames";
import { flushTlbRange, flushTlbMm } from "../flush";
import { contpteMm, setPtes, ptepGetAndClear, testAndClearYoung } from "../arch/contpte";
import { VM_PFNMAP, VM_SOFTDIRTY, PMD_SIZE } from "../constants";
import { stepping, yieldStep, STEP_ENTRY, STEP_FLUSH } from "../step";

export const CLEAR_REFS_ALL: u32 = 1;
export const CLEAR_REFS_ANON: u32 = 2;
export const CLEAR_REFS_MAPPED: u32 = 3;
export const CLEAR_REFS_SOFT_DIRTY: u32 = 4;

@final export class ClearRefsOp {
  type: u32 = CLEAR_REFS_SOFT_DIRTY;

  pteRange(ptep: usize, addr: u64, end: u64): i32 {
    const last = ptep + <usize>((end - addr) >> 9);
    const mm = walkMm, cont = contpteMm(mm);
    if (this.type == CLEAR_REFS_SOFT_DIRTY) {
      for (let p = ptep; p < last; p += 8) {
        const e = load<u64>(p);
        if (e == 0) continue;
        if (ptePresent(e)) {
          if (this.isPinned(e)) continue;
          // ptep_modify_prot_start/commit (arm64: through the contpte layer).
          const a = addr + (<u64>(p - ptep) << 9);
          if (cont) setPtes(mm, a, p, pteClearSoftDirty(pteWrprotect(ptepGetAndClear(mm, a, p))), 1);
          else store<u64>(p, pteClearSoftDirty(pteWrprotect(e)));
          if (stepping) yieldStep(STEP_ENTRY, mm, a, a + 4096, ptep & ~<usize>4095);
        } else if (isSwapPte(e)) {
          store<u64>(p, e & ~swpSoftDirtyBit());
        }
      }
    } else {
      // ptep_test_and_clear_young: no flush, an old entry cached in a TLB is harmless; a folded block loses AF whole.
      for (let p = ptep; p < last; p += 8) {
        const e = load<u64>(p);
        if (e == 0 || !ptePresent(e) || pteSpecial(e) || isZeroPfn(<u32>leafPfn(e, 0))) continue;
        if (cont) testAndClearYoung(mm, addr + (<u64>(p - ptep) << 9), p);
        else store<u64>(p, pteMkold(e));
      }
    }
    return 0;
  }

  /** pte_is_pinned. */
  private isPinned(e: u64): bool {
    if ((walkMm.flags & MMF_HAS_PINNED) == 0) return false;
    const vma = this.vma;
    if (!isCowMapping(vma.flags)) return false;
    const pfn = <u32>leafPfn(e, 0);
    if (pteSpecial(e) || isZeroPfn(pfn)) return false;
    return folioMaybeDmaPinned(folioHead(pfn));
  }

  vma: Vma = changetype<Vma>(0);

  /** A huge PMD is handled whole (clear_soft_dirty_pmd: pmdp_invalidate flushes it), never split. */
  upperEntry(level: u32, ep: usize, addr: u64, next: u64): i32 {
    const e = load<u64>(ep);
    if (!isUpperLeaf(e)) return 0;
    setWalkAction(ACTION_CONTINUE);
    if (level != 1 || !ptePresent(e)) return 0;
    if (this.type == CLEAR_REFS_SOFT_DIRTY) {
      store<u64>(ep, pteClearSoftDirty(pteWrprotect(e)));
      flushTlbRange(walkMm, addr & ~(PMD_SIZE - 1), (addr & ~(PMD_SIZE - 1)) + PMD_SIZE, 21);
    } else {
      store<u64>(ep, pteMkold(e));
    }
    return 0;
  }

  // @ts-ignore: decorator
  @inline hole(addr: u64, next: u64, depth: i32): i32 { return 0; }

  /** clear_refs_test_walk. */
  testWalk(vma: Vma): i32 {
    if ((vma.flags & VM_PFNMAP) != 0) return 1;
    if (this.type == CLEAR_REFS_ANON && vma.file != 0) return 1;
    if (this.type == CLEAR_REFS_MAPPED && vma.file == 0) return 1;
    return 0;
  }

  preVma(vma: Vma, start: u64, end: u64): i32 { this.vma = vma; return 0; }
  // @ts-ignore: decorator
  @inline postVma(vma: Vma, start: u64, end: u64): void {}
}

const op = new ClearRefsOp();

/**
 * clear_refs_write. Soft-dirty: VMAs lose VM_SOFTDIRTY (and become
 * write-notified where shared), then one walk under one notifier range
 * (SOFT_DIRTY, the whole address space) and one flush of the mm.
 */
export function clearRefs(mm: Mm, type: u32): void {
  const softDirty = type == CLEAR_REFS_SOFT_DIRTY;
  if (softDirty) {
    for (let i: u32 = 0; i < mm.nrVmas; i++) {
      const v = vmaAt(mm, i);
      if ((v.flags & VM_SOFTDIRTY) == 0) continue;
      v.flags &= ~VM_SOFTDIRTY;
      vmaSetPageProt(v);
    }
    mm.flushPending++;
    mmuNotifierInvalidateStart(mm, MMU_NOTIFY_SOFT_DIRTY, 0, <u64>-1);
  }
  op.type = type;
  walkPageRange<ClearRefsOp>(op, mm, 0, mm.taskSize);
  if (softDirty) {
    mmuNotifierInvalidateEnd(mm, MMU_NOTIFY_SOFT_DIRTY, 0, <u64>-1);
    if (stepping) yieldStep(STEP_FLUSH, mm, 0, mm.taskSize, 0);
    flushTlbMm(mm);
    mm.flushPending--;
  }
}
