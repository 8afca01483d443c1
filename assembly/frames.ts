// Physical frames: one 16-byte descriptor per 4 KiB frame, and a buddy allocator.
//
// Descriptor layout (16 bytes, little endian):
//
//   0        4        8        12       16
//   +--------+--------+--------+--------+
//   |refcount|  tag   | index  |  info  |
//   +--------+--------+--------+--------+
//
//   refcount  _refcount. FOLL_PIN adds GUP_PIN_COUNTING_BIAS on small folios.
//             First tail of a large folio: the folio's pincount.
//             Free block head: previous block in the order's free list (pfn+1).
//   tag       the page's content (a 32-bit stand-in for its bytes).
//             Free block head: next block in the free list (pfn+1).
//   index     page->index: pgoff for page-cache pages, swap slot for pages in
//             the swap cache, arena slot (ptr >> 12) for page-table pages.
//             First tail of a large folio: entire (PMD) mapcount.
//   info      bits  0..17  mapcount (PTE mappings of this page)
//             bits 18..22  order of the folio (or free block) it belongs to
//             bits 23..24  kind: 0 page (head or order-0), 1 tail, 2 table, 3 free
//             bits 25..31  ANON, EXCLUSIVE, DIRTY, SWAPBACKED, LOCKED, LRU, SWAPCACHE
//
// Folios are naturally aligned (buddy allocation), so a page's head is
// pfn & ~((1 << order) - 1); tails carry the order to make that one AND.
// The zero page is reserved at boot and never refcounted by mappings
// (its PTEs are "special", like the kernel's).

import { kmalloc } from "./heap";

export const FRAME_BYTES: u32 = 16;
export const MAX_ORDER: u32 = 18;          // 1 GiB blocks
export const GUP_PIN_COUNTING_BIAS: u32 = 1024;

export const MAPCOUNT_MASK: u32 = 0x3FFFF;
export const MAPCOUNT_MAX: u32 = MAPCOUNT_MASK;
export const ORDER_SHIFT: u32 = 18;
export const KIND_SHIFT: u32 = 23;
export const KIND_PAGE: u32 = 0;
export const KIND_TAIL: u32 = 1;
export const KIND_TABLE: u32 = 2;
export const KIND_FREE: u32 = 3;

export const PG_ANON: u32 = 1 << 25;
export const PG_EXCLUSIVE: u32 = 1 << 26;   // PageAnonExclusive (per page)
export const PG_DIRTY: u32 = 1 << 27;
export const PG_SWAPBACKED: u32 = 1 << 28;
export const PG_LOCKED: u32 = 1 << 29;
export const PG_LRU: u32 = 1 << 30;
export const PG_SWAPCACHE: u32 = 1 << 31;

export let frames: usize = 0;       // descriptor array
export let nrFrames: u32 = 0;
export let freeFrames: u32 = 0;
export let zeroPfn: u32 = 0;        // the shared zero page
export let hugeZeroPfn: u32 = 0;    // the huge zero folio (order 9), allocated on first use
/** Test hook: allocations fail once this many more succeed (-1: never). */
export let failAfter: i32 = -1;

const freeHeads = new StaticArray<u32>(<i32>MAX_ORDER + 1);   // pfn + 1, 0 = empty
const freeCounts = new StaticArray<u32>(<i32>MAX_ORDER + 1);

// @ts-ignore: decorator
@inline export function desc(pfn: u32): usize { return frames + (<usize>pfn << 4); }
// @ts-ignore: decorator
@inline export function refcount(pfn: u32): u32 { return load<u32>(desc(pfn)); }
// @ts-ignore: decorator
@inline export function setRefcount(pfn: u32, v: u32): void { store<u32>(desc(pfn), v); }
// @ts-ignore: decorator
@inline export function tagOf(pfn: u32): u32 { return load<u32>(desc(pfn), 4); }
// @ts-ignore: decorator
@inline export function setTag(pfn: u32, v: u32): void { store<u32>(desc(pfn), v, 4); }
// @ts-ignore: decorator
@inline export function indexOf(pfn: u32): u32 { return load<u32>(desc(pfn), 8); }
// @ts-ignore: decorator
@inline export function setIndex(pfn: u32, v: u32): void { store<u32>(desc(pfn), v, 8); }
// @ts-ignore: decorator
@inline export function info(pfn: u32): u32 { return load<u32>(desc(pfn), 12); }
// @ts-ignore: decorator
@inline export function setInfo(pfn: u32, v: u32): void { store<u32>(desc(pfn), v, 12); }
// @ts-ignore: decorator
@inline export function mapcount(pfn: u32): u32 { return info(pfn) & MAPCOUNT_MASK; }
// @ts-ignore: decorator
@inline export function orderOf(pfn: u32): u32 { return (info(pfn) >> ORDER_SHIFT) & 31; }
// @ts-ignore: decorator
@inline export function kindOf(pfn: u32): u32 { return (info(pfn) >> KIND_SHIFT) & 3; }
// @ts-ignore: decorator
@inline export function testFlag(pfn: u32, f: u32): bool { return (info(pfn) & f) != 0; }
// @ts-ignore: decorator
@inline export function setFlag(pfn: u32, f: u32): void { setInfo(pfn, info(pfn) | f); }
// @ts-ignore: decorator
@inline export function clearFlag(pfn: u32, f: u32): void { setInfo(pfn, info(pfn) & ~f); }
// @ts-ignore: decorator
@inline export function folioHead(pfn: u32): u32 { return pfn & ~((<u32>1 << orderOf(pfn)) - 1); }
// @ts-ignore: decorator
@inline export function isZeroPfn(pfn: u32): bool { return pfn == zeroPfn || (hugeZeroPfn != 0 && (pfn & ~511) == hugeZeroPfn); }

/** Adds `d` (may be negative) to a page's PTE mapcount. */
// @ts-ignore: decorator
@inline export function addMapcount(pfn: u32, d: i32): void { setInfo(pfn, info(pfn) + <u32>d); }
/** folio_get / folio_put without the free: refcounts live on the head. */
// @ts-ignore: decorator
@inline export function folioRefAdd(head: u32, d: i32): void { setRefcount(head, refcount(head) + <u32>d); }
/** Entire (PMD-level) mapcount of a large folio, kept in its first tail. */
// @ts-ignore: decorator
@inline export function entireMapcount(head: u32): u32 { return orderOf(head) == 0 ? 0 : indexOf(head + 1); }
// @ts-ignore: decorator
@inline export function addEntireMapcount(head: u32, d: i32): void { setIndex(head + 1, indexOf(head + 1) + <u32>d); }
/** Pincount of a large folio (first tail's refcount word). */
// @ts-ignore: decorator
@inline export function pincount(head: u32): u32 { return orderOf(head) == 0 ? 0 : refcount(head + 1); }

/**
 * page->index of a page-cache page: a large folio keeps the index of its
 * first page in the head (the tails' index words hold other fields).
 */
export function cachePageIndex(pfn: u32): u32 {
  const head = folioHead(pfn);
  return indexOf(head) + (pfn - head);
}

/** folio_precise_page_mapcount: PTE maps of the page plus PMD maps of its folio. */
export function pageMapcount(pfn: u32): u32 {
  const head = folioHead(pfn);
  return mapcount(pfn) + entireMapcount(head);
}

/** folio_maybe_dma_pinned: pincount for large folios, refcount >= bias for small ones (false positives included). */
export function folioMaybeDmaPinned(head: u32): bool {
  if (orderOf(head) > 0) return pincount(head) > 0;
  return refcount(head) >= GUP_PIN_COUNTING_BIAS;
}

// ---- buddy allocator ---------------------------------------------------------

function freeListPush(pfn: u32, order: u32): void {
  const head = unchecked(freeHeads[order]);
  setInfo(pfn, (order << ORDER_SHIFT) | (KIND_FREE << KIND_SHIFT));
  setRefcount(pfn, 0);          // prev
  setTag(pfn, head);            // next
  if (head != 0) setRefcount(head - 1, pfn + 1);
  unchecked(freeHeads[order] = pfn + 1);
  unchecked(freeCounts[order] += 1);
}

function freeListRemove(pfn: u32, order: u32): void {
  const prev = refcount(pfn), next = tagOf(pfn);
  if (prev != 0) setTag(prev - 1, next); else unchecked(freeHeads[order] = next);
  if (next != 0) setRefcount(next - 1, prev);
  unchecked(freeCounts[order] -= 1);
  setInfo(pfn, 0); setRefcount(pfn, 0); setTag(pfn, 0);
}

/** Sets up `n` frames, all free except pfn 0 (reserved, like the BIOS page) and the zero page. */
export function framesInit(n: u32): bool {
  frames = kmalloc(<usize>n << 4);
  if (frames == 0) return false;
  memory.fill(frames, 0, <usize>n << 4);
  nrFrames = n;
  // Free every frame from 1 upward in the largest naturally aligned blocks.
  let pfn: u32 = 1;
  while (pfn < n) {
    let order: u32 = ctz<u32>(pfn);
    if (order > MAX_ORDER) order = MAX_ORDER;
    while (pfn + (<u32>1 << order) > n) order--;
    freeListPush(pfn, order);
    freeFrames += <u32>1 << order;
    pfn += <u32>1 << order;
  }
  setRefcount(0, 1);
  zeroPfn = allocPages(0);
  if (zeroPfn == 0) return false;
  setRefcount(zeroPfn, 1);
  return true;
}

/** Allocates 2^order naturally aligned frames; returns the head pfn or 0. Descriptors are reset, tags zero. */
export function allocPages(order: u32): u32 {
  if (failAfter == 0) return 0;
  let o = order;
  while (o <= MAX_ORDER && unchecked(freeHeads[o]) == 0) o++;
  if (o > MAX_ORDER) return 0;
  if (failAfter > 0) failAfter--;
  const pfn = unchecked(freeHeads[o]) - 1;
  freeListRemove(pfn, o);
  // Split down, returning upper halves to the free lists.
  while (o > order) {
    o--;
    freeListPush(pfn + (<u32>1 << o), o);
  }
  const n = <u32>1 << order;
  freeFrames -= n;
  if (order == 0) { store<u64>(desc(pfn), 0); store<u64>(desc(pfn), 0, 8); }
  else memory.fill(desc(pfn), 0, <usize>n << 4);
  const tailInfo = (order << ORDER_SHIFT) | (KIND_TAIL << KIND_SHIFT);
  setInfo(pfn, order << ORDER_SHIFT);
  for (let i: u32 = 1; i < n; i++) setInfo(pfn + i, tailInfo);
  return pfn;
}

/** Returns 2^order frames starting at `pfn` to the buddy allocator, merging buddies. */
export function freePages(pfn: u32, order: u32): void {
  freeFrames += <u32>1 << order;
  while (order < MAX_ORDER) {
    const buddy = pfn ^ (<u32>1 << order);
    if (buddy >= nrFrames || buddy == 0) break;
    const bi = info(buddy);
    if (((bi >> KIND_SHIFT) & 3) != KIND_FREE || ((bi >> ORDER_SHIFT) & 31) != order) break;
    freeListRemove(buddy, order);
    pfn = pfn & buddy;
    order++;
  }
  freeListPush(pfn, order);
}

/** Allocates a folio of 2^order pages with refcount 1. */
// @ts-ignore: decorator
@inline export function allocFolio(order: u32): u32 {
  const pfn = allocPages(order);
  if (pfn != 0) setRefcount(pfn, 1);
  return pfn;
}

/** Frees a folio whose references are gone. */
// @ts-ignore: decorator
@inline export function freeFolio(head: u32): void {
  const order = orderOf(head);
  if (order == 0) { store<u64>(desc(head), 0); store<u64>(desc(head), 0, 8); }
  else memory.fill(desc(head), 0, <usize>(<u32>1 << order) << 4);
  freePages(head, order);
}

/** folio_put: drops one reference, freeing the folio at zero. */
// @ts-ignore: decorator
@inline export function folioPut(head: u32): void {
  const r = refcount(head) - 1;
  setRefcount(head, r);
  if (r == 0) freeFolio(head);
}

/** The huge zero folio (order 9, content zero), reserved on first use; 0 when memory is short. */
export function getHugeZeroFolio(): u32 {
  if (hugeZeroPfn == 0) {
    const p = allocFolio(9);
    if (p == 0) return 0;
    hugeZeroPfn = p;
  }
  return hugeZeroPfn;
}

/** Whether pfn lies inside a block on a free list (only block heads carry KIND_FREE). */
export function frameIsFree(pfn: u32): bool {
  for (let k: u32 = 0; k <= MAX_ORDER; k++) {
    const h = pfn & ~((<u32>1 << k) - 1);
    if (kindOf(h) == KIND_FREE && orderOf(h) >= k) return true;
  }
  return false;
}

export function setFailAfter(n: i32): void { failAfter = n; }
export function freeBlocksOfOrder(order: u32): u32 { return unchecked(freeCounts[order]); }
/** Head pfn + 1 of the first free block of `order` (0 = none), and the next one after `pfn`: for the checker. */
export function freeListFirst(order: u32): u32 { return unchecked(freeHeads[order]); }
export function freeListNext(pfn: u32): u32 { return tagOf(pfn); }
