// Reverse-map and reference bookkeeping for mapped folios (mm/rmap.c's
// accounting, without the anon_vma chains: the emulator finds mappings
// through page tables and files, so it only keeps the counts).

import {
  setFlag, clearFlag, testFlag, addMapcount, addEntireMapcount, folioHead, folioRefAdd, folioPut, indexOf, setIndex,
  mapcount, entireMapcount, orderOf, PG_ANON, PG_EXCLUSIVE, PG_SWAPBACKED, PG_SWAPCACHE, PG_LRU,
} from "./frames";
import { swapCount, swapCacheSet } from "./swap";
import { Mm, addRss } from "./mm";
import { MM_ANONPAGES, MM_FILEPAGES, MM_SHMEMPAGES } from "./constants";

/** folio_add_new_anon_rmap for a freshly allocated folio mapped once: exclusive, swap-backed. */
export function addNewAnonRmap(head: u32, nr: u32, pmdMapped: bool): void {
  setFlag(head, PG_ANON | PG_SWAPBACKED | PG_LRU);
  if (pmdMapped) {
    addEntireMapcount(head, 1);
    setFlag(head, PG_EXCLUSIVE);
  } else {
    for (let i: u32 = 0; i < nr; i++) { addMapcount(head + i, 1); setFlag(head + i, PG_EXCLUSIVE); }
  }
}

/** mm_counter: which rss counter a folio is charged to. */
export function mmCounter(head: u32): u32 {
  if (testFlag(head, PG_ANON)) return MM_ANONPAGES;
  return testFlag(head, PG_SWAPBACKED) ? MM_SHMEMPAGES : MM_FILEPAGES;
}

/** Total mappings of a folio (folio_mapcount). */
export function folioMapcount(head: u32): u32 {
  const n = <u32>1 << orderOf(head);
  let total = entireMapcount(head) * n;
  for (let i: u32 = 0; i < n; i++) total += mapcount(head + i);
  return total;
}

/**
 * free_swap_cache + folio_put: drops a mapping's reference. A folio that is
 * in the swap cache, no longer mapped, and whose slot no entry refers to
 * leaves the swap cache first, so the last reference frees it.
 */
export function putMappedFolio(head: u32): void {
  if (testFlag(head, PG_SWAPCACHE) && folioMapcount(head) == 0 && swapCount(indexOf(head)) == 0) {
    deleteFromSwapCache(head);
  }
  folioPut(head);
}

/** __delete_from_swap_cache: unlinks the folio from its slot and drops the cache's reference (freeing it if that was the last). */
export function deleteFromSwapCache(head: u32): void {
  swapCacheSet(indexOf(head), 0);
  clearFlag(head, PG_SWAPCACHE);
  setIndex(head, 0);
  folioPut(head);
}

/** Maps one more PTE of a page-cache or shared page: reference, mapcount, rss. */
export function addFileRmap(mm: Mm, pfn: u32): void {
  const head = folioHead(pfn);
  folioRefAdd(head, 1);
  addMapcount(pfn, 1);
  addRss(mm, mmCounter(head), 1);
}

export function isExclusive(pfn: u32): bool { return testFlag(pfn, PG_EXCLUSIVE); }
