// get_user_pages / pin_user_pages (mm/gup.c): references to user pages taken
// on behalf of a device or the kernel.
//
// FOLL_GET takes a plain reference. FOLL_PIN takes GUP_PIN_COUNTING_BIAS
// references on a small folio, or one reference plus one _pincount on a large
// one, so that folio_maybe_dma_pinned can tell "maybe pinned" from the
// refcount alone, and it marks the mm MMF_HAS_PINNED (sticky). Every grab is
// recorded in a pin table so that the invariant checker can account for the
// references nothing maps, and so that a later snapshot can carry them.

import { kmalloc, kfree } from "./heap";
import { Mm, MMF_HAS_PINNED } from "./mm";
import { Vma, vmaLookup, isCowMapping } from "./vma";
import { leafLookup, lookupLevel, handleMmFault } from "./fault";
import { ptePresent, pteProtnone, pteWrite, pteSpecial, leafPfn, isUpperLeaf } from "./arch/index";
import {
  folioHead, orderOf, refcount, setRefcount, testFlag, isZeroPfn, freeFolio, GUP_PIN_COUNTING_BIAS, PG_ANON, PG_EXCLUSIVE,
} from "./frames";
import {
  VM_READ, VM_WRITE, VM_IO, VM_PFNMAP, VM_FAULT_OOM, VM_FAULT_SIGBUS, VM_FAULT_SIGSEGV, VM_FAULT_HWPOISON,
  FAULT_FLAG_WRITE, FAULT_FLAG_UNSHARE, FAULT_FLAG_ALLOW_RETRY, ENOMEM, EFAULT, EAGAIN, VM_FAULT_BLOCKED,
} from "./constants";

export const GUP_WRITE: u32 = 1;      // FOLL_WRITE
export const GUP_PIN: u32 = 2;        // FOLL_PIN (else FOLL_GET)
export const GUP_LONGTERM: u32 = 4;   // FOLL_LONGTERM
export const GUP_FAST: u32 = 8;       // pin_user_pages_fast: lockless walk first, slow path for the rest

/** Pages the last gupRange took through the lockless (GUP-fast) walk. */
export let gupFastPages: u32 = 0;

// ---- pin table ------------------------------------------------------------------------------
// Record: [0] pfn array pointer, [1] page count, [2] GUP_* flags (0 count = free slot).

const REC_BYTES: usize = 16;
let table: usize = 0;
let tableCap: u32 = 0;

@inline function rec(id: u32): usize { return table + <usize>id * REC_BYTES; }
export function pinTableCapacity(): u32 { return tableCap; }
export function pinPfns(id: u32): usize { return id < tableCap ? <usize>load<u64>(rec(id)) : 0; }
export function pinCount(id: u32): u32 { return id < tableCap ? load<u32>(rec(id), 8) : 0; }
export function pinFlags(id: u32): u32 { return id < tableCap ? load<u32>(rec(id), 12) : 0; }

/** A free slot (ids start at 1), growing the table as needed; 0 when out of memory. */
function pinSlot(): u32 {
  for (let id: u32 = 1; id < tableCap; id++) if (load<u32>(rec(id), 8) == 0) return id;
  const cap = tableCap == 0 ? <u32>64 : tableCap * 2;
  const t = kmalloc(<usize>cap * REC_BYTES);
  if (t == 0) return 0;
  memory.fill(t, 0, <usize>cap * REC_BYTES);
  if (table != 0) { memory.copy(t, table, <usize>tableCap * REC_BYTES); kfree(table, <usize>tableCap * REC_BYTES); }
  const id = tableCap == 0 ? <u32>1 : tableCap;
  table = t;
  tableCap = cap;
  return id;
}

// ---- grabbing and releasing -------------------------------------------------------------

/** try_grab_folio. The zero page is never pinned: it cannot go anywhere. */
function grab(pfn: u32, flags: u32): void {
  if (isZeroPfn(pfn)) return;
  const head = folioHead(pfn);
  if ((flags & GUP_PIN) == 0) { setRefcount(head, refcount(head) + 1); return; }
  if (orderOf(head) == 0) { setRefcount(head, refcount(head) + GUP_PIN_COUNTING_BIAS); return; }
  setRefcount(head, refcount(head) + 1);
  setRefcount(head + 1, refcount(head + 1) + 1);   // _pincount lives in the first tail
}

/** unpin_user_page / put_page. The page may have been unmapped meanwhile: the last reference frees it. */
function release(pfn: u32, flags: u32): void {
  if (isZeroPfn(pfn)) return;
  const head = folioHead(pfn);
  let d: u32 = 1;
  if ((flags & GUP_PIN) != 0) {
    if (orderOf(head) == 0) d = GUP_PIN_COUNTING_BIAS;
    else setRefcount(head + 1, refcount(head + 1) - 1);
  }
  const r = refcount(head) - d;
  setRefcount(head, r);
  if (r == 0) freeFolio(head);
}

// ---- the walk ---------------------------------------------------------------------------------

/**
 * gup_must_unshare: a read-only pin of a page the mm may share must first get
 * an exclusive copy, or a later COW would leave the pin looking at a page the
 * process no longer maps. Anon pages: unless PageAnonExclusive. Other pages:
 * only long-term pins in COW mappings (short-term R/O pins need not observe
 * later changes).
 */
function mustUnshare(vma: Vma, flags: u32, pfn: u32, level: u32): bool {
  if ((flags & (GUP_PIN | GUP_WRITE)) != GUP_PIN) return false;
  const head = folioHead(pfn);
  if (!isZeroPfn(pfn) && testFlag(head, PG_ANON)) return !testFlag(level == 0 ? pfn : head, PG_EXCLUSIVE);
  return (flags & GUP_LONGTERM) != 0 && isCowMapping(vma.flags);
}

/**
 * follow_page: the pfn mapped at addr if the entry allows this grab without
 * a fault, else -1. `fast` applies GUP-fast's stricter rules (special entries,
 * which include the zero page, are refused; the slow path takes them).
 */
function follow(mm: Mm, vma: Vma, addr: u64, flags: u32, fast: bool): i64 {
  const ep = leafLookup(mm, addr);
  const level = lookupLevel;
  if (level > 1) return -1;
  const e = load<u64>(ep);
  if (level == 1 && !isUpperLeaf(e)) return -1;
  if (!ptePresent(e) || pteProtnone(e)) return -1;
  if ((flags & GUP_WRITE) != 0 && !pteWrite(e)) return -1;
  if (fast && pteSpecial(e)) return -1;
  const pfn = <u32>leafPfn(e, level) + (level == 1 ? <u32>((addr >> 12) & 511) : 0);
  if (mustUnshare(vma, flags, pfn, level)) return -1;
  return <i64>pfn;
}

/** check_vma_flags over the whole range: EFAULT before anything is touched. */
function checkRange(mm: Mm, start: u64, end: u64, flags: u32): i32 {
  let addr = start;
  while (addr < end) {
    const vma = vmaLookup(mm, addr);
    if (vma == null) return -EFAULT;
    if ((vma.flags & (VM_IO | VM_PFNMAP)) != 0) return -EFAULT;
    if ((flags & GUP_WRITE) != 0 ? (vma.flags & VM_WRITE) == 0 : (vma.flags & VM_READ) == 0) return -EFAULT;
    addr = vma.end;
  }
  return 0;
}

/**
 * Takes references on npages pages from start, faulting them in as the
 * kernel's slow path does (write faults for write grabs, unshare faults for
 * read-only pins of shared pages). Returns a pin id (> 0), or -EFAULT /
 * -ENOMEM with every reference already taken dropped again.
 */
export function gupRange(mm: Mm, start: u64, npages: u32, flags: u32): i32 {
  gupFastPages = 0;
  const end = start + (<u64>npages << 12);
  const bad = checkRange(mm, start, end, flags);
  if (bad != 0) return bad;
  const id = pinSlot();
  if (id == 0) return -ENOMEM;
  const pfns = kmalloc(<usize>npages << 2);
  if (pfns == 0) return -ENOMEM;
  if ((flags & GUP_PIN) != 0) mm.flags |= MMF_HAS_PINNED;

  let i: u32 = 0;
  if ((flags & GUP_FAST) != 0) {
    for (; i < npages; i++) {
      const addr = start + (<u64>i << 12);
      const pfn = follow(mm, changetype<Vma>(vmaLookup(mm, addr)), addr, flags, true);
      if (pfn < 0) break;
      grab(<u32>pfn, flags);
      store<u32>(pfns + (<usize>i << 2), <u32>pfn);
    }
    gupFastPages = i;
  }
  for (; i < npages; i++) {
    const addr = start + (<u64>i << 12);
    const vma = changetype<Vma>(vmaLookup(mm, addr));
    let pfn = follow(mm, vma, addr, flags, false);
    // Each fault fixes what the entry lacked; a few rounds cover a swap-in followed by an unshare.
    for (let round = 0; pfn < 0 && round < 4; round++) {
      let fflags: u32 = FAULT_FLAG_ALLOW_RETRY;
      if ((flags & GUP_WRITE) != 0) fflags |= FAULT_FLAG_WRITE;
      else if (lookupPresent(mm, addr)) fflags |= FAULT_FLAG_UNSHARE;
      const r = handleMmFault(mm, addr, fflags);
      if ((r & VM_FAULT_BLOCKED) != 0) {
        // ->page_mkwrite or a userfaultfd made the fault wait (faultBlockedOn says which): the caller retries once resolved.
        undo(pfns, i, flags);
        kfree(pfns, <usize>npages << 2);
        return -EAGAIN;
      }
      if ((r & (VM_FAULT_OOM | VM_FAULT_SIGBUS | VM_FAULT_SIGSEGV | VM_FAULT_HWPOISON)) != 0) {
        undo(pfns, i, flags);
        kfree(pfns, <usize>npages << 2);
        return (r & VM_FAULT_OOM) != 0 ? -ENOMEM : -EFAULT;
      }
      pfn = follow(mm, vma, addr, flags, false);
    }
    if (pfn < 0) { undo(pfns, i, flags); kfree(pfns, <usize>npages << 2); return -EFAULT; }
    grab(<u32>pfn, flags);
    store<u32>(pfns + (<usize>i << 2), <u32>pfn);
  }
  store<u64>(rec(<u32>id), <u64>pfns);
  store<u32>(rec(<u32>id), npages, 8);
  store<u32>(rec(<u32>id), flags, 12);
  return <i32>id;
}

/** Whether a present entry maps addr (so a read grab that failed needs an unshare, not a fault-in). */
function lookupPresent(mm: Mm, addr: u64): bool {
  const ep = leafLookup(mm, addr);
  if (lookupLevel > 1) return false;
  const e = load<u64>(ep);
  return ptePresent(e) && !pteProtnone(e) && (lookupLevel == 0 || isUpperLeaf(e));
}

function undo(pfns: usize, n: u32, flags: u32): void {
  for (let j: u32 = 0; j < n; j++) release(load<u32>(pfns + (<usize>j << 2)), flags);
}

/** unpin_user_pages / put_page for every page of a pin; false if the id is not live. */
export function gupRelease(id: u32): bool {
  if (id == 0 || id >= tableCap) return false;
  const n = load<u32>(rec(id), 8);
  if (n == 0) return false;
  const pfns = <usize>load<u64>(rec(id));
  undo(pfns, n, load<u32>(rec(id), 12));
  kfree(pfns, <usize>n << 2);
  memory.fill(rec(id), 0, REC_BYTES);
  return true;
}
