// MADV_PAGEOUT (madvise_cold_or_pageout_pte_range + reclaim_pages), done
// synchronously: each page mapped only here is written to swap and freed
// after one batched TLB flush of the mm (try_to_unmap_flush).
// Anonymous pages leave a swap entry (exclusive if PageAnonExclusive,
// soft-dirty and uffd-wp carried as swp flags); shmem pages move to swap
// inside their file and the PTE becomes none (or a uffd-wp marker).
// Pages with extra references (pins, GUP) cannot be reclaimed and stay.

import { walkMm, walkVma, setWalkAction, ACTION_CONTINUE } from "../walk";
import { currentGather, tlbFlushPteRange, tlbRemovePage, GATHER_BATCH } from "../gather";
import { mmuNotifierInvalidateStart, mmuNotifierInvalidateEnd, MMU_NOTIFY_CLEAR } from "../notifier";
import { Vma } from "../vma";
import { Mm, addRss } from "../mm";
import { folioMapcount } from "../rmap";
import { leafLookup, lookupLevel } from "../fault";
import {
  ptePresent, pteSpecial, pteSoftDirty, pteUffdWp, leafPfn, mkSwap, swpExclusiveBit, swpSoftDirtyBit, swpUffdWpBit,
  mkPteMarker, isUpperLeaf, pteCont, PTE_MARKER_UFFD_WP,
} from "../arch/index";
import { tryUnfold, unfoldRange, contpteMm } from "../arch/contpte";
import {
  isZeroPfn, folioHead, testFlag, clearFlag, orderOf, refcount, mapcount, tagOf, indexOf, folioRefAdd, addMapcount, setIndex,
  PG_ANON, PG_EXCLUSIVE, PG_SWAPCACHE, PG_SWAPBACKED,
} from "../frames";
import { splitFolio } from "../thp";
import { swapAlloc, swapWrite, swapDup, swapCacheSet, swapSlots } from "../swap";
import { fileOf, cacheSlot, CACHE_SWAP } from "../file";
import { linearPageIndex } from "../vma";
import { MM_ANONPAGES, MM_SWAPENTS, MM_SHMEMPAGES, VM_UFFD_WP } from "../constants";

/**
 * Pages whose notifier range is started and waits for the flush. A page is
 * unmapped together with queueing it on the gather, whose batch flushes at
 * GATHER_BATCH pages, so no more than that many are ever pending.
 */
const pendingAddrs: usize = memory.data(<i32>GATHER_BATCH << 3);

@final export class PageoutOp {
  reclaimed: u64 = 0;
  pending: u32 = 0;
  seenFlushes: u32 = 0;

  /**
   * try_to_unmap_one brackets each folio's mapping in the mm with
   * MMU_NOTIFY_CLEAR (the PMD range for a PMD-mapped one: here the walker's
   * split notifies that, then the pages go one by one as small folios).
   * Reclaim defers the TLB flush (TTU_BATCH_FLUSH), and the kernel ends the
   * range before it; we end every pending range once the flush that covers
   * it has happened.
   */
  notifyBegin(): void { this.pending = 0; this.seenFlushes = currentGather.flushes; }

  /** Ends the ranges of every page unmapped so far (the gather has flushed them). */
  notifyFlushed(mm: Mm): void {
    for (let i: u32 = 0; i < this.pending; i++) {
      const a = load<u64>(pendingAddrs + (<usize>i << 3));
      mmuNotifierInvalidateEnd(mm, MMU_NOTIFY_CLEAR, a, a + 4096);
    }
    this.pending = 0;
  }

  /** Before the PTE of the page at addr changes. */
  private notifyStart(mm: Mm, addr: u64): void {
    mmuNotifierInvalidateStart(mm, MMU_NOTIFY_CLEAR, addr, addr + 4096);
    store<u64>(pendingAddrs + (<usize>this.pending << 3), addr);
    this.pending++;
  }

  pteRange(ptep: usize, addr: u64, end: u64): i32 {
    for (let a = addr; a < end; a += 4096, ptep += 8) this.pteEntry(ptep, a);
    return 0;
  }

  // @ts-ignore: decorator
  @inline pteEntry(ptep: usize, addr: u64): i32 {
    const e = load<u64>(ptep);
    if (e != 0 && ptePresent(e)) this.pageoutOne(ptep, e, addr, changetype<Vma>(walkVma));
    return 0;
  }

  pageoutOne(ptep: usize, e: u64, addr: u64, vma: Vma): void {
    // try_to_unmap clears and flushes PTE by PTE: a folded block unfolds first (arm64).
    if (pteCont(e)) { tryUnfold(walkMm, addr, ptep); e = load<u64>(ptep); }
    const pfn = <u32>leafPfn(e, 0);
    if (pteSpecial(e) || isZeroPfn(pfn)) return;
    let head = folioHead(pfn);
    if (orderOf(head) > 0) {
      // Splitting the folio unfolds the blocks that map it here (arm64); one mapped elsewhere too stays whole.
      if (contpteMm(walkMm)) {
        const va = addr - (<u64>(pfn - head) << 12);
        if (mappedHere(walkMm, va, head) != folioMapcount(head)) return;
        unfoldRange(walkMm, va, va + (<u64>4096 << orderOf(head)));
      }
      if (!splitFolio(head)) return;
      head = pfn;
    }
    if (mapcount(pfn) != 1) return;                 // folio_maybe_mapped_shared
    const mm = walkMm;
    if (testFlag(pfn, PG_ANON)) {
      const cached = testFlag(pfn, PG_SWAPCACHE);
      if (refcount(pfn) != 1 + (cached ? 1 : 0)) return;   // pinned or otherwise referenced
      const slot = cached ? indexOf(pfn) : swapAlloc();
      if (slot == 0) return;                        // no swap, or swap full
      swapWrite(slot, tagOf(pfn));
      swapDup(slot);
      let swp = mkSwap(0, <u64>slot);
      if (testFlag(pfn, PG_EXCLUSIVE)) swp |= swpExclusiveBit();
      if (pteSoftDirty(e)) swp |= swpSoftDirtyBit();
      if (pteUffdWp(e)) swp |= swpUffdWpBit();
      this.notifyStart(mm, addr);
      store<u64>(ptep, swp);
      addRss(mm, MM_ANONPAGES, -1);
      addRss(mm, MM_SWAPENTS, 1);
      if (cached) {
        swapCacheSet(slot, 0);
        clearFlag(pfn, PG_SWAPCACHE);
        setIndex(pfn, 0);
        folioRefAdd(pfn, -1);
      }
      this.unmapped(pfn, addr);
      return;
    }
    if (!testFlag(pfn, PG_SWAPBACKED) || vma.file == 0) return;
    // shmem_writeout: the page-cache slot becomes a swap entry of the file.
    if (refcount(pfn) != 2) return;                 // the cache's reference and ours
    if (swapSlots() == 0) return;
    const f = fileOf(vma.file);
    const pgoff = linearPageIndex(vma, addr);
    const cslot = cacheSlot(f, pgoff);
    if (cslot == 0) return;
    const slot = swapAlloc();
    if (slot == 0) return;
    swapWrite(slot, tagOf(pfn));
    swapDup(slot);
    store<u64>(cslot, (<u64>slot << 2) | CACHE_SWAP);
    f.nrPages--;
    f.nrSwapped++;
    this.notifyStart(mm, addr);
    store<u64>(ptep, pteUffdWp(e) && (vma.flags & VM_UFFD_WP) != 0 ? mkPteMarker(PTE_MARKER_UFFD_WP) : 0);
    addRss(mm, MM_SHMEMPAGES, -1);
    setIndex(pfn, 0);
    folioRefAdd(pfn, -1);                           // the page cache's reference
    this.unmapped(pfn, addr);
  }

  /**
   * try_to_unmap's batched flush: the page leaves its last mapping now, is
   * freed only after the flush at the end of the pass (the gather).
   */
  unmapped(pfn: u32, addr: u64): void {
    addMapcount(pfn, -1);
    tlbFlushPteRange(currentGather, addr, 4096);
    tlbRemovePage(currentGather, pfn);
    this.reclaimed++;
    // A full batch flushed just now, this page included.
    if (currentGather.flushes != this.seenFlushes) {
      this.seenFlushes = currentGather.flushes;
      this.notifyFlushed(walkMm);
    }
  }
  /** A PMD-mapped page-cache folio is left alone: reclaiming it would mean splitting it first (not modelled). */
  upperEntry(level: u32, ep: usize, addr: u64, next: u64): i32 {
    const e = load<u64>(ep);
    if (level == 1 && isUpperLeaf(e)) {
      const pfn = <u32>leafPfn(e, 1);
      if (!isZeroPfn(pfn) && !testFlag(folioHead(pfn), PG_ANON)) setWalkAction(ACTION_CONTINUE);
    }
    return 0;
  }
  // @ts-ignore: decorator
  @inline hole(addr: u64, next: u64, depth: i32): i32 { return 0; }
  // @ts-ignore: decorator
  @inline testWalk(vma: Vma): i32 { return 0; }
  // @ts-ignore: decorator
  @inline preVma(vma: Vma, start: u64, end: u64): i32 { return 0; }
  // @ts-ignore: decorator
  @inline postVma(vma: Vma, start: u64, end: u64): void {}
}

/**
 * How many of a folio's mappings are this mm's PTEs at the folio's natural
 * place (va). When that is all of them, no folded block elsewhere can map it.
 */
function mappedHere(mm: Mm, va: u64, head: u32): u32 {
  let n: u32 = 0;
  for (let i: u32 = 0; i < (<u32>1 << orderOf(head)); i++) {
    const ep = leafLookup(mm, va + (<u64>i << 12));
    if (lookupLevel != 0) continue;
    const e = load<u64>(ep);
    if (ptePresent(e) && <u32>leafPfn(e, 0) == head + i) n++;
  }
  return n;
}
