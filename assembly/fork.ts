// fork's address-space half (dup_mmap in kernel/fork.c): a new mm with a copy
// of every VMA but the MADV_DONTFORK ones, and copy_page_range for the VMAs
// whose entries the child cannot simply refault.

import { Mm } from "./mm";
import { Vma, vmaAt, vmaReserve, vmaInsert, vmaLookup, isCowMapping } from "./vma";
import { mmuNotifierInvalidateStart, mmuNotifierInvalidateEnd, MMU_NOTIFY_PROTECTION_PAGE } from "./notifier";
import { mmCreate, exitMmap } from "./mmap";
import { walkPageRange } from "./walk";
import { CopyOp, COPY_EAGAIN } from "./ops/copy";
import { allocFolio, freeFolio } from "./frames";
import { flushTlbMm } from "./flush";
import { fileOf } from "./file";
import { immapReserve, immapKey } from "./immap";
import { uffdForkContext, uffdForkDone } from "./uffd";
import { VM_UFFD_MISSING, VM_DONTCOPY, VM_PFNMAP, VM_UFFD_WP } from "./constants";

const copyOp = new CopyOp();

/** EAGAIN rounds (a page preallocated outside the locks) of the last fork. */
export let forkRetries: u32 = 0;
/** Pages the last fork copied because they may be DMA-pinned. */
export let forkEarlyCopies: u64 = 0;

/**
 * vma_needs_copy: only anon pages, PFN maps and the uffd-wp state of a child
 * VMA that keeps its registration (event-fork) cannot be refaulted by the
 * child. Anonymous VMAs are always walked (a walk of an empty one is cheap),
 * file VMAs only once they hold COW copies.
 */
function vmaNeedsCopy(v: Vma, child: Vma): bool {
  return v.anonVma != 0 || (v.flags & VM_PFNMAP) != 0 || (child.flags & VM_UFFD_WP) != 0 || v.file == 0;
}

/**
 * Whether the kernel's copy_page_range would bracket this VMA: it runs only
 * when the kernel's vma_needs_copy holds (anonymous VMAs here are walked even
 * without an anon_vma, but then hold no writable entry to protect), and
 * notifies only for COW mappings.
 */
function copyNotifies(v: Vma, child: Vma): bool {
  if (!isCowMapping(v.flags)) return false;
  return v.anonVma != 0 || (v.flags & VM_PFNMAP) != 0 || (child.flags & VM_UFFD_WP) != 0;
}

/** Forks parent's address space; the child's mm, or null (ENOMEM) with the child torn down. */
export function dupMmap(parent: Mm, seedEra: bool): Mm | null {
  forkRetries = 0;
  forkEarlyCopies = 0;
  const child = mmCreate(parent.levels, parent.taskSize);
  if (child == null) return null;
  if (!vmaReserve(child, parent.nrVmas)) { exitMmap(child); return null; }
  copyOp.parent = parent;
  copyOp.child = child;
  copyOp.seedEra = seedEra;
  copyOp.earlyCopies = 0;
  let failed = false;
  for (let i: u32 = 0; i < parent.nrVmas && !failed; i++) {
    const v = vmaAt(parent, i);
    if ((v.flags & VM_DONTCOPY) != 0) continue;
    if (v.file != 0 && !immapReserve(fileOf(v.file), 1)) { failed = true; break; }
    // dup_userfaultfd: with event-fork the child's VMA stays registered, with a context of its own.
    const childCtx = v.uffd != 0 ? uffdForkContext(v.uffd, child) : 0;
    const flags = childCtx != 0 ? v.flags : v.flags & ~(VM_UFFD_WP | VM_UFFD_MISSING);
    const ci = vmaInsert(child, v.start, v.end, flags, v.file, v.pgoff, immapKey(parent.id, v.start));
    const cv = vmaAt(child, ci);
    cv.anonVma = v.anonVma;            // anon_vma_fork: the child's pages join the parent's anon_vma
    cv.uffd = childCtx;
    copyOp.childUffdWp = (cv.flags & VM_UFFD_WP) != 0;
    if (!vmaNeedsCopy(v, cv)) continue;
    // copy_page_range write-protects the parent's entries of a COW mapping.
    if (copyNotifies(v, cv)) mmuNotifierInvalidateStart(parent, MMU_NOTIFY_PROTECTION_PAGE, v.start, v.end);
    let addr = v.start;
    for (;;) {
      const r = walkPageRange<CopyOp>(copyOp, parent, addr, v.end);
      if (r == 0) break;
      if (r != COPY_EAGAIN) { failed = true; break; }
      // Drop the locks, allocate outside them, retry from the same address.
      forkRetries++;
      copyOp.prealloc = allocFolio(0);
      if (copyOp.prealloc == 0) { failed = true; break; }
      addr = copyOp.retryAddr;
    }
    // A preallocated page the retry did not consume is freed, never kept for another address.
    if (copyOp.prealloc != 0) { freeFolio(copyOp.prealloc); copyOp.prealloc = 0; }
  }
  forkEarlyCopies = copyOp.earlyCopies;
  uffdForkDone(failed);
  // Write-protected parent entries may still sit writable in TLBs.
  flushTlbMm(parent);
  // The kernel ends each range in copy_page_range, before dup_mmap's flush;
  // here they end after it. The same VMAs as above: those the child got a copy of.
  for (let i: u32 = 0; i < parent.nrVmas; i++) {
    const v = vmaAt(parent, i);
    if ((v.flags & VM_DONTCOPY) != 0) continue;
    const cv = vmaLookup(child, v.start);
    if (cv != null && copyNotifies(v, cv)) mmuNotifierInvalidateEnd(parent, MMU_NOTIFY_PROTECTION_PAGE, v.start, v.end);
  }
  if (failed) { exitMmap(child); return null; }
  return child;
}
