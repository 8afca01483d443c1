// Page-fault handling (mm/memory.c): what the kernel does when the MMU could
// not complete an access. Returns vm_fault_t bits; 0 means "fixed, retry the
// access". This file holds the entry point, the PTE-level dispatch, anonymous
// and swap faults; file faults are in filemap.ts, write-protect faults in
// wp.ts, huge PMDs in thp.ts.

import { Mm, addRss } from "./mm";
import { Vma, vmaLookup, anonVmaPrepare } from "./vma";
import { allocTable, tablePtr, entryPtr, pmdTableLookup } from "./pgtable";
import {
  pteNone, ptePresent, pteProtnone, pteWrite, pteMkwrite, pteMkdirty, pteMkyoung, pteMkspecial, pteModify, pfnPte,
  isTableEntry, isUpperLeaf, mkTableEntry, tableEntryPfn, swpType, swpOffset, swpExclusiveBit, swpSoftDirtyBit,
  swpUffdWpBit, pteMksoftDirty, pteMkuffdWp, SWP_PTE_MARKER, SWP_HWPOISON, MAX_SWAPFILES, PTE_MARKER_POISONED, isDevicePrivateType,
  PTE_MARKER_GUARD, PTE_MARKER_UFFD_WP, ARM64,
} from "./arch/index";
import { migrateToRam } from "./devmem";
import {
  allocFolio, zeroPfn, setTag, setFlag, refcount, folioRefAdd, setIndex, addMapcount,
  PG_ANON, PG_EXCLUSIVE, PG_SWAPBACKED, PG_SWAPCACHE, PG_LRU,
} from "./frames";
import { addNewAnonRmap, deleteFromSwapCache } from "./rmap";
import { swapCachePfn, swapTag, swapFree, swapCacheSet, swapCount } from "./swap";
import { doFault } from "./filemap";
import { doWpPage } from "./wp";
import { thpVmaAllowable, doHugePmdAnonymousPage, hugePmdFault, fileThpSuitable, doHugeFileFault } from "./thp";
import { mthpAllowedOrders, mthpFit, mthpOrder, mthpAlloc, mthpFallback } from "./mthp";
import { setPtes, setAccessFlags, ptepGet, ptepGetAndClear } from "./arch/contpte";
import { handleUserfault } from "./uffd";
import {
  VM_WRITE, VM_SHARED, VM_EXEC, VM_ACCESS_FLAGS, VM_UFFD_WP, VM_UFFD_MISSING, VM_FAULT_OOM, VM_FAULT_SIGBUS, VM_FAULT_SIGSEGV,
  VM_FAULT_MAJOR, VM_FAULT_HWPOISON, VM_FAULT_FALLBACK, FAULT_FLAG_WRITE, FAULT_FLAG_INSTRUCTION, FAULT_FLAG_UNSHARE,
  MM_ANONPAGES, MM_SWAPENTS,
} from "./constants";

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
/** Why the last VM_FAULT_BLOCKED fault waits: BLOCKED_MKWRITE or BLOCKED_UFFD (access.ts). */
export let faultBlockedOn: u32 = 0;
export function setFaultBlockedOn(why: u32): void { faultBlockedOn = why; }

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

// @ts-ignore: decorator
@inline function handleFaultInVma(mm: Mm, vma: Vma, addr: u64, flags: u32): u32 {
  const pmdp = pmdOffsetAlloc(mm, addr);
  if (pmdp == 0) return VM_FAULT_OOM;
  const pmdTable = faultPmdTable;
  let pmd = load<u64>(pmdp);
  if (pmd == 0 && thpVmaAllowable(vma, addr)) {
    const r = doHugePmdAnonymousPage(mm, vma, addr, pmdp, pmdTable, flags);
    if ((r & VM_FAULT_FALLBACK) == 0) return r;
    pmd = load<u64>(pmdp);
  } else if (pmd == 0 && fileThpSuitable(vma, addr, flags)) {
    const r = doHugeFileFault(mm, vma, addr, pmdp, flags);
    if ((r & VM_FAULT_FALLBACK) == 0) return r;
  } else if (isUpperLeaf(pmd)) {
    const r = hugePmdFault(mm, vma, addr, pmdp, pmdTable, flags);
    if ((r & VM_FAULT_FALLBACK) == 0) return r;
    pmd = load<u64>(pmdp);
  }
  if (pmd == 0 && pteTableAlloc(mm, pmdp) == 0) return VM_FAULT_OOM;
  pmd = load<u64>(pmdp);
  if (!isTableEntry(pmd)) return VM_FAULT_SIGBUS;
  const ptep = tablePtr(<u32>tableEntryPfn(pmd)) + (<usize>((addr >> 12) & 511) << 3);
  return handlePteFault(mm, vma, addr, ptep, flags);
}

/** __pte_alloc: a new PTE table under the empty PMD entry at pmdp; its pfn, or 0 when out of memory. */
export function pteTableAlloc(mm: Mm, pmdp: usize): u32 {
  const t = allocTable(mm);
  if (t != 0) store<u64>(pmdp, mkTableEntry(<u64>t));
  return t;
}

// ---- PTE level ------------------------------------------------------------------------

// @ts-ignore: decorator
@inline function handlePteFault(mm: Mm, vma: Vma, addr: u64, ptep: usize, flags: u32): u32 {
  const e = load<u64>(ptep);
  if (pteNone(e)) {
    if (vma.file == 0) return doAnonymousPage(mm, vma, addr, ptep, flags, false);
    return doFault(mm, vma, addr, ptep, flags, false);
  }
  if (!ptePresent(e)) return doSwapPage(mm, vma, addr, ptep, flags);
  if (pteProtnone(e)) {
    // do_numa_page: the VMA is accessible (checked), so the entry only lost
    // its permissions to a hinting fault: restore the VMA's protection
    // (ptep_modify_prot_start/commit).
    const old = ptepGetAndClear(mm, addr, ptep);
    setPtes(mm, addr, ptep, pteMkyoung(pteModify(old, vma.pageProt)), 1);
    return 0;
  }
  if ((flags & (FAULT_FLAG_WRITE | FAULT_FLAG_UNSHARE)) != 0 && !pteWrite(e)) return doWpPage(mm, vma, addr, ptep, flags);
  // ptep_set_access_flags (arm64: a folded block gets the flags on all its slots).
  const write = (flags & FAULT_FLAG_WRITE) != 0;
  if (ARM64) {
    let entry = ptepGet(ptep);
    if (write) entry = pteMkdirty(entry);
    setAccessFlags(mm, addr, ptep, pteMkyoung(entry), write);
    return 0;
  }
  let entry = e;
  if (write) entry = pteMkdirty(entry);
  entry = pteMkyoung(entry);
  if (entry != e) store<u64>(ptep, entry);
  return 0;
}


/** do_anonymous_page. `uffdWp` carries a uffd-wp marker that was in the slot. */
export function doAnonymousPage(mm: Mm, vma: Vma, addr: u64, ptep: usize, flags: u32, uffdWp: bool): u32 {
  if ((vma.flags & VM_SHARED) != 0) return VM_FAULT_SIGBUS;
  // A missing-mode userfaultfd provides the page (UFFDIO_COPY / ZEROPAGE) instead.
  if ((vma.flags & VM_UFFD_MISSING) != 0) return handleUserfault(vma, addr, flags, VM_UFFD_MISSING);
  if ((flags & FAULT_FLAG_WRITE) == 0) {
    let entry = pteMkspecial(pfnPte(<u64>zeroPfn, vma.pageProt));
    if (uffdWp) entry = pteMkuffdWp(entry);
    setPtes(mm, addr, ptep, entry, 1);
    return 0;
  }
  anonVmaPrepare(vma);
  // alloc_anon_folio: the largest enabled mTHP size that fits and can be allocated.
  let orders = uffdWp ? 0 : mthpAllowedOrders(vma);
  while (orders != 0) {
    const base = mthpFit(vma, addr, ptep, orders);
    const order = mthpOrder;
    if (order == 0) break;
    const folio = allocFolio(order);
    if (folio != 0) {
      mapNewAnonFolio(mm, vma, base, ptep - <usize>((addr - base) >> 9), folio, <u32>1 << order);
      unchecked(mthpAlloc[order]++);
      return 0;
    }
    unchecked(mthpFallback[order]++);
    orders &= (<u32>1 << order) - 1;
  }
  const pfn = allocFolio(0);
  if (pfn == 0) return VM_FAULT_OOM;
  let entry = pfnPte(<u64>pfn, vma.pageProt);
  if ((vma.flags & VM_WRITE) != 0) entry = pteMkwrite(pteMkdirty(entry));
  if (uffdWp) entry = pteMkuffdWp(entry);
  addRss(mm, MM_ANONPAGES, 1);
  addNewAnonRmap(pfn, 1, false);
  setPtes(mm, addr, ptep, entry, 1);
  return 0;
}

/**
 * Maps every page of a new anonymous folio with one set_ptes from `first`
 * (at `base`): each PTE dirty, writable where the VMA allows, one reference
 * per page. On arm64, aligned 64 KiB chunks are written folded.
 */
function mapNewAnonFolio(mm: Mm, vma: Vma, base: u64, first: usize, folio: u32, nr: u32): void {
  let entry = pfnPte(<u64>folio, vma.pageProt);
  if ((vma.flags & VM_WRITE) != 0) entry = pteMkwrite(pteMkdirty(entry));
  addNewAnonRmap(folio, nr, false);
  folioRefAdd(folio, <i32>nr - 1);
  addRss(mm, MM_ANONPAGES, <i64>nr);
  setPtes(mm, base, first, entry, nr);
}

/** do_swap_page: markers, device-private entries, and genuine swap entries through the swap cache. */
function doSwapPage(mm: Mm, vma: Vma, addr: u64, ptep: usize, flags: u32): u32 {
  const e = load<u64>(ptep);
  const type = swpType(e);
  if (type == SWP_PTE_MARKER) return handlePteMarker(mm, vma, addr, ptep, flags, swpOffset(e));
  if (type == SWP_HWPOISON) return VM_FAULT_HWPOISON;
  // A device-private page: its device migrates it back (the access then retries on the new PTE).
  if (isDevicePrivateType(type)) return migrateToRam(mm, vma, addr, ptep) ? 0 : VM_FAULT_OOM;
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
  setPtes(mm, addr, ptep, entry, 1);
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
