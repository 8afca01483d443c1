// WARN()s: conditions the kernel reports without stopping. The emulated code
// paths that have one record it here, so that a scenario can see that the
// kernel would have printed a warning and where.
//
// Record (32 bytes): seq u64 | code u32 | mm u32 | addr u64 | entry u64

import { Log, staticLog, logAppend } from "./log";

/** mapping_dirty_helpers: a huge PMD/PUD that is writable or dirty was skipped (never split). */
export const WARN_WP_CLEAN_HUGE: u32 = 1;
/** A CPU store through a stale translation reached a frame that is no longer a data page. */
export const WARN_STORE_NOT_DATA: u32 = 2;

export const WARN_RECORD: usize = 32;
export const warnLog: Log = staticLog();

export function warn(code: u32, mm: u32, addr: u64, entry: u64): void {
  const r = logAppend(warnLog, WARN_RECORD);
  if (r == 0) return;
  store<u32>(r, code, 8); store<u32>(r, mm, 12); store<u64>(r, addr, 16); store<u64>(r, entry, 24);
}
