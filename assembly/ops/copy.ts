// copy_page_range (mm/memory.c) as a walker op: fork copies the parent's
// entries of one VMA into the child, a PTE table at a time. COW mappings
// share pages read-only (both sides write-protected, anon exclusivity gone);
// a page that may be DMA-pinned is copied into the child at once instead, so
// the pin keeps seeing what the parent maps (SEMANTICS §6). That copy needs
// a page allocated outside the page-table locks: the op stops with
// COPY_EAGAIN at the address, the driver preallocates and walks again from
// there.

import { Mm, addRss, MMF_HAS_PINNED } from "../mm";
import { Vma, isCowMapping, maybeMkwrite } from "../vma";
import { setWalkAction, ACTION_CONTINUE, walkVma } from "../walk";
import { pmdOffsetAlloc, pteTableAlloc, faultPmdTable } from "../fault";
import { allocTable, tablePtr, depositTable } from "../pgtable";
import {
  ptePresent, pteWrite, pteWrprotect, pteMkold, pteMkclean, pteMkdirty, pteMkyoung, pteClearUffdWp, pteUffdWp, pteSpecial,
  pteMkuffdWp, pfnPte, leafPfn, isUpperLeaf, tableEntryPfn, swpType, swpOffset,
  swpExclusiveBit, swpUffdWpBit, mkPteMarker, pteCont, pteMknoncont, MAX_SWAPFILES, SWP_PTE_MARKER, PTE_MARKER_UFFD_WP,
  isDevicePrivateType, mkSwap, SWP_DEVICE_WRITE, SWP_DEVICE_READ,
} from "../arch/index";
import { contpteMm, tryUnfold } from "../arch/contpte";
import {
  isZeroPfn, folioHead, testFlag, clearFlag, setTag, tagOf, folioRefAdd, addMapcount, addEntireMapcount, folioMaybeDmaPinned,
  PG_ANON, PG_EXCLUSIVE,
} from "../frames";
import { addNewAnonRmap, mmCounter } from "../rmap";
import { swapDup } from "../swap";
import { devicePageDup, devicePrivatePfn } from "../devmem";
import { VM_SHARED, MM_ANONPAGES, MM_SWAPENTS, ENOMEM } from "../constants";

/** Whether the 64 KiB block holding a lies entirely inside [start, end). */
// @ts-ignore: decorator
@inline function wholeBlock(a: u64, start: u64, end: u64): bool {
  const b = a & ~<u64>0xffff;
  return b >= start && b + 0x10000 <= end;
}

/** The op stopped because a page must be copied and no preallocated page is ready. */
export const COPY_EAGAIN: i32 = 1;

@final export class CopyOp {
  parent: Mm = changetype<Mm>(0);
  child: Mm = changetype<Mm>(0);
  /** era 'seed': copy any maybe-pinned anon page; 'modern' only an exclusive one (PageAnonExclusive). */
  seedEra: bool = false;
  /** Whether the child's VMA keeps userfaultfd write-protect registration. */
  childUffdWp: bool = false;
  /** A preallocated order-0 page (folio_prealloc), or 0. */
  prealloc: u32 = 0;
  /** Where to walk again after COPY_EAGAIN. */
  retryAddr: u64 = 0;
  /** Pages copied at fork because they may be pinned. */
  earlyCopies: u64 = 0;

  /** folio_needs_cow_for_dma, plus PageAnonExclusive in the modern rule. */
  @inline private needsCopy(parent: Mm, pfn: u32, head: u32): bool {
    if ((parent.flags & MMF_HAS_PINNED) == 0 || !folioMaybeDmaPinned(head)) return false;
    return this.seedEra || testFlag(pfn, PG_EXCLUSIVE);
  }

  /** The child's PTE table covering addr, allocated on demand; 0 when out of memory. */
  private childPte(addr: u64): usize {
    const pmdp = pmdOffsetAlloc(this.child, addr);
    if (pmdp == 0) return 0;
    if (load<u64>(pmdp) == 0 && pteTableAlloc(this.child, pmdp) == 0) return 0;
    return tablePtr(<u32>tableEntryPfn(load<u64>(pmdp))) + (<usize>((addr >> 12) & 511) << 3);
  }

  pteRange(ptep: usize, addr: u64, end: u64): i32 {
    const dst = this.childPte(addr);
    if (dst == 0) return -ENOMEM;
    const vma = changetype<Vma>(walkVma);
    const child = this.child;
    const parent = this.parent;
    const cow = isCowMapping(vma.flags);
    const n = <usize>((end - addr) >> 12);
    // arm64: the child gets CONT only for whole blocks (set_ptes of aligned chunks).
    const cont = contpteMm(parent);
    for (let i: usize = 0; i < n; i++) {
      const p = ptep + (i << 3);
      let e = load<u64>(p);
      if (e == 0) continue;
      const a = addr + (<u64>i << 12);
      if (!ptePresent(e)) {
        const c = this.copyNonPresent(p, e);
        if (c != 0) store<u64>(dst + (i << 3), c);
        continue;
      }
      const pfn = <u32>leafPfn(e, 0);
      if (!pteSpecial(e) && !isZeroPfn(pfn)) {
        const head = folioHead(pfn);
        if (testFlag(head, PG_ANON) && cow && this.needsCopy(parent, pfn, head)) {
          if (this.prealloc == 0) { this.retryAddr = a; return COPY_EAGAIN; }
          store<u64>(dst + (i << 3), this.copyPresentPage(vma, e, pfn));
          continue;
        }
        // wrprotect_ptes of the parent unfolds a folded block it covers only in part: one the
        // range cuts, or one of a maybe-pinned folio, which goes page by page (no batching).
        if (cont && cow && pteCont(e) && pteWrite(e)
          && (!wholeBlock(a, addr, end) || ((parent.flags & MMF_HAS_PINNED) != 0 && folioMaybeDmaPinned(head)))) {
          tryUnfold(parent, a, p);
          e = load<u64>(p);
        }
        folioRefAdd(head, 1);
        addMapcount(pfn, 1);
        if (testFlag(head, PG_ANON)) clearFlag(pfn, PG_EXCLUSIVE);
        addRss(child, mmCounter(head), 1);
      }
      // __copy_present_ptes
      let c = e;
      if (cow && pteWrite(e)) { store<u64>(p, pteWrprotect(e)); c = pteWrprotect(c); }
      if ((vma.flags & VM_SHARED) != 0) c = pteMkclean(c);
      c = pteMkold(c);
      if (!this.childUffdWp) c = pteClearUffdWp(c);
      if (cont && pteCont(c) && !wholeBlock(a, addr, end)) c = pteMknoncont(c);
      store<u64>(dst + (i << 3), c);
    }
    return 0;
  }

  /** copy_present_page: the child gets its own exclusive copy; the parent keeps its writable entry and its page. */
  private copyPresentPage(vma: Vma, e: u64, pfn: u32): u64 {
    const page = this.prealloc;
    this.prealloc = 0;
    setTag(page, tagOf(pfn));
    addNewAnonRmap(page, 1, false);
    addRss(this.child, MM_ANONPAGES, 1);
    this.earlyCopies++;
    let c = maybeMkwrite(pteMkdirty(pteMkyoung(pfnPte(<u64>page, vma.pageProt))), vma);
    if (pteUffdWp(e) && this.childUffdWp) c = pteMkuffdWp(c);
    return c;
  }

  /** copy_nonpresent_pte for the entries the emulator creates: swap entries, device-private entries and markers. Returns the child's entry (0: none). */
  private copyNonPresent(p: usize, e: u64): u64 {
    const type = swpType(e);
    if (type == SWP_PTE_MARKER) {
      // Poison and guard markers always follow; uffd-wp only into a registered VMA.
      let bits = swpOffset(e);
      if (!this.childUffdWp) bits &= ~PTE_MARKER_UFFD_WP;
      return bits == 0 ? 0 : mkPteMarker(bits);
    }
    let c = e;
    if (isDevicePrivateType(type)) {
      // folio_get + folio_dup_file_rmap... for anon: the device page is now shared; a writable
      // entry becomes readable in the parent (swp uffd-wp kept, soft-dirty not), and so in the child.
      const dpfn = devicePrivatePfn(this.child, e);
      devicePageDup(dpfn);
      clearFlag(dpfn, PG_EXCLUSIVE);
      addRss(this.child, MM_ANONPAGES, 1);
      if (type == SWP_DEVICE_WRITE && isCowMapping(changetype<Vma>(walkVma).flags)) {
        c = mkSwap(SWP_DEVICE_READ, <u64>dpfn) | (e & swpUffdWpBit());
        store<u64>(p, c);
      }
    } else if (type < MAX_SWAPFILES) {
      swapDup(<u32>swpOffset(e));
      if ((e & swpExclusiveBit()) != 0) { store<u64>(p, e & ~swpExclusiveBit()); c = e & ~swpExclusiveBit(); }
      addRss(this.child, MM_SWAPENTS, 1);
    }
    if (!this.childUffdWp) c &= ~swpUffdWpBit();
    return c;
  }

  upperEntry(level: u32, ep: usize, addr: u64, next: u64): i32 {
    const e = load<u64>(ep);
    if (level != 1 || !isUpperLeaf(e)) return 0;
    const vma = changetype<Vma>(walkVma);
    const pfn = <u32>leafPfn(e, 1);
    const head = folioHead(pfn);
    const zero = isZeroPfn(pfn);
    if (!zero && !testFlag(head, PG_ANON)) { setWalkAction(ACTION_CONTINUE); return 0; }   // file THP: the child refaults
    // A maybe-pinned THP: leave ACTION_SUBTREE, so that the walker splits the
    // parent's PMD and the PTE path copies each pinned subpage.
    if (!zero && isCowMapping(vma.flags) && this.needsCopy(this.parent, head, head)) return 0;
    const pmdp = pmdOffsetAlloc(this.child, addr);
    if (pmdp == 0) return -ENOMEM;
    const deposit = allocTable(this.child);
    if (deposit == 0) return -ENOMEM;
    depositTable(faultPmdTable, deposit);
    if (!zero) {
      folioRefAdd(head, 1);
      addEntireMapcount(head, 1);
      clearFlag(head, PG_EXCLUSIVE);
      addRss(this.child, MM_ANONPAGES, 512);
    }
    let c = e;
    if (pteWrite(e)) { store<u64>(ep, pteWrprotect(e)); c = pteWrprotect(c); }
    c = pteMkold(c);
    if (!this.childUffdWp) c = pteClearUffdWp(c);
    store<u64>(pmdp, c);
    setWalkAction(ACTION_CONTINUE);
    return 0;
  }

  @inline hole(addr: u64, next: u64, depth: i32): i32 { return 0; }
  @inline testWalk(vma: Vma): i32 { return 0; }
  @inline preVma(vma: Vma, start: u64, end: u64): i32 { return 0; }
  @inline postVma(vma: Vma, start: u64, end: u64): void {}
}
