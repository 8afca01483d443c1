// Transparent huge pages (mm/huge_memory.c): PMD-size anonymous faults with
// the huge zero page, write faults on huge PMDs, and splitting a huge PMD.
//
// __split_huge_pmd_locked: the 512 PTEs map consecutive pages of the same
// folio with the PMD's attributes (write, young, dirty, soft-dirty, uffd-wp)
// on top of the VMA's vm_page_prot. The folio stays one large folio, now
// PTE-mapped: its entire mapcount moves to 512 page mapcounts and the PMD's
// one reference becomes 512. The PTE table is the one deposited when the huge
// PMD was created, so a split never allocates.

import { Mm, addRss } from "./mm";
import { Vma, anonVmaPrepare, maybeMkwrite, linearPageIndex } from "./vma";
import { allocTable, freeTable, tablePtr, depositTable, withdrawTable } from "./pgtable";
import {
  leafPfn, pfnPte, pfnHuge, pteWrite, pteYoung, pteDirty, pteSoftDirty, pteUffdWp, pteMkwrite, pteMkold, pteMkdirty,
  pteMkyoung, pteMksoftDirty, pteMkuffdWp, pteMkspecial, pteProtnone, pmdModify, mkTableEntry, ptePresent, pteMkcont,
} from "./arch/index";
import {
  allocFolio, folioPut, freeFolio, getHugeZeroFolio, isZeroPfn, folioHead, addMapcount, addEntireMapcount, folioRefAdd, testFlag,
  setFlag, refcount, zeroPfn, orderOf, entireMapcount, mapcount, info, setInfo, setRefcount, indexOf, setIndex,
  PG_EXCLUSIVE, PG_ANON, PG_DIRTY, PG_SWAPBACKED, PG_LRU, MAPCOUNT_MASK, ORDER_SHIFT, KIND_SHIFT,
} from "./frames";
import { addNewAnonRmap, mmCounter, folioMapcount } from "./rmap";
import { File, fileOf, cacheLookup, cacheSlot, doPageMkwrite, CACHE_PAGE, FILE_HUGE } from "./file";
import { flushTlbRange } from "./flush";
import { contpteMm } from "./arch/contpte";
import { handleUserfault, uffdWpAsync } from "./uffd";
import { mmuNotifierInvalidateStart, mmuNotifierInvalidateEnd, MMU_NOTIFY_CLEAR } from "./notifier";
import {
  VM_WRITE, VM_SHARED, VM_HUGEPAGE, VM_NOHUGEPAGE, VM_UFFD_WP, VM_FAULT_OOM, VM_FAULT_FALLBACK, FAULT_FLAG_WRITE, FAULT_FLAG_UNSHARE,
  MM_ANONPAGES, THP_ALWAYS, THP_MADVISE, PMD_SIZE,
} from "./constants";

/** /sys/kernel/mm/transparent_hugepage/enabled and use_zero_page. */
export let thpPolicy: u32 = 1;
export let thpUseZeroPage = true;
export function setThpPolicy(p: u32, useZero: bool): void { thpPolicy = p; thpUseZeroPage = useZero; }

/** /proc/vmstat counters: thp_fault_alloc, thp_fault_fallback, thp_split_pmd. */
export let thpFaultAlloc: u64 = 0;
export let thpFaultFallback: u64 = 0;
export let thpSplitPmd: u64 = 0;

/** /proc/vmstat thp_file_alloc, thp_file_mapped: shmem huge folios allocated and PMD mappings made of them. */
export let thpFileAlloc: u64 = 0;
export let thpFileMapped: u64 = 0;

/** thp_vma_allowable_order for an anonymous fault at PMD order. */
export function thpVmaAllowable(vma: Vma, addr: u64): bool {
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
export function doHugePmdAnonymousPage(mm: Mm, vma: Vma, addr: u64, pmdp: usize, pmdTable: u32, flags: u32): u32 {
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

/** Allocates a PMD-size anonymous folio with its deposited table and maps it at pmdp. */
function installAnonThp(mm: Mm, vma: Vma, pmdp: usize, pmdTable: u32): u32 {
  const folio = allocFolio(9);
  if (folio == 0) return VM_FAULT_FALLBACK;
  const pgtable = allocTable(mm);
  if (pgtable == 0) { folioPut(folio); return VM_FAULT_FALLBACK; }
  depositTable(pmdTable, pgtable);
  mapAnonThp(mm, vma, pmdp, folio);
  return 0;
}

/** The huge PMD of a new anonymous folio: young, and writable and dirty where the VMA allows writes. */
function mapAnonThp(mm: Mm, vma: Vma, pmdp: usize, folio: u32): void {
  let entry = pfnHuge(<u64>folio, vma.pageProt, 1);
  if ((vma.flags & VM_WRITE) != 0) entry = pteMkwrite(pteMkdirty(entry));
  addNewAnonRmap(folio, 512, true);
  addRss(mm, MM_ANONPAGES, 512);
  store<u64>(pmdp, entry);
  thpFaultAlloc++;
}

/** Faults on a huge PMD: write-protect handling (do_huge_pmd_wp_page), access flags, or fallback to PTEs. */
export function hugePmdFault(mm: Mm, vma: Vma, addr: u64, pmdp: usize, pmdTable: u32, flags: u32): u32 {
  const pmd = load<u64>(pmdp);
  const write = (flags & FAULT_FLAG_WRITE) != 0;
  const unshare = (flags & FAULT_FLAG_UNSHARE) != 0;
  if (pteProtnone(pmd)) {
    // do_huge_pmd_numa_page: the VMA is accessible, restore its protection.
    store<u64>(pmdp, pteMkyoung(pmdModify(pmd, vma.pageProt)));
    return 0;
  }
  // wp_huge_pmd: a uffd-wp huge PMD reports the write (sync) or is split so that the bit goes page by page (async).
  if (write && (vma.flags & VM_UFFD_WP) != 0 && pteUffdWp(pmd) && ptePresent(pmd)) {
    if (!uffdWpAsync(vma)) return handleUserfault(vma, addr, flags, VM_UFFD_WP);
    return splitToPtes(mm, vma, pmdp, pmdTable, addr);
  }
  if ((write || unshare) && !pteWrite(pmd)) {
    const pfn = <u32>leafPfn(pmd, 1);
    if (unshare && isZeroPfn(pfn)) return splitToPtes(mm, vma, pmdp, pmdTable, addr);
    if (isZeroPfn(pfn)) {
      // do_huge_zero_wp_pmd: replace the huge zero page by a fresh THP, else fall back to PTEs.
      const folio = allocFolio(9);
      if (folio != 0) {
        // pmdp_huge_clear_flush, then the new folio; the deposited table stays with the PMD.
        const haddr = addr & ~(PMD_SIZE - 1);
        mmuNotifierInvalidateStart(mm, MMU_NOTIFY_CLEAR, haddr, haddr + PMD_SIZE);
        store<u64>(pmdp, 0);
        flushTlbRange(mm, haddr, haddr + PMD_SIZE, 21);
        mapAnonThp(mm, vma, pmdp, folio);
        mmuNotifierInvalidateEnd(mm, MMU_NOTIFY_CLEAR, haddr, haddr + PMD_SIZE);
        return 0;
      }
      return splitToPtes(mm, vma, pmdp, pmdTable, addr);
    }
    const head = folioHead(pfn);
    if (testFlag(head, PG_ANON) && (testFlag(head, PG_EXCLUSIVE) || refcount(head) == 1)) {
      setFlag(head, PG_EXCLUSIVE);
      if (unshare) return 0;
      store<u64>(pmdp, maybeMkwrite(pteMkdirty(pteMkyoung(pmd)), vma));
      return 0;
    }
    return splitToPtes(mm, vma, pmdp, pmdTable, addr);
  }
  // huge_pmd_set_accessed
  let entry = pteMkyoung(pmd);
  if (write) entry = pteMkdirty(entry);
  store<u64>(pmdp, entry);
  return 0;
}

/**
 * Whether a fault at addr may map a PMD-size folio of the VMA's file (tmpfs
 * huge=always): the 2 MiB around addr lies inside the VMA, virtual and file
 * offsets agree modulo 2 MiB (thp_vma_suitable_order), and it is not a
 * private write, which copies one 4 KiB page.
 */
export function fileThpSuitable(vma: Vma, addr: u64, flags: u32): bool {
  if (vma.file == 0 || (fileOf(vma.file).flags & FILE_HUGE) == 0) return false;
  if ((vma.flags & (VM_NOHUGEPAGE | VM_UFFD_WP)) != 0) return false;
  if ((flags & FAULT_FLAG_WRITE) != 0 && (vma.flags & VM_SHARED) == 0) return false;
  if ((((vma.start >> 12) - vma.pgoff) & 511) != 0) return false;
  const haddr = addr & ~(PMD_SIZE - 1);
  return haddr >= vma.start && haddr + PMD_SIZE <= vma.end;
}

/**
 * A file fault that maps a whole huge folio (shmem_fault at PMD order, then
 * do_set_pmd): writable and dirty on a write (after ->page_mkwrite), else the
 * VMA's protection. No table is deposited for file PMDs: a split just
 * unmaps the PMD and later faults map PTEs. VM_FAULT_FALLBACK when the page
 * cache cannot give a huge folio for the range.
 */
export function doHugeFileFault(mm: Mm, vma: Vma, addr: u64, pmdp: usize, flags: u32): u32 {
  const f = fileOf(vma.file);
  const pgoff = linearPageIndex(vma, addr);
  const head = shmemHugeFolio(f, pgoff & ~<u64>511);
  if (head == 0) return VM_FAULT_FALLBACK;
  const write = (flags & FAULT_FLAG_WRITE) != 0;
  let entry = pfnHuge(<u64>head, vma.pageProt, 1);
  if (write) {
    const mk = doPageMkwrite(f, pgoff, mm.id, addr);
    if (mk != 0) return mk;
    setFlag(head, PG_DIRTY);
    entry = maybeMkwrite(pteMkdirty(entry), vma);
  }
  folioRefAdd(head, 1);
  addEntireMapcount(head, 1);
  addRss(mm, mmCounter(head), 512);
  store<u64>(pmdp, entry);
  thpFileMapped++;
  return 0;
}

/**
 * shmem_alloc_and_add_folio at PMD order: the huge folio caching pgoffs
 * [index, index + 512) (index 512-aligned), allocated when all those slots
 * are empty and inside the file. The cache holds one reference per page.
 * 0 when the range is (partly) cached in small pages or swapped, or memory is short.
 */
function shmemHugeFolio(f: File, index: u64): u32 {
  if (index + 512 > f.sizePages) return 0;
  const v = cacheLookup(f, index);
  if ((v & 3) == CACHE_PAGE) {
    const pfn = <u32>(v >> 2);
    return orderOf(pfn) == 9 && folioHead(pfn) == pfn ? pfn : 0;
  }
  for (let i: u64 = 0; i < 512; i++) if (cacheLookup(f, index + i) != 0) return 0;
  const slot0 = cacheSlot(f, index);                 // 512 aligned slots are one radix node
  if (slot0 == 0) return 0;
  const head = allocFolio(9);
  if (head == 0) return 0;
  setFlag(head, PG_SWAPBACKED | PG_LRU);
  setIndex(head, <u32>index);
  folioRefAdd(head, 511);
  for (let i: u32 = 0; i < 512; i++) store<u64>(slot0 + (<usize>i << 3), (<u64>(head + i) << 2) | CACHE_PAGE);
  f.nrPages += 512;
  thpFileAlloc++;
  return head;
}

/**
 * __split_huge_pmd for a file PMD: nothing to remap, the PMD is cleared and
 * flushed and faults will map PTEs (the folio stays whole in the page cache).
 * The PMD's dirty bit goes to the folio.
 */
function splitFileHugePmd(mm: Mm, ep: usize, haddr: u64, e: u64): void {
  store<u64>(ep, 0);
  flushTlbRange(mm, haddr, haddr + PMD_SIZE, 21);
  const head = folioHead(<u32>leafPfn(e, 1));
  if (pteDirty(e)) setFlag(head, PG_DIRTY);
  addEntireMapcount(head, -1);
  addRss(mm, mmCounter(head), -512);
  folioPut(head);
  thpSplitPmd++;
}

/**
 * split_folio to order 0 for a large folio that no PMD maps and nobody else
 * references: each page becomes its own folio holding its own mappings'
 * references and, for a page-cache folio, the cache's reference for it and
 * its own index. Returns false when the folio is busy (PMD-mapped, pinned,
 * or held by GUP).
 */
export function splitFolio(head: u32): bool {
  const order = orderOf(head);
  const n = <u32>1 << order;
  if (entireMapcount(head) != 0) return false;
  // Every large folio that is not anonymous is a page-cache folio here.
  const cached: u32 = testFlag(head, PG_ANON) ? 0 : 1;
  if (refcount(head) != folioMapcount(head) + cached * n) return false;
  const index = indexOf(head);
  const keep = info(head) & ~(MAPCOUNT_MASK | (31 << ORDER_SHIFT) | (3 << KIND_SHIFT) | PG_EXCLUSIVE);
  setRefcount(head + 1, 0);      // pincount
  setIndex(head + 1, 0);         // entire mapcount
  for (let i: u32 = 0; i < n; i++) {
    const p = head + i;
    const excl = info(p) & PG_EXCLUSIVE;
    setInfo(p, keep | excl | mapcount(p));
    setRefcount(p, mapcount(p) + cached);
    if (cached != 0) setIndex(p, index + i);
  }
  for (let i: u32 = 0; i < n; i++) if (refcount(head + i) == 0) freeFolio(head + i);
  return true;
}

function splitToPtes(mm: Mm, vma: Vma, pmdp: usize, pmdTable: u32, addr: u64): u32 {
  if (!splitHugePmd(mm, vma, pmdp, pmdTable, addr & ~(PMD_SIZE - 1))) return VM_FAULT_OOM;
  return VM_FAULT_FALLBACK;
}

/**
 * Splits the huge PMD at `ep` (mapping haddr) into a table of 512 PTEs
 * (__split_huge_pmd). The PMD is invalidated and its 2 MiB flushed before the
 * table goes in (pmdp_invalidate), so no CPU keeps a 2 MiB translation next
 * to the new 4 KiB ones. Returns false only if no deposited table exists and
 * none can be allocated.
 *
 * __split_huge_pmd brackets the split with its own MMU_NOTIFY_CLEAR over the
 * PMD, even when called inside an already notified zap or change_protection
 * (zap_pmd_range, change_pmd_range): the kernel nests the pairs, and so do we.
 */
export function splitHugePmd(mm: Mm, vma: Vma, ep: usize, pmdTablePfn: u32, haddr: u64): bool {
  const e = load<u64>(ep);
  if (!isZeroPfn(<u32>leafPfn(e, 1)) && !testFlag(folioHead(<u32>leafPfn(e, 1)), PG_ANON)) {
    mmuNotifierInvalidateStart(mm, MMU_NOTIFY_CLEAR, haddr, haddr + PMD_SIZE);
    splitFileHugePmd(mm, ep, haddr, e);
    mmuNotifierInvalidateEnd(mm, MMU_NOTIFY_CLEAR, haddr, haddr + PMD_SIZE);
    return true;
  }
  let table = withdrawTable(pmdTablePfn);
  if (table == 0) table = allocTable(mm);
  if (table == 0) return false;
  mmuNotifierInvalidateStart(mm, MMU_NOTIFY_CLEAR, haddr, haddr + PMD_SIZE);
  flushTlbRange(mm, haddr, haddr + PMD_SIZE, 21);
  const base = tablePtr(table);
  const pfn = leafPfn(e, 1);
  {
    if (isZeroPfn(<u32>pfn)) {
      // __split_huge_zero_page_pmd: 512 special PTEs of the 4 KiB zero page.
      let pte = pteMkspecial(pfnPte(<u64>zeroPfn, vma.pageProt));
      if (pteUffdWp(e)) pte = pteMkuffdWp(pte);
      for (let i: u32 = 0; i < 512; i++) store<u64>(base + (<usize>i << 3), pte);
    } else {
      const present = ptePresent(e);
      const head = folioHead(<u32>pfn);
      const exclusive = testFlag(head, PG_EXCLUSIVE);
      for (let i: u32 = 0; i < 512; i++) {
        let pte = pfnPte(pfn + i, vma.pageProt);
        if (pteWrite(e)) pte = pteMkwrite(pte);
        if (!pteYoung(e)) pte = pteMkold(pte);
        if (pteDirty(e)) pte = pteMkdirty(pte);
        if (pteSoftDirty(e)) pte = pteMksoftDirty(pte);
        if (pteUffdWp(e)) pte = pteMkuffdWp(pte);
        store<u64>(base + (<usize>i << 3), pte);
        if (present) {
          addMapcount(<u32>pfn + i, 1);
          if (exclusive && testFlag(head, PG_ANON)) setFlag(<u32>pfn + i, PG_EXCLUSIVE);
        }
      }
      if (present) {
        addEntireMapcount(head, -1);
        folioRefAdd(head, 511);
      }
      // The kernel writes the 512 PTEs with one set_ptes: on arm64 every aligned 64 KiB chunk comes out folded.
      if (contpteMm(mm)) for (let i: u32 = 0; i < 512; i++) store<u64>(base + (<usize>i << 3), pteMkcont(load<u64>(base + (<usize>i << 3))));
    }
  }
  store<u64>(ep, mkTableEntry(<u64>table));
  mmuNotifierInvalidateEnd(mm, MMU_NOTIFY_CLEAR, haddr, haddr + PMD_SIZE);
  thpSplitPmd++;
  return true;
}
