// CPUs: each has its TLB arrays, paging-structure caches, a functional
// translation cache, the mm it is running, and counters. The modelled
// hierarchy is configured once per machine (the same on every CPU).
//
// Two honest modes of translation:
//  - model: every access goes through the modelled arrays; counters are the point;
//  - functional: a direct-mapped host-speed cache of 4 KiB translations
//    (QEMU/v86 style) that keeps no statistics beyond faults.
// Both cache permissions the same way and both obey every flush, so stale
// entries behave alike; only capacity (what gets evicted) differs.

import { kzalloc } from "./heap";
import { Mm } from "./mm";
import {
  TlbArray, WalkCache, ARRAY_BYTES, WALKCACHE_BYTES, MAX_ARRAYS, MAX_WALK_LEVELS, tlbArrayInit, walkCacheInit,
  KIND_UNIFIED, KIND_INSTR,
  tlbArrayFlushPage, tlbArrayFlushRegion, tlbArrayFlushAsid, walkCacheFlush, walkCacheDrop,
} from "./tlb";

export const MODE_MODEL: u32 = 0;
export const MODE_FUNCTIONAL: u32 = 1;

// Per-CPU counters (u64 slots), read by TypeScript.
export const ST_ACCESSES: u32 = 0;
export const ST_L1_HIT: u32 = 1;          // 4 slots by size
export const ST_L2_HIT: u32 = 5;          // 4 slots by size
export const ST_WALKS: u32 = 9;
export const ST_WALK_REFS: u32 = 10;
export const ST_WALK_CACHE_HITS: u32 = 11;
export const ST_PAGE_FAULTS: u32 = 12;
export const ST_DIRTY_REWALKS: u32 = 13;
export const ST_FLUSHES: u32 = 14;        // invalidations that reached this CPU
export const ST_IPIS: u32 = 15;           // of which by interrupt from another CPU
export const ST_WALK_SIZE: u32 = 16;      // 4 slots: walks that ended in a 4K/64K/2M/1G leaf
export const ST_SIGNALS: u32 = 20;
export const ST_FAULT_KIND: u32 = 21;     // 4 slots: not present, write-protect, other permission, dirty update failed
export const NR_STATS: u32 = 32;

export const FUNC_SLOTS: u32 = 4096;      // functional cache: direct mapped, 16 bytes per slot

@unmanaged export class Cpu {
  id: u32;
  curMm: u32;              // mm id running here (0: none)
  nArrays: u32;
  stamp: u32;
  arrays: usize;           // MAX_ARRAYS TlbArray records
  walkCaches: usize;       // MAX_WALK_LEVELS WalkCache records, index = level holding the cached entry
  func: usize;             // functional cache
  stats: usize;            // NR_STATS u64
  walkCacheLevels: u32;    // bit per level that has a paging-structure cache (0: walks skip them)
  probeLists: usize;       // 4 lists of array indices in probe order: (L1, L2) x (data, instruction)
}

/** Probe list for a level and an access class: a count byte then up to MAX_ARRAYS indices. */
// @ts-ignore: decorator
@inline export function probeList(c: Cpu, level: u32, instr: bool): usize {
  return c.probeLists + (<usize>(((level - 1) << 1) | (instr ? 1 : 0)) << 4);
}

export let nrCpus: u32 = 0;
let cpuTable: usize = 0;
export let translationMode: u32 = MODE_MODEL;

// @ts-ignore: decorator
@inline export function cpuAt(i: u32): Cpu { return changetype<Cpu>(load<usize>(cpuTable + (<usize>i << 2))); }
// @ts-ignore: decorator
@inline export function arrayAt(c: Cpu, i: u32): TlbArray { return changetype<TlbArray>(c.arrays + <usize>i * ARRAY_BYTES); }
// @ts-ignore: decorator
@inline export function walkCacheAt(c: Cpu, level: u32): WalkCache { return changetype<WalkCache>(c.walkCaches + <usize>level * WALKCACHE_BYTES); }
// @ts-ignore: decorator
@inline export function bumpStat(c: Cpu, slot: u32, d: u64): void { const p = c.stats + (<usize>slot << 3); store<u64>(p, load<u64>(p) + d); }

export function cpusInit(n: u32): bool {
  cpuTable = kzalloc(<usize>n << 2);
  if (cpuTable == 0) return false;
  for (let i: u32 = 0; i < n; i++) {
    const p = kzalloc(offsetof<Cpu>());
    if (p == 0) return false;
    const c = changetype<Cpu>(p);
    c.id = i;
    c.arrays = kzalloc(<usize>MAX_ARRAYS * ARRAY_BYTES);
    c.walkCaches = kzalloc(<usize>MAX_WALK_LEVELS * WALKCACHE_BYTES);
    c.func = kzalloc(<usize>FUNC_SLOTS << 4);
    c.stats = kzalloc(<usize>NR_STATS << 3);
    c.probeLists = kzalloc(64);
    if (c.arrays == 0 || c.walkCaches == 0 || c.func == 0 || c.stats == 0 || c.probeLists == 0) return false;
    store<usize>(cpuTable + (<usize>i << 2), p);
  }
  nrCpus = n;
  return true;
}

/** Adds an array to every CPU's hierarchy. */
export function cpusAddArray(level: u32, kind: u32, sizes: u32, sets: u32, ways: u32, policy: u32): bool {
  for (let i: u32 = 0; i < nrCpus; i++) {
    const c = cpuAt(i);
    if (c.nArrays >= MAX_ARRAYS) return false;
    if (!tlbArrayInit(arrayAt(c, c.nArrays), level, kind, sizes, sets, ways, policy)) return false;
    // Data accesses probe data and unified arrays, instruction fetches instruction and unified ones.
    for (let instr: u32 = 0; instr < 2; instr++) {
      if (kind == KIND_UNIFIED || (kind == KIND_INSTR) == (instr == 1)) {
        const l = probeList(c, level, instr == 1);
        const n = <u32>load<u8>(l);
        store<u8>(l + 1 + n, <u8>c.nArrays);
        store<u8>(l, <u8>(n + 1));
      }
    }
    c.nArrays++;
  }
  return true;
}

/** Sizes every CPU's paging-structure cache for entries at `level` (1 PMD .. 4 PGD). */
export function cpusSetWalkCache(level: u32, n: u32): bool {
  for (let i: u32 = 0; i < nrCpus; i++) {
    const c = cpuAt(i);
    if (!walkCacheInit(walkCacheAt(c, level), n)) return false;
    if (n != 0) c.walkCacheLevels |= <u32>1 << level;
  }
  return true;
}

/**
 * Model mode never reads the functional caches, and flushes in model mode do
 * not maintain them: entering functional mode starts them empty.
 */
export function setTranslationMode(m: u32): void {
  if (m == MODE_FUNCTIONAL && translationMode != MODE_FUNCTIONAL) {
    for (let i: u32 = 0; i < nrCpus; i++) memory.fill(cpuAt(i).func, 0, <usize>FUNC_SLOTS << 4);
  }
  translationMode = m;
}

// ---- invalidation on one CPU --------------------------------------------------------------

// @ts-ignore: decorator
@inline function funcSlot(c: Cpu, vpn: u64): usize { return c.func + (<usize>(<u32>vpn & (FUNC_SLOTS - 1)) << 4); }
// @ts-ignore: decorator
@inline export function funcKey(vpn: u64, asid: u32): u64 { return ((vpn << 16) | <u64>asid) + 1; }

/** INVLPG on this CPU: every translation of the page, and the paging-structure caches of the address space. */
export function cpuFlushPage(c: Cpu, asid: u32, vpn: u64): void {
  for (let i: u32 = 0; i < c.nArrays; i++) tlbArrayFlushPage(arrayAt(c, i), vpn, asid);
  for (let l: u32 = 1; l < MAX_WALK_LEVELS; l++) walkCacheFlush(walkCacheAt(c, l), <i32>asid);
  const s = funcSlot(c, vpn);
  if (load<u64>(s) == funcKey(vpn, asid)) store<u64>(s, 0);
}

/**
 * flush_tlb_range on one CPU for 4 KiB pages [vpn, endVpn): each page's
 * translations, and the paging-structure caches once for the whole range
 * (their entries are dropped per address space, not per page).
 */
export function cpuFlushPages(c: Cpu, asid: u32, vpn: u64, endVpn: u64): void {
  if (c.nArrays != 0) for (let v = vpn; v < endVpn; v++) for (let i: u32 = 0; i < c.nArrays; i++) tlbArrayFlushPage(arrayAt(c, i), v, asid);
  if (translationMode == MODE_FUNCTIONAL) {
    for (let v = vpn; v < endVpn; v++) {
      const s = funcSlot(c, v);
      if (load<u64>(s) == funcKey(v, asid)) store<u64>(s, 0);
    }
  }
  if (c.walkCacheLevels != 0) for (let l: u32 = 1; l < MAX_WALK_LEVELS; l++) walkCacheFlush(walkCacheAt(c, l), <i32>asid);
}

/**
 * INVLPG of an address mapped by a huge page: every translation derived from
 * that page goes, including the pieces of it an array without that page size
 * held as smaller entries ("splintered"), and the functional slots of each of
 * its 4 KiB pages. `shift` is log2 of the huge page in 4 KiB pages (9: 2 MiB).
 */
export function cpuFlushHugePage(c: Cpu, asid: u32, vpn: u64, shift: u64): void {
  const base = (vpn >> shift) << shift;
  const n: u64 = <u64>1 << shift;
  for (let i: u32 = 0; i < c.nArrays; i++) tlbArrayFlushRegion(arrayAt(c, i), base, shift, asid);
  for (let l: u32 = 1; l < MAX_WALK_LEVELS; l++) walkCacheFlush(walkCacheAt(c, l), <i32>asid);
  for (let v = base; v < base + n; v++) {
    const s = funcSlot(c, v);
    if (load<u64>(s) == funcKey(v, asid)) store<u64>(s, 0);
  }
}

/**
 * What a page fault invalidates on x86: the translations of the faulting
 * address and the paging-structure entries used for it (not the whole
 * address space's, as INVLPG does). `fromHit`: the fault came from a cached
 * entry, so every array may hold the address; otherwise the probe just
 * missed them all and only the walk caches and the functional slot matter.
 */
export function cpuFaultInvalidate(c: Cpu, asid: u32, vpn: u64, fromHit: bool): void {
  if (fromHit) for (let i: u32 = 0; i < c.nArrays; i++) tlbArrayFlushPage(arrayAt(c, i), vpn, asid);
  if (c.walkCacheLevels != 0) {
    for (let l: u32 = 1; l < MAX_WALK_LEVELS; l++) walkCacheDrop(walkCacheAt(c, l), vpn >> (9 * <u64>l), asid);
  }
  const s = funcSlot(c, vpn);
  if (load<u64>(s) == funcKey(vpn, asid)) store<u64>(s, 0);
}

/** Flush of a whole address space (asid -1: everything) on this CPU. */
export function cpuFlushAsid(c: Cpu, asid: i32): void {
  for (let i: u32 = 0; i < c.nArrays; i++) tlbArrayFlushAsid(arrayAt(c, i), asid);
  for (let l: u32 = 1; l < MAX_WALK_LEVELS; l++) walkCacheFlush(walkCacheAt(c, l), asid);
  for (let i: u32 = 0; i < FUNC_SLOTS; i++) {
    const s = c.func + (<usize>i << 4);
    const k = load<u64>(s);
    if (k != 0 && (asid < 0 || <u32>((k - 1) & 0xFFFF) == <u32>asid)) store<u64>(s, 0);
  }
}

/** An mm goes away: no CPU runs it any more (its TLB entries were flushed at exit). */
export function forgetMm(mm: Mm): void {
  for (let i: u32 = 0; i < nrCpus; i++) {
    const c = cpuAt(i);
    if (c.curMm == mm.id) c.curMm = 0;
  }
}
