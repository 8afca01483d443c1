// Page-fault handling (mm/memory.c, mm/huge_memory.c): what the kernel does
// when the MMU could not complete an access. Returns vm_fault_t bits; 0 means
// "fixed, retry the access".

import { Mm, addRss } from "./mm";
import { Vma, vmaLookup, anonVmaPrepare, linearPageIndex } from "./vma";
import { allocTable, freeTable, tablePtr, depositTable, entryPtr, pmdTableLookup } from "./pgtable";
import {
  pteNone, ptePresent, pteProtnone, pteWrite, pteMkwrite, pteMkdirty, pteMkyoung, pteMkold, pteMkspecial, pteModify,
  pfnPte, leafPfn, pmdModify, pteSoftDirty, pteUffdWp, isTableEntry, isUpperLeaf, mkTableEntry, tableEntryPfn,
  pfnHuge, swpType, swpOffset, swpExclusiveBit, swpSoftDirtyBit, swpUffdWpBit, pteMksoftDirty, pteMkuffdWp,
  pteSpecial, ARM64, hwAF, SWP_PTE_MARKER, SWP_HWPOISON, MAX_SWAPFILES, PTE_MARKER_POISONED, PTE_MARKER_GUARD,
  PTE_MARKER_UFFD_WP,
} from "./arch/index";
import {
  allocFolio, zeroPfn, isZeroPfn, getHugeZeroFolio, folioHead, tagOf, setTag, testFlag, setFlag, refcount,
  folioRefAdd, setIndex, indexOf, orderOf, mapcount, addMapcount, entireMapcount, folioPut, PG_ANON, PG_EXCLUSIVE,
  PG_SWAPBACKED, PG_SWAPCACHE, PG_DIRTY, PG_LRU,
} from "./frames";
import { addNewAnonRmap, mmCounter, putMappedFolio, addFileRmap, deleteFromSwapCache, folioMapcount } from "./rmap";
import { File, fileOf, cacheLookup, cacheSlot, CACHE_PAGE, CACHE_SWAP, FILE_WRITENOTIFY } from "./file";
import { swapCachePfn, swapTag, swapFree, swapCacheSet, swapCount } from "./swap";
import { splitHugePmd } from "./thp";
import {
  VM_WRITE, VM_SHARED, VM_MAYSHARE, VM_EXEC, VM_ACCESS_FLAGS, VM_HUGEPAGE, VM_NOHUGEPAGE, VM_UFFD_WP, VM_FAULT_OOM,
  VM_FAULT_SIGBUS, VM_FAULT_SIGSEGV, VM_FAULT_MAJOR, VM_FAULT_HWPOISON, VM_FAULT_FALLBACK, FAULT_FLAG_WRITE,
  FAULT_FLAG_INSTRUCTION, FAULT_FLAG_UNSHARE, MM_ANONPAGES, MM_SWAPENTS, THP_ALWAYS, THP_MADVISE, PMD_SIZE,
} from "./constants";

/** /sys/kernel/mm/transparent_hugepage/enabled and use_zero_page. */
export let thpPolicy: u32 = 1;
export let thpUseZeroPage = true;
/** fault_around_bytes (in pages); 1 disables fault-around. */
export let faultAroundPages: u32 = 16;
export function setThpPolicy(p: u32, useZero: bool): void { thpPolicy = p; thpUseZeroPage = useZero; }
export function setFaultAroundPages(n: u32): void { faultAroundPages = n == 0 ? 1 : n; }

/** Counters for m.stats. */
export let thpFaultAlloc: u64 = 0;
export let thpFaultFallback: u64 = 0;

// ---- table access for one address -----------------------------------------------------

/** pfn of the PMD table the last pmdOffsetAlloc went through (for deposits). */
export let faultPmdTable: u32 = 0;

/** Walks to the PMD entry for addr, allocating upper tables; 0 when out of memory. */
export function pmdOffsetAlloc(mm: Mm, addr: u64): usize {
  const table = pmdTableLookup(mm, addr, true);
  if (table == 0) return 0;
  faultPmdTable = table;
  return entryPtr(table, addr, 1);
}

/**
 * Read-only walk to the entry mapping addr: the PTE, or the upper entry that
 * ends the walk (none or a huge leaf). Returns its pointer; lookupLevel says
 * which level it is at.
 */
export let lookupLevel: u32 = 0;
export function leafLookup(mm: Mm, addr: u64): usize {
  const pmdTable = pmdTableLookup(mm, addr, false);
  if (pmdTable != 0) {
    const pmdp = entryPtr(pmdTable, addr, 1);
    const pmd = load<u64>(pmdp);
    if (!isTableEntry(pmd)) { lookupLevel = 1; return pmdp; }
    lookupLevel = 0;
    return tablePtr(<u32>tableEntryPfn(pmd)) + (<usize>((addr >> 12) & 511) << 3);
  }
  let table = mm.root;
  for (let level = mm.levels - 1; ; level--) {
    const ep = entryPtr(table, addr, level);
    if (level == 0) { lookupLevel = 0; return ep; }
    const e = load<u64>(ep);
    if (e == 0) { lookupLevel = level; return ep; }
    if (!isTableEntry(e)) { lookupLevel = level; return ep; }
    table = <u32>tableEntryPfn(e);
  }
  return 0;
}

// ---- entry point --------------------------------------------------------------------------

/** handle_mm_fault for a user access at addr. */
export function handleMmFault(mm: Mm, addr: u64, flags: u32): u32 {
  const vma = vmaLookup(mm, addr);
  if (vma == null) return VM_FAULT_SIGSEGV;
  // access_error(): a write needs VM_WRITE, an exec VM_EXEC, a read any access.
  if ((flags & FAULT_FLAG_WRITE) != 0) {
    if ((vma.flags & VM_WRITE) == 0) return VM_FAULT_SIGSEGV;
  } else if ((flags & FAULT_FLAG_INSTRUCTION) != 0) {
    if ((vma.flags & VM_EXEC) == 0) return VM_FAULT_SIGSEGV;
  } else if ((vma.flags & VM_ACCESS_FLAGS) == 0) return VM_FAULT_SIGSEGV;

  const ret = handleFaultInVma(mm, vma, addr, flags);
  if ((ret & (VM_FAULT_OOM | VM_FAULT_SIGBUS | VM_FAULT_SIGSEGV | VM_FAULT_HWPOISON)) == 0) {
    if ((ret & VM_FAULT_MAJOR) != 0) mm.majFlt++; else mm.minFlt++;
  }
  return ret;
}

function handleFaultInVma(mm: Mm, vma: Vma, addr: u64, flags: u32): u32 {
  const pmdp = pmdOffsetAlloc(mm, addr);
  if (pmdp == 0) return VM_FAULT_OOM;
  const pmdTable = faultPmdTable;
  let pmd = load<u64>(pmdp);
  if (pmd == 0 && thpVmaAllowable(vma, addr)) {
    const r = doHugePmdAnonymousPage(mm, vma, addr, pmdp, pmdTable, flags);
    if ((r & VM_FAULT_FALLBACK) == 0) return r;
    pmd = load<u64>(pmdp);
  } else if (isUpperLeaf(pmd)) {
    const r = huge_pmd_fault(mm, vma, addr, pmdp, pmdTable, flags);
    if ((r & VM_FAULT_FALLBACK) == 0) return r;
    pmd = load<u64>(pmdp);
  }
  if (pmd == 0) {
    const t = allocTable(mm);
    if (t == 0) return VM_FAULT_OOM;
    pmd = mkTableEntry(<u64>t);
    store<u64>(pmdp, pmd);
  }
  if (!isTableEntry(pmd)) return VM_FAULT_SIGBUS;
  const ptep = tablePtr(<u32>tableEntryPfn(pmd)) + (<usize>((addr >> 12) & 511) << 3);
  return handlePteFault(mm, vma, addr, ptep, flags);
}

// ---- PTE level ------------------------------------------------------------------------

function handlePteFault(mm: Mm, vma: Vma, addr: u64, ptep: usize, flags: u32): u32 {
  const e = load<u64>(ptep);
  if (pteNone(e)) {
    if (vma.file == 0) return doAnonymousPage(mm, vma, addr, ptep, flags, false);
    return doFault(mm, vma, addr, ptep, flags, false);
  }
  if (!ptePresent(e)) return doSwapPage(mm, vma, addr, ptep, flags);
  if (pteProtnone(e)) {
    // do_numa_page: the VMA is accessible (checked), so the entry only lost
    // its permissions to a hinting fault: restore the VMA's protection.
    store<u64>(ptep, pteMkyoung(pteModify(e, vma.pageProt)));
    return 0;
  }
  if ((flags & (FAULT_FLAG_WRITE | FAULT_FLAG_UNSHARE)) != 0 && !pteWrite(e)) return doWpPage(mm, vma, addr, ptep, flags);
  let entry = e;
  if ((flags & FAULT_FLAG_WRITE) != 0) entry = pteMkdirty(entry);
  entry = pteMkyoung(entry);
  if (entry != e) store<u64>(ptep, entry);   // ptep_set_access_flags
  return 0;
}

/** maybe_mkwrite: write permission only where the VMA allows writes. */
// @ts-ignore: decorator
@inline function maybeMkwrite(e: u64, vma: Vma): u64 { return (vma.flags & VM_WRITE) != 0 ? pteMkwrite(e) : e; }

/** do_anonymous_page. `uffdWp` carries a uffd-wp marker that was in the slot. */
function doAnonymousPage(mm: Mm, vma: Vma, addr: u64, ptep: usize, flags: u32, uffdWp: bool): u32 {
  if ((vma.flags & VM_SHARED) != 0) return VM_FAULT_SIGBUS;
  if ((flags & FAULT_FLAG_WRITE) == 0) {
    let entry = pteMkspecial(pfnPte(<u64>zeroPfn, vma.pageProt));
    if (uffdWp) entry = pteMkuffdWp(entry);
    store<u64>(ptep, entry);
    return 0;
  }
  anonVmaPrepare(vma);
  const pfn = allocFolio(0);
  if (pfn == 0) return VM_FAULT_OOM;
  let entry = pfnPte(<u64>pfn, vma.pageProt);
  if ((vma.flags & VM_WRITE) != 0) entry = pteMkwrite(pteMkdirty(entry));
  if (uffdWp) entry = pteMkuffdWp(entry);
  addRss(mm, MM_ANONPAGES, 1);
  addNewAnonRmap(pfn, 1, false);
  store<u64>(ptep, entry);
  return 0;
}

/** do_fault: read (with fault-around), COW or shared fault on a file VMA. */
function doFault(mm: Mm, vma: Vma, addr: u64, ptep: usize, flags: u32, uffdWp: bool): u32 {
  const f = fileOf(vma.file);
  const pgoff = linearPageIndex(vma, addr);
  if (pgoff >= f.sizePages) return VM_FAULT_SIGBUS;
  const write = (flags & FAULT_FLAG_WRITE) != 0;
  let ret: u32 = 0;

  if (!write) {
    if (!uffdWp && faultAroundPages > 1) doFaultAround(mm, vma, addr, ptep);
    if (!pteNone(load<u64>(ptep))) return 0;
    const pfn = filemapFault(f, pgoff);
    if (pfn == 0) return VM_FAULT_OOM;
    if (pfn == <u32>-1) return VM_FAULT_SIGBUS;
    if (lastFaultMajor) ret |= VM_FAULT_MAJOR;
    setPteRange(mm, vma, ptep, pfn, false, false, uffdWp);
    return ret;
  }

  if ((vma.flags & VM_SHARED) == 0) {
    // do_cow_fault: a private copy of the file page.
    anonVmaPrepare(vma);
    const page = filemapFault(f, pgoff);
    if (page == 0) return VM_FAULT_OOM;
    if (page == <u32>-1) return VM_FAULT_SIGBUS;
    if (lastFaultMajor) ret |= VM_FAULT_MAJOR;
    const copy = allocFolio(0);
    if (copy == 0) return VM_FAULT_OOM;
    setTag(copy, tagOf(page));
    let entry = maybeMkwrite(pteMkdirty(pfnPte(<u64>copy, vma.pageProt)), vma);
    if (uffdWp) entry = pteMkuffdWp(entry);
    addRss(mm, MM_ANONPAGES, 1);
    addNewAnonRmap(copy, 1, false);
    store<u64>(ptep, entry);
    return ret;
  }

  // do_shared_fault: ->page_mkwrite first, then map writable and dirty.
  const page = filemapFault(f, pgoff);
  if (page == 0) return VM_FAULT_OOM;
  if (page == <u32>-1) return VM_FAULT_SIGBUS;
  if (lastFaultMajor) ret |= VM_FAULT_MAJOR;
  if ((f.flags & FILE_WRITENOTIFY) != 0) f.mkwriteCount++;
  setPteRange(mm, vma, ptep, page, true, false, uffdWp);
  setFlag(folioHead(page), PG_DIRTY);
  return ret;
}

/** set_pte_range for one page-cache page: young unless prefaulted on arm64, dirty on write. */
function setPteRange(mm: Mm, vma: Vma, ptep: usize, pfn: u32, write: bool, prefault: bool, uffdWp: bool): void {
  let entry = pfnPte(<u64>pfn, vma.pageProt);
  // arch_wants_old_prefaulted_pte: arm64 with hardware AF maps fault-around pages old.
  if (prefault && ARM64 && hwAF) entry = pteMkold(entry);
  if (write) entry = maybeMkwrite(pteMkdirty(entry), vma);
  else if (pteWrite(entry) && testFlag(folioHead(pfn), PG_DIRTY)) entry = pteMkdirty(entry);
  if (uffdWp) entry = pteMkuffdWp(entry);
  addFileRmap(mm, pfn);
  store<u64>(ptep, entry);
}

/**
 * do_fault_around / filemap_map_pages: maps the pages of the fault_around_bytes
 * window (clipped to the VMA and the PTE table) that are already in the page
 * cache, into slots that are still none.
 */
function doFaultAround(mm: Mm, vma: Vma, addr: u64, ptep: usize): void {
  const win: u64 = <u64>faultAroundPages << 12;
  let from = addr & ~(win - 1);
  let to = from + win;
  const pmdStart = addr & ~(PMD_SIZE - 1);
  if (from < vma.start) from = vma.start;
  if (from < pmdStart) from = pmdStart;
  if (to > vma.end) to = vma.end;
  if (to > pmdStart + PMD_SIZE) to = pmdStart + PMD_SIZE;
  const f = fileOf(vma.file);
  for (let a = from; a < to; a += 4096) {
    const p = ptep + <usize>(<i64>(a - addr) >> 9);
    if (!pteNone(load<u64>(p))) continue;
    const pgoff = linearPageIndex(vma, a);
    if (pgoff >= f.sizePages) break;
    const v = cacheLookup(f, pgoff);
    if ((v & 3) != CACHE_PAGE) continue;
    setPteRange(mm, vma, p, <u32>(v >> 2), false, a != addr, false);
  }
}

/** Whether the last filemapFault had to bring the page back from swap. */
export let lastFaultMajor = false;

/**
 * shmem_get_folio / filemap_fault: the cache page for pgoff, allocated (zero)
 * for a hole or swapped back in; 0 when out of memory, -1 beyond EOF.
 * The returned page's reference is the cache's; callers take their own.
 */
export function filemapFault(f: File, pgoff: u64): u32 {
  lastFaultMajor = false;
  if (pgoff >= f.sizePages) return <u32>-1;
  const slot = cacheSlot(f, pgoff);
  if (slot == 0) return 0;
  const v = load<u64>(slot);
  if ((v & 3) == CACHE_PAGE) return <u32>(v >> 2);
  const pfn = allocFolio(0);
  if (pfn == 0) return 0;
  setFlag(pfn, PG_SWAPBACKED | PG_LRU);
  setIndex(pfn, <u32>pgoff);
  if ((v & 3) == CACHE_SWAP) {
    // shmem_swapin_folio: content comes back, the slot is released, the page is dirty.
    const s = <u32>(v >> 2);
    setTag(pfn, swapTag(s));
    swapFree(s);
    f.nrSwapped--;
    setFlag(pfn, PG_DIRTY);
    lastFaultMajor = true;
  }
  store<u64>(slot, (<u64>pfn << 2) | CACHE_PAGE);
  f.nrPages++;
  return pfn;
}

/** do_swap_page: markers, and genuine swap entries through the swap cache. */
function doSwapPage(mm: Mm, vma: Vma, addr: u64, ptep: usize, flags: u32): u32 {
  const e = load<u64>(ptep);
  const type = swpType(e);
  if (type == SWP_PTE_MARKER) return handlePteMarker(mm, vma, addr, ptep, flags, swpOffset(e));
  if (type == SWP_HWPOISON) return VM_FAULT_HWPOISON;
  if (type >= MAX_SWAPFILES) return VM_FAULT_SIGBUS;

  const slot = <u32>swpOffset(e);
  let pfn = swapCachePfn(slot);
  let ret: u32 = 0;
  if (pfn == 0) {
    // swapin_readahead (no readahead): a new page in the swap cache, holding the cache's reference.
    pfn = allocFolio(0);
    if (pfn == 0) return VM_FAULT_OOM;
    setTag(pfn, swapTag(slot));
    setFlag(pfn, PG_ANON | PG_SWAPBACKED | PG_SWAPCACHE | PG_LRU);
    setIndex(pfn, slot);
    swapCacheSet(slot, pfn);
    ret = VM_FAULT_MAJOR;
  }
  folioRefAdd(pfn, 1);             // the reference our PTE will hold
  const exclusive = (e & swpExclusiveBit()) != 0;
  let write = (flags & FAULT_FLAG_WRITE) != 0;

  swapFree(slot);
  addRss(mm, MM_SWAPENTS, -1);
  addRss(mm, MM_ANONPAGES, 1);
  // should_try_to_free_swap: a write fault that will own the page lets the swap copy go.
  if (write && refcount(pfn) == 2 && swapCount(slot) == 0) deleteFromSwapCache(pfn);

  let entry = pfnPte(<u64>pfn, vma.pageProt);
  if ((e & swpSoftDirtyBit()) != 0) entry = pteMksoftDirty(entry);
  const uffdWp = (e & swpUffdWpBit()) != 0;
  if (uffdWp) entry = pteMkuffdWp(entry);
  if (exclusive || refcount(pfn) == 1) {
    if ((vma.flags & VM_WRITE) != 0 && !(uffdWp && (vma.flags & VM_UFFD_WP) != 0)) {
      entry = pteMkwrite(entry);
      if (write) { entry = pteMkdirty(entry); write = false; }
    }
    setFlag(pfn, PG_EXCLUSIVE);
  }
  anonVmaPrepare(vma);
  setFlag(pfn, PG_ANON | PG_SWAPBACKED);
  addMapcount(pfn, 1);
  store<u64>(ptep, entry);
  if (write) ret |= doWpPage(mm, vma, addr, ptep, flags);
  return ret;
}

/** handle_pte_marker: poison wins over uffd-wp; a leftover uffd-wp marker is dropped and the fault retried. */
function handlePteMarker(mm: Mm, vma: Vma, addr: u64, ptep: usize, flags: u32, marker: u64): u32 {
  if (marker == 0) return VM_FAULT_SIGBUS;
  if ((marker & PTE_MARKER_POISONED) != 0) return VM_FAULT_HWPOISON;
  if ((marker & PTE_MARKER_GUARD) != 0) return VM_FAULT_SIGSEGV;
  if ((marker & PTE_MARKER_UFFD_WP) != 0) {
    if ((vma.flags & VM_UFFD_WP) == 0) {
      store<u64>(ptep, 0);      // pte_marker_clear
      return 0;
    }
    store<u64>(ptep, 0);
    if (vma.file == 0) return doAnonymousPage(mm, vma, addr, ptep, flags, true);
    return doFault(mm, vma, addr, ptep, flags, true);
  }
  return VM_FAULT_SIGBUS;
}

/**
 * do_wp_page: a write (or unshare) fault on a present, read-only PTE.
 * Shared mappings call ->page_mkwrite and reuse the page; private ones reuse
 * an exclusive anonymous page and copy anything else (COW).
 */
export function doWpPage(mm: Mm, vma: Vma, addr: u64, ptep: usize, flags: u32): u32 {
  const e = load<u64>(ptep);
  const pfn = <u32>leafPfn(e, 0);
  const normal = !pteSpecial(e) && !isZeroPfn(pfn);

  if ((vma.flags & (VM_SHARED | VM_MAYSHARE)) != 0) {
    if (normal && vma.file != 0) {
      const f = fileOf(vma.file);
      if ((f.flags & FILE_WRITENOTIFY) != 0) f.mkwriteCount++;   // wp_page_shared -> do_page_mkwrite
      setFlag(folioHead(pfn), PG_DIRTY);
    }
    wpPageReuse(vma, ptep, e);
    return 0;
  }

  if (normal) {
    const head = folioHead(pfn);
    if (testFlag(head, PG_ANON)) {
      if (testFlag(pfn, PG_EXCLUSIVE) || wpCanReuseAnonFolio(head)) {
        setFlag(pfn, PG_EXCLUSIVE);
        if ((flags & FAULT_FLAG_UNSHARE) != 0) return 0;
        wpPageReuse(vma, ptep, e);
        return 0;
      }
    }
  }
  return wpPageCopy(mm, vma, addr, ptep, e, pfn, normal, (flags & FAULT_FLAG_UNSHARE) != 0);
}

/** wp_page_reuse: young, dirty, writable where the VMA allows; no copy and no flush (a permission upgrade). */
function wpPageReuse(vma: Vma, ptep: usize, e: u64): void {
  store<u64>(ptep, maybeMkwrite(pteMkdirty(pteMkyoung(e)), vma));
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
 */
function wpPageCopy(mm: Mm, vma: Vma, addr: u64, ptep: usize, e: u64, oldPfn: u32, normal: bool, unshare: bool): u32 {
  anonVmaPrepare(vma);
  const pfn = allocFolio(0);
  if (pfn == 0) return VM_FAULT_OOM;
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
    store<u64>(ptep, entry);
    addMapcount(oldPfn, -1);
    putMappedFolio(head);
  } else {
    addRss(mm, MM_ANONPAGES, 1);
    addNewAnonRmap(pfn, 1, false);
    store<u64>(ptep, entry);
  }
  return 0;
}

// ---- huge PMDs ------------------------------------------------------------------------------

/** thp_vma_allowable_order for an anonymous fault at PMD order. */
function thpVmaAllowable(vma: Vma, addr: u64): bool {
  if (vma.file != 0 || (vma.flags & VM_SHARED) != 0) return false;
  if ((vma.flags & VM_NOHUGEPAGE) != 0) return false;
  if (thpPolicy == THP_ALWAYS) {} else if (thpPolicy == THP_MADVISE) {
    if ((vma.flags & VM_HUGEPAGE) == 0) return false;
  } else return false;
  if ((vma.flags & VM_UFFD_WP) != 0) return false;    // uffd-armed VMAs fault per page
  const haddr = addr & ~(PMD_SIZE - 1);
  return haddr >= vma.start && haddr + PMD_SIZE <= vma.end;
}

/** do_huge_pmd_anonymous_page: the huge zero page on a read, a fresh PMD-size folio on a write. */
function doHugePmdAnonymousPage(mm: Mm, vma: Vma, addr: u64, pmdp: usize, pmdTable: u32, flags: u32): u32 {
  const write = (flags & FAULT_FLAG_WRITE) != 0;
  anonVmaPrepare(vma);
  if (!write && thpUseZeroPage) {
    const pgtable = allocTable(mm);
    if (pgtable == 0) return VM_FAULT_OOM;
    const hz = getHugeZeroFolio();
    if (hz == 0) { freeTable(mm, pgtable); return VM_FAULT_FALLBACK; }
    depositTable(pmdTable, pgtable);
    store<u64>(pmdp, pteMkspecial(pfnHuge(<u64>hz, vma.pageProt, 1)));
    return 0;
  }
  const r = installAnonThp(mm, vma, pmdp, pmdTable);
  if (r == VM_FAULT_FALLBACK) thpFaultFallback++;
  return r;
}

/** Allocates a PMD-size anonymous folio and maps it writable and dirty at pmdp. */
function installAnonThp(mm: Mm, vma: Vma, pmdp: usize, pmdTable: u32): u32 {
  const folio = allocFolio(9);
  if (folio == 0) return VM_FAULT_FALLBACK;
  const pgtable = allocTable(mm);
  if (pgtable == 0) { folioPut(folio); return VM_FAULT_FALLBACK; }
  depositTable(pmdTable, pgtable);
  let entry = pfnHuge(<u64>folio, vma.pageProt, 1);
  if ((vma.flags & VM_WRITE) != 0) entry = pteMkwrite(pteMkdirty(entry));
  addNewAnonRmap(folio, 512, true);
  addRss(mm, MM_ANONPAGES, 512);
  store<u64>(pmdp, entry);
  thpFaultAlloc++;
  return 0;
}

/** Faults on a huge PMD: write-protect handling (do_huge_pmd_wp_page), access flags, or fallback to PTEs. */
function huge_pmd_fault(mm: Mm, vma: Vma, addr: u64, pmdp: usize, pmdTable: u32, flags: u32): u32 {
  const pmd = load<u64>(pmdp);
  const write = (flags & FAULT_FLAG_WRITE) != 0;
  if (pteProtnone(pmd)) {
    // do_huge_pmd_numa_page: the VMA is accessible, restore its protection.
    store<u64>(pmdp, pteMkyoung(pmdModify(pmd, vma.pageProt)));
    return 0;
  }
  if (write && !pteWrite(pmd)) {
    const pfn = <u32>leafPfn(pmd, 1);
    if (isZeroPfn(pfn)) {
      // do_huge_zero_wp_pmd: replace the huge zero page by a fresh THP, else fall back to PTEs.
      const folio = allocFolio(9);
      if (folio != 0) {
        let entry = pfnHuge(<u64>folio, vma.pageProt, 1);
        if ((vma.flags & VM_WRITE) != 0) entry = pteMkwrite(pteMkdirty(entry));
        addNewAnonRmap(folio, 512, true);
        addRss(mm, MM_ANONPAGES, 512);
        store<u64>(pmdp, entry);
        thpFaultAlloc++;
        return 0;
      }
      return splitToPtes(mm, vma, pmdp, pmdTable);
    }
    const head = folioHead(pfn);
    if (testFlag(head, PG_ANON) && (testFlag(head, PG_EXCLUSIVE) || refcount(head) == 1)) {
      setFlag(head, PG_EXCLUSIVE);
      store<u64>(pmdp, maybeMkwrite(pteMkdirty(pteMkyoung(pmd)), vma));
      return 0;
    }
    return splitToPtes(mm, vma, pmdp, pmdTable);
  }
  // huge_pmd_set_accessed
  let entry = pteMkyoung(pmd);
  if (write) entry = pteMkdirty(entry);
  store<u64>(pmdp, entry);
  return 0;
}

function splitToPtes(mm: Mm, vma: Vma, pmdp: usize, pmdTable: u32): u32 {
  if (!splitHugePmd(mm, vma, pmdp, pmdTable)) return VM_FAULT_OOM;
  return VM_FAULT_FALLBACK;
}
