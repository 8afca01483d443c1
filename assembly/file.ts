// Files and their page cache. A File is what an mmap'ed file or a memfd
// (shmem) is to the core: a size, a page cache indexed by pgoff, and
// write-notify behaviour. The page cache is a radix tree of 4 KiB nodes
// (512 slots each), like the xarray. A slot holds
//
//   0                   no page
//   (pfn  << 2) | 1     a page
//   (slot << 2) | 2     shmem page swapped out to that swap slot
//
// Page-cache pages carry the cache's reference in their refcount, !ANON, and
// index = pgoff, as in the kernel.

import { kzalloc, kfree } from "./heap";
import { folioPut, folioHead, setIndex, clearFlag, PG_DIRTY } from "./frames";
import { swapFree } from "./swap";
import { immapFree } from "./immap";
import { VM_FAULT_SIGBUS, VM_FAULT_BLOCKED, BLOCKED_MKWRITE } from "./constants";
import { setFaultBlockedOn } from "./fault";

export const CACHE_PAGE: u64 = 1;
export const CACHE_SWAP: u64 = 2;

export const FILE_SHMEM: u32 = 1;           // swap-backed, no disk (memfd, shared anon)
export const FILE_WRITENOTIFY: u32 = 2;     // has ->page_mkwrite: shared writable maps start read-only
export const FILE_MKWRITE_HOOK: u32 = 4;    // ->page_mkwrite calls out to the scenario (JavaScript)
export const FILE_HUGE: u32 = 8;            // tmpfs huge=always: PMD-size folios where the range allows

/** The scenario's page_mkwrite: 0 go on, 1 the writer blocks, 2 SIGBUS. */
@external("env", "pageMkwrite")
declare function pageMkwriteCallback(file: u32, pgoff: f64, mm: u32, vpn: f64): i32;

@unmanaged export class File {
  id: u32;
  flags: u32;
  refs: u32;            // open handles + mapping VMAs
  height: u32;          // radix levels (0: empty tree)
  root: usize;
  sizePages: u64;
  nrPages: u64;         // pages in the cache
  nrSwapped: u64;       // shmem pages out on swap
  mkwriteCount: u64;    // ->page_mkwrite calls
  immap: usize;         // the reverse map (immap.ts): every VMA mapping the file
  immapCount: u32;
  immapCap: u32;
}

let fileTable: usize = 0;
let fileTableCap: u32 = 0;

export function fileById(id: u32): File | null {
  if (id == 0 || id >= fileTableCap) return null;
  return changetype<File | null>(load<u32>(fileTable + (<usize>id << 2)));
}
// @ts-ignore: decorator
@inline export function fileOf(id: u32): File { return changetype<File>(load<u32>(fileTable + (<usize>id << 2))); }
export function fileTableCapacity(): u32 { return fileTableCap; }

/** Creates a file with one reference (the caller's handle); returns its id or 0. */
export function fileCreate(sizePages: u64, flags: u32): u32 {
  let id: u32 = 1;
  while (id < fileTableCap && load<u32>(fileTable + (<usize>id << 2)) != 0) id++;
  if (id >= fileTableCap) {
    const cap = fileTableCap == 0 ? 64 : fileTableCap * 2;
    const t = kzalloc(<usize>cap << 2);
    if (t == 0) return 0;
    if (fileTable != 0) { memory.copy(t, fileTable, <usize>fileTableCap << 2); kfree(fileTable, <usize>fileTableCap << 2); }
    fileTable = t; fileTableCap = cap;
  }
  const p = kzalloc(offsetof<File>());
  if (p == 0) return 0;
  const f = changetype<File>(p);
  f.id = id; f.flags = flags; f.refs = 1; f.sizePages = sizePages;
  store<u32>(fileTable + (<usize>id << 2), <u32>p);
  return id;
}

export function fileGet(id: u32): void { fileOf(id).refs++; }

/** Drops a reference; the last one truncates the cache to nothing and frees the file. */
export function filePut(id: u32): void {
  const f = fileOf(id);
  if (--f.refs != 0) return;
  cacheForEach(f, 0, cacheRelease);
  freeNode(f.root, f.height);
  immapFree(f);
  store<u32>(fileTable + (<usize>id << 2), 0);
  kfree(changetype<usize>(f), offsetof<File>());
}

export function fileWantsWritenotify(id: u32): bool { return (fileOf(id).flags & FILE_WRITENOTIFY) != 0; }

/**
 * do_page_mkwrite: the filesystem learns that a page of a shared mapping is
 * about to be written. Returns 0, VM_FAULT_SIGBUS or VM_FAULT_BLOCKED.
 */
export function doPageMkwrite(f: File, pgoff: u64, mm: u32, addr: u64): u32 {
  if ((f.flags & FILE_WRITENOTIFY) == 0) return 0;
  f.mkwriteCount++;
  if ((f.flags & FILE_MKWRITE_HOOK) == 0) return 0;
  const r = pageMkwriteCallback(f.id, <f64>pgoff, mm, <f64>(addr >> 12));
  if (r == 1) { setFaultBlockedOn(BLOCKED_MKWRITE); return VM_FAULT_BLOCKED; }
  return r == 2 ? VM_FAULT_SIGBUS : 0;
}

/**
 * Empties one cache slot: drops the cache's page reference or frees the swap
 * slot. The page must no longer be mapped (truncation unmaps first).
 */
export function cacheRelease(f: File, pgoff: u64, slot: usize): void {
  const v = load<u64>(slot);
  store<u64>(slot, 0);
  if ((v & 3) == CACHE_PAGE) {
    // The cache holds one reference per page, on the folio's head.
    const pfn = <u32>(v >> 2);
    const head = folioHead(pfn);
    if (pfn == head) {
      setIndex(head, 0);
      clearFlag(head, PG_DIRTY);
    }
    folioPut(head);
    f.nrPages--;
  } else if ((v & 3) == CACHE_SWAP) {
    swapFree(<u32>(v >> 2));
    f.nrSwapped--;
  }
}

function freeNode(node: usize, height: u32): void {
  if (node == 0) return;
  if (height > 1) {
    for (let i = 0; i < 512; i++) freeNode(<usize>load<u64>(node + (<usize>i << 3)), height - 1);
  }
  kfree(node, 4096);
}

/** The cache slot for pgoff, or 0 when its node does not exist. */
export function cacheLookup(f: File, pgoff: u64): u64 {
  if (f.height == 0 || pgoff >= (<u64>1 << (9 * <u64>f.height))) return 0;
  let node = f.root;
  for (let h = f.height; h > 1; h--) {
    node = <usize>load<u64>(node + (<usize>((pgoff >> (9 * <u64>(h - 1))) & 511) << 3));
    if (node == 0) return 0;
  }
  return load<u64>(node + (<usize>(pgoff & 511) << 3));
}

/** Pointer to the cache slot for pgoff, creating nodes; 0 when out of memory. */
export function cacheSlot(f: File, pgoff: u64): usize {
  while (f.height == 0 || pgoff >= (<u64>1 << (9 * <u64>f.height))) {
    const n = kzalloc(4096);
    if (n == 0) return 0;
    store<u64>(n, <u64>f.root);
    f.root = n;
    f.height++;
  }
  let node = f.root;
  for (let h = f.height; h > 1; h--) {
    const p = node + (<usize>((pgoff >> (9 * <u64>(h - 1))) & 511) << 3);
    let next = <usize>load<u64>(p);
    if (next == 0) {
      next = kzalloc(4096);
      if (next == 0) return 0;
      store<u64>(p, <u64>next);
    }
    node = next;
  }
  return node + (<usize>(pgoff & 511) << 3);
}

/**
 * Visits every non-empty slot with pgoff >= from, in order, calling fn(f, pgoff, slotPtr).
 * Used by truncation and the checker.
 */
export function cacheForEach(f: File, from: u64, fn: (f: File, pgoff: u64, slot: usize) => void): void {
  if (f.height == 0) return;
  forEachIn(f, f.root, f.height, 0, from, fn);
}

function forEachIn(f: File, node: usize, h: u32, base: u64, from: u64, fn: (f: File, pgoff: u64, slot: usize) => void): void {
  const span: u64 = <u64>1 << (9 * <u64>(h - 1));
  for (let i: u32 = 0; i < 512; i++) {
    const lo = base + <u64>i * span;
    if (lo + span <= from) continue;
    const p = node + (<usize>i << 3);
    const v = load<u64>(p);
    if (v == 0) continue;
    if (h == 1) fn(f, lo, p);
    else forEachIn(f, <usize>v, h - 1, lo, from, fn);
  }
}
