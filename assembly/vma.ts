// Virtual memory areas: a sorted array per mm (the kernel's maple tree, in its
// simplest form). Lookups are a binary search behind a one-entry cache; the
// array rarely holds more than a few hundred VMAs, so inserts move memory.

import { krealloc } from "./heap";
import { Mm } from "./mm";
import { VM_SOFTDIRTY, VM_SHARED, VM_MAYWRITE, VM_WRITE, VM_UFFD_WP, VM_UFFD_MISSING } from "./constants";
import { vmGetPageProt, pteMkwrite, softDirtySupported } from "./arch/index";
import { fileGet, filePut, fileWantsWritenotify, fileOf } from "./file";
import { immapInsert, immapInsertAfter, immapRemove, immapKey } from "./immap";

@unmanaged export class Vma {
  start: u64;
  end: u64;
  pgoff: u64;          // in pages, for file VMAs (anon: start >> 12, as the kernel does)
  flags: u32;          // vm_flags
  file: u32;           // file id, 0 for anonymous
  anonVma: u32;        // anon_vma id, 0 until the first anonymous page
  uffd: u32;           // userfaultfd context id, 0 when unregistered
  pageProt: u64;       // vm_page_prot
}

export const VMA_BYTES: usize = offsetof<Vma>();
let anonVmaIds: u32 = 0;

// @ts-ignore: decorator
@inline export function vmaAt(mm: Mm, i: u32): Vma { return changetype<Vma>(mm.vmas + <usize>i * VMA_BYTES); }
// @ts-ignore: decorator
@inline export function vmaPages(v: Vma): u64 { return (v.end - v.start) >> 12; }
// @ts-ignore: decorator
@inline export function isCowMapping(flags: u32): bool { return (flags & (VM_SHARED | VM_MAYWRITE)) == VM_MAYWRITE; }
// @ts-ignore: decorator
@inline export function vmaIsAnonymous(v: Vma): bool { return v.file == 0; }
/** linear_page_index: the file page `addr` maps. */
// @ts-ignore: decorator
@inline export function linearPageIndex(v: Vma, addr: u64): u64 { return ((addr - v.start) >> 12) + v.pgoff; }

/** maybe_mkwrite: write permission only where the VMA allows writes. */
// @ts-ignore: decorator
@inline export function maybeMkwrite(e: u64, vma: Vma): u64 { return (vma.flags & VM_WRITE) != 0 ? pteMkwrite(e) : e; }

/**
 * vma_wants_writenotify: a shared writable mapping whose first write to each
 * page the kernel must see: the file has ->page_mkwrite, soft-dirty tracking
 * was reset (VM_SOFTDIRTY clear), or userfaultfd write-protects it.
 */
export function vmaWantsWritenotify(v: Vma): bool {
  if ((v.flags & (VM_SHARED | VM_WRITE)) != (VM_SHARED | VM_WRITE)) return false;
  if (v.file != 0 && fileWantsWritenotify(v.file)) return true;
  if (softDirtySupported && (v.flags & VM_SOFTDIRTY) == 0) return true;
  return (v.flags & VM_UFFD_WP) != 0;
}

/** vma_wants_manual_pte_write_upgrade: where write permission may be restored without a fault. */
export function vmaWantsManualWriteUpgrade(v: Vma): bool {
  if ((v.flags & VM_SHARED) != 0) return vmaWantsWritenotify(v);
  return (v.flags & VM_WRITE) != 0;
}

/** vma_set_page_prot: write-notified mappings get the private (read-only) protection. */
export function vmaSetPageProt(v: Vma): void {
  v.pageProt = vmGetPageProt(vmaWantsWritenotify(v) ? v.flags & ~VM_SHARED : v.flags);
}

/** Index of the first VMA ending above addr (find_vma), or nrVmas. */
export function findVmaIndex(mm: Mm, addr: u64): u32 {
  const c = mm.vmaCache;
  if (c < mm.nrVmas) {
    const v = vmaAt(mm, c);
    if (v.start <= addr && addr < v.end) return c;
  }
  let lo: u32 = 0, hi = mm.nrVmas;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (vmaAt(mm, mid).end <= addr) lo = mid + 1; else hi = mid;
  }
  return lo;
}

/** vma_lookup: the VMA containing addr, or null. */
export function vmaLookup(mm: Mm, addr: u64): Vma | null {
  const i = findVmaIndex(mm, addr);
  if (i >= mm.nrVmas) return null;
  const v = vmaAt(mm, i);
  if (v.start > addr) return null;
  mm.vmaCache = i;
  return v;
}

function ensureCapacity(mm: Mm, n: u32): bool {
  if (n <= mm.capVmas) return true;
  let cap: u32 = mm.capVmas == 0 ? 16 : mm.capVmas * 2;
  while (cap < n) cap *= 2;
  const p = krealloc(mm.vmas, <usize>mm.capVmas * VMA_BYTES, <usize>cap * VMA_BYTES, <usize>mm.nrVmas * VMA_BYTES);
  if (p == 0) return false;
  mm.vmas = p;
  mm.capVmas = cap;
  return true;
}

/** Makes room for `extra` more VMAs so that a later split or insert cannot fail. */
export function vmaReserve(mm: Mm, extra: u32): bool { return ensureCapacity(mm, mm.nrVmas + extra); }

/**
 * Inserts a new VMA at its sorted position; returns its index. Capacity must
 * be reserved, in the file's i_mmap too. A fork passes the parent VMA's
 * i_mmap key so that the child is linked right after it.
 */
export function vmaInsert(mm: Mm, start: u64, end: u64, flags: u32, file: u32, pgoff: u64, immapAfter: u64 = 0): u32 {
  const i = findVmaIndex(mm, start);
  const at = mm.vmas + <usize>i * VMA_BYTES;
  memory.copy(at + VMA_BYTES, at, <usize>(mm.nrVmas - i) * VMA_BYTES);
  mm.nrVmas++;
  const v = changetype<Vma>(at);
  v.start = start; v.end = end; v.flags = flags; v.file = file;
  v.pgoff = file != 0 ? pgoff : start >> 12;
  v.anonVma = 0; v.uffd = 0;
  vmaSetPageProt(v);
  if (file != 0) {
    fileGet(file);
    if (immapAfter != 0) immapInsertAfter(fileOf(file), immapAfter, immapKey(mm.id, start), pgoff);
    else immapInsert(fileOf(file), immapKey(mm.id, start), pgoff);
  }
  mm.vmaCache = i;
  return i;
}

/** Splits VMA i at addr (strictly inside); both halves keep every attribute. Capacity (and i_mmap space) must be reserved. */
export function vmaSplit(mm: Mm, i: u32, addr: u64): void {
  const at = mm.vmas + <usize>i * VMA_BYTES;
  memory.copy(at + VMA_BYTES, at, <usize>(mm.nrVmas - i) * VMA_BYTES);
  mm.nrVmas++;
  const lo = changetype<Vma>(at), hi = changetype<Vma>(at + VMA_BYTES);
  lo.end = addr;
  hi.pgoff = lo.pgoff + ((addr - lo.start) >> 12);
  hi.start = addr;
  if (lo.file != 0) {
    fileGet(lo.file);
    immapInsert(fileOf(lo.file), immapKey(mm.id, addr), hi.pgoff);
  }
  mm.vmaCache = 0;
}

/** Removes VMA i (page tables must already be zapped). */
export function vmaRemove(mm: Mm, i: u32): void {
  const at = mm.vmas + <usize>i * VMA_BYTES;
  const f = changetype<Vma>(at).file;
  const key = immapKey(mm.id, changetype<Vma>(at).start);
  memory.copy(at, at + VMA_BYTES, <usize>(mm.nrVmas - i - 1) * VMA_BYTES);
  mm.nrVmas--;
  mm.vmaCache = 0;
  if (f != 0) {
    immapRemove(fileOf(f), key);
    filePut(f);
  }
}

/** is_mergeable_vma + anon_vma compatibility + contiguous pgoff. */
function canMerge(a: Vma, b: Vma): bool {
  if (a.end != b.start) return false;
  if (((a.flags ^ b.flags) & ~VM_SOFTDIRTY) != 0) return false;
  if (a.file != b.file || a.uffd != b.uffd) return false;
  if ((a.flags & (VM_UFFD_WP | VM_UFFD_MISSING)) != 0) return false;
  if (a.pgoff + vmaPages(a) != b.pgoff) return false;
  return a.anonVma == 0 || b.anonVma == 0 || a.anonVma == b.anonVma;
}

/** Merges VMA i with its successor when compatible; returns true if merged. */
export function vmaTryMergeNext(mm: Mm, i: u32): bool {
  if (i + 1 >= mm.nrVmas) return false;
  const a = vmaAt(mm, i), b = vmaAt(mm, i + 1);
  if (!canMerge(a, b)) return false;
  a.end = b.end;
  a.flags |= b.flags & VM_SOFTDIRTY;
  if (a.anonVma == 0) a.anonVma = b.anonVma;
  vmaRemove(mm, i + 1);
  return true;
}

/** anon_vma_prepare: gives the VMA an anon_vma identity on its first anonymous page. */
export function anonVmaPrepare(v: Vma): void {
  if (v.anonVma == 0) v.anonVma = ++anonVmaIds;
}
