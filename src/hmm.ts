// m.hmm: the modern HMM interface (mm/hmm.c): interval notifiers and
// hmm_range_fault, which snapshots (and faults in) a range of a process's
// page tables for a device driver.

import type { Machine } from './machine.js';
import { liveProcessOf, type Process } from './process.js';
import { EmuError } from './errors.js';
import { toBigAddr, checkUserRange } from './addr.js';
import { IntervalNotifier, type Device } from './device.js';

/** hmm_pfns bits (64-bit): outputs VALID / WRITE / ERROR and the order field; as inputs VALID asks for a fault (REQ_FAULT), WRITE for a writable page (REQ_WRITE). */
export const HMM_PFN_VALID = 1n << 63n;
export const HMM_PFN_WRITE = 1n << 62n;
export const HMM_PFN_ERROR = 1n << 61n;
export const HMM_PFN_REQ_FAULT = HMM_PFN_VALID;
export const HMM_PFN_REQ_WRITE = HMM_PFN_WRITE;
export const HMM_PFN_ORDER_SHIFT = 56n;
const MAX_RANGE_PAGES = 1 << 24;
const EBUSY = -16;

/** One hmm_pfns output, decoded. */
export interface HmmPfn { valid: boolean; write: boolean; error: boolean; /** log2 of the pages the CPU maps this page with (9: a PMD). */ order: number; pfn: number }

export function decodeHmmPfn(v: bigint): HmmPfn {
  return {
    valid: (v & HMM_PFN_VALID) !== 0n, write: (v & HMM_PFN_WRITE) !== 0n, error: (v & HMM_PFN_ERROR) !== 0n,
    order: Number((v >> HMM_PFN_ORDER_SHIFT) & 0x1fn), pfn: Number(v & ((1n << HMM_PFN_ORDER_SHIFT) - 1n)),
  };
}

export interface RangeFaultOptions {
  notifier: IntervalNotifier;
  start: number | bigint;
  end: number | bigint;
  /** One value per page: the per-page requests in, the outputs out (written in place, also when it throws). Default: zeros. */
  pfns?: BigUint64Array;
  /** Request flags for every page (HMM_PFN_REQ_FAULT, HMM_PFN_REQ_WRITE). */
  defaultFlags?: bigint;
  /** Which bits of each input count as requests. */
  pfnFlagsMask?: bigint;
  /** Pages of this device's private memory are reported as they are, never faulted. */
  devPrivateOwner?: Device;
  /**
   * A sequence from notifier.readBegin(): one attempt, EBUSY if an
   * invalidation overlapped since. Without it, the driver's loop: read_begin,
   * hmm_range_fault, again on EBUSY (at most 16 times).
   */
  notifierSeq?: number;
}

export interface RangeFaultResult {
  pfns: BigUint64Array;
  /** Pages the CPU faulted in for the request. */
  cpuFaults: number;
  /** Attempts that ended in EBUSY before the one that succeeded. */
  retries: number;
  /** The sequence the result is valid for (check it with notifier.checkRetry before using the pfns). */
  seq: number;
}

export class Hmm {
  private readonly machine: Machine;

  /** @internal */
  constructor(machine: Machine) { this.machine = machine; }

  /** mmu_interval_notifier_insert over [start, start + length) of p (page-aligned outward). */
  intervalNotifier(p: Process, start: number | bigint, length: number | bigint): IntervalNotifier {
    liveProcessOf(this.machine, p, 'p');
    const s = toBigAddr(start, 'start') & ~0xfffn;
    const len = toBigAddr(length, 'length');
    if (len === 0n) throw new EmuError('EINVAL', 'length must not be 0', 'length');
    const e = (toBigAddr(start, 'start') + len + 0xfffn) & ~0xfffn;
    checkUserRange(this.machine.geometry, s, e - s, 'start', 'EINVAL');
    return new IntervalNotifier(this.machine.core, p, Number(s), Number(e));
  }

  /**
   * hmm_range_fault: the CPU's view of [start, end) as a device sees it, one
   * value per page, faulting pages in where asked. Throws EPERM (a write
   * request in a VMA without VM_WRITE), EFAULT (a hole or an unmirrorable
   * VMA where a fault was asked, a failed fault), EBUSY (an invalidation
   * raced, with `notifierSeq`, or 16 times in a row), EAGAIN (a fault waits
   * on ->page_mkwrite). A fault a userfaultfd would handle is EFAULT with no
   * message: hmm_vma_fault passes no FAULT_FLAG_ALLOW_RETRY.
   */
  rangeFault(opts: RangeFaultOptions): RangeFaultResult {
    if (opts === null || typeof opts !== 'object') throw new EmuError('EINVAL', 'rangeFault needs an options object', 'opts');
    const n = opts.notifier;
    if (!(n instanceof IntervalNotifier)) throw new EmuError('EINVAL', 'notifier must come from m.hmm.intervalNotifier()', 'notifier');
    const start = toBigAddr(opts.start, 'start'), end = toBigAddr(opts.end, 'end');
    if ((start & 0xfffn) !== 0n || (end & 0xfffn) !== 0n) throw new EmuError('EINVAL', 'start and end must be page-aligned', (start & 0xfffn) !== 0n ? 'start' : 'end');
    if (end <= start) throw new EmuError('EINVAL', 'end must be above start', 'end');
    if (start < BigInt(n.start) || end > BigInt(n.end)) throw new EmuError('EINVAL', 'the range must lie inside the notifier\'s', 'start');
    const pages = Number((end - start) >> 12n);
    if (pages > MAX_RANGE_PAGES) throw new EmuError('EINVAL', `at most ${MAX_RANGE_PAGES} pages per call`, 'end');
    const pfns = opts.pfns ?? new BigUint64Array(pages);
    if (!(pfns instanceof BigUint64Array) || pfns.length !== pages) throw new EmuError('EINVAL', `pfns must be a BigUint64Array of ${pages} entries`, 'pfns');
    const flagArg = (v: bigint | undefined, arg: string): number => {
      if (v === undefined) return 0;
      if (typeof v !== 'bigint' || (v & ~(HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE)) !== 0n) throw new EmuError('EINVAL', `${arg} may hold only HMM_PFN_REQ_FAULT and HMM_PFN_REQ_WRITE`, arg);
      return Number(v >> 32n);
    };
    const def = flagArg(opts.defaultFlags, 'defaultFlags'), mask = flagArg(opts.pfnFlagsMask, 'pfnFlagsMask');
    const owner = opts.devPrivateOwner === undefined ? 0 : opts.devPrivateOwner.id;
    if (opts.notifierSeq !== undefined && (!Number.isSafeInteger(opts.notifierSeq) || opts.notifierSeq < 0)) throw new EmuError('EINVAL', 'notifierSeq must come from readBegin()', 'notifierSeq');
    const core = this.machine.core;
    const buf = core.x.allocBuffer(pages * 8);
    if (buf === 0) throw new EmuError('ENOMEM', 'no memory for the pfns', 'pfns');
    let cpuFaults = 0, retries = 0;
    try {
      core.writeU64(buf, pfns);
      for (;;) {
        const seq = opts.notifierSeq ?? n.readBegin();
        const r = core.x.hmmRangeFaultRange(n.id, seq, Number(start >> 12n), pages, buf, def, mask, owner);
        cpuFaults += core.result(0);
        if (r === EBUSY && opts.notifierSeq === undefined && retries < 16) {
          // Entries before the restart point hold outputs; the driver starts over from its inputs.
          retries++;
          core.writeU64(buf, pfns);
          continue;
        }
        pfns.set(core.copyU64(buf, pages));
        if (r < 0) throw EmuError.fromErrno(r, `hmm_range_fault failed at 0x${(core.result(1) * 4096).toString(16)}`, 'start');
        return { pfns, cpuFaults, retries, seq };
      }
    } finally {
      core.x.freeBuffer(buf, pages * 8);
    }
  }
}
