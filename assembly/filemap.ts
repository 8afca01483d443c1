// File faults (mm/memory.c do_read_fault / do_cow_fault / do_shared_fault,
// mm/filemap.c filemap_map_pages, mm/shmem.c shmem_get_folio): page-cache
// pages mapped into a VMA, fault-around on reads, private copies on writes.

import { Mm, addRss } from "./mm";
import { Vma, anonVmaPrepare, linearPageIndex, maybeMkwrite } from "./vma";
import { pteNone, pteWrite, pteMkdirty, pteMkold, pteMkuffdWp, pfnPte, ARM64, hwAF } from "./arch/index";
import { allocFolio, folioHead, tagOf, setTag, testFlag, setFlag, setIndex, PG_SWAPBACKED, PG_DIRTY, PG_LRU } from "./frames";
import { addNewAnonRmap, addFileRmap } from "./rmap";
import { File, fileOf, cacheLookup, cacheSlot, CACHE_PAGE, CACHE_SWAP, doPageMkwrite } from "./file";
import { swapTag, swapFree } from "./swap";
import { setPtes } from "./arch/contpte";
import { handleUserfault } from "./uffd";
import { VM_SHARED, VM_UFFD_MISSING, VM_FAULT_OOM, VM_FAULT_SIGBUS, VM_FAULT_MAJOR, FAULT_FLAG_WRITE, MM_ANONPAGES, PMD_SIZE } from "./constants";

/** fault_around_bytes (in pages); 1 disables fault-around. */
export let faultAroundPages: u32 = 16;
export function setFaultAroundPages(n: u32): void { faultAroundPages = n == 0 ? 1 : n; }

/** do_fault: read (with fault-around), COW or shared fault on a file VMA. */
export function doFault(mm: Mm, vma: Vma, addr: u64, ptep: usize, flags: u32, uffdWp: bool): u32 {
  const f = fileOf(vma.file);
  const pgoff = linearPageIndex(vma, addr);
  if (pgoff >= f.sizePages) return VM_FAULT_SIGBUS;
  const write = (flags & FAULT_FLAG_WRITE) != 0;
  let ret: u32 = 0;
  // shmem_get_folio with a missing-mode userfaultfd: no page in the cache is the monitor's to provide.
  if ((vma.flags & VM_UFFD_MISSING) != 0 && cacheLookup(f, pgoff) == 0) return handleUserfault(vma, addr, flags, VM_UFFD_MISSING);

  if (!write) {
    if (!uffdWp && faultAroundPages > 1) doFaultAround(mm, vma, addr, ptep);
    if (!pteNone(load<u64>(ptep))) return 0;
    const pfn = filemapFault(f, pgoff);
    if (pfn == 0) return VM_FAULT_OOM;
    if (pfn == <u32>-1) return VM_FAULT_SIGBUS;
    if (lastFaultMajor) ret |= VM_FAULT_MAJOR;
    setPteRange(mm, vma, addr, ptep, pfn, false, false, uffdWp);
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
    setPtes(mm, addr, ptep, entry, 1);
    return ret;
  }

  // do_shared_fault: ->page_mkwrite first, then map writable and dirty.
  const page = filemapFault(f, pgoff);
  if (page == 0) return VM_FAULT_OOM;
  if (page == <u32>-1) return VM_FAULT_SIGBUS;
  if (lastFaultMajor) ret |= VM_FAULT_MAJOR;
  const mk = doPageMkwrite(f, pgoff, mm.id, addr);
  if (mk != 0) return mk;
  setPteRange(mm, vma, addr, ptep, page, true, false, uffdWp);
  setFlag(folioHead(page), PG_DIRTY);
  return ret;
}

/** set_pte_range for one page-cache page: young unless prefaulted on arm64, dirty on write. */
function setPteRange(mm: Mm, vma: Vma, addr: u64, ptep: usize, pfn: u32, write: bool, prefault: bool, uffdWp: bool): void {
  let entry = pfnPte(<u64>pfn, vma.pageProt);
  // arch_wants_old_prefaulted_pte: arm64 with hardware AF maps fault-around pages old.
  if (prefault && ARM64 && hwAF) entry = pteMkold(entry);
  if (write) entry = maybeMkwrite(pteMkdirty(entry), vma);
  else if (pteWrite(entry) && testFlag(folioHead(pfn), PG_DIRTY)) entry = pteMkdirty(entry);
  if (uffdWp) entry = pteMkuffdWp(entry);
  addFileRmap(mm, pfn);
  setPtes(mm, addr, ptep, entry, 1);
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
    setPteRange(mm, vma, a, p, <u32>(v >> 2), false, a != addr, false);
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
