// The range walker (mm/pagewalk.c): one walker, behaviour plugged in as an op.
//
// An op is a class with these methods; walkers are generic, so each op gets its
// own monomorphized walker with the calls inlined (no indirect call per entry):
//
//   pteRange(ptep, addr, end): i32      the PTE slots of [addr, end) in one table (ptep is the first):
//                                       every slot, none ones included; one call per table so that
//                                       the op's loop keeps its state in locals
//   upperEntry(level, ep, addr, next): i32   every non-none PMD/PUD/P4D/PGD entry;
//                                       may set walkAction (SUBTREE, CONTINUE, AGAIN)
//   hole(addr, next, depth): i32        a none upper entry, or (depth -1) a gap between VMAs
//   testWalk(vma): i32                  VMA walks: 0 walk, 1 skip, < 0 abort
//   preVma(vma, start, end): i32        before a VMA's tables (error aborts)
//   postVma(vma, start, end): void      after them, even when the walk failed
//
// Return convention, written down once: 0 continue, > 0 stop and return it,
// < 0 stop with -errno. Levels: 0 PTE, 1 PMD, 2 PUD, 3 P4D/PGD, 4 PGD (5-level).
// pte_hole depth follows the kernel (pgd 0, p4d 1, pud 2, pmd 3), folded
// levels reporting their real depth, so depth = 4 - level.
//
// A huge leaf reached with walkAction still SUBTREE is split (VMA walks only,
// PMD level), then walked as a table, as walk_pmd_range does.

import { Mm, mmById } from "./mm";
import { Vma, findVmaIndex, vmaAt, vmaLookup, vmaPages } from "./vma";
import { File } from "./file";
import { immapKeyAt, immapPgoffAt, keyMm, keyStart } from "./immap";
import { tablePtr, levelAddrEnd, levelShift } from "./pgtable";
import { isTableEntry, isUpperLeaf, tableEntryPfn } from "./arch/index";
import { splitHugePmd } from "./thp";
import { ENOMEM } from "./constants";

export const ACTION_SUBTREE: i32 = 0;
export const ACTION_CONTINUE: i32 = 1;
export const ACTION_AGAIN: i32 = 2;

/** walk->action for the entry being visited. */
export let walkAction: i32 = ACTION_SUBTREE;
/** The VMA being walked (null for table-only walks). */
export let walkVma: Vma | null = null;
export let walkMm: Mm = changetype<Mm>(0);
/** pfn of the table holding the entry being visited (the PMD table, at level 1). */
export let walkTablePfn: u32 = 0;

export function setWalkAction(a: i32): void { walkAction = a; }

/** Puts back the walker's globals after a nested walk (see step.ts). */
export function restoreWalkState(action: i32, vma: Vma | null, mm: Mm, table: u32): void {
  walkAction = action; walkVma = vma; walkMm = mm; walkTablePfn = table;
}

/** Walks the page tables of mm over [start, end) regardless of VMAs (walk_page_range_novma). */
export function walkTables<T>(op: T, mm: Mm, start: u64, end: u64): i32 {
  if (start >= end) return 0;
  walkMm = mm;
  return walkLevel<T>(op, mm.levels - 1, mm.root, start, end);
}

/** walk_page_range: each VMA overlapping [start, end), holes between them reported at depth -1. */
export function walkPageRange<T>(op: T, mm: Mm, start: u64, end: u64): i32 {
  walkMm = mm;
  let addr = start;
  let i = findVmaIndex(mm, start);
  let r: i32 = 0;
  while (addr < end) {
    if (i >= mm.nrVmas || vmaAt(mm, i).start >= end) {
      walkVma = null;
      r = op.hole(addr, end, -1);
      break;
    }
    const v = vmaAt(mm, i);
    if (addr < v.start) {
      walkVma = null;
      r = op.hole(addr, v.start, -1);
      if (r != 0) break;
      addr = v.start;
    }
    const next = v.end < end ? v.end : end;
    walkVma = v;
    r = op.testWalk(v);
    if (r < 0) break;
    if (r == 0) {
      r = op.preVma(v, addr, next);
      if (r != 0) break;
      r = walkLevel<T>(op, mm.levels - 1, mm.root, addr, next);
      // The op may have split or merged VMAs: re-find ours by address.
      i = findVmaIndex(mm, addr);
      op.postVma(vmaAt(mm, i), addr, next);
      if (r != 0) break;
    }
    r = 0;
    addr = next;
    i = findVmaIndex(mm, addr);
  }
  walkVma = null;
  return r;
}

function walkLevel<T>(op: T, level: u32, table: u32, start: u64, end: u64): i32 {
  const base = tablePtr(table);
  if (level == 0) return op.pteRange(base + (<usize>((start >> 12) & 511) << 3), start, end);
  const shift = levelShift(level);
  let addr = start;
  while (addr < end) {
    const next = levelAddrEnd(addr, end, level);
    const ep = base + (<usize>((addr >> shift) & 511) << 3);
    const e = load<u64>(ep);
    if (e == 0) {
      const r = op.hole(addr, next, 4 - <i32>level);
      if (r != 0) return r;
      addr = next;
      continue;
    }
    walkAction = ACTION_SUBTREE;
    walkTablePfn = table;
    const r = op.upperEntry(level, ep, addr, next);
    if (r != 0) return r;
    if (walkAction == ACTION_AGAIN) continue;
    if (walkAction == ACTION_SUBTREE) {
      let cur = load<u64>(ep);
      if (isUpperLeaf(cur) && level == 1 && walkVma != null) {
        if (!splitHugePmd(walkMm, changetype<Vma>(walkVma), ep, table, addr & ~((<u64>1 << 21) - 1))) return -ENOMEM;
        cur = load<u64>(ep);
      }
      if (isTableEntry(cur)) {
        const r2 = walkLevel<T>(op, level - 1, <u32>tableEntryPfn(cur), addr, next);
        if (r2 != 0) return r2;
      }
    }
    addr = next;
  }
  return 0;
}

/**
 * walk_page_mapping: each VMA of the file's i_mmap overlapping pgoffs
 * [first, first + nr), clipped to it, in interval-tree order, in whatever mm
 * it belongs to. A test_walk that skips a VMA stops the whole mapping walk
 * (the kernel breaks out of its loop with 0), unless `walkOnSkip`.
 */
export function walkPageMapping<T>(op: T, f: File, first: u64, nr: u64, walkOnSkip: bool): i32 {
  if (nr == 0) return 0;
  const last = first + nr - 1;
  let r: i32 = 0;
  for (let i: u32 = 0; i < f.immapCount; i++) {
    const pgoff = immapPgoffAt(f, i);
    if (pgoff > last) break;                          // sorted by pgoff: nothing further overlaps
    const key = immapKeyAt(f, i);
    const mm = changetype<Mm>(mmById(keyMm(key)));
    const v = changetype<Vma>(vmaLookup(mm, keyStart(key)));
    const vend = pgoff + vmaPages(v);
    if (vend <= first) continue;
    const start = v.start + (((first > pgoff ? first : pgoff) - pgoff) << 12);
    const end = v.start + (((first + nr < vend ? first + nr : vend) - pgoff) << 12);
    if (start >= end) continue;
    walkMm = mm;
    walkVma = v;
    r = op.testWalk(v);
    if (r < 0) break;
    if (r > 0) {
      r = 0;
      if (walkOnSkip) continue;
      break;
    }
    r = op.preVma(v, start, end);
    if (r != 0) break;
    r = walkLevel<T>(op, mm.levels - 1, mm.root, start, end);
    op.postVma(changetype<Vma>(vmaLookup(mm, start)), start, end);
    if (r != 0) break;
  }
  walkVma = null;
  return r;
}
