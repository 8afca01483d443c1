// userfaultfd (fs/userfaultfd.c, mm/userfaultfd.c): contexts, VMA
// registration, write-protect over a range, and the faults that become
// messages. A context belongs to one mm; a VMA registered with it carries its
// id and VM_UFFD_WP / VM_UFFD_MISSING.
//
// A fault the context must handle is reported as a message in the event log
// and the faulting access waits (VM_FAULT_BLOCKED: nothing changed); the
// scenario resolves it and runs the access again, as the woken thread would
// retry its fault. With the sigbus feature the access gets SIGBUS instead.
//
// Event record (32 bytes): seq u64 | ctx u32 | kind u32 | flags u32 | cpu u32 | addr u64

import { Mm } from "./mm";
import { Vma, vmaAt, vmaLookup, findVmaIndex, vmaSetPageProt, vmaWantsManualWriteUpgrade, vmaTryMergeNext, anonVmaPrepare, maybeMkwrite, linearPageIndex } from "./vma";
import { addRss } from "./mm";
import { pmdOffsetAlloc, pteTableAlloc } from "./fault";
import { tablePtr } from "./pgtable";
import { isTableEntry, tableEntryPfn, isPteMarker, pfnPte, pteMkspecial, pteMkdirty, pteMkuffdWp } from "./arch/index";
import { setPtes } from "./arch/contpte";
import { allocFolio, zeroPfn, setTag, setFlag, PG_DIRTY } from "./frames";
import { addNewAnonRmap, addFileRmap } from "./rmap";
import { filemapFault } from "./filemap";
import { Log, staticLog, logAppend } from "./log";
import { walkPageRange } from "./walk";
import { UffdWpOp } from "./ops/uffdwp";
import { gatherBegin, gatherEnd } from "./gather";
import { mmuNotifierInvalidateStart, mmuNotifierInvalidateEnd, MMU_NOTIFY_PROTECTION_VMA } from "./notifier";
import { fileOf, cacheLookup, FILE_SHMEM } from "./file";
import {
  VM_UFFD_WP, VM_UFFD_MISSING, VM_HUGETLB, VM_FAULT_SIGBUS, VM_FAULT_BLOCKED, FAULT_FLAG_WRITE, FAULT_FLAG_ALLOW_RETRY, ENOENT, EINVAL, ENOMEM, EBUSY,
  BLOCKED_UFFD, EAGAIN, EEXIST, EFAULT, VM_SHARED, MM_ANONPAGES,
} from "./constants";
import { setFaultBlockedOn } from "./fault";


// Features (the API's UFFD_FEATURE_* subset ptemu implements).
export const UFFD_FEATURE_EVENT_FORK: u32 = 1 << 1;
export const UFFD_FEATURE_EVENT_REMOVE: u32 = 1 << 3;
export const UFFD_FEATURE_SIGBUS: u32 = 1 << 7;
export const UFFD_FEATURE_WP_HUGETLBFS_SHMEM: u32 = 1 << 12;
export const UFFD_FEATURE_WP_UNPOPULATED: u32 = 1 << 13;
export const UFFD_FEATURE_WP_ASYNC: u32 = 1 << 15;

// Messages and their flags.
export const UFFD_EVENT_PAGEFAULT: u32 = 0x12;
export const UFFD_EVENT_FORK: u32 = 0x13;
export const UFFD_EVENT_REMOVE: u32 = 0x15;
export const UFFD_PAGEFAULT_FLAG_WRITE: u32 = 1 << 0;
export const UFFD_PAGEFAULT_FLAG_WP: u32 = 1 << 1;

const MAX_CTX: u32 = 4096;
const EVENT_RECORD: usize = 32;
export const uffdLog: Log = staticLog();

/** Per context: features + 1 (0: free slot), the mm it belongs to, non-cooperative events not read yet. */
const ctxFeatures = new StaticArray<u32>(<i32>MAX_CTX);
const ctxMm = new StaticArray<u32>(<i32>MAX_CTX);
const ctxPending = new StaticArray<u32>(<i32>MAX_CTX);

/** The CPU the fault in progress runs on (set by the MMU before it calls the fault handler). */
export let faultCpu: u32 = 0;
export function setFaultCpu(cpu: u32): void { faultCpu = cpu; }

/** userfaultfd(2): a context for mm; its id, or -EBUSY when all are in use. */
export function uffdCreate(mm: Mm, features: u32): i32 {
  for (let id: u32 = 1; id < MAX_CTX; id++) {
    if (unchecked(ctxFeatures[id]) == 0) {
      unchecked(ctxFeatures[id] = features + 1);
      unchecked(ctxMm[id] = mm.id);
      return <i32>id;
    }
  }
  return -EBUSY;
}

/** A context's features; none for 0 (no context) or a free slot. */
// @ts-ignore: decorator
@inline export function uffdFeatures(id: u32): u32 {
  if (id >= MAX_CTX) return 0;
  const f = unchecked(ctxFeatures[id]);
  return f == 0 ? 0 : f - 1;
}
export function uffdMm(id: u32): u32 { return id < MAX_CTX && unchecked(ctxFeatures[id]) != 0 ? unchecked(ctxMm[id]) : 0; }

/** userfaultfd_wp_async. */
// @ts-ignore: decorator
@inline export function uffdWpAsync(vma: Vma): bool { return (uffdFeatures(vma.uffd) & UFFD_FEATURE_WP_ASYNC) != 0; }

/** userfaultfd_wp_use_markers: file (shmem) VMAs always, anonymous ones with wp-unpopulated. */
export function uffdWpUseMarkers(vma: Vma): bool {
  if ((vma.flags & VM_UFFD_WP) == 0) return false;
  return vma.file != 0 || (uffdFeatures(vma.uffd) & UFFD_FEATURE_WP_UNPOPULATED) != 0;
}

/** vma_can_userfault: anonymous memory, and shmem for write-protect only with wp-hugetlbfs-shmem. */
function vmaCanUserfault(v: Vma, flags: u32, features: u32): bool {
  if ((v.flags & VM_HUGETLB) != 0) return false;
  if (v.file == 0) return true;
  if ((fileOf(v.file).flags & FILE_SHMEM) == 0) return false;
  return (flags & VM_UFFD_WP) == 0 || (features & UFFD_FEATURE_WP_HUGETLBFS_SHMEM) != 0;
}

/**
 * UFFDIO_REGISTER's checks over [start, end): VMAs must cover it with no hole
 * (-EINVAL), none registered with another context (-EBUSY), all able to
 * (-EINVAL). Then the caller splits at the edges and applies it;
 * write-protect registration makes shared mappings write-notified.
 */
export function uffdRegisterCheck(mm: Mm, id: u32, start: u64, end: u64, flags: u32): i32 {
  const features = uffdFeatures(id);
  let addr = start;
  for (let i = findVmaIndex(mm, start); addr < end; i++) {
    if (i >= mm.nrVmas) return -EINVAL;
    const v = vmaAt(mm, i);
    if (v.start > addr) return -EINVAL;
    if (v.uffd != 0 && v.uffd != id) return -EBUSY;
    if (!vmaCanUserfault(v, flags, features)) return -EINVAL;
    addr = v.end;
  }
  return 0;
}

/** Applies a registration uffdRegisterCheck accepted, to VMAs already split at start and end. */
export function uffdRegister(mm: Mm, id: u32, start: u64, end: u64, flags: u32): void {
  for (let i = findVmaIndex(mm, start); i < mm.nrVmas && vmaAt(mm, i).start < end; i++) {
    const v = vmaAt(mm, i);
    v.flags = (v.flags & ~(VM_UFFD_WP | VM_UFFD_MISSING)) | flags;
    v.uffd = id;
    vmaSetPageProt(v);
  }
}

/**
 * UFFDIO_UNREGISTER: write-protected VMAs are resolved first (bits and uffd-wp
 * markers go), then lose the registration; compatible neighbours merge.
 */
export function uffdUnregister(mm: Mm, start: u64, end: u64): i32 {
  for (let i = findVmaIndex(mm, start); i < mm.nrVmas && vmaAt(mm, i).start < end; i++) {
    const v = vmaAt(mm, i);
    if ((v.flags & VM_UFFD_WP) != 0) {
      const r = wpRange(mm, v, v.start > start ? v.start : start, v.end < end ? v.end : end, false);
      if (r != 0) return r;
    }
  }
  for (let i = findVmaIndex(mm, start); i < mm.nrVmas && vmaAt(mm, i).start < end; i++) {
    const v = vmaAt(mm, i);
    v.flags &= ~(VM_UFFD_WP | VM_UFFD_MISSING);
    v.uffd = 0;
    vmaSetPageProt(v);
  }
  let i = findVmaIndex(mm, start);
  if (i > 0) i--;
  while (i + 1 < mm.nrVmas && vmaAt(mm, i).start <= end) if (!vmaTryMergeNext(mm, i)) i++;
  return 0;
}

const wpOp = new UffdWpOp();

/** uffd_wp_range over one VMA's part: change_protection with one notifier range; the caller's gather flushes. */
function wpRange(mm: Mm, v: Vma, start: u64, end: u64, protect: bool): i32 {
  wpOp.protect = protect;
  wpOp.markers = uffdWpUseMarkers(v);
  wpOp.tryWritable = !protect && vmaWantsManualWriteUpgrade(v);
  if (!gatherBegin(mm, false)) return -ENOMEM;
  mmuNotifierInvalidateStart(mm, MMU_NOTIFY_PROTECTION_VMA, start, end);
  const r = walkPageRange<UffdWpOp>(wpOp, mm, start, end);
  mmuNotifierInvalidateEnd(mm, MMU_NOTIFY_PROTECTION_VMA, start, end);
  gatherEnd();
  return r < 0 ? r : 0;
}

/**
 * UFFDIO_WRITEPROTECT: every VMA of [start, end) must be registered for
 * write-protect with this context (-ENOENT otherwise, holes included).
 */
export function uffdWriteProtect(mm: Mm, id: u32, start: u64, end: u64, protect: bool): i32 {
  // mmap_changing: a fork message not read yet means the layout may be moving under the monitor.
  if (id < MAX_CTX && unchecked(ctxPending[id]) != 0) return -EAGAIN;
  let addr = start;
  for (let i = findVmaIndex(mm, start); addr < end; i++) {
    if (i >= mm.nrVmas) return -ENOENT;
    const v = vmaAt(mm, i);
    if (v.start > addr || (v.flags & VM_UFFD_WP) == 0 || v.uffd != id) return -ENOENT;
    addr = v.end;
  }
  wpOp.pages = 0;
  for (let i = findVmaIndex(mm, start); i < mm.nrVmas && vmaAt(mm, i).start < end; i++) {
    const v = vmaAt(mm, i);
    const r = wpRange(mm, v, v.start > start ? v.start : start, v.end < end ? v.end : end, protect);
    if (r != 0) return r;
  }
  return 0;
}

export function uffdPagesChanged(): u64 { return wpOp.pages; }

/**
 * handle_userfault: the fault becomes a message to the context and the
 * faulting access waits (or gets SIGBUS with the sigbus feature).
 */
export function handleUserfault(vma: Vma, addr: u64, flags: u32, reason: u32): u32 {
  const features = uffdFeatures(vma.uffd);
  if ((features & UFFD_FEATURE_SIGBUS) != 0) return VM_FAULT_SIGBUS;
  // A fault that cannot wait (hmm_range_fault's, without FAULT_FLAG_ALLOW_RETRY) fails, and no message is queued.
  if ((flags & FAULT_FLAG_ALLOW_RETRY) == 0) return VM_FAULT_SIGBUS;
  const r = logAppend(uffdLog, EVENT_RECORD);
  if (r != 0) {
    let f: u32 = (flags & FAULT_FLAG_WRITE) != 0 ? UFFD_PAGEFAULT_FLAG_WRITE : 0;
    if (reason == VM_UFFD_WP) f |= UFFD_PAGEFAULT_FLAG_WP;
    store<u32>(r, vma.uffd, 8); store<u32>(r, UFFD_EVENT_PAGEFAULT, 12); store<u32>(r, f, 16); store<u32>(r, faultCpu, 20);
    store<u64>(r, addr & ~<u64>4095, 24);
  }
  setFaultBlockedOn(BLOCKED_UFFD);
  return VM_FAULT_BLOCKED;
}

/** close(uffd): registrations of its VMAs go (as unregister of the whole mm's VMAs with this context). */
export function uffdRelease(mm: Mm | null, id: u32): void {
  if (mm != null) {
    // Unregistering merges VMAs: look again from the start after each.
    for (let i: u32 = 0; i < mm.nrVmas; ) {
      const v = vmaAt(mm, i);
      if (v.uffd == id) { uffdUnregister(mm, v.start, v.end); i = 0; } else i++;
    }
  }
  if (id < MAX_CTX) { unchecked(ctxFeatures[id] = 0); unchecked(ctxMm[id] = 0); unchecked(ctxPending[id] = 0); }
}

/** An mm goes away: its contexts go with it (their ids must not name a later mm that reuses the id). */
export function uffdForgetMm(mmId: u32): void {
  for (let id: u32 = 1; id < MAX_CTX; id++) {
    if (unchecked(ctxFeatures[id]) != 0 && unchecked(ctxMm[id]) == mmId) { unchecked(ctxFeatures[id] = 0); unchecked(ctxMm[id] = 0); unchecked(ctxPending[id] = 0); }
  }
}

// ---- fork (dup_userfaultfd) ----------------------------------------------------------------

// Parent context -> child context, for the fork in progress.
const forkFrom = new StaticArray<u32>(64);
const forkTo = new StaticArray<u32>(64);
let forkPairs: u32 = 0;

/**
 * The child's context for a parent VMA registered with `ctx`: with
 * event-fork, one new context per parent context (same features), else 0
 * (the child's VMA loses the registration).
 */
export function uffdForkContext(ctx: u32, child: Mm): u32 {
  if ((uffdFeatures(ctx) & UFFD_FEATURE_EVENT_FORK) == 0) return 0;
  for (let i: u32 = 0; i < forkPairs; i++) if (unchecked(forkFrom[i]) == ctx) return unchecked(forkTo[i]);
  if (forkPairs == 64) return 0;
  const id = uffdCreate(child, uffdFeatures(ctx));
  if (id < 0) return 0;
  unchecked(forkFrom[forkPairs] = ctx);
  unchecked(forkTo[forkPairs] = <u32>id);
  forkPairs++;
  return <u32>id;
}

/** After the copy: each parent context gets a fork message naming its child's (unless the fork failed). */
export function uffdForkDone(failed: bool): void {
  for (let i: u32 = 0; i < forkPairs; i++) {
    const parent = unchecked(forkFrom[i]), child = unchecked(forkTo[i]);
    if (failed) continue;
    const r = logAppend(uffdLog, EVENT_RECORD);
    if (r == 0) continue;
    store<u32>(r, parent, 8); store<u32>(r, UFFD_EVENT_FORK, 12); store<u32>(r, 0, 16); store<u32>(r, 0, 20);
    store<u64>(r, <u64>child, 24);
    unchecked(ctxPending[parent]++);
  }
  forkPairs = 0;
}

/**
 * userfaultfd_remove: MADV_DONTNEED / MADV_FREE / MADV_REMOVE over [start,
 * end) of a VMA registered with event-remove. The kernel drops the mmap lock
 * and waits until the monitor reads the message; here the message is queued,
 * the advice goes on, and the context reports EAGAIN (mmap_changing) to
 * copies and write-protects until the message is read.
 */
export function uffdRemove(v: Vma, start: u64, end: u64): void {
  const ctx = v.uffd;
  if (ctx == 0 || (uffdFeatures(ctx) & UFFD_FEATURE_EVENT_REMOVE) == 0) return;
  const r = logAppend(uffdLog, EVENT_RECORD);
  if (r == 0) return;
  store<u32>(r, ctx, 8); store<u32>(r, UFFD_EVENT_REMOVE, 12);
  store<u64>(r, end, 16);
  store<u64>(r, start, 24);
  unchecked(ctxPending[ctx]++);
}

/** The monitor read its messages: non-cooperative events are no longer pending. */
export function uffdAck(id: u32): void { if (id < MAX_CTX) unchecked(ctxPending[id] = 0); }

// ---- UFFDIO_COPY / UFFDIO_ZEROPAGE (mfill_atomic) --------------------------------------------

/**
 * Fills [start, +npages) of VMAs registered with ctx: a new page holding
 * `tag` (copy) or zeroes, mapped as the fault would have (anonymous: an
 * exclusive page, or the zero page; shmem: a page added to the file's
 * cache). With `wp` the PTEs are uffd-wp and read-only. Stops at the first
 * slot already mapped: -EEXIST if that is the first, else the pages done.
 */
export function uffdCopy(mm: Mm, ctx: u32, start: u64, npages: u32, tag: u32, zero: bool, wp: bool): i64 {
  if (id_pending(ctx)) return -EAGAIN;
  for (let i: u32 = 0; i < npages; i++) {
    const addr = start + (<u64>i << 12);
    const v = vmaLookup(mm, addr);
    if (v == null || v.uffd != ctx) return i == 0 ? -ENOENT : <i64>i;
    const pmdp = pmdOffsetAlloc(mm, addr);
    if (pmdp == 0 || (load<u64>(pmdp) == 0 && pteTableAlloc(mm, pmdp) == 0)) return i == 0 ? -ENOMEM : <i64>i;
    const pmd = load<u64>(pmdp);
    if (!isTableEntry(pmd)) return i == 0 ? -EEXIST : <i64>i;
    const ptep = tablePtr(<u32>tableEntryPfn(pmd)) + (<usize>((addr >> 12) & 511) << 3);
    const old = load<u64>(ptep);
    if (old != 0 && !isPteMarker(old)) return i == 0 ? -EEXIST : <i64>i;
    // A MAP_PRIVATE shmem mapping gets anonymous memory directly, the file's hole left alone
    // (mfill_atomic_pte: what the fault would have done, fill the hole and COW it at once).
    const r = v.file == 0 || (v.flags & VM_SHARED) == 0 ? fillAnon(mm, v, addr, ptep, tag, zero, wp) : fillShmem(mm, v, addr, ptep, tag, wp);
    if (r != 0) return i == 0 ? <i64>r : <i64>i;
  }
  return <i64>npages;
}

// @ts-ignore: decorator
@inline function id_pending(ctx: u32): bool { return ctx < MAX_CTX && unchecked(ctxPending[ctx]) != 0; }

function fillAnon(mm: Mm, v: Vma, addr: u64, ptep: usize, tag: u32, zero: bool, wp: bool): i32 {
  let e: u64;
  if (zero) {
    e = pteMkspecial(pfnPte(<u64>zeroPfn, v.pageProt));
  } else {
    anonVmaPrepare(v);
    const pfn = allocFolio(0);
    if (pfn == 0) return -ENOMEM;
    setTag(pfn, tag);
    addNewAnonRmap(pfn, 1, false);
    addRss(mm, MM_ANONPAGES, 1);
    e = pteMkdirty(pfnPte(<u64>pfn, v.pageProt));
    if (!wp) e = maybeMkwrite(e, v);
  }
  if (wp) e = pteMkuffdWp(e);
  setPtes(mm, addr, ptep, e, 1);
  return 0;
}

function fillShmem(mm: Mm, v: Vma, addr: u64, ptep: usize, tag: u32, wp: bool): i32 {
  const f = fileOf(v.file);
  const pgoff = linearPageIndex(v, addr);
  if (pgoff >= f.sizePages) return -EFAULT;
  if (cacheLookup(f, pgoff) != 0) return -EEXIST;
  const pfn = filemapFault(f, pgoff);          // a new zeroed page in the cache
  if (pfn == 0 || pfn == <u32>-1) return -ENOMEM;
  setTag(pfn, tag);
  setFlag(pfn, PG_DIRTY);
  let e = pteMkdirty(pfnPte(<u64>pfn, v.pageProt));
  if (!wp) e = maybeMkwrite(e, v);
  if (wp) e = pteMkuffdWp(e);
  addFileRmap(mm, pfn);
  setPtes(mm, addr, ptep, e, 1);
  return 0;
}
