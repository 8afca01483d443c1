// Append-only record logs that the TypeScript side reads: TLB flushes, mmu
// notifier calls, kernel warnings. Records are fixed-size and start with a
// u64 sequence number drawn from one counter shared by every log, so logs
// can be merged into one ordered story ("notifier start, flush, notifier
// end"). A log doubles as it fills, up to a cap, then counts what it drops.

import { krealloc } from "./heap";

@unmanaged export class Log {
  buf: usize;
  cap: u32;
  count: u32;
  dropped: u64;
}

const LOG_MAX: u32 = 1 << 20;

/** The sequence number the next record of any log gets. */
export let logSeq: u64 = 1;

/** A log in static memory (module-level, so it exists before the heap does). */
// @ts-ignore: decorator
@inline export function staticLog(): Log { return changetype<Log>(memory.data(offsetof<Log>())); }

/** Room for one record of `bytes` (its sequence number already written), or 0 if dropped. */
export function logAppend(log: Log, bytes: usize): usize {
  if (log.count == log.cap) {
    if (log.cap >= LOG_MAX) { log.dropped++; return 0; }
    const cap = log.cap == 0 ? 256 : log.cap * 2;
    const nb = krealloc(log.buf, <usize>log.cap * bytes, <usize>cap * bytes, <usize>log.count * bytes);
    if (nb == 0) { log.dropped++; return 0; }
    log.buf = nb; log.cap = cap;
  }
  const r = log.buf + <usize>log.count * bytes;
  store<u64>(r, logSeq++);
  log.count++;
  return r;
}

export function logClear(log: Log): void { log.count = 0; log.dropped = 0; }
