// The modelled TLBs: per-CPU set-associative arrays of translations, and
// paging-structure (walk) caches.
//
// A CPU has up to MAX_ARRAYS arrays. Each has a level (1 or 2), a kind
// (data, instruction or unified), the page sizes it holds, sets x ways (any
// number of sets), and a replacement policy (LRU, or tree-PLRU for
// power-of-two ways). An access probes its L1 arrays, then L2, then walks.
//
// Entry (32 bytes):
//
//   0 vbase u64   first 4 KiB virtual page number of the translation
//   8 pfn   u32   first frame
//  12 asid  u16   address-space id (PCID / ASID); ignored when GLOBAL
//  14 size  u8    0 4K, 1 64K (arm64 contiguous), 2 2M, 3 1G
//  15 perms u8    TLB_* below, as the leaf was when the entry was filled
//  16 stamp u32   last use, for LRU
//
// The cached permissions are what make stale entries real: x86 completes a
// write through an entry that cached RW and D without touching the PTE;
// arm64 does the same for an entry that cached RDONLY clear. Until a flush
// reaches the CPU, the entry wins over whatever the PTE now says.

import { kzalloc } from "./heap";

export const TLB_READ: u32 = 1;
export const TLB_WRITE: u32 = 2;
export const TLB_WRITE_UPDATE: u32 = 4;
export const TLB_EXEC: u32 = 8;
export const TLB_GLOBAL: u32 = 16;
export const TLB_VALID: u32 = 128;

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
const ENTRY_BYTES: usize = 32;

@unmanaged export class TlbArray {
  level: u32;
  kind: u32;
  sizes: u32;          // bit per size code
  sets: u32;
  ways: u32;
  policy: u32;
  entries: usize;
  plru: usize;         // one u32 of tree bits per set
  setMask: u64;        // sets - 1 when sets is a power of two (the usual case), else 0: use a modulo
}

/** The set a page number falls in (any set count, e.g. 1280/5 or 1536/12; a mask when it can be). */
// @ts-ignore: decorator
@inline function setOf(a: TlbArray, pageNo: u64): u32 {
  return <u32>(a.setMask != 0 || a.sets == 1 ? pageNo & a.setMask : pageNo % <u64>a.sets);
}

/** A paging-structure cache for one level: fully associative, LRU. Key 0 = empty. */
@unmanaged export class WalkCache {
  n: u32;
  keys: usize;         // u64: (prefix << 16 | asid) + 1
  tables: usize;       // u32: table pfn one level down
  stamps: usize;       // u32
}

export const ARRAY_BYTES: usize = offsetof<TlbArray>();
export const WALKCACHE_BYTES: usize = offsetof<WalkCache>();

/** Sets up one array in place (memory from the caller); false when out of memory. */
export function tlbArrayInit(a: TlbArray, level: u32, kind: u32, sizes: u32, sets: u32, ways: u32, policy: u32): bool {
  a.level = level; a.kind = kind; a.sizes = sizes; a.sets = sets; a.ways = ways; a.policy = policy;
  a.setMask = (sets & (sets - 1)) == 0 ? <u64>(sets - 1) : 0;
  a.entries = kzalloc(<usize>sets * ways * ENTRY_BYTES);
  a.plru = kzalloc(<usize>sets << 2);
  return a.entries != 0 && a.plru != 0;
}

export function walkCacheInit(c: WalkCache, n: u32): bool {
  c.n = n;
  if (n == 0) return true;
  c.keys = kzalloc(<usize>n << 3);
  c.tables = kzalloc(<usize>n << 2);
  c.stamps = kzalloc(<usize>n << 2);
  return c.keys != 0 && c.tables != 0 && c.stamps != 0;
}

// @ts-ignore: decorator
@inline function entryAt(a: TlbArray, set: u32, way: u32): usize {
  return a.entries + (<usize>set * a.ways + way) * ENTRY_BYTES;
}

/** Finds vpn's translation of `size` in the array; returns the entry or 0. Updates recency. */
export function tlbArrayLookup(a: TlbArray, vpn: u64, size: u32, asid: u32, stamp: u32): usize {
  const vbase = (vpn >> sizeShift(size)) << sizeShift(size);
  const set = setOf(a, vpn >> sizeShift(size));
  for (let w: u32 = 0; w < a.ways; w++) {
    const e = entryAt(a, set, w);
    const perms = <u32>load<u8>(e, 15);
    if ((perms & TLB_VALID) == 0) continue;
    if (load<u64>(e) != vbase || <u32>load<u8>(e, 14) != size) continue;
    if ((perms & TLB_GLOBAL) == 0 && <u32>load<u16>(e, 12) != asid) continue;
    touchWay(a, set, w, e, stamp);
    return e;
  }
  return 0;
}

/** Like tlbArrayLookup, for inspection: recency untouched. */
export function tlbArrayPeek(a: TlbArray, vpn: u64, size: u32, asid: u32): usize {
  const vbase = (vpn >> sizeShift(size)) << sizeShift(size);
  const set = setOf(a, vpn >> sizeShift(size));
  for (let w: u32 = 0; w < a.ways; w++) {
    const e = entryAt(a, set, w);
    const perms = <u32>load<u8>(e, 15);
    if ((perms & TLB_VALID) == 0 || load<u64>(e) != vbase || <u32>load<u8>(e, 14) != size) continue;
    if ((perms & TLB_GLOBAL) == 0 && <u32>load<u16>(e, 12) != asid) continue;
    return e;
  }
  return 0;
}

function touchWay(a: TlbArray, set: u32, way: u32, e: usize, stamp: u32): void {
  if (a.policy == POLICY_LRU) { store<u32>(e, stamp, 16); return; }
  // Tree-PLRU: every node on the path points away from the way just used.
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
  let oldest: u32 = 0;
  let best: u32 = 0xFFFF_FFFF;
  for (let w: u32 = 0; w < a.ways; w++) {
    const e = entryAt(a, set, w);
    if ((<u32>load<u8>(e, 15) & TLB_VALID) == 0) return w;
    if (a.policy == POLICY_LRU) {
      const s = load<u32>(e, 16);
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

/** Inserts a translation (replacing a victim); returns the entry. */
export function tlbArrayFill(a: TlbArray, vpn: u64, size: u32, asid: u32, pfn: u32, perms: u32, stamp: u32): usize {
  const shift = sizeShift(size);
  const set = setOf(a, vpn >> shift);
  const w = victimWay(a, set);
  const e = entryAt(a, set, w);
  store<u64>(e, (vpn >> shift) << shift);
  store<u32>(e, pfn & ~((<u32>1 << <u32>shift) - 1), 8);
  store<u16>(e, <u16>asid, 12);
  store<u8>(e, <u8>size, 14);
  store<u8>(e, <u8>(perms | TLB_VALID), 15);
  touchWay(a, set, w, e, stamp);
  return e;
}

/** Invalidates the translations of vpn in the array (INVLPG: global ones too). Returns how many. */
export function tlbArrayFlushPage(a: TlbArray, vpn: u64, asid: u32): u32 {
  let n: u32 = 0;
  for (let size: u32 = 0; size < 4; size++) {
    if ((a.sizes & (<u32>1 << size)) == 0) continue;
    const shift = sizeShift(size);
    const vbase = (vpn >> shift) << shift;
    const set = setOf(a, vpn >> shift);
    for (let w: u32 = 0; w < a.ways; w++) {
      const e = entryAt(a, set, w);
      const perms = <u32>load<u8>(e, 15);
      if ((perms & TLB_VALID) == 0 || load<u64>(e) != vbase || <u32>load<u8>(e, 14) != size) continue;
      if ((perms & TLB_GLOBAL) == 0 && <u32>load<u16>(e, 12) != asid) continue;
      store<u8>(e, 0, 15);
      n++;
    }
  }
  return n;
}

/** Invalidates every non-global entry of an address space (asid = -1: everything). */
export function tlbArrayFlushAsid(a: TlbArray, asid: i32): void {
  const total = a.sets * a.ways;
  for (let i: u32 = 0; i < total; i++) {
    const e = a.entries + <usize>i * ENTRY_BYTES;
    const perms = <u32>load<u8>(e, 15);
    if ((perms & TLB_VALID) == 0) continue;
    if (asid < 0 || ((perms & TLB_GLOBAL) == 0 && <u32>load<u16>(e, 12) == <u32>asid)) store<u8>(e, 0, 15);
  }
}

/** Valid entries in the array (for inspection). */
export function tlbArrayCount(a: TlbArray): u32 {
  let n: u32 = 0;
  const total = a.sets * a.ways;
  for (let i: u32 = 0; i < total; i++) if ((<u32>load<u8>(a.entries + <usize>i * ENTRY_BYTES, 15) & TLB_VALID) != 0) n++;
  return n;
}

// @ts-ignore: decorator
@inline export function entryPfn(e: usize): u32 { return load<u32>(e, 8); }
// @ts-ignore: decorator
@inline export function entryVbase(e: usize): u64 { return load<u64>(e); }
// @ts-ignore: decorator
@inline export function entryPerms(e: usize): u32 { return <u32>load<u8>(e, 15); }
// @ts-ignore: decorator
@inline export function entrySize(e: usize): u32 { return <u32>load<u8>(e, 14); }
// @ts-ignore: decorator
@inline export function setEntryPerms(e: usize, p: u32): void { store<u8>(e, <u8>(p | TLB_VALID), 15); }
// @ts-ignore: decorator
@inline export function invalidateEntry(e: usize): void { store<u8>(e, 0, 15); }

// ---- paging-structure caches ------------------------------------------------------------

// @ts-ignore: decorator
@inline function walkKey(prefix: u64, asid: u32): u64 { return ((prefix << 16) | <u64>asid) + 1; }

/** The table pfn cached for this prefix, or 0. */
export function walkCacheLookup(c: WalkCache, prefix: u64, asid: u32, stamp: u32): u32 {
  const key = walkKey(prefix, asid);
  for (let i: u32 = 0; i < c.n; i++) {
    if (load<u64>(c.keys + (<usize>i << 3)) == key) {
      store<u32>(c.stamps + (<usize>i << 2), stamp);
      return load<u32>(c.tables + (<usize>i << 2));
    }
  }
  return 0;
}

export function walkCacheFill(c: WalkCache, prefix: u64, asid: u32, table: u32, stamp: u32): void {
  if (c.n == 0) return;
  const key = walkKey(prefix, asid);
  let victim: u32 = 0;
  let best: u32 = 0xFFFF_FFFF;
  for (let i: u32 = 0; i < c.n; i++) {
    const k = load<u64>(c.keys + (<usize>i << 3));
    if (k == key || k == 0) { victim = i; break; }
    const s = load<u32>(c.stamps + (<usize>i << 2));
    if (s < best) { best = s; victim = i; }
  }
  store<u64>(c.keys + (<usize>victim << 3), key);
  store<u32>(c.tables + (<usize>victim << 2), table);
  store<u32>(c.stamps + (<usize>victim << 2), stamp);
}

/** Drops an address space's cached table pointers (asid = -1: all). */
export function walkCacheFlush(c: WalkCache, asid: i32): void {
  for (let i: u32 = 0; i < c.n; i++) {
    const k = load<u64>(c.keys + (<usize>i << 3));
    if (k != 0 && (asid < 0 || <u32>((k - 1) & 0xFFFF) == <u32>asid)) store<u64>(c.keys + (<usize>i << 3), 0);
  }
}
