// i_mmap: the reverse map of a file, every VMA of every mm that maps it, in
// the order the kernel's vma interval tree visits them: vm_pgoff ascending,
// equal pgoffs in insertion order (an rb-tree insert sends ties right), a
// fork child right after its parent (vma_interval_tree_insert_after).
// walk_page_mapping, truncation and every "who maps this page of the file"
// question go through it.
//
// A record is 16 bytes: key = (mm id << 48) | (vm_start >> 12), which names a
// VMA uniquely because an mm's VMAs never overlap, and the VMA's vm_pgoff,
// which never changes for a given key (a split keeps the low half's start and
// pgoff and adds a record for the high half). The array grows only in
// immapReserve, so insertion never fails: callers reserve before they change
// any VMA, as they do for the VMA array itself.

import { krealloc, kfree } from "./heap";
import { File } from "./file";

const RECORD: usize = 16;

// @ts-ignore: decorator
@inline export function immapKey(mm: u32, start: u64): u64 { return (<u64>mm << 48) | (start >> 12); }
// @ts-ignore: decorator
@inline export function keyMm(key: u64): u32 { return <u32>(key >> 48); }
// @ts-ignore: decorator
@inline export function keyStart(key: u64): u64 { return (key & 0xffff_ffff_ffff) << 12; }
// @ts-ignore: decorator
@inline export function immapKeyAt(f: File, i: u32): u64 { return load<u64>(f.immap + <usize>i * RECORD); }
// @ts-ignore: decorator
@inline export function immapPgoffAt(f: File, i: u32): u64 { return load<u64>(f.immap + <usize>i * RECORD, 8); }

/** Makes room for `extra` more records; false when out of memory. */
export function immapReserve(f: File, extra: u32): bool {
  const need = f.immapCount + extra;
  if (need <= f.immapCap) return true;
  let cap: u32 = f.immapCap == 0 ? 8 : f.immapCap * 2;
  while (cap < need) cap *= 2;
  const p = krealloc(f.immap, <usize>f.immapCap * RECORD, <usize>cap * RECORD, <usize>f.immapCount * RECORD);
  if (p == 0) return false;
  f.immap = p;
  f.immapCap = cap;
  return true;
}

/** Frees the array of a file nobody maps any more. */
export function immapFree(f: File): void {
  if (f.immap != 0) kfree(f.immap, <usize>f.immapCap * RECORD);
  f.immap = 0; f.immapCap = 0; f.immapCount = 0;
}

function insertAt(f: File, i: u32, key: u64, pgoff: u64): void {
  const at = f.immap + <usize>i * RECORD;
  memory.copy(at + RECORD, at, <usize>(f.immapCount - i) * RECORD);
  store<u64>(at, key);
  store<u64>(at, pgoff, 8);
  f.immapCount++;
}

/** vma_interval_tree_insert: after every record whose pgoff is not above ours. Space must be reserved. */
export function immapInsert(f: File, key: u64, pgoff: u64): void {
  let lo: u32 = 0, hi = f.immapCount;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (immapPgoffAt(f, mid) <= pgoff) lo = mid + 1; else hi = mid;
  }
  insertAt(f, lo, key, pgoff);
}

/** vma_interval_tree_insert_after: right after `prevKey` (fork puts the child next to its parent). */
export function immapInsertAfter(f: File, prevKey: u64, key: u64, pgoff: u64): void {
  const i = immapFind(f, prevKey);
  if (i < 0) immapInsert(f, key, pgoff);
  else insertAt(f, <u32>i + 1, key, pgoff);
}

/** Index of the record with this key, or -1. */
export function immapFind(f: File, key: u64): i32 {
  for (let i: u32 = 0; i < f.immapCount; i++) if (immapKeyAt(f, i) == key) return <i32>i;
  return -1;
}

/** vma_interval_tree_remove. */
export function immapRemove(f: File, key: u64): void {
  const i = immapFind(f, key);
  if (i < 0) return;
  const at = f.immap + <usize>i * RECORD;
  memory.copy(at, at + RECORD, <usize>(f.immapCount - <u32>i - 1) * RECORD);
  f.immapCount--;
}
