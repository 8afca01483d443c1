// Device mirrors of the seed (HMM v3..v6: hmm_pt, hmm_mirror, hmm_mirror_fault):
// a device's own page table for one process, filled by device faults from
// the CPU page tables and kept in sync by the mmu notifiers.
//
// Geometry as hmm_pt for a 48-bit space: a root of (2^48 >> 39) + 1 entries
// (heap), then directories of 512 8-byte entries at shifts 30, 21, 12. An
// entry is VALID bit 0, WRITE bit 1, DIRTY bit 2, the pfn from bit 4; upper
// entries hold the lower directory's frame the same way.
//
// Directory lifetime is the seed's: each directory (a 4 KiB heap block with a
// TABLE frame, like a CPU table, not charged to the mm) counts its valid
// entries plus the walkers inside it (the seed keeps that count in the
// directory page's _mapcount, ptemu in its frame's tag word). Walkers take a
// reference on every directory they enter and drop them leaving, deepest
// first; a directory whose count reaches zero then is unlinked from its
// parent and freed ("aggressive pruning").

import { Mm, mmById } from "./mm";
import { kzalloc, kfree } from "./heap";
import { indexOf, tagOf, setTag, folioHead, setFlag, nrFrames, PG_DIRTY } from "./frames";
import { allocTablePage, freeTablePage } from "./pgtable";
import {
  subscribe, unsubscribe, setMirrorHooks, subscriptionLive, SUB_MIRROR,
  MMU_NOTIFY_PROTECTION_PAGE, MMU_NOTIFY_SOFT_DIRTY,
} from "./notifier";

export const MIRROR_VALID: u64 = 1;
export const MIRROR_WRITE: u64 = 2;
export const MIRROR_DIRTY: u64 = 4;
const MIRROR_PFN_SHIFT: u64 = 4;
const LEVELS: u32 = 4;           // root (shift 39), 30, 21, leaf 12
const MAX_MIRRORS: u32 = 256;

@unmanaged export class Mirror {
  id: u32;
  device: u32;
  mm: u32;
  sub: u32;               // its mmu notifier subscription (the whole address space)
  root: usize;            // heap block of rootEntries entries
  rootEntries: u32;
  directories: u32;       // directory pages held (root excluded)
  valid: u64;             // valid leaf entries
  // Device faults.
  faults: u64;            // hmm_mirror_fault calls
  cpuFaults: u64;         // pages the CPU side faulted for it (the -ENOENT path)
  retries: u64;           // -EAGAIN rounds: after CPU faults, or backing off an invalidation
  backoffs: u64;
  invalidations: u64;     // invalidations that reached this mirror
  faultActive: u32;       // a device fault is walking [faultStart, faultEnd)
  backoff: u32;           // an invalidation overlapped it
  faultStart: u64;
  faultEnd: u64;
}

const mirrors = new StaticArray<usize>(<i32>MAX_MIRRORS);

export function mirrorById(id: u32): Mirror | null {
  return id == 0 || id >= MAX_MIRRORS ? null : changetype<Mirror | null>(unchecked(mirrors[id]));
}

// @ts-ignore: decorator
@inline function shiftOf(level: u32): u64 { return 12 + 9 * <u64>level; }
// @ts-ignore: decorator
@inline export function mirrorEntryPfn(e: u64): u32 { return <u32>(e >> MIRROR_PFN_SHIFT); }
// @ts-ignore: decorator
@inline function dirPtr(pfn: u32): usize { return <usize>indexOf(pfn) << 12; }
// @ts-ignore: decorator
@inline function dirRef(pfn: u32): void { setTag(pfn, tagOf(pfn) + 1); }

/** A mirror of mm for device `device`; its id, or -errno. */
export function mirrorCreate(mm: Mm, device: u32): i32 {
  let id: u32 = 1;
  while (id < MAX_MIRRORS && unchecked(mirrors[id]) != 0) id++;
  if (id == MAX_MIRRORS) return -28;
  const p = kzalloc(offsetof<Mirror>());
  if (p == 0) return -12;
  const m = changetype<Mirror>(p);
  m.rootEntries = <u32>(((mm.taskSize - 1) >> shiftOf(LEVELS - 1)) + 1);
  m.root = kzalloc(<usize>m.rootEntries << 3);
  if (m.root == 0) { kfree(p, offsetof<Mirror>()); return -12; }
  const sub = subscribe(mm, SUB_MIRROR, id, 0, mm.taskSize);
  if (sub < 0) { kfree(m.root, <usize>m.rootEntries << 3); kfree(p, offsetof<Mirror>()); return sub; }
  m.id = id; m.device = device; m.mm = mm.id; m.sub = <u32>sub;
  unchecked(mirrors[id] = p);
  return <i32>id;
}

/** The mirror is dead once its mm is gone (the notifier's ->release freed its tables). */
// @ts-ignore: decorator
@inline export function mirrorLive(m: Mirror): bool { return m.root != 0 && subscriptionLive(m.sub); }

/** Unregisters the mirror: every entry goes, then the directories; the id is free again. */
export function mirrorDestroy(m: Mirror): void {
  if (m.root != 0) {
    const mm = mmById(m.mm);
    if (mm != null && subscriptionLive(m.sub)) unsubscribe(mm, m.sub);
    release(m);
  }
  unchecked(mirrors[m.id] = 0);
  kfree(changetype<usize>(m), offsetof<Mirror>());
}

/** ->release: the mm is going; the mirror frees its tables and stays as a dead shell (-ENODEV). */
function release(m: Mirror): void {
  clearRange(m, 0, <u64>m.rootEntries << shiftOf(LEVELS - 1), false);
  kfree(m.root, <usize>m.rootEntries << 3);
  m.root = 0;
}

function allocDir(m: Mirror): u32 {
  const pfn = allocTablePage();
  if (pfn != 0) m.directories++;
  return pfn;
}

function freeDir(m: Mirror, pfn: u32): void {
  freeTablePage(pfn);
  m.directories--;
}

// A walk holds references on the directories of one path (root excluded):
// path[L] is the directory at level L (0 = leaf), slot[L] the entry that
// points at it in its parent.
const pathDir = new StaticArray<u32>(4);
const pathSlot = new StaticArray<usize>(4);

/**
 * Enters the leaf directory covering addr, taking a walker reference on every
 * directory on the way; with `create`, missing ones are allocated and linked
 * (each link is a valid entry of the parent). Returns the leaf directory's
 * entries, or 0 (absent and not created, or out of memory: the references
 * taken so far are recorded and must be dropped with leave()).
 */
function enter(m: Mirror, addr: u64, create: bool): usize {
  for (let l: u32 = 0; l < LEVELS - 1; l++) unchecked(pathDir[l] = 0);
  let slot = m.root + <usize>((addr >> shiftOf(LEVELS - 1)) << 3);
  for (let l: i32 = <i32>LEVELS - 2; l >= 0; l--) {
    let e = load<u64>(slot);
    if ((e & MIRROR_VALID) == 0) {
      if (!create) return 0;
      const pfn = allocDir(m);
      if (pfn == 0) return 0;
      e = (<u64>pfn << MIRROR_PFN_SHIFT) | MIRROR_VALID;
      store<u64>(slot, e);
      if (l < <i32>LEVELS - 2) dirRef(unchecked(pathDir[l + 1]));   // a new valid entry in the parent (the root is not counted)
    }
    const pfn = mirrorEntryPfn(e);
    dirRef(pfn);
    unchecked(pathDir[l] = pfn);
    unchecked(pathSlot[l] = slot);
    slot = dirPtr(pfn) + <usize>(((addr >> shiftOf(<u32>l)) & 511) << 3);
  }
  return dirPtr(unchecked(pathDir[0]));
}

/** Drops the walker's references, deepest first; a directory left empty is unlinked and freed. */
function leave(m: Mirror): void {
  for (let l: u32 = 0; l < LEVELS - 1; l++) {
    const pfn = unchecked(pathDir[l]);
    if (pfn == 0) continue;
    const count = tagOf(pfn) - 1;
    setTag(pfn, count);
    if (count != 0) continue;
    store<u64>(unchecked(pathSlot[l]), 0);
    freeDir(m, pfn);
    if (l + 1 < LEVELS - 1 && unchecked(pathDir[l + 1]) != 0) setTag(unchecked(pathDir[l + 1]), tagOf(unchecked(pathDir[l + 1])) - 1);
  }
}

/**
 * A device fault fills one leaf directory at a time: mirrorLeafBegin enters
 * (creating directories, taking walker references) and returns its entries,
 * or 0 when out of memory; mirrorEntry fills one; mirrorLeafEnd accounts the
 * entries that became valid and leaves (always call it, even after a 0).
 */
export function mirrorLeafBegin(m: Mirror, addr: u64): usize { return enter(m, addr, true); }

export function mirrorLeafEnd(m: Mirror, added: u32): void {
  const dir = unchecked(pathDir[0]);
  if (dir != 0) setTag(dir, tagOf(dir) + added);
  m.valid += added;
  leave(m);
}

/**
 * Writes one entry; 1 if it was not valid before. A refill of the same frame
 * keeps the device's DIRTY while it stays writable; losing WRITE passes the
 * dirtiness to the frame first, as an invalidation would.
 */
// @ts-ignore: decorator
@inline export function mirrorEntry(p: usize, pfn: u32, write: bool): u32 {
  const old = load<u64>(p);
  let e = (<u64>pfn << MIRROR_PFN_SHIFT) | MIRROR_VALID | (write ? MIRROR_WRITE : 0);
  if ((old & MIRROR_DIRTY) != 0 && mirrorEntryPfn(old) == pfn) {
    if (write) e |= MIRROR_DIRTY;
    else if ((old & MIRROR_WRITE) != 0 && pfn < nrFrames) setFlag(folioHead(pfn), PG_DIRTY);
  }
  store<u64>(p, e);
  return (old & MIRROR_VALID) == 0 ? 1 : 0;
}

/**
 * hmm_mirror_update_pt over [start, end): for each valid entry, a DIRTY and
 * WRITE one first marks its frame dirty; then write-protection clears WRITE
 * (and DIRTY, now passed on), anything else clears the entry. Directories are
 * visited only where they exist.
 */
function clearRange(m: Mirror, start: u64, end: u64, wrprotect: bool): void {
  // Some invalidations name the whole address space (0 .. ULONG_MAX): the mirror covers only the root's span.
  const span: u64 = <u64>m.rootEntries << shiftOf(LEVELS - 1);
  if (end > span) end = span;
  let a = start & ~<u64>4095;
  while (a < end) {
    const leafSpan: u64 = <u64>1 << shiftOf(1);
    const next = (a + leafSpan) & ~(leafSpan - 1);
    const stop = next < end ? next : end;
    const leaf = enter(m, a, false);
    if (leaf != 0) {
      const dir = unchecked(pathDir[0]);
      let cleared: u32 = 0;
      for (let b = a; b < stop; b += 4096) {
        const p = leaf + <usize>(((b >> 12) & 511) << 3);
        const e = load<u64>(p);
        if ((e & MIRROR_VALID) == 0) continue;
        if ((e & (MIRROR_DIRTY | MIRROR_WRITE)) == (MIRROR_DIRTY | MIRROR_WRITE)) {
          const pfn = mirrorEntryPfn(e);
          if (pfn < nrFrames) setFlag(folioHead(pfn), PG_DIRTY);
        }
        if (wrprotect) store<u64>(p, e & ~(MIRROR_WRITE | MIRROR_DIRTY));
        else { store<u64>(p, 0); cleared++; }
      }
      setTag(dir, tagOf(dir) - cleared);
      m.valid -= cleared;
      leave(m);
      a = stop;
    } else {
      leave(m);
      // Skip the whole span of the highest missing directory.
      let l: u32 = 1;
      while (l < LEVELS - 1 && unchecked(pathDir[l]) == 0) l++;
      const missing: u64 = <u64>1 << shiftOf(l);
      const skip = (a + missing) & ~(missing - 1);
      a = skip > a ? skip : stop;
    }
  }
}

/** The mirror's mmu notifier callback: write-protect events clear WRITE, the others the entries. */
function invalidate(id: u32, event: u32, start: u64, end: u64): void {
  const m = mirrorById(id);
  if (m == null || m.root == 0) return;
  m.invalidations++;
  // A device fault in flight over an overlapping range must back off and retry (hmm_update).
  if (m.faultActive != 0 && start < m.faultEnd && m.faultStart < end) m.backoff = 1;
  clearRange(m, start, end, event == MMU_NOTIFY_PROTECTION_PAGE || event == MMU_NOTIFY_SOFT_DIRTY);
}

function releaseHook(id: u32): void {
  const m = mirrorById(id);
  if (m != null && m.root != 0) release(m);
}

setMirrorHooks(invalidate, releaseHook);

/** The leaf entry for addr (0 when absent). */
export function mirrorLookup(m: Mirror, addr: u64): u64 {
  if (m.root == 0 || (addr >> shiftOf(LEVELS - 1)) >= <u64>m.rootEntries) return 0;
  let e = load<u64>(m.root + <usize>((addr >> shiftOf(LEVELS - 1)) << 3));
  for (let l: i32 = <i32>LEVELS - 2; l >= 0; l--) {
    if ((e & MIRROR_VALID) == 0) return 0;
    e = load<u64>(dirPtr(mirrorEntryPfn(e)) + <usize>(((addr >> shiftOf(<u32>l)) & 511) << 3));
  }
  return e;
}

/** The count of the leaf directory covering addr (its valid entries plus walkers inside), 0 if there is none. */
export function mirrorLeafCount(m: Mirror, addr: u64): u32 {
  if (m.root == 0 || (addr >> shiftOf(LEVELS - 1)) >= <u64>m.rootEntries) return 0;
  let e = load<u64>(m.root + <usize>((addr >> shiftOf(LEVELS - 1)) << 3));
  for (let l: i32 = <i32>LEVELS - 2; l > 0; l--) {
    if ((e & MIRROR_VALID) == 0) return 0;
    e = load<u64>(dirPtr(mirrorEntryPfn(e)) + <usize>(((addr >> shiftOf(<u32>l)) & 511) << 3));
  }
  return (e & MIRROR_VALID) == 0 ? 0 : tagOf(mirrorEntryPfn(e));
}

/** Sets DIRTY on a valid writable entry (a device write through the mirror); false if it cannot write there. */
export function mirrorDeviceWrite(m: Mirror, addr: u64): bool {
  const e = mirrorLookup(m, addr);
  if ((e & (MIRROR_VALID | MIRROR_WRITE)) != (MIRROR_VALID | MIRROR_WRITE)) return false;
  // The lookup's path is not kept: walk again to store (the leaf exists and holds a valid entry, so no walker ref is needed).
  let p = m.root + <usize>((addr >> shiftOf(LEVELS - 1)) << 3);
  for (let l: i32 = <i32>LEVELS - 2; l >= 0; l--) p = dirPtr(mirrorEntryPfn(load<u64>(p))) + <usize>(((addr >> shiftOf(<u32>l)) & 511) << 3);
  store<u64>(p, e | MIRROR_DIRTY);
  return true;
}

// ---- the checker's view ------------------------------------------------------------------------

/**
 * Calls `visit` for every directory frame of every live mirror, and checks
 * each directory's count against its valid entries (no walker is inside at
 * rest); returns the number of directories whose count is wrong.
 */
export function mirrorCheck(visit: (pfn: u32) => void, leafEntry: (mm: u32, addr: u64, e: u64) => void): u32 {
  let bad: u32 = 0;
  for (let id: u32 = 1; id < MAX_MIRRORS; id++) {
    const m = mirrorById(id);
    if (m == null || m.root == 0) continue;
    for (let i: u32 = 0; i < m.rootEntries; i++) {
      const e = load<u64>(m.root + (<usize>i << 3));
      if ((e & MIRROR_VALID) != 0) bad += checkDir(m, mirrorEntryPfn(e), LEVELS - 2, <u64>i << shiftOf(LEVELS - 1), visit, leafEntry);
    }
  }
  return bad;
}

function checkDir(m: Mirror, pfn: u32, level: u32, base: u64, visit: (pfn: u32) => void, leafEntry: (mm: u32, addr: u64, e: u64) => void): u32 {
  visit(pfn);
  let bad: u32 = 0, valid: u32 = 0;
  const p = dirPtr(pfn);
  for (let i: u32 = 0; i < 512; i++) {
    const e = load<u64>(p + (<usize>i << 3));
    if ((e & MIRROR_VALID) == 0) continue;
    valid++;
    const addr = base + (<u64>i << shiftOf(level));
    if (level == 0) leafEntry(m.mm, addr, e);
    else bad += checkDir(m, mirrorEntryPfn(e), level - 1, addr, visit, leafEntry);
  }
  if (valid != tagOf(pfn) || valid == 0) bad++;
  return bad;
}
