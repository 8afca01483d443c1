// The modelled TLBs: per-CPU set-associative arrays of translations, and
// paging-structure (walk) caches.
//
// A CPU has up to MAX_ARRAYS arrays. Each has a level (1 or 2), a kind
// (data, instruction or unified), the page sizes it holds, sets x ways (any
// number of sets), and a replacement policy (LRU, or tree-PLRU for
// power-of-two ways). An access probes its L1 arrays, then L2, then walks.
//
// Storage is split the way a lookup uses it: a dense tag per way (so probing
// a 12-way set reads 96 bytes), and a payload read only on a hit.
//
//   tag (u64)      page number at the entry's size << 19 | size << 17 | global << 16 | asid
//                  (0 = invalid; asids start at 1, so a valid tag is never 0)
//   payload (16 B) pfn u32 | perms u32 | stamp u32 | spare
//
// perms are TLB_* below, as the leaf was when the entry was filled. They make
// stale entries real: x86 completes a write through an entry that cached RW
// and D without touching the PTE; arm64 does the same for an entry that
// cached RDONLY clear. Until a flush reaches the CPU, the entry wins over
// whatever the PTE now says.

import { kzalloc } from "./heap";

export const TLB_READ: u32 = 1;
export const TLB_WRITE: u32 = 2;
export const TLB_WRITE_UPDATE: u32 = 4;
export const TLB_EXEC: u32 = 8;
export const TLB_GLOBAL: u32 = 16;

export const KIND_DATA: u32 = 0;
export const KIND_INSTR: u32 = 1;
export const KIND_UNIFIED: u32 = 2;
export const POLICY_LRU: u32 = 0;
export const POLICY_PLRU: u32 = 1;

export const SIZE_4K: u32 = 0;
export const SIZE_64K: u32 = 1;
export const SIZE_2M: u32 = 2;
export const SIZE_1G: u32 = 3;
/** log2 of the 4 KiB pages in each size. */
// @ts-ignore: decorator
@inline export function sizeShift(size: u32): u64 { return size == 0 ? 0 : size == 1 ? 4 : size == 2 ? 9 : 18; }

export const MAX_ARRAYS: u32 = 8;
export const MAX_WALK_LEVELS: u32 = 5;
const PAYLOAD_BYTES: usize = 16;
const GLOBAL_TAG: u64 = 1 << 16;
const ASID_MASK: u64 = 0xFFFF;

@unmanaged export class TlbArray {
  level: u32;
  kind: u32;
  sizes: u32;          // bit per size code
  sets: u32;
  ways: u32;
  policy: u32;
  tags: usize;         // u64 per way
  payload: usize;      // PAYLOAD_BYTES per way
  plru: usize;         // one u32 of tree bits per set
  setMask: u64;        // sets - 1 when sets is a power of two (the usual case), else 0: use a modulo
}

/** The set a page number falls in (any set count, e.g. 1280/5 or 1536/12; a mask when it can be). */
// @ts-ignore: decorator
@inline function setOf(a: TlbArray, pageNo: u64): u32 {
  return <u32>(a.setMask != 0 || a.sets == 1 ? pageNo & a.setMask : pageNo % <u64>a.sets);
}

// @ts-ignore: decorator
@inline function tagFor(pageNo: u64, size: u32, asid: u32): u64 { return (pageNo << 19) | (<u64>size << 17) | <u64>asid; }

/** A paging-structure cache for one level: 4-way set associative (fully associative up to 4 entries), LRU. */
@unmanaged export class WalkCache {
  n: u32;
  sets: u32;
  ways: u32;
  keys: usize;         // u64: (prefix << 16 | asid), 0 = empty
  stamps: usize;       // u32
}

export const ARRAY_BYTES: usize = offsetof<TlbArray>();
export const WALKCACHE_BYTES: usize = offsetof<WalkCache>();

/** Sets up one array in place (memory from the caller); false when out of memory. */
export function tlbArrayInit(a: TlbArray, level: u32, kind: u32, sizes: u32, sets: u32, ways: u32, policy: u32): bool {
  a.level = level; a.kind = kind; a.sizes = sizes; a.sets = sets; a.ways = ways; a.policy = policy;
  a.setMask = (sets & (sets - 1)) == 0 ? <u64>(sets - 1) : 0;
  const n = <usize>sets * ways;
  a.tags = kzalloc(n << 3);
  a.payload = kzalloc(n * PAYLOAD_BYTES);
  a.plru = kzalloc(<usize>sets << 2);
  return a.tags != 0 && a.payload != 0 && a.plru != 0;
}

export function walkCacheInit(c: WalkCache, n: u32): bool {
  c.n = n;
  if (n == 0) return true;
  c.ways = n < 4 ? n : 4;
  c.sets = (n + c.ways - 1) / c.ways;
  c.keys = kzalloc(<usize>c.sets * c.ways << 3);
  c.stamps = kzalloc(<usize>c.sets * c.ways << 2);
  return c.keys != 0 && c.stamps != 0;
}

/** An entry handle: the way's index across the array (payload and tag are found from it). */
// @ts-ignore: decorator
@inline function payloadOf(a: TlbArray, slot: usize): usize { return a.payload + slot * PAYLOAD_BYTES; }

/** Finds the translation of vpn at `size` in the array; returns the payload pointer or 0. Updates recency. */
// @ts-ignore: decorator
@inline export function tlbArrayLookup(a: TlbArray, vpn: u64, size: u32, asid: u32, stamp: u32): usize {
  const pageNo = vpn >> sizeShift(size);
  const set = setOf(a, pageNo);
  const key = tagFor(pageNo, size, asid);
  const gkey = (key & ~ASID_MASK) | GLOBAL_TAG;
  const first = <usize>set * a.ways;
  const tags = a.tags + (first << 3);
  for (let w: u32 = 0; w < a.ways; w++) {
    const t = load<u64>(tags + (<usize>w << 3));
    if (t == key || t == gkey) {
      const e = payloadOf(a, first + w);
      touchWay(a, set, w, e, stamp);
      return e;
    }
  }
  return 0;
}

/** Like tlbArrayLookup, for inspection: recency untouched. */
export function tlbArrayPeek(a: TlbArray, vpn: u64, size: u32, asid: u32): usize {
  const pageNo = vpn >> sizeShift(size);
  const set = setOf(a, pageNo);
  const key = tagFor(pageNo, size, asid);
  const gkey = (key & ~ASID_MASK) | GLOBAL_TAG;
  const first = <usize>set * a.ways;
  for (let w: u32 = 0; w < a.ways; w++) {
    const t = load<u64>(a.tags + ((first + w) << 3));
    if (t == key || t == gkey) return payloadOf(a, first + w);
  }
  return 0;
}

// @ts-ignore: decorator
@inline function touchWay(a: TlbArray, set: u32, way: u32, e: usize, stamp: u32): void {
  if (a.policy == POLICY_LRU) store<u32>(e, stamp, 8);
  else touchPlru(a, set, way);
}

/** Tree-PLRU: every node on the path points away from the way just used. */
function touchPlru(a: TlbArray, set: u32, way: u32): void {
  const p = a.plru + (<usize>set << 2);
  let bits = load<u32>(p);
  let node: u32 = 1;
  let span = a.ways;
  while (span > 1) {
    span >>= 1;
    const right = (way & span) != 0;
    if (right) bits &= ~(<u32>1 << node); else bits |= <u32>1 << node;
    node = node * 2 + (right ? 1 : 0);
  }
  store<u32>(p, bits);
}

function victimWay(a: TlbArray, set: u32): u32 {
  const first = <usize>set * a.ways;
  let oldest: u32 = 0;
  let best: u32 = 0xFFFF_FFFF;
  for (let w: u32 = 0; w < a.ways; w++) {
    if (load<u64>(a.tags + ((first + w) << 3)) == 0) return w;
    if (a.policy == POLICY_LRU) {
      const s = load<u32>(payloadOf(a, first + w), 8);
      if (s < best) { best = s; oldest = w; }
    }
  }
  if (a.policy == POLICY_LRU) return oldest;
  // Tree-PLRU: follow the bits (1 = go right) from the root.
  const bits = load<u32>(a.plru + (<usize>set << 2));
  let node: u32 = 1;
  let way: u32 = 0;
  let span = a.ways;
  while (span > 1) {
    span >>= 1;
    if ((bits & (<u32>1 << node)) != 0) { way |= span; node = node * 2 + 1; } else node = node * 2;
  }
  return way;
}

/** Inserts a translation (replacing a victim); returns its payload. `pfn` is the first frame of the page. */
export function tlbArrayFill(a: TlbArray, vpn: u64, size: u32, asid: u32, pfn: u32, perms: u32, stamp: u32): usize {
  const pageNo = vpn >> sizeShift(size);
  const set = setOf(a, pageNo);
  const w = victimWay(a, set);
  const slot = <usize>set * a.ways + w;
  const global = (perms & TLB_GLOBAL) != 0;
  store<u64>(a.tags + (slot << 3), global ? (tagFor(pageNo, size, 0) | GLOBAL_TAG) : tagFor(pageNo, size, asid));
  const e = payloadOf(a, slot);
  store<u32>(e, pfn & ~((<u32>1 << <u32>sizeShift(size)) - 1));
  store<u32>(e, perms, 4);
  store<u32>(e, (<u32>slot << 2) | size, 12);       // back-pointer to the tag, and the size
  touchWay(a, set, w, e, stamp);
  return e;
}

/** Invalidates the entry for page pageNo of `size` (global ones too). */
function flushEntry(a: TlbArray, pageNo: u64, size: u32, asid: u32): void {
  const set = setOf(a, pageNo);
  const key = tagFor(pageNo, size, asid);
  const gkey = (key & ~ASID_MASK) | GLOBAL_TAG;
  const tags = a.tags + (<usize>set * a.ways << 3);
  for (let w: u32 = 0; w < a.ways; w++) {
    const p = tags + (<usize>w << 3);
    const t = load<u64>(p);
    if (t == key || t == gkey) store<u64>(p, 0);
  }
}

/** Invalidates the translations of vpn in the array (INVLPG: global ones too). */
export function tlbArrayFlushPage(a: TlbArray, vpn: u64, asid: u32): void {
  for (let size: u32 = 0; size < 4; size++) {
    if ((a.sizes & (<u32>1 << size)) != 0) flushEntry(a, vpn >> sizeShift(size), size, asid);
  }
}

/**
 * Invalidates every translation inside the 2^shift pages from base (a huge
 * page): entries of its size or larger covering it, and the smaller entries an
 * array without its size split it into.
 */
export function tlbArrayFlushRegion(a: TlbArray, base: u64, shift: u64, asid: u32): void {
  for (let size: u32 = 0; size < 4; size++) {
    if ((a.sizes & (<u32>1 << size)) == 0) continue;
    const ss = sizeShift(size);
    if (ss >= shift) { flushEntry(a, base >> ss, size, asid); continue; }
    const first = base >> ss, last = (base + (<u64>1 << shift)) >> ss;
    for (let pageNo = first; pageNo < last; pageNo++) flushEntry(a, pageNo, size, asid);
  }
}

/** Invalidates every non-global entry of an address space (asid = -1: everything). */
export function tlbArrayFlushAsid(a: TlbArray, asid: i32): void {
  const total = <usize>a.sets * a.ways;
  for (let i: usize = 0; i < total; i++) {
    const p = a.tags + (i << 3);
    const t = load<u64>(p);
    if (t == 0) continue;
    if (asid < 0 || ((t & GLOBAL_TAG) == 0 && (t & ASID_MASK) == <u64>asid)) store<u64>(p, 0);
  }
}

/** Valid entries in the array (for inspection). */
export function tlbArrayCount(a: TlbArray): u32 {
  let n: u32 = 0;
  const total = <usize>a.sets * a.ways;
  for (let i: usize = 0; i < total; i++) if (load<u64>(a.tags + (i << 3)) != 0) n++;
  return n;
}

// Payload accessors: an entry is its payload pointer; its first page number
// and size come from the tag it points back to.
// @ts-ignore: decorator
@inline export function entryPfn(e: usize): u32 { return load<u32>(e); }
// @ts-ignore: decorator
@inline export function entryPerms(e: usize): u32 { return load<u32>(e, 4); }
// @ts-ignore: decorator
@inline export function entrySize(e: usize): u32 { return load<u32>(e, 12) & 3; }
// @ts-ignore: decorator
@inline export function setEntryPerms(e: usize, p: u32): void { store<u32>(e, p, 4); }
/** First 4 KiB page number of the entry's translation. */
// @ts-ignore: decorator
@inline export function entryVbase(a: TlbArray, e: usize): u64 {
  return (load<u64>(a.tags + (<usize>(load<u32>(e, 12) >> 2) << 3)) >> 19) << sizeShift(entrySize(e));
}
/** Invalidates an entry found by lookup. */
// @ts-ignore: decorator
@inline export function invalidateEntry(a: TlbArray, e: usize): void { store<u64>(a.tags + (<usize>(load<u32>(e, 12) >> 2) << 3), 0); }

// ---- paging-structure caches ------------------------------------------------------------

// @ts-ignore: decorator
@inline function walkKey(prefix: u64, asid: u32): u64 { return (prefix << 16) | <u64>asid; }

/** Whether the entry for this prefix is cached (the table pointer itself is not modelled: walks read the real tables). */
export function walkCacheLookup(c: WalkCache, prefix: u64, asid: u32, stamp: u32): bool {
  if (c.n == 0) return false;
  const key = walkKey(prefix, asid);
  const first = <usize>(<u32>(prefix % <u64>c.sets)) * c.ways;
  for (let i: usize = 0; i < c.ways; i++) {
    if (load<u64>(c.keys + ((first + i) << 3)) == key) {
      store<u32>(c.stamps + ((first + i) << 2), stamp);
      return true;
    }
  }
  return false;
}

export function walkCacheFill(c: WalkCache, prefix: u64, asid: u32, stamp: u32): void {
  if (c.n == 0) return;
  const key = walkKey(prefix, asid);
  const first = <usize>(<u32>(prefix % <u64>c.sets)) * c.ways;
  let victim: usize = 0;
  let best: u32 = 0xFFFF_FFFF;
  for (let i: usize = 0; i < c.ways; i++) {
    const k = load<u64>(c.keys + ((first + i) << 3));
    if (k == key || k == 0) { victim = i; break; }
    const s = load<u32>(c.stamps + ((first + i) << 2));
    if (s < best) { best = s; victim = i; }
  }
  store<u64>(c.keys + ((first + victim) << 3), key);
  store<u32>(c.stamps + ((first + victim) << 2), stamp);
}

/** Drops the entry for one prefix, if cached. */
export function walkCacheDrop(c: WalkCache, prefix: u64, asid: u32): void {
  if (c.n == 0) return;
  const key = walkKey(prefix, asid);
  const first = <usize>(<u32>(prefix % <u64>c.sets)) * c.ways;
  for (let i: usize = 0; i < c.ways; i++) {
    if (load<u64>(c.keys + ((first + i) << 3)) == key) store<u64>(c.keys + ((first + i) << 3), 0);
  }
}

/** Drops an address space's cached entries (asid = -1: all). */
export function walkCacheFlush(c: WalkCache, asid: i32): void {
  const total = <usize>c.sets * c.ways;
  for (let i: usize = 0; i < total; i++) {
    const k = load<u64>(c.keys + (i << 3));
    if (k != 0 && (asid < 0 || <u32>(k & 0xFFFF) == <u32>asid)) store<u64>(c.keys + (i << 3), 0);
  }
}
