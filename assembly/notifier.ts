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

/** mmu_notifier_invalidate_range_start. */
export function mmuNotifierInvalidateStart(mm: Mm, event: u32, start: u64, end: u64): void { record(0, mm, event, start, end); }

/** mmu_notifier_invalidate_range_end. */
export function mmuNotifierInvalidateEnd(mm: Mm, event: u32, start: u64, end: u64): void { record(1, mm, event, start, end); }
