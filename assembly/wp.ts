// Write-protect faults (mm/memory.c do_wp_page and its helpers): a write, or
// an unshare request, on a present read-only PTE. Shared mappings call
// ->page_mkwrite and reuse the page; private ones reuse an exclusive anonymous
// page and copy anything else.

import { Mm, addRss } from "./mm";
import { Vma, anonVmaPrepare, maybeMkwrite, linearPageIndex } from "./vma";
import { pteMkdirty, pteMkyoung, pteSoftDirty, pteUffdWp, pteMksoftDirty, pteMkuffdWp, pteClearUffdWp, pfnPte, leafPfn, pteSpecial } from "./arch/index";
import { handleUserfault, uffdWpAsync } from "./uffd";
import {
  allocFolio, isZeroPfn, folioHead, tagOf, setTag, testFlag, setFlag, refcount, indexOf, orderOf, mapcount,
  addMapcount, entireMapcount, PG_ANON, PG_EXCLUSIVE, PG_SWAPCACHE, PG_DIRTY,
} from "./frames";
import { addNewAnonRmap, mmCounter, putMappedFolio, deleteFromSwapCache, folioMapcount } from "./rmap";
import { fileOf, doPageMkwrite } from "./file";
import { swapCount } from "./swap";
import { flushTlbPage } from "./flush";
import { ARM64 } from "./arch/index";
import { setPtes, setAccessFlags, ptepGetAndClear } from "./arch/contpte";
import { mmuNotifierInvalidateStart, mmuNotifierInvalidateEnd, MMU_NOTIFY_CLEAR } from "./notifier";
import { VM_SHARED, VM_MAYSHARE, VM_UFFD_WP, VM_FAULT_OOM, FAULT_FLAG_UNSHARE, MM_ANONPAGES } from "./constants";

/**
 * do_wp_page: a write (or unshare) fault on a present, read-only PTE.
 * Shared mappings call ->page_mkwrite and reuse the page; private ones reuse
 * an exclusive anonymous page and copy anything else (COW).
 */
/**
 * A deliberately wrong kernel for the fuzzers to find (m.debug.injectBug):
 * a write to a shared anonymous page reuses it instead of copying it, so
 * parent and child end up writing one frame.
 */
export let injectedSkipCowCopy = false;
export function setInjectedSkipCowCopy(on: bool): void { injectedSkipCowCopy = on; }

export function doWpPage(mm: Mm, vma: Vma, addr: u64, ptep: usize, flags: u32): u32 {
  let e = load<u64>(ptep);
  // userfaultfd write-protect: the context hears of the write (sync), or the bit just goes (async).
  if ((flags & FAULT_FLAG_UNSHARE) == 0 && (vma.flags & VM_UFFD_WP) != 0 && pteUffdWp(e)) {
    if (!uffdWpAsync(vma)) return handleUserfault(vma, addr, flags, VM_UFFD_WP);
    e = pteClearUffdWp(e);
    setPtes(mm, addr, ptep, e, 1);
  }
  const pfn = <u32>leafPfn(e, 0);
  const normal = !pteSpecial(e) && !isZeroPfn(pfn);

  if ((vma.flags & (VM_SHARED | VM_MAYSHARE)) != 0) {
    if (normal && vma.file != 0) {
      // wp_page_shared: ->page_mkwrite first; it may refuse (SIGBUS) or make the writer wait.
      const mk = doPageMkwrite(fileOf(vma.file), linearPageIndex(vma, addr), mm.id, addr);
      if (mk != 0) return mk;
      setFlag(folioHead(pfn), PG_DIRTY);
    }
    wpPageReuse(mm, vma, addr, ptep, e);
    return 0;
  }

  if (normal) {
    const head = folioHead(pfn);
    if (testFlag(head, PG_ANON)) {
      if (testFlag(pfn, PG_EXCLUSIVE) || wpCanReuseAnonFolio(head) || injectedSkipCowCopy) {
        setFlag(pfn, PG_EXCLUSIVE);
        if ((flags & FAULT_FLAG_UNSHARE) != 0) return 0;
        wpPageReuse(mm, vma, addr, ptep, e);
        return 0;
      }
    }
  }
  return wpPageCopy(mm, vma, addr, ptep, e, pfn, normal, (flags & FAULT_FLAG_UNSHARE) != 0);
}

/**
 * wp_page_reuse: young, dirty, writable where the VMA allows; no copy and no
 * flush (a permission upgrade). ptep_set_access_flags: on arm64 the write
 * permission change unfolds a contiguous block first.
 */
function wpPageReuse(mm: Mm, vma: Vma, addr: u64, ptep: usize, e: u64): void {
  const entry = maybeMkwrite(pteMkdirty(pteMkyoung(e)), vma);
  if (ARM64) setAccessFlags(mm, addr, ptep, entry, true);
  else store<u64>(ptep, entry);
}

/**
 * wp_can_reuse_anon_folio. Small folios: only when our mapping holds the only
 * reference (after letting an unused swap-cache copy go). Large folios: only
 * when every reference is a mapping and no page is mapped twice (an
 * approximation of the kernel's per-mm mapcount tracking).
 */
function wpCanReuseAnonFolio(head: u32): bool {
  if (orderOf(head) > 0) {
    if (entireMapcount(head) != 0) return false;
    const n = <u32>1 << orderOf(head);
    for (let i: u32 = 0; i < n; i++) if (mapcount(head + i) > 1) return false;
    return refcount(head) == folioMapcount(head);
  }
  const swapcache: u32 = testFlag(head, PG_SWAPCACHE) ? 1 : 0;
  if (refcount(head) > 3) return false;
  if (refcount(head) > 1 + swapcache) return false;
  if (swapcache != 0 && swapCount(indexOf(head)) == 0) deleteFromSwapCache(head);
  return refcount(head) == 1;
}

/**
 * wp_page_copy: a new exclusive anonymous page (zeroed when the old one is the
 * zero page, else a copy), mapped in place of the old one, whose mapping
 * reference is then dropped. An unshare fault maps the copy read-only.
 * The frame changes under secondary MMUs: MMU_NOTIFY_CLEAR over the page,
 * started once the new page is allocated, ended after the PTE is replaced.
 */
function wpPageCopy(mm: Mm, vma: Vma, addr: u64, ptep: usize, e: u64, oldPfn: u32, normal: bool, unshare: bool): u32 {
  anonVmaPrepare(vma);
  const pfn = allocFolio(0);
  if (pfn == 0) return VM_FAULT_OOM;
  const page = addr & ~<u64>4095;
  mmuNotifierInvalidateStart(mm, MMU_NOTIFY_CLEAR, page, page + 4096);
  if (normal) setTag(pfn, tagOf(oldPfn));
  let entry = pfnPte(<u64>pfn, vma.pageProt);
  if (unshare) {
    if (pteSoftDirty(e)) entry = pteMksoftDirty(entry);
    if (pteUffdWp(e)) entry = pteMkuffdWp(entry);
  } else {
    entry = maybeMkwrite(pteMkdirty(entry), vma);
  }
  if (normal) {
    const head = folioHead(oldPfn);
    if (!testFlag(head, PG_ANON)) { addRss(mm, mmCounter(head), -1); addRss(mm, MM_ANONPAGES, 1); }
    addNewAnonRmap(pfn, 1, false);
    clearFlushPte(mm, ptep, addr);
    setPtes(mm, addr, ptep, entry, 1);
    addMapcount(oldPfn, -1);
    // As the kernel's folio_put after the end: the old page outlives the range.
    mmuNotifierInvalidateEnd(mm, MMU_NOTIFY_CLEAR, page, page + 4096);
    putMappedFolio(head);
    return 0;
  }
  addRss(mm, MM_ANONPAGES, 1);
  addNewAnonRmap(pfn, 1, false);
  clearFlushPte(mm, ptep, addr);
  setPtes(mm, addr, ptep, entry, 1);
  mmuNotifierInvalidateEnd(mm, MMU_NOTIFY_CLEAR, page, page + 4096);
  return 0;
}

/**
 * ptep_clear_flush: clear the old entry and flush it everywhere before the
 * new one goes in, so no CPU sees the old and the new page at once.
 */
function clearFlushPte(mm: Mm, ptep: usize, addr: u64): void {
  ptepGetAndClear(mm, addr, ptep);
  flushTlbPage(mm, addr);
}
