// mmu notifiers (include/linux/mmu_notifier.h): the kernel brackets a
// page-table change that secondary MMUs must see with invalidate_range_start
// (before the entries change) and invalidate_range_end (after the CPU TLB
// flush). Every call is logged with its event kind and range; subscribers
// such as device mirrors hang off the same two functions.
//
// Record (40 bytes): seq u64 | phase u32 (0 start, 1 end) | event u32 | mm u32 | pad u32 | start u64 | end u64

import { Log, staticLog, logAppend } from "./log";
import { Mm } from "./mm";

// enum mmu_notifier_event
export const MMU_NOTIFY_UNMAP: u32 = 0;
export const MMU_NOTIFY_CLEAR: u32 = 1;
export const MMU_NOTIFY_PROTECTION_VMA: u32 = 2;
export const MMU_NOTIFY_PROTECTION_PAGE: u32 = 3;
export const MMU_NOTIFY_SOFT_DIRTY: u32 = 4;
export const MMU_NOTIFY_RELEASE: u32 = 5;
export const MMU_NOTIFY_MIGRATE: u32 = 6;
export const MMU_NOTIFY_EXCLUSIVE: u32 = 7;

export const NOTIFIER_RECORD: usize = 40;
export const notifierLog: Log = staticLog();

function record(phase: u32, mm: Mm, event: u32, start: u64, end: u64): void {
  const r = logAppend(notifierLog, NOTIFIER_RECORD);
  if (r == 0) return;
  store<u32>(r, phase, 8); store<u32>(r, event, 12); store<u32>(r, mm.id, 16); store<u32>(r, 0, 20);
  store<u64>(r, start, 24); store<u64>(r, end, 32);
}

// ---- interval notifiers (mm/mmu_notifier.c, mmu_interval_notifier) -------------------------
//
// A subscription covers [start, end) of one mm. Each has an invalidate
// sequence number: an invalidation overlapping it sets it to the mm's current
// (odd, "in progress") sequence, so a reader that took a sequence with
// readBegin before the change sees checkRetry fail after it. Subscriptions of
// kind MIRROR also have their device page table invalidated (mirror.ts).

export const SUB_FREE: u32 = 0;
export const SUB_INTERVAL: u32 = 1;   // a plain interval notifier: sequence numbers only
export const SUB_MIRROR: u32 = 2;     // a device mirror (owner: mirror id)
const MAX_SUBS: u32 = 1024;

const subKind = new StaticArray<u32>(<i32>MAX_SUBS);
const subMm = new StaticArray<u32>(<i32>MAX_SUBS);
const subOwner = new StaticArray<u32>(<i32>MAX_SUBS);
const subStart = new StaticArray<u64>(<i32>MAX_SUBS);
const subEnd = new StaticArray<u64>(<i32>MAX_SUBS);
const subSeq = new StaticArray<u64>(<i32>MAX_SUBS);
const subInvalidations = new StaticArray<u64>(<i32>MAX_SUBS);
/** One past the highest slot ever used: the dispatch loops stop there. */
let subsHigh: u32 = 1;

/** What a mirror subscription does on an invalidation, and when its mm goes (set by mirror.ts, which imports this file). */
let mirrorInvalidateHook: (owner: u32, event: u32, start: u64, end: u64) => void = (o: u32, e: u32, s: u64, n: u64): void => {};
let mirrorReleaseHook: (owner: u32) => void = (o: u32): void => {};
export function setMirrorHooks(invalidate: (owner: u32, event: u32, start: u64, end: u64) => void, release: (owner: u32) => void): void {
  mirrorInvalidateHook = invalidate;
  mirrorReleaseHook = release;
}

/** mmu_interval_notifier_insert: a subscription id (from 1), or -ENOSPC. */
export function subscribe(mm: Mm, kind: u32, owner: u32, start: u64, end: u64): i32 {
  for (let i: u32 = 1; i < MAX_SUBS; i++) {
    if (unchecked(subKind[i]) != SUB_FREE) continue;
    unchecked(subKind[i] = kind); unchecked(subMm[i] = mm.id); unchecked(subOwner[i] = owner);
    unchecked(subStart[i] = start); unchecked(subEnd[i] = end);
    // The mm's sequence is even when quiet (from 2), odd during an invalidation. A new subscription
    // takes the odd value below a quiet one (readBegin will not wait), or the current odd one.
    if (mm.invalidateSeq == 0) mm.invalidateSeq = 2;
    unchecked(subSeq[i] = mm.activeInvalidations == 0 ? mm.invalidateSeq - 1 : mm.invalidateSeq);
    unchecked(subInvalidations[i] = 0);
    if (i >= subsHigh) subsHigh = i + 1;
    mm.nrSubscriptions++;
    return <i32>i;
  }
  return -28;
}

/** mmu_interval_notifier_remove. */
export function unsubscribe(mm: Mm, id: u32): void {
  if (id == 0 || id >= MAX_SUBS || unchecked(subKind[id]) == SUB_FREE) return;
  unchecked(subKind[id] = SUB_FREE);
  mm.nrSubscriptions--;
}

/** Every subscription of a dying mm goes (the ->release of mmu_notifier_release); mirrors free their tables. */
export function unsubscribeAll(mm: Mm): void {
  if (mm.nrSubscriptions == 0) return;
  for (let i: u32 = 1; i < subsHigh; i++) {
    if (unchecked(subKind[i]) == SUB_FREE || unchecked(subMm[i]) != mm.id) continue;
    if (unchecked(subKind[i]) == SUB_MIRROR) mirrorReleaseHook(unchecked(subOwner[i]));
    unchecked(subKind[i] = SUB_FREE);
  }
  mm.nrSubscriptions = 0;
}

// @ts-ignore: decorator
@inline export function subscriptionLive(id: u32): bool { return id != 0 && id < MAX_SUBS && unchecked(subKind[id]) != SUB_FREE; }
// @ts-ignore: decorator
@inline export function subscriptionMm(id: u32): u32 { return unchecked(subMm[id]); }
// @ts-ignore: decorator
@inline export function subscriptionInvalidations(id: u32): u64 { return unchecked(subInvalidations[id]); }

/**
 * mmu_interval_read_begin: the sequence to check against later. While an
 * invalidation of the mm is in progress the kernel sleeps until it ends; a
 * scenario can only be there from inside a stepped operation, so -EBUSY.
 */
export function intervalReadBegin(mm: Mm, id: u32): i64 {
  if (mm.activeInvalidations != 0 && unchecked(subSeq[id]) == mm.invalidateSeq) return -16;
  return <i64>unchecked(subSeq[id]);
}

/** mmu_interval_check_retry / mmu_interval_read_retry: an invalidation overlapped since `seq` was read. */
// @ts-ignore: decorator
@inline export function intervalCheckRetry(id: u32, seq: u64): bool { return unchecked(subSeq[id]) != seq; }

/** mmu_notifier_invalidate_range_start. */
export function mmuNotifierInvalidateStart(mm: Mm, event: u32, start: u64, end: u64): void {
  record(0, mm, event, start, end);
  if (mm.nrSubscriptions == 0) return;
  if (mm.activeInvalidations++ == 0) mm.invalidateSeq++;          // odd: in progress
  const id = mm.id, seq = mm.invalidateSeq;
  for (let i: u32 = 1; i < subsHigh; i++) {
    const kind = unchecked(subKind[i]);
    if (kind == SUB_FREE || unchecked(subMm[i]) != id) continue;
    if (unchecked(subEnd[i]) <= start || end <= unchecked(subStart[i])) continue;
    unchecked(subSeq[i] = seq);
    unchecked(subInvalidations[i]++);
    if (kind == SUB_MIRROR) mirrorInvalidateHook(unchecked(subOwner[i]), event, start, end);
  }
}

/** mmu_notifier_invalidate_range_end. */
export function mmuNotifierInvalidateEnd(mm: Mm, event: u32, start: u64, end: u64): void {
  record(1, mm, event, start, end);
  if (mm.nrSubscriptions == 0 || mm.activeInvalidations == 0) return;
  if (--mm.activeInvalidations == 0) mm.invalidateSeq++;          // even: quiet
}
