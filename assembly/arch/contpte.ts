// arm64 contiguous PTEs (arch/arm64/mm/contpte.c and the contpte part of
// arch/arm64/include/asm/pgtable.h): the PTE API the rest of the core uses.
//
// 16 PTEs of a 64 KiB-aligned block that map one large folio with
// consecutive, 64 KiB-aligned frames and the same attributes may carry
// PTE_CONT, so the TLB can hold the block as one entry. The bit is the
// arch's business: setters strip it from what they are given and fold the
// block themselves once its last slot is written and it qualifies; any change
// to part of a folded block unfolds it first. Folding and unfolding go
// through contpte_convert: every slot cleared (the block is invalid for a
// moment), their access/dirty bits gathered, the 64 KiB flushed, every slot
// rewritten. Hardware may set AF/dirty in any one slot of a folded block, so
// getters OR them over the block, and leak PTE_CONT.
//
// On x86-64 (and for kernel mms, or with `contpte: false`) every function
// here is the plain operation: ARM64 is a compile-time constant.

import { ARM64, ptePresent, pteCont, pteMkcont, pteWrite, pteDirty, pteYoung, pteSpecial, pteMkdirty, pteMkyoung,
  pteMkold, pteMkclean, pteWrprotect, leafPfn, pfnPte } from "./index";
import * as a64 from "./arm64";
import { Mm, MMF_KERNEL } from "../mm";
import { folioHead, orderOf, nrFrames } from "../frames";
import { leafLookup, lookupLevel } from "../fault";
import { flushTlbRange } from "../flush";
import { stepping, yieldStep, STEP_ENTRY, STEP_FLUSH } from "../step";

export const CONT_PTES: u32 = 16;
const CONT_SIZE: u64 = 16 << 12;
const BLOCK_BYTES: usize = 16 << 3;
const PMD_BYTES: u64 = 1 << 21;

/** `contpte` machine option (CONFIG_ARM64_CONTPTE). */
export let contpteEnabled: bool = true;
export function setContpte(on: bool): void { contpteEnabled = on; }

/** Block converts done (folds and unfolds), for statistics and tests. */
export let contpteFolds: u64 = 0;
export let contpteUnfolds: u64 = 0;

/** mm_is_user, and the feature on: whether this mm's PTEs go through the contpte layer. */
// @ts-ignore: decorator
@inline export function contpteMm(mm: Mm): bool { return ARM64 && contpteEnabled && (mm.flags & MMF_KERNEL) == 0; }

// @ts-ignore: decorator
@inline function validCont(e: u64): bool { return ARM64 && (e & (a64.PTE_VALID | a64.PTE_CONT)) == (a64.PTE_VALID | a64.PTE_CONT); }
// @ts-ignore: decorator
@inline function alignPtep(ptep: usize): usize { return ptep & ~(BLOCK_BYTES - 1); }
// @ts-ignore: decorator
@inline function stripCont(e: u64): u64 { return ARM64 ? e & ~a64.PTE_CONT : e; }
// @ts-ignore: decorator
@inline function protOf(e: u64): u64 { return ARM64 ? e & ~a64.PTE_ADDR_MASK : e; }

/**
 * contpte_convert: rewrites the block holding ptep with `pte`'s attributes
 * (CONT set to fold, clear to unfold) and the A/D bits gathered from all 16
 * slots, through an invalid window and one flush of the 64 KiB.
 */
function convert(mm: Mm, addr: u64, ptep: usize, pte: u64): void {
  const start = addr & ~(CONT_SIZE - 1);
  const first = alignPtep(ptep);
  let base = pfnPte(leafPfn(pte, 0) & ~<u64>15, protOf(pte));
  // Gather: software DIRTY or AF in any slot, or a slot hardware made dirty (DBM with RDONLY clear).
  let bits: u64 = 0;
  let hwDirty = false;
  if (!stepping) {
    // Two slots per 128-bit step, no branches: clear, and OR in what they held.
    const wr = i64x2.splat(a64.PTE_WRITE | a64.PTE_RDONLY), w = i64x2.splat(a64.PTE_WRITE), zero = i64x2.splat(0);
    let acc = zero, hw = zero;
    for (let i: usize = 0; i < BLOCK_BYTES; i += 16) {
      const v = v128.load(first + i);
      v128.store(first + i, zero);
      acc = v128.or(acc, v);
      hw = v128.or(hw, i64x2.eq(v128.and(v, wr), w));
    }
    bits = i64x2.extract_lane(acc, 0) | i64x2.extract_lane(acc, 1);
    hwDirty = v128.any_true(hw);
  } else {
    for (let i: u32 = 0; i < CONT_PTES; i++) {
      const p = first + (<usize>i << 3);
      const e = load<u64>(p);
      store<u64>(p, 0);
      bits |= e;
      hwDirty = hwDirty || (e & (a64.PTE_WRITE | a64.PTE_RDONLY)) == a64.PTE_WRITE;
      yieldStep(STEP_ENTRY, mm, start + (<u64>i << 12), start + (<u64>i << 12) + 4096, first & ~<usize>4095);
    }
    yieldStep(STEP_FLUSH, mm, start, start + CONT_SIZE, first & ~<usize>4095);
  }
  if ((bits & a64.PTE_DIRTY) != 0 || hwDirty) base = pteMkdirty(base);
  if ((bits & a64.PTE_AF) != 0) base = pteMkyoung(base);
  flushTlbRange(mm, start, start + CONT_SIZE, 12);
  if (!stepping) {
    let v = i64x2(<i64>base, <i64>(base + 4096));
    const step = i64x2.splat(8192);
    for (let i: usize = 0; i < BLOCK_BYTES; i += 16) { v128.store(first + i, v); v = i64x2.add(v, step); }
  } else {
    for (let i: u32 = 0; i < CONT_PTES; i++) {
      store<u64>(first + (<usize>i << 3), base + (<u64>i << 12));
      yieldStep(STEP_ENTRY, mm, start + (<u64>i << 12), start + (<u64>i << 12) + 4096, first & ~<usize>4095);
    }
  }
}

/** contpte_try_unfold: a folded block holding ptep becomes 16 ordinary PTEs (same A/D everywhere). */
export function tryUnfold(mm: Mm, addr: u64, ptep: usize): void {
  if (!contpteMm(mm)) return;
  const e = load<u64>(ptep);
  if (!validCont(e)) return;
  contpteUnfolds++;
  convert(mm, addr, ptep, stripCont(e));
}

/** contpte_try_unfold_partial: unfolds the blocks that [addr, +nr pages) covers only in part. */
export function unfoldPartial(mm: Mm, addr: u64, ptep: usize, nr: u32): void {
  if (!contpteMm(mm) || nr == 0) return;
  if (ptep != alignPtep(ptep) || nr < CONT_PTES) tryUnfold(mm, addr, ptep);
  const end = ptep + (<usize>nr << 3);
  if (end != alignPtep(end)) tryUnfold(mm, addr + (<u64>(nr - 1) << 12), end - 8);
}

/**
 * Unfolds every folded block of mm inside [start, end) (64 KiB-aligned): what
 * splitting a folio implies for its mappings (the kernel unmaps and remaps
 * them; ptemu unfolds in place).
 */
export function unfoldRange(mm: Mm, start: u64, end: u64): void {
  if (!contpteMm(mm)) return;
  let a = start & ~(CONT_SIZE - 1);
  while (a < end) {
    // One table lookup per PTE table, then its blocks in order.
    const tableEnd = (a | (PMD_BYTES - 1)) + 1;
    const stop = tableEnd < end ? tableEnd : end;
    const ep = leafLookup(mm, a);
    if (lookupLevel == 0) {
      for (let p = ep; a < stop; a += CONT_SIZE, p += BLOCK_BYTES) {
        if (validCont(load<u64>(p))) { contpteUnfolds++; convert(mm, a, p, stripCont(load<u64>(p))); }
      }
    }
    a = tableEnd;
  }
}

/**
 * contpte_try_fold, after `pte` was written at the last slot of its block:
 * folds when the folio covers the whole block and all 16 slots map its
 * consecutive pages with the same attributes (A/D aside).
 */
export function tryFold(mm: Mm, addr: u64, ptep: usize, pte: u64): void {
  if (!contpteMm(mm)) return;
  if (((addr >> 12) & 15) != 15 || (leafPfn(pte, 0) & 15) != 15) return;
  if ((pte & a64.PTE_VALID) == 0 || pteCont(pte) || pteSpecial(pte)) return;
  const pfn = <u32>leafPfn(pte, 0);
  if (pfn >= nrFrames) return;
  const head = folioHead(pfn);
  const folioStart = addr - (<u64>(pfn - head) << 12);
  const folioEnd = folioStart + (<u64>4096 << orderOf(head));
  const block = addr & ~(CONT_SIZE - 1);
  if (folioStart > block || folioEnd < block + CONT_SIZE) return;
  let expected = pteMkold(pteMkclean(pfnPte(<u64>pfn & ~<u64>15, protOf(pte))));
  const first = alignPtep(ptep);
  for (let i: u32 = 0; i < CONT_PTES; i++) {
    if (pteMkold(pteMkclean(load<u64>(first + (<usize>i << 3)))) != expected) return;
    expected += 4096;
  }
  contpteFolds++;
  convert(mm, addr, ptep, pteMkcont(pte));
}

/** set_ptes: CONT stripped; nr == 1 unfolds the target block, writes, tries to fold; nr > 1 writes aligned whole blocks with CONT directly. */
export function setPtes(mm: Mm, addr: u64, ptep: usize, pte: u64, nr: u32): void {
  pte = stripCont(pte);
  if (!contpteMm(mm)) {
    for (let i: u32 = 0; i < nr; i++) store<u64>(ptep + (<usize>i << 3), pte + (<u64>i << 12));
    return;
  }
  if (nr == 1) {
    tryUnfold(mm, addr, ptep);
    store<u64>(ptep, pte);
    tryFold(mm, addr, ptep, pte);
    return;
  }
  // contpte_set_ptes: the targets are not present; each chunk up to a block boundary is CONT when VA and PA line up.
  const end = addr + (<u64>nr << 12);
  let p = ptep, e = pte;
  while (addr < end) {
    const next = (addr + CONT_SIZE) & ~(CONT_SIZE - 1) < end ? (addr + CONT_SIZE) & ~(CONT_SIZE - 1) : end;
    const n = <u32>((next - addr) >> 12);
    const chunk = ((addr | next | (leafPfn(e, 0) << 12)) & (CONT_SIZE - 1)) == 0 ? pteMkcont(e) : e;
    for (let i: u32 = 0; i < n; i++) store<u64>(p + (<usize>i << 3), chunk + (<u64>i << 12));
    addr = next; p += <usize>n << 3; e += <u64>n << 12;
  }
}

/** ptep_get: a folded slot reports the block's ORed A/D (CONT leaks through). */
export function ptepGet(ptep: usize): u64 {
  let e = load<u64>(ptep);
  if (!validCont(e)) return e;
  const first = alignPtep(ptep);
  for (let i: u32 = 0; i < CONT_PTES; i++) {
    const s = load<u64>(first + (<usize>i << 3));
    if (pteDirty(s)) e = pteMkdirty(e);
    if (pteYoung(s)) e = pteMkyoung(e);
  }
  return e;
}

/**
 * ptep_get_lockless: like ptep_get, but the block may be changing under the
 * reader: every slot must still be valid-CONT with the expected frame and
 * attributes, else the read restarts. Returns false in `locklessOk` when it
 * would have to restart (the block is mid-change and nothing else can move
 * while the scenario holds this reader).
 */
export let locklessOk = true;
export function ptepGetLockless(ptep: usize): u64 {
  locklessOk = true;
  let e = load<u64>(ptep);
  if (!validCont(e)) return e;
  const first = alignPtep(ptep);
  const idx = <u64>((ptep - first) >> 3);
  const prot = protOf(pteMkold(pteMkclean(e)));
  const pfn0 = leafPfn(e, 0) - idx;
  for (let i: u32 = 0; i < CONT_PTES; i++) {
    const s = load<u64>(first + (<usize>i << 3));
    if (!validCont(s) || leafPfn(s, 0) != pfn0 + i || protOf(pteMkold(pteMkclean(s))) != prot) { locklessOk = false; return 0; }
    if (pteDirty(s)) e = pteMkdirty(e);
    if (pteYoung(s)) e = pteMkyoung(e);
  }
  return e;
}

/** ptep_get_and_clear: the block unfolds first (so the value carries its A/D), then only the target is cleared. */
export function ptepGetAndClear(mm: Mm, addr: u64, ptep: usize): u64 {
  tryUnfold(mm, addr, ptep);
  const e = load<u64>(ptep);
  store<u64>(ptep, 0);
  return e;
}

/** get_and_clear_full_ptes: partial blocks at the ends unfold; all nr cleared; the first value with every A/D ORed in. */
export function getAndClearFullPtes(mm: Mm, addr: u64, ptep: usize, nr: u32): u64 {
  if (nr == 1) tryUnfold(mm, addr, ptep); else unfoldPartial(mm, addr, ptep, nr);
  let e = load<u64>(ptep);
  store<u64>(ptep, 0);
  for (let i: u32 = 1; i < nr; i++) {
    const p = ptep + (<usize>i << 3);
    const s = load<u64>(p);
    store<u64>(p, 0);
    if (pteDirty(s)) e = pteMkdirty(e);
    if (pteYoung(s)) e = pteMkyoung(e);
  }
  return e;
}

/** ptep_test_and_clear_young: a folded block loses AF on all 16 slots (no unfold); true if any had it. */
export function testAndClearYoung(mm: Mm, addr: u64, ptep: usize): bool {
  const e = load<u64>(ptep);
  if (!contpteMm(mm) || !validCont(e)) {
    if (!pteYoung(e)) return false;
    store<u64>(ptep, pteMkold(e));
    return true;
  }
  const first = alignPtep(ptep);
  let young = false;
  for (let i: u32 = 0; i < CONT_PTES; i++) {
    const p = first + (<usize>i << 3);
    const s = load<u64>(p);
    if (pteYoung(s)) { young = true; store<u64>(p, pteMkold(s)); }
  }
  return young;
}

/** ptep_clear_flush_young: as above, then one flush of the page, or of the 64 KiB block, if anything was young. */
export function clearFlushYoung(mm: Mm, addr: u64, ptep: usize): bool {
  const cont = contpteMm(mm) && validCont(load<u64>(ptep));
  const young = testAndClearYoung(mm, addr, ptep);
  if (young) {
    const start = cont ? addr & ~(CONT_SIZE - 1) : addr & ~<u64>4095;
    flushTlbRange(mm, start, start + (cont ? CONT_SIZE : 4096), 12);
  }
  return young;
}

/** wrprotect_ptes: nr == 1 unfolds first; nr > 1 unfolds only partly covered blocks, whole ones keep CONT. */
export function wrprotectPtes(mm: Mm, addr: u64, ptep: usize, nr: u32): void {
  if (nr == 1) tryUnfold(mm, addr, ptep); else unfoldPartial(mm, addr, ptep, nr);
  for (let i: u32 = 0; i < nr; i++) {
    const p = ptep + (<usize>i << 3);
    store<u64>(p, pteWrprotect(load<u64>(p)));
  }
}

/** __ptep_set_access_flags on one slot: AF, WRITE, DIRTY added and RDONLY cleared as `entry` has them; the frame is kept. */
// @ts-ignore: decorator
@inline function accessFlagsOne(e: u64, entry: u64): u64 {
  if (!ARM64) return entry;
  // RDONLY is the inverse of write permission: it is cleared when entry has it clear, otherwise left as it is.
  const keep = a64.PTE_RDONLY | a64.PTE_AF | a64.PTE_WRITE | a64.PTE_DIRTY;
  return ((e ^ a64.PTE_RDONLY) | ((entry & keep) ^ a64.PTE_RDONLY)) ^ a64.PTE_RDONLY;
}

/**
 * ptep_set_access_flags: a folded target whose write permission does not
 * change gets the flags on all 16 slots (one flush of the block if `dirty`);
 * one whose write permission changes unfolds, then only the target changes.
 * Returns whether anything changed.
 */
export function setAccessFlags(mm: Mm, addr: u64, ptep: usize, entry: u64, dirty: bool): bool {
  entry = stripCont(entry);
  const raw = load<u64>(ptep);
  if (!contpteMm(mm) || !validCont(raw)) {
    if (raw == entry) return false;
    store<u64>(ptep, accessFlagsOne(raw, entry));
    if (dirty) flushTlbRange(mm, addr & ~<u64>4095, (addr & ~<u64>4095) + 4096, 12);
    return true;
  }
  const orig = stripCont(ptepGet(ptep));
  if (orig == entry) return false;
  if (pteWrite(orig) == pteWrite(entry)) {
    const first = alignPtep(ptep);
    for (let i: u32 = 0; i < CONT_PTES; i++) {
      const p = first + (<usize>i << 3);
      store<u64>(p, accessFlagsOne(load<u64>(p), entry));
    }
    if (dirty) flushTlbRange(mm, addr & ~(CONT_SIZE - 1), (addr & ~(CONT_SIZE - 1)) + CONT_SIZE, 12);
  } else {
    tryUnfold(mm, addr, ptep);
    store<u64>(ptep, accessFlagsOne(load<u64>(ptep), entry));
    if (dirty) flushTlbRange(mm, addr & ~<u64>4095, (addr & ~<u64>4095) + 4096, 12);
  }
  return true;
}

export const CYDP_CLEAR_YOUNG: u32 = 1;
export const CYDP_CLEAR_DIRTY: u32 = 2;

/** clear_young_dirty_ptes: a range starting or ending in a folded block widens to the whole block; no unfold. */
export function clearYoungDirtyPtes(mm: Mm, addr: u64, ptep: usize, nr: u32, flags: u32): void {
  let first = ptep, n = nr;
  if (contpteMm(mm)) {
    let last = ptep + (<usize>nr << 3);
    if (validCont(load<u64>(last - 8))) last = (last + BLOCK_BYTES - 1) & ~(BLOCK_BYTES - 1);
    if (validCont(load<u64>(ptep))) first = alignPtep(ptep);
    n = <u32>((last - first) >> 3);
  }
  for (let i: u32 = 0; i < n; i++) {
    const p = first + (<usize>i << 3);
    let e = load<u64>(p);
    if (e == 0 || !ptePresent(e)) continue;
    if ((flags & CYDP_CLEAR_YOUNG) != 0) e = pteMkold(e);
    if ((flags & CYDP_CLEAR_DIRTY) != 0) e = pteMkclean(e);
    store<u64>(p, e);
  }
}
