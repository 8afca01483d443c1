// zap_pte_range / zap_huge_pmd: unmapping a range (munmap, exit, MADV_DONTNEED,
// truncation). Every cleared present entry is added to the current
// mmu_gather's flush range, and its page's mapping reference is queued there,
// to be dropped only after the TLB flush; swap entries release their slot;
// markers follow SEMANTICS §7.2.

import { setWalkAction, ACTION_CONTINUE, walkMm, walkVma, walkTablePfn } from "../walk";
import { Vma, vmaIsAnonymous } from "../vma";
import { Mm, addRss } from "../mm";
import {
  ptePresent, pteSpecial, pteDirty, pteUffdWp, leafPfn, isUpperLeaf, swpType, swpOffset, mkPteMarker,
  MAX_SWAPFILES, SWP_PTE_MARKER, SWP_HWPOISON, PTE_MARKER_UFFD_WP, PTE_MARKER_GUARD, PTE_MARKER_POISONED, swpUffdWpBit, isDevicePrivateType,
} from "../arch/index";
import { devicePageUnmap, devicePrivatePfn } from "../devmem";
import {
  isZeroPfn, folioHead, testFlag, setFlag, addEntireMapcount, addMapcount, info, setInfo, zeroPfn,
  PG_ANON, PG_DIRTY, PG_SWAPCACHE, ORDER_SHIFT, KIND_SHIFT,
} from "../frames";
import { mmCounter, deleteFromSwapCache, folioMapcount } from "../rmap";
import { currentGather, tlbFlushPteRange, tlbFlushPmdRange, tlbRemovePage, tlbEndVma } from "../gather";
import { swapFree, swapCount, swapCachePfn } from "../swap";
import { withdrawTable, freeTable } from "../pgtable";
import { unfoldPartial } from "../arch/contpte";
import { MM_SWAPENTS, MM_ANONPAGES, PMD_SIZE, VM_UFFD_WP } from "../constants";

/** Descriptor bits that take a page off the fast path: large folio, tail, table/free kinds, swap cache. */
const FAST_MASK: u32 = (31 << ORDER_SHIFT) | (3 << KIND_SHIFT) | PG_SWAPCACHE;

@final export class ZapOp {
  /** ZAP_FLAG_DROP_MARKER: munmap, exit and locked truncation destroy markers. */
  dropMarkers: bool = false;
  /** details->even_cows: false keeps private anonymous copies (pagecache invalidation). */
  evenCows: bool = true;
  /** Pages and swap entries removed. */
  zapped: u64 = 0;

  pteRange(ptep: usize, addr: u64, end: u64): i32 {
    const vma = changetype<Vma>(walkVma);
    const last = ptep + <usize>((end - addr) >> 9);
    const g = currentGather;
    // arm64: blocks the range covers only in part unfold first (get_and_clear_full_ptes); whole ones just go.
    unfoldPartial(walkMm, addr, ptep, <u32>((end - addr) >> 12));
    let anon: i64 = 0;     // rss delta, added once per table as zap_pte_range does
    const evenCows = this.evenCows;
    for (let p = ptep; p < last; p += 8) {
      const e = load<u64>(p);
      if (e == 0) continue;
      // The common case inline: a small anonymous folio mapped here once, not in the swap cache
      // (a page-cache invalidation keeps anonymous copies: zapOne says so).
      if (evenCows && ptePresent(e) && !pteSpecial(e) && !pteUffdWp(e)) {
        const pfn = <u32>leafPfn(e, 0);
        const inf = info(pfn);
        if ((inf & (FAST_MASK | PG_ANON)) == PG_ANON && pfn != zeroPfn) {
          store<u64>(p, 0);
          setInfo(pfn, inf - 1);
          anon--;
          tlbFlushPteRange(g, addr + (<u64>(p - ptep) << 9), 4096);
          tlbRemovePage(g, pfn);
          this.zapped++;
          continue;
        }
      }
      this.zapOne(p, e, vma, addr + (<u64>(p - ptep) << 9));
    }
    if (anon != 0) addRss(walkMm, MM_ANONPAGES, anon);
    return 0;
  }

  upperEntry(level: u32, ep: usize, addr: u64, next: u64): i32 {
    const e = load<u64>(ep);
    if (!isUpperLeaf(e)) return 0;
    if (level != 1) { setWalkAction(ACTION_CONTINUE); return 0; }
    if ((addr & (PMD_SIZE - 1)) == 0 && next - addr == PMD_SIZE) {
      if (this.evenCows || !testFlag(folioHead(<u32>leafPfn(e, 1)), PG_ANON)) {
        zapHugePmd(walkMm, ep, walkTablePfn, e);
        tlbFlushPmdRange(currentGather, addr, PMD_SIZE);
      }
      setWalkAction(ACTION_CONTINUE);
    }
    return 0;   // a partial range leaves SUBTREE: the walker splits the PMD
  }

  zapOne(ptep: usize, e: u64, vma: Vma, addr: u64): void {
    const mm = walkMm;
    if (ptePresent(e)) {
      const pfn = <u32>leafPfn(e, 0);
      if (pteSpecial(e) || isZeroPfn(pfn)) {
        store<u64>(ptep, 0);
      } else {
        const head = folioHead(pfn);
        const anon = testFlag(head, PG_ANON);
        if (!this.evenCows && anon) return;            // should_zap_folio
        store<u64>(ptep, 0);
        if (!anon && pteDirty(e)) setFlag(head, PG_DIRTY);
        addMapcount(pfn, -1);
        addRss(mm, mmCounter(head), -1);
        tlbRemovePage(currentGather, head);
      }
      tlbFlushPteRange(currentGather, addr, 4096);
      this.zapped++;
      if (pteUffdWp(e)) this.installUffdWpMarker(ptep, vma);
      return;
    }
    const type = swpType(e);
    if (type < MAX_SWAPFILES) {
      if (!this.evenCows) return;                      // should_zap_cows
      store<u64>(ptep, 0);
      addRss(mm, MM_SWAPENTS, -1);
      freeSwapAndCache(<u32>swpOffset(e));
      this.zapped++;
      if ((e & swpUffdWpBit()) != 0) this.installUffdWpMarker(ptep, vma);
      return;
    }
    if (isDevicePrivateType(type)) {
      // zap_nonpresent_ptes: the device page loses this mapping (only anonymous VMAs hold them).
      if (!this.evenCows) return;
      store<u64>(ptep, 0);
      addRss(mm, MM_ANONPAGES, -1);
      devicePageUnmap(devicePrivatePfn(mm, e));
      this.zapped++;
      if ((e & swpUffdWpBit()) != 0) this.installUffdWpMarker(ptep, vma);
      return;
    }
    if (type == SWP_PTE_MARKER) {
      const m = swpOffset(e);
      let drop: bool;
      if ((m & PTE_MARKER_GUARD) != 0) drop = this.dropMarkers;
      else if ((m & PTE_MARKER_POISONED) != 0) drop = this.evenCows;
      else drop = this.dropMarkers || vmaIsAnonymous(vma);
      if (drop) store<u64>(ptep, 0);
      return;
    }
    if (type == SWP_HWPOISON && this.evenCows) store<u64>(ptep, 0);
  }

  /** zap_install_uffd_wp_if_needed: file VMAs registered for uffd-wp keep the protection as a marker. */
  installUffdWpMarker(ptep: usize, vma: Vma): void {
    if (this.dropMarkers || vmaIsAnonymous(vma) || (vma.flags & VM_UFFD_WP) == 0) return;
    store<u64>(ptep, mkPteMarker(PTE_MARKER_UFFD_WP));
  }
  // @ts-ignore: decorator
  @inline hole(addr: u64, next: u64, depth: i32): i32 { return 0; }
  // @ts-ignore: decorator
  @inline testWalk(vma: Vma): i32 { return 0; }
  // @ts-ignore: decorator
  @inline preVma(vma: Vma, start: u64, end: u64): i32 { return 0; }
  postVma(vma: Vma, start: u64, end: u64): void { tlbEndVma(currentGather); }
}

/** zap_huge_pmd: a whole huge PMD goes, with its deposited table; the folio's reference waits for the flush. */
export function zapHugePmd(mm: Mm, ep: usize, pmdTable: u32, e: u64): void {
  store<u64>(ep, 0);
  const t = withdrawTable(pmdTable);
  if (t != 0) freeTable(mm, t);
  const pfn = <u32>leafPfn(e, 1);
  if (isZeroPfn(pfn)) return;
  const head = folioHead(pfn);
  if (!testFlag(head, PG_ANON) && pteDirty(e)) setFlag(head, PG_DIRTY);
  addEntireMapcount(head, -1);
  addRss(mm, mmCounter(head), -512);
  tlbRemovePage(currentGather, head);
}


/** free_swap_and_cache: one entry fewer; an unmapped swap-cache page whose slot is now unused is freed. */
export function freeSwapAndCache(slot: u32): void {
  swapFree(slot);
  if (swapCount(slot) != 0) return;
  const pfn = swapCachePfn(slot);
  if (pfn != 0 && folioMapcount(pfn) == 0) deleteFromSwapCache(pfn);
}

