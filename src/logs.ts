// The core's record logs (assembly/log.ts), read into objects: TLB flushes,
// mmu-notifier calls and kernel warnings. Every record carries `seq`, one
// counter across all three, so they can be merged into one ordered story.

import type { Core } from './core.js';

/** One TLB invalidation the kernel issued, and the CPUs it reached. */
export interface FlushRecord {
  /** Position in the machine's sequence of logged events (flushes, notifier calls, warnings). */
  seq: number;
  kind: 'page' | 'range' | 'mm' | 'all';
  /** The process (mm) it was for; 0 for a global flush. */
  pid: number;
  start: number;
  end: number;
  /** log2 of the stride (12 for pages, 21 for PMDs); 0 for whole flushes. */
  strideShift: number;
  /** The CPU that issued it, and every CPU it reached (the others by IPI). */
  initiator: number;
  cpus: number[];
}

/** enum mmu_notifier_event. */
export type NotifierEvent = 'unmap' | 'clear' | 'protection-vma' | 'protection-page' | 'soft-dirty' | 'release' | 'migrate' | 'exclusive';
export const NOTIFIER_EVENTS: readonly NotifierEvent[] = ['unmap', 'clear', 'protection-vma', 'protection-page', 'soft-dirty', 'release', 'migrate', 'exclusive'];

/** mmu_notifier_invalidate_range_start / _end. */
export interface NotifierRecord {
  seq: number;
  phase: 'start' | 'end';
  event: NotifierEvent;
  pid: number;
  start: number;
  /** Infinity for "to the end of the address space" (-1UL). */
  end: number;
}

/** A WARN() the kernel would have printed. */
export interface KernelWarning {
  seq: number;
  /** The kernel function that warns. */
  where: string;
  message: string;
  pid: number;
  addr: number;
  /** The entry that triggered it. */
  entry: bigint;
}

const WARNINGS: Record<number, [string, string]> = {
  1: ['wp_clean_pmd_entry', 'huge leaf is writable or dirty; not split, left unchanged'],
  2: ['cpu store', 'a store through a stale TLB entry reached a frame that is no longer a data page (entry: its pfn); memory corruption on real hardware'],
};

const FLUSH_BYTES = 48, NOTIFIER_BYTES = 40, WARN_BYTES = 32;
export const LOG_FLUSH = 0, LOG_NOTIFIER = 1, LOG_WARN = 2;

const toEnd = (v: bigint): number => (v === 0xffffffffffffffffn ? Infinity : Number(v));

function records<T>(core: Core, which: number, bytes: number, read: (r: number) => T): T[] {
  const base = core.x.logRecords(which);
  const n = core.result(0);
  const out: T[] = [];
  for (let i = 0; i < n; i++) out.push(read(base + i * bytes));
  return out;
}

export function readFlushLog(core: Core, cpus: number): FlushRecord[] {
  const kinds = ['page', 'range', 'mm', 'all'] as const;
  return records(core, LOG_FLUSH, FLUSH_BYTES, (r) => {
    const mask = core.u64At(r + 40);
    const reached: number[] = [];
    for (let b = 0; b < cpus; b++) if ((mask >> BigInt(b)) & 1n) reached.push(b);
    return {
      seq: Number(core.u64At(r)), kind: kinds[core.u32At(r + 8)]!, pid: core.u32At(r + 12), initiator: core.u32At(r + 16),
      strideShift: core.u32At(r + 20), start: Number(core.u64At(r + 24)), end: toEnd(core.u64At(r + 32)), cpus: reached,
    };
  });
}

export function readNotifierLog(core: Core): NotifierRecord[] {
  return records(core, LOG_NOTIFIER, NOTIFIER_BYTES, (r) => ({
    seq: Number(core.u64At(r)), phase: core.u32At(r + 8) === 0 ? 'start' as const : 'end' as const,
    event: NOTIFIER_EVENTS[core.u32At(r + 12)] ?? 'clear', pid: core.u32At(r + 16),
    start: Number(core.u64At(r + 24)), end: toEnd(core.u64At(r + 32)),
  }));
}

export function readWarnings(core: Core): KernelWarning[] {
  return records(core, LOG_WARN, WARN_BYTES, (r) => {
    const [where, message] = WARNINGS[core.u32At(r + 8)] ?? ['unknown', `warning ${core.u32At(r + 8)}`];
    return { seq: Number(core.u64At(r)), where, message, pid: core.u32At(r + 12), addr: Number(core.u64At(r + 16)), entry: core.u64At(r + 24) };
  });
}
