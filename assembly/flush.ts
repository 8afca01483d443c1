// TLB flushes the kernel issues (arch/x86/mm/tlb.c flush_tlb_mm_range and
// friends), shot down to the CPUs that have run the mm, and logged.
//
// A range flush of more pages (in units of the stride) than the ceiling
// becomes a flush of the whole address space, like x86's
// tlb_single_page_flush_ceiling (33). Every CPU in mm_cpumask is reached:
// the initiating CPU locally, the others by IPI (counted).
//
// Log record (48 bytes): seq u64 | kind u32 | mm u32 | initiator u32 | stride shift u32 |
//                        start u64 | end u64 | cpus reached u64 (bit per CPU)

import { Log, staticLog, logAppend } from "./log";
import { Mm } from "./mm";
import { Cpu, cpuAt, nrCpus, cpuFlushPage, cpuFlushPages, cpuFlushHugePage, cpuFlushAsid, bumpStat, ST_FLUSHES, ST_IPIS } from "./cpu";

export const FLUSH_PAGE: u32 = 0;
export const FLUSH_RANGE: u32 = 1;
export const FLUSH_MM: u32 = 2;
export const FLUSH_ALL: u32 = 3;

export let flushCeiling: u32 = 33;
export function setFlushCeiling(n: u32): void { flushCeiling = n; }

export const FLUSH_RECORD: usize = 48;
export const flushLog: Log = staticLog();
export let totalFlushes: u64 = 0;
export let totalIpis: u64 = 0;

// @ts-ignore: decorator
@inline function logFlush(kind: u32, mm: u32, initiator: u32, stride: u32, start: u64, end: u64, cpus: u64): void {
  const r = logAppend(flushLog, FLUSH_RECORD);
  if (r == 0) return;
  store<u32>(r, kind, 8); store<u32>(r, mm, 12); store<u32>(r, initiator, 16); store<u32>(r, stride, 20);
  store<u64>(r, start, 24); store<u64>(r, end, 32); store<u64>(r, cpus, 40);
}

/** Counts the flush on every reached CPU; returns the mask reached. */
// @ts-ignore: decorator
@inline function reach(mask: u64, initiator: u32): u64 {
  totalFlushes++;
  for (let i: u32 = 0; i < nrCpus; i++) {
    if ((mask & (<u64>1 << i)) == 0) continue;
    const c = cpuAt(i);
    bumpStat(c, ST_FLUSHES, 1);
    if (i != initiator) { bumpStat(c, ST_IPIS, 1); totalIpis++; }
  }
  return mask;
}

/**
 * flush_tlb_mm_range: [start, end) with the given stride (12 pages, 21 PMDs);
 * more than the ceiling of entries becomes a whole-mm flush.
 */
export function flushTlbRange(mm: Mm, start: u64, end: u64, strideShift: u32): void {
  if (end <= start) return;
  const n = (end - start) >> strideShift;
  if (n > <u64>flushCeiling) { flushTlbMm(mm); return; }
  const mask = reach(mm.cpumask, mm.lastCpu);
  const asid = mm.id;
  for (let i: u32 = 0; i < nrCpus; i++) {
    if ((mask & (<u64>1 << i)) == 0) continue;
    const c = cpuAt(i);
    // A 2 MiB stride flushes huge pages: INVLPG drops every piece of each, however it was cached.
    if (strideShift > 12) for (let a = start; a < end; a += <u64>1 << strideShift) cpuFlushHugePage(c, asid, a >> 12, <u64>strideShift - 12);
    else cpuFlushPages(c, asid, start >> 12, end >> 12);
  }
  logFlush(end - start == 4096 ? FLUSH_PAGE : FLUSH_RANGE, mm.id, mm.lastCpu, strideShift, start, end, mask);
}

/** flush_tlb_page. */
export function flushTlbPage(mm: Mm, addr: u64): void { flushTlbRange(mm, addr & ~<u64>4095, (addr & ~<u64>4095) + 4096, 12); }

/** flush_tlb_mm: every translation of the address space, on every CPU that ran it. */
export function flushTlbMm(mm: Mm): void {
  const mask = reach(mm.cpumask, mm.lastCpu);
  for (let i: u32 = 0; i < nrCpus; i++) if ((mask & (<u64>1 << i)) != 0) cpuFlushAsid(cpuAt(i), <i32>mm.id);
  logFlush(FLUSH_MM, mm.id, mm.lastCpu, 0, 0, mm.taskSize, mask);
}

/** flush_tlb_all: everything, everywhere (global entries included). */
export function flushTlbAll(initiator: u32): void {
  const all: u64 = nrCpus >= 64 ? <u64>-1 : (<u64>1 << nrCpus) - 1;
  const mask = reach(all, initiator);
  for (let i: u32 = 0; i < nrCpus; i++) cpuFlushAsid(cpuAt(i), -1);
  logFlush(FLUSH_ALL, 0, initiator, 0, 0, <u64>-1, mask);
}

/** A flush local to one CPU that the kernel does not log as a shootdown (e.g. after a spurious fault). */
export function flushLocalPage(c: Cpu, asid: u32, vpn: u64): void { cpuFlushPage(c, asid, vpn); }
