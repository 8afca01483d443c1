// The invariant checker, in the spirit of DEBUG_VM and page_table_check: it
// recounts, from the page tables, page caches and swap cache, what every
// frame's refcount and mapcount and every swap slot's count must be, and
// compares. Problems are written as records for the TypeScript side:
//
//   code u32 | id u32 | a u64 | b u64 | c u64      (32 bytes)

import { kmalloc, kfree } from "./heap";
import {
  nrFrames, refcount, mapcount, orderOf, kindOf, testFlag, indexOf, isZeroPfn, zeroPfn, hugeZeroPfn, freeFrames,
  freeListFirst, freeListNext, folioHead, entireMapcount, tagOf, KIND_PAGE, KIND_TABLE, KIND_FREE, MAX_ORDER,
  PG_ANON, PG_EXCLUSIVE, PG_SWAPCACHE, pincount, GUP_PIN_COUNTING_BIAS, cachePageIndex,
} from "./frames";
import { pinTableCapacity, pinCount, pinPfns, pinFlags, GUP_PIN } from "./gup";
import { Mm, mmById, mmTableCapacity, getRss } from "./mm";
import { Vma, vmaAt, vmaLookup } from "./vma";
import { immapKeyAt, immapPgoffAt, keyMm, keyStart } from "./immap";
import { tablePtr } from "./pgtable";
import {
  ptePresent, pteWrite, pteSpecial, leafPfn, isUpperLeaf, isTableEntry, tableEntryPfn, isSwapPte, swpType, swpOffset,
  MAX_SWAPFILES, SWP_PTE_MARKER, SWP_HWPOISON, ARM64, pteCont, pteMkold, pteMkclean, pteProtnone, isDevicePrivateType,
} from "./arch/index";
import { File, fileById, fileTableCapacity, cacheForEach, CACHE_PAGE, CACHE_SWAP } from "./file";
import { swapSlots, swapCount, swapCachePfn } from "./swap";
import { mmCounter } from "./rmap";
import { VM_SHARED, MM_SWAPENTS, MM_ANONPAGES, NR_MM_COUNTERS } from "./constants";
import { mirrorCheck, mirrorEntryPfn, MIRROR_WRITE } from "./mirror";
import { leafLookup, lookupLevel } from "./fault";
import { devicePoolsForEach, devicePrivateOwner, devicePrivatePfn } from "./devmem";

export const CHK_REFCOUNT: u32 = 1;
export const CHK_MAPCOUNT: u32 = 2;
export const CHK_ENTIRE_MAPCOUNT: u32 = 3;
export const CHK_LEAKED_FRAME: u32 = 4;
export const CHK_MAPS_FREE_FRAME: u32 = 5;
export const CHK_WRITABLE_SHARED_ANON: u32 = 6;
export const CHK_TABLE_LEAK: u32 = 7;
export const CHK_TABLE_SHARED: u32 = 8;
export const CHK_RSS: u32 = 9;
export const CHK_TABLE_COUNT: u32 = 10;
export const CHK_SWAP_COUNT: u32 = 11;
export const CHK_SWAPCACHE: u32 = 12;
export const CHK_FREE_LIST: u32 = 13;
export const CHK_BAD_ENTRY: u32 = 14;
export const CHK_CACHE_PAGE: u32 = 15;
export const CHK_FREE_COUNT: u32 = 16;
export const CHK_ANON_NOT_EXCLUSIVE: u32 = 17;
export const CHK_PINCOUNT: u32 = 18;
export const CHK_IMMAP: u32 = 19;
export const CHK_CONT: u32 = 20;
export const CHK_MIRROR: u32 = 21;

const MAX_PROBLEMS: u32 = 1000;
const WRITABLE_ANON: u32 = 0x8000_0000;
const FREE_MARK: u32 = 0xFFFF_FFFF;

let scratch: usize = 0;          // per frame: expected ref u32, map u32, entire u32, spare u32
let scratchFrames: u32 = 0;
let swapScratch: usize = 0;
let swapScratchSlots: u32 = 0;
export let problems: usize = 0;
export let nrProblems: u32 = 0;

// Per-mm recount, reset for each mm.
let rss = new StaticArray<i64>(4);
let tablesSeen: u32 = 0;

function problem(code: u32, id: u32, a: u64, b: u64, c: u64): void {
  if (nrProblems >= MAX_PROBLEMS) return;
  const r = problems + <usize>nrProblems * 32;
  store<u32>(r, code); store<u32>(r, id, 4); store<u64>(r, a, 8); store<u64>(r, b, 16); store<u64>(r, c, 24);
  nrProblems++;
}

// @ts-ignore: decorator
@inline function exp(pfn: u32, field: u32): usize { return scratch + (<usize>pfn << 4) + (<usize>field << 2); }
// @ts-ignore: decorator
@inline function bump(pfn: u32, field: u32, d: u32): void { store<u32>(exp(pfn, field), load<u32>(exp(pfn, field)) + d); }

/** Runs every check; returns the number of problems (records at `problems`). */
export function checkAll(): u32 {
  nrProblems = 0;
  if (problems == 0) { problems = kmalloc(<usize>MAX_PROBLEMS * 32); if (problems == 0) return 0; }
  if (scratchFrames != nrFrames) {
    scratch = kmalloc(<usize>nrFrames << 4);
    if (scratch == 0) return 0;
    scratchFrames = nrFrames;
  }
  memory.fill(scratch, 0, <usize>nrFrames << 4);
  const slots = swapSlots();
  if (slots != 0 && swapScratchSlots != slots) {
    swapScratch = kmalloc(<usize>slots << 2);
    if (swapScratch == 0) return 0;
    swapScratchSlots = slots;
  }
  if (slots != 0) memory.fill(swapScratch, 0, <usize>slots << 2);

  markFreeFrames();
  for (let id: u32 = 1; id < mmTableCapacity(); id++) {
    const mm = mmById(id);
    if (mm != null) checkMm(changetype<Mm>(mm));
  }
  let fileVmas: u64 = 0, records: u64 = 0;
  for (let id: u32 = 1; id < mmTableCapacity(); id++) {
    const mm = mmById(id);
    if (mm == null) continue;
    for (let i: u32 = 0; i < mm.nrVmas; i++) if (vmaAt(mm, i).file != 0) fileVmas++;
  }
  for (let id: u32 = 1; id < fileTableCapacity(); id++) {
    const f = fileById(id);
    if (f == null) continue;
    cacheForEach(changetype<File>(f), 0, countCacheSlot);
    records += checkImmap(changetype<File>(f));
  }
  if (records != fileVmas) problem(CHK_IMMAP, 0, fileVmas, records, 0);
  for (let s: u32 = 1; s < slots; s++) {
    const pfn = swapCachePfn(s);
    if (pfn == 0) continue;
    if (!testFlag(pfn, PG_SWAPCACHE) || indexOf(pfn) != s) problem(CHK_SWAPCACHE, s, <u64>pfn, 0, 0);
    bump(folioHead(pfn), 0, 1);
  }
  countPins();
  if (mirrorCheck(heldOnce, checkMirrorEntry) != 0) problem(CHK_MIRROR, 0, 0, 0, 1);
  devicePoolsForEach(heldOnce);               // the pool's reference on each of its frames
  compareFrames();
  for (let s: u32 = 1; s < slots; s++) {
    const want = load<u32>(swapScratch + (<usize>s << 2));
    const have = swapCount(s);
    if (want != have) problem(CHK_SWAP_COUNT, s, <u64>want, <u64>have, 0);
  }
  return nrProblems;
}

/**
 * Each i_mmap record names a live VMA of that file with that pgoff, once, in
 * pgoff order; with the global count above, records and file VMAs match one to one.
 */
function checkImmap(f: File): u64 {
  for (let i: u32 = 0; i < f.immapCount; i++) {
    const key = immapKeyAt(f, i), pgoff = immapPgoffAt(f, i);
    const mm = mmById(keyMm(key));
    const found: Vma | null = mm == null ? null : vmaLookup(changetype<Mm>(mm), keyStart(key));
    if (found == null) { problem(CHK_IMMAP, f.id, key, pgoff, 1); continue; }
    const v = changetype<Vma>(found);
    if (v.start != keyStart(key) || v.file != f.id || v.pgoff != pgoff) { problem(CHK_IMMAP, f.id, key, pgoff, 1); continue; }
    if (i > 0 && immapPgoffAt(f, i - 1) > pgoff) problem(CHK_IMMAP, f.id, key, pgoff, 2);
    for (let j = i + 1; j < f.immapCount && immapPgoffAt(f, j) == pgoff; j++) {
      if (immapKeyAt(f, j) == key) problem(CHK_IMMAP, f.id, key, pgoff, 3);
    }
  }
  return <u64>f.immapCount;
}

function markFreeFrames(): void {
  let total: u32 = 0;
  for (let order: u32 = 0; order <= MAX_ORDER; order++) {
    let p = freeListFirst(order);
    while (p != 0) {
      const pfn = p - 1;
      if (kindOf(pfn) != KIND_FREE || orderOf(pfn) != order) { problem(CHK_FREE_LIST, pfn, <u64>order, 0, 0); break; }
      const n = <u32>1 << order;
      for (let i: u32 = 0; i < n; i++) store<u32>(exp(pfn + i, 0), FREE_MARK);
      total += n;
      p = freeListNext(pfn);
    }
  }
  if (total != freeFrames) problem(CHK_FREE_COUNT, 0, <u64>freeFrames, <u64>total, 0);
}

function countCacheSlot(f: File, pgoff: u64, slot: usize): void {
  const v = load<u64>(slot);
  if ((v & 3) == CACHE_PAGE) {
    const pfn = <u32>(v >> 2);
    if (testFlag(folioHead(pfn), PG_ANON) || <u64>cachePageIndex(pfn) != pgoff) problem(CHK_CACHE_PAGE, f.id, pgoff, <u64>pfn, 0);
    bump(folioHead(pfn), 0, 1);
  } else if ((v & 3) == CACHE_SWAP) {
    const s = <u32>(v >> 2);
    if (s < swapScratchSlots) store<u32>(swapScratch + (<usize>s << 2), load<u32>(swapScratch + (<usize>s << 2)) + 1);
  }
}

let curMm: Mm = changetype<Mm>(0);

function checkMm(mm: Mm): void {
  curMm = mm;
  for (let i = 0; i < 4; i++) unchecked(rss[i] = 0);
  tablesSeen = 0;
  seeTable(mm.root);
  // Entries are checked per VMA so that shared mappings are known.
  checkLevel(mm, mm.levels - 1, mm.root, 0);
  for (let c: u32 = 0; c < NR_MM_COUNTERS; c++) {
    if (getRss(mm, c) != unchecked(rss[c])) problem(CHK_RSS, mm.id, <u64>c, <u64>unchecked(rss[c]), <u64>getRss(mm, c));
  }
  if (tablesSeen != mm.nrTables) problem(CHK_TABLE_COUNT, mm.id, <u64>tablesSeen, <u64>mm.nrTables, 0);
}

function seeTable(pfn: u32): void {
  if (pfn >= nrFrames || kindOf(pfn) != KIND_TABLE) { problem(CHK_BAD_ENTRY, curMm.id, 0, <u64>pfn, 1); return; }
  if (load<u32>(exp(pfn, 0)) != 0) problem(CHK_TABLE_SHARED, pfn, <u64>curMm.id, 0, 0);
  bump(pfn, 0, 1);
  tablesSeen++;
  // Deposited tables hang off PMD tables (see pgtable.ts); harmless to follow for any level.
  let d = tagOf(pfn);
  while (d != 0) {
    if (d >= nrFrames || kindOf(d) != KIND_TABLE) { problem(CHK_BAD_ENTRY, curMm.id, 0, <u64>d, 2); return; }
    bump(d, 0, 1);
    tablesSeen++;
    d = <u32>load<u64>(tablePtr(d));
  }
}

/** A frame held once by a kernel structure: a mirror directory, or a device pool's page. */
function heldOnce(pfn: u32): void { bump(pfn, 0, 1); }

/**
 * A valid mirror entry must map what the CPU maps there, with WRITE only
 * where the CPU entry is writable: the notifiers keep the two in step.
 */
function checkMirrorEntry(mmId: u32, addr: u64, e: u64): void {
  const mm = mmById(mmId);
  if (mm == null) { problem(CHK_MIRROR, mmId, addr, e, 2); return; }
  const ep = leafLookup(changetype<Mm>(mm), addr);
  const cpu = ep == 0 ? 0 : load<u64>(ep);
  if (ep == 0 || !ptePresent(cpu) || pteProtnone(cpu)) { problem(CHK_MIRROR, mmId, addr, e, 3); return; }
  const level = lookupLevel;
  const pfn = <u32>leafPfn(cpu, level) + (level == 0 ? 0 : <u32>((addr >> 12) & ((<u64>1 << (9 * level)) - 1)));
  if (pfn != mirrorEntryPfn(e)) problem(CHK_MIRROR, mmId, addr, e, 4);
  else if ((e & MIRROR_WRITE) != 0 && !pteWrite(cpu)) problem(CHK_MIRROR, mmId, addr, e, 5);
}

function isSharedAt(mm: Mm, addr: u64): bool {
  for (let i: u32 = 0; i < mm.nrVmas; i++) {
    const v = vmaAt(mm, i);
    if (v.start <= addr && addr < v.end) return (v.flags & VM_SHARED) != 0;
  }
  return false;
}

function checkLevel(mm: Mm, level: u32, table: u32, base: u64): void {
  const shift: u64 = 12 + 9 * <u64>level;
  const p = tablePtr(table);
  for (let i: u32 = 0; i < 512; i++) {
    const e = load<u64>(p + (<usize>i << 3));
    if (e == 0) continue;
    const addr = base + (<u64>i << shift);
    if (level > 0 && isTableEntry(e)) {
      const child = <u32>tableEntryPfn(e);
      seeTable(child);
      if (kindOf(child) == KIND_TABLE) checkLevel(mm, level - 1, child, addr);
      continue;
    }
    if (level > 0 && !isUpperLeaf(e)) { problem(CHK_BAD_ENTRY, mm.id, addr, e, 3); continue; }
    checkLeaf(mm, level, e, addr);
  }
  if (ARM64 && level == 0) for (let i: u32 = 0; i < 512; i += 16) checkContBlock(mm, p + (<usize>i << 3), base + (<u64>i << 12));
}

/**
 * arm64: a block with PTE_CONT anywhere must be a proper contiguous block:
 * all 16 slots CONT, consecutive frames from a 16-aligned one in one folio,
 * the same attributes apart from access/dirty. Anything else is a TLB
 * conflict waiting to happen ("unpredictable" in the architecture).
 */
function checkContBlock(mm: Mm, p: usize, addr: u64): void {
  let any = false;
  for (let i: u32 = 0; i < 16; i++) if (pteCont(load<u64>(p + (<usize>i << 3)))) { any = true; break; }
  if (!any) return;
  const e0 = load<u64>(p);
  const pfn0 = <u32>leafPfn(e0, 0);
  if ((pfn0 & 15) != 0) { problem(CHK_CONT, mm.id, addr, e0, 1); return; }
  const norm = (e: u64): u64 => pteMkold(pteMkclean(e));
  const want = norm(e0);
  for (let i: u32 = 0; i < 16; i++) {
    const e = load<u64>(p + (<usize>i << 3));
    if (!pteCont(e) || norm(e) != want + (<u64>i << 12)) { problem(CHK_CONT, mm.id, addr + (<u64>i << 12), e, 2); return; }
  }
  if (ptePresent(e0) && !pteSpecial(e0) && (orderOf(folioHead(pfn0)) < 4 || folioHead(pfn0 + 15) != folioHead(pfn0))) problem(CHK_CONT, mm.id, addr, e0, 3);
}

function checkLeaf(mm: Mm, level: u32, e: u64, addr: u64): void {
  if (!ptePresent(e) && level == 0) {
    if (!isSwapPte(e)) return;
    const type = swpType(e);
    if (type < MAX_SWAPFILES) {
      const s = <u32>swpOffset(e);
      if (s == 0 || s >= swapScratchSlots) { problem(CHK_BAD_ENTRY, mm.id, addr, e, 4); return; }
      store<u32>(swapScratch + (<usize>s << 2), load<u32>(swapScratch + (<usize>s << 2)) + 1);
      unchecked(rss[MM_SWAPENTS] += 1);
    } else if (isDevicePrivateType(type)) {
      // A device-private page: one mapping, charged as anonymous memory.
      const pfn = devicePrivatePfn(mm, e);
      if (devicePrivateOwner(pfn) == 0) { problem(CHK_BAD_ENTRY, mm.id, addr, e, 7); return; }
      bump(pfn, 0, 1);
      bump(pfn, 1, 1);
      unchecked(rss[MM_ANONPAGES] += 1);
    } else if (type != SWP_PTE_MARKER && type != SWP_HWPOISON) {
      problem(CHK_BAD_ENTRY, mm.id, addr, e, 5);
    }
    return;
  }
  const pfn = <u32>leafPfn(e, level);
  if (pteSpecial(e) || isZeroPfn(pfn)) return;
  if (pfn >= nrFrames) { problem(CHK_BAD_ENTRY, mm.id, addr, e, 6); return; }
  const head = folioHead(pfn);
  if (load<u32>(exp(pfn, 0)) == FREE_MARK || kindOf(pfn) == KIND_FREE || kindOf(pfn) == KIND_TABLE) {
    problem(CHK_MAPS_FREE_FRAME, mm.id, addr, <u64>pfn, 0);
    return;
  }
  const nr: u32 = level == 0 ? 1 : <u32>1 << (9 * level);
  bump(head, 0, 1);
  if (level == 0) bump(pfn, 1, 1); else bump(head, 2, 1);
  const counter = mmCounter(head);
  unchecked(rss[counter] += <i64>nr);
  if (pteWrite(e) && testFlag(head, PG_ANON) && !isSharedAt(mm, addr)) {
    // A writable private anonymous mapping must own the page exclusively.
    const flagPfn = level == 0 ? pfn : head;
    if (!testFlag(flagPfn, PG_EXCLUSIVE)) problem(CHK_ANON_NOT_EXCLUSIVE, mm.id, addr, <u64>pfn, 0);
    const w = load<u32>(exp(flagPfn, 3));
    if (w != 0) problem(CHK_WRITABLE_SHARED_ANON, mm.id, addr, <u64>pfn, 0);
    store<u32>(exp(flagPfn, 3), w + 1);
  }
}

/** References held by GUP: a pin is 1024 references on a small folio, one plus a pincount on a large one. */
function countPins(): void {
  for (let id: u32 = 1; id < pinTableCapacity(); id++) {
    const n = pinCount(id);
    const pfns = pinPfns(id);
    const pin = (pinFlags(id) & GUP_PIN) != 0;
    for (let i: u32 = 0; i < n; i++) {
      const pfn = load<u32>(pfns + (<usize>i << 2));
      if (isZeroPfn(pfn)) continue;
      const head = folioHead(pfn);
      if (!pin) bump(head, 0, 1);
      else if (orderOf(head) == 0) bump(head, 0, GUP_PIN_COUNTING_BIAS);
      else { bump(head, 0, 1); bump(head + 1, 0, 1); }
    }
  }
}

function compareFrames(): void {
  for (let pfn: u32 = 1; pfn < nrFrames; pfn++) {
    const want = load<u32>(exp(pfn, 0));
    if (want == FREE_MARK) {
      if (kindOf(pfn) != KIND_FREE && kindOf(pfn) != KIND_PAGE) problem(CHK_FREE_LIST, pfn, 1, 0, 0);
      continue;
    }
    const kind = kindOf(pfn);
    if (kind == KIND_FREE) { problem(CHK_FREE_LIST, pfn, 2, 0, 0); continue; }
    if (pfn == zeroPfn || (hugeZeroPfn != 0 && folioHead(pfn) == hugeZeroPfn)) continue;
    if (kind == KIND_TABLE) {
      if (want != 1) problem(want == 0 ? CHK_TABLE_LEAK : CHK_TABLE_SHARED, pfn, <u64>want, 0, 0);
      continue;
    }
    const wantMap = load<u32>(exp(pfn, 1));
    if (wantMap != mapcount(pfn)) problem(CHK_MAPCOUNT, pfn, <u64>wantMap, <u64>mapcount(pfn), 0);
    if (kind == KIND_PAGE) {
      if (want == 0) problem(CHK_LEAKED_FRAME, pfn, <u64>refcount(pfn), 0, 0);
      else if (want != refcount(pfn)) problem(CHK_REFCOUNT, pfn, <u64>want, <u64>refcount(pfn), 0);
      if (orderOf(pfn) > 0) {
        const wantEntire = load<u32>(exp(pfn, 2));
        if (wantEntire != entireMapcount(pfn)) problem(CHK_ENTIRE_MAPCOUNT, pfn, <u64>wantEntire, <u64>entireMapcount(pfn), 0);
        const wantPins = load<u32>(exp(pfn + 1, 0));
        if (wantPins != pincount(pfn)) problem(CHK_PINCOUNT, pfn, <u64>wantPins, <u64>pincount(pfn), 0);
      }
    }
    const writers = load<u32>(exp(pfn, 3));
    if (writers != 0 && (mapcount(pfn) + entireMapcount(folioHead(pfn))) != 1) problem(CHK_WRITABLE_SHARED_ANON, pfn, <u64>writers, 0, 1);
  }
}

export function releaseCheckScratch(): void {
  if (scratch != 0) { kfree(scratch, <usize>scratchFrames << 4); scratch = 0; scratchFrames = 0; }
}
