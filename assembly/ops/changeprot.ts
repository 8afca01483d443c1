// change_protection (mm/mprotect.c) for mprotect: every present entry gets the
// VMA's new protection through pte_modify, keeping pfn, A/D, soft-dirty and
// uffd-wp; entries whose change needs a flush (pte_needs_flush) widen the
// current mmu_gather's range. With MM_CP_TRY_CHANGE_WRITABLE, entries the write-fault handler
// would map writable anyway are made writable now (can_change_pte_writable).

import { setWalkAction, ACTION_CONTINUE, walkVma, walkMm } from "../walk";
import { contpteMm, ptepGetAndClear, setPtes } from "../arch/contpte";
import { currentGather, tlbFlushPteRange, tlbFlushPmdRange, tlbEndVma } from "../gather";
import { Vma } from "../vma";
import {
  ptePresent, pteModify, pmdModify, pteWrite, pteMkwrite, pteProtnone, pteSoftDirty, pteUffdWp, pteDirty, pteSpecial,
  leafPfn, isUpperLeaf, softDirtySupported, pteNeedsFlush, isSwapPte, swpType, swpOffset, swpUffdWpBit, mkSwap,
  SWP_DEVICE_WRITE, SWP_DEVICE_READ,
} from "../arch/index";
import { isZeroPfn, testFlag, folioHead, PG_ANON, PG_EXCLUSIVE } from "../frames";
import { VM_WRITE, VM_SHARED, VM_SOFTDIRTY, VM_UFFD_WP, PMD_SIZE } from "../constants";

/** can_change_pte_writable. */
export function canChangePteWritable(vma: Vma, e: u64): bool {
  if ((vma.flags & VM_WRITE) == 0) return false;
  if (pteProtnone(e)) return false;
  // Soft-dirty tracking needs the write fault that re-sets the bit.
  if (softDirtySupported && (vma.flags & VM_SOFTDIRTY) == 0 && !pteSoftDirty(e)) return false;
  if ((vma.flags & VM_UFFD_WP) != 0 && pteUffdWp(e)) return false;
  if ((vma.flags & VM_SHARED) == 0) {
    const pfn = <u32>leafPfn(e, 0);
    if (pteSpecial(e) || isZeroPfn(pfn)) return false;
    return testFlag(folioHead(pfn), PG_ANON) && testFlag(pfn, PG_EXCLUSIVE);
  }
  return pteDirty(e);
}

/**
 * change_pte_range on a swap-format entry: a writable device-private entry
 * becomes readable whatever the new protection ("a protection check is
 * difficult so just be safe"; soft-dirty is not kept, uffd-wp is). 1 if changed.
 */
function nonPresent(p: usize, e: u64): u64 {
  if (!isSwapPte(e) || swpType(e) != SWP_DEVICE_WRITE) return 0;
  store<u64>(p, mkSwap(SWP_DEVICE_READ, swpOffset(e)) | (e & swpUffdWpBit()));
  return 1;
}

@final export class ChangeProtOp {
  prot: u64 = 0;
  tryChangeWritable: bool = false;
  pages: u64 = 0;

  pteRange(ptep: usize, addr: u64, end: u64): i32 {
    if (contpteMm(walkMm)) return this.pteRangeContpte(ptep, addr, end);
    const prot = this.prot;
    const g = currentGather;
    const last = ptep + <usize>((end - addr) >> 9);
    let pages: u64 = 0;
    if (!this.tryChangeWritable) {
      for (let p = ptep; p < last; p += 8) {
        const e = load<u64>(p);
        if (e == 0) continue;
        if (!ptePresent(e)) { pages += nonPresent(p, e); continue; }
        const n = pteModify(e, prot);
        if (n != e) {
          store<u64>(p, n);
          pages++;
          if (pteNeedsFlush(e, n)) tlbFlushPteRange(g, addr + (<u64>(p - ptep) << 9), 4096);
        }
      }
    } else {
      const vma = changetype<Vma>(walkVma);
      for (let p = ptep; p < last; p += 8) {
        const e = load<u64>(p);
        if (e == 0) continue;
        if (!ptePresent(e)) { pages += nonPresent(p, e); continue; }
        let n = pteModify(e, prot);
        if (!pteWrite(n) && canChangePteWritable(vma, n)) n = pteMkwrite(n);
        if (n != e) {
          store<u64>(p, n);
          pages++;
          if (pteNeedsFlush(e, n)) tlbFlushPteRange(g, addr + (<u64>(p - ptep) << 9), 4096);
        }
      }
    }
    this.pages += pages;
    return 0;
  }

  /**
   * arm64 user mms: ptep_modify_prot_start/commit for every present entry, so
   * a folded block unfolds at its first entry and refolds when its last one
   * is committed and the block still qualifies.
   */
  private pteRangeContpte(ptep: usize, addr: u64, end: u64): i32 {
    const mm = walkMm, vma = changetype<Vma>(walkVma), g = currentGather;
    const last = ptep + <usize>((end - addr) >> 9);
    for (let p = ptep; p < last; p += 8) {
      const raw = load<u64>(p);
      if (raw == 0) continue;
      if (!ptePresent(raw)) { this.pages += nonPresent(p, raw); continue; }
      const a = addr + (<u64>(p - ptep) << 9);
      const e = ptepGetAndClear(mm, a, p);
      let n = pteModify(e, this.prot);
      if (this.tryChangeWritable && !pteWrite(n) && canChangePteWritable(vma, n)) n = pteMkwrite(n);
      setPtes(mm, a, p, n, 1);
      if (n != e) {
        this.pages++;
        if (pteNeedsFlush(e, n)) tlbFlushPteRange(g, a, 4096);
      }
    }
    return 0;
  }

  upperEntry(level: u32, ep: usize, addr: u64, next: u64): i32 {
    const e = load<u64>(ep);
    if (!isUpperLeaf(e)) return 0;
    if (level != 1 || ((addr & (PMD_SIZE - 1)) == 0 && next - addr == PMD_SIZE)) {
      // change_huge_pmd: the whole leaf is covered, no split.
      const vma = changetype<Vma>(walkVma);
      let n = pmdModify(e, this.prot);
      if (this.tryChangeWritable && !pteWrite(n) && (vma.flags & VM_WRITE) != 0 && !pteProtnone(n)) {
        const pfn = <u32>leafPfn(n, level);
        const softOk = !softDirtySupported || (vma.flags & VM_SOFTDIRTY) != 0 || pteSoftDirty(n);
        const ok = (vma.flags & VM_SHARED) != 0 ? pteDirty(n)
          : (!isZeroPfn(pfn) && testFlag(folioHead(pfn), PG_ANON) && testFlag(folioHead(pfn), PG_EXCLUSIVE));
        if (ok && softOk && !((vma.flags & VM_UFFD_WP) != 0 && pteUffdWp(n))) n = pteMkwrite(n);
      }
      if (n != e) {
        store<u64>(ep, n);
        this.pages += 512;
        if (pteNeedsFlush(e, n)) tlbFlushPmdRange(currentGather, addr, PMD_SIZE);
      }
      setWalkAction(ACTION_CONTINUE);
    }
    return 0;
  }
  // @ts-ignore: decorator
  @inline hole(addr: u64, next: u64, depth: i32): i32 { return 0; }
  // @ts-ignore: decorator
  @inline testWalk(vma: Vma): i32 { return 0; }
  // @ts-ignore: decorator
  @inline preVma(vma: Vma, start: u64, end: u64): i32 { return 0; }
  postVma(vma: Vma, start: u64, end: u64): void { tlbEndVma(currentGather); }
}
