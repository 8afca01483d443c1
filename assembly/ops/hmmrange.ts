// hmm_range_fault (mm/hmm.c) as a walker op: for each page of a range, the
// CPU's view as a device driver reads it (pfn | VALID | WRITE, order for huge
// mappings, ERROR where nothing can be mirrored), faulting pages in first
// where the request asks for it.
//
// Per entry, the request is (input & pfnFlagsMask) | defaultFlags: REQ_FAULT
// (the VALID bit) asks for a valid page, REQ_WRITE (the WRITE bit) for a
// writable one. A fault runs through the CPU fault handler (a write request
// breaks COW) and makes the walk start again from there (-EBUSY inside);
// before every walk the interval notifier's sequence is checked, so an
// invalidation since the driver's read_begin, the fault's own included,
// returns -EBUSY to the driver, which takes a new sequence and calls again.

import { Mm } from "../mm";
import { Vma } from "../vma";
import { walkPageRange, walkMm, walkVma, setWalkAction, ACTION_CONTINUE } from "../walk";
import { handleMmFault } from "../fault";
import { intervalCheckRetry } from "../notifier";
import { devicePrivateOwner } from "../devmem";
import { isZeroPfn } from "../frames";
import {
  ptePresent, pteProtnone, pteWrite, pteSpecial, leafPfn, isUpperLeaf, isSwapPte, swpType, swpOffset, swpPfnBits,
  MAX_SWAPFILES, isDevicePrivateType, isMigrationType, SWP_DEVICE_WRITE,
} from "../arch/index";
import {
  VM_IO, VM_PFNMAP, VM_MIXEDMAP, VM_READ, VM_WRITE, VM_FAULT_ERROR, VM_FAULT_BLOCKED, FAULT_FLAG_WRITE,
  EFAULT, EPERM, EBUSY, EAGAIN,
} from "../constants";

export const HMM_PFN_VALID: u64 = <u64>1 << 63;
export const HMM_PFN_WRITE: u64 = <u64>1 << 62;
export const HMM_PFN_ERROR: u64 = <u64>1 << 61;
export const HMM_PFN_ORDER_SHIFT: u64 = 56;
const HMM_PFN_REQ_FAULT: u64 = HMM_PFN_VALID;
const HMM_PFN_REQ_WRITE: u64 = HMM_PFN_WRITE;

const NEED_FAULT: u32 = 1;
const NEED_WRITE_FAULT: u32 = 2;

@final export class HmmRangeOp {
  pfns: usize = 0;
  rangeStart: u64 = 0;
  rangeEnd: u64 = 0;
  defaultFlags: u64 = 0;
  pfnFlagsMask: u64 = 0;
  owner: u32 = 0;            // dev_private_owner: a device id, 0 for none
  last: u64 = 0;             // hmm_vma_walk->last: where a restarted walk begins
  cpuFaults: u64 = 0;
  migrating: bool = false;   // met a migration entry that a fault must wait for

  // @ts-ignore: decorator
  @inline private slot(addr: u64): usize { return this.pfns + <usize>(((addr - this.rangeStart) >> 12) << 3); }

  /** hmm_pte_need_fault. */
  // @ts-ignore: decorator
  @inline private needFault(input: u64, cpuFlags: u64): u32 {
    // The range-wide shortcut: without REQ_FAULT anywhere, nothing ever faults.
    if (((this.defaultFlags | this.pfnFlagsMask) & HMM_PFN_REQ_FAULT) == 0) return 0;
    const req = (input & this.pfnFlagsMask) | this.defaultFlags;
    if ((req & HMM_PFN_REQ_FAULT) == 0) return 0;
    if ((req & HMM_PFN_REQ_WRITE) != 0 && (cpuFlags & HMM_PFN_WRITE) == 0) return NEED_FAULT | NEED_WRITE_FAULT;
    if ((cpuFlags & HMM_PFN_VALID) == 0) return NEED_FAULT;
    return 0;
  }

  /** hmm_range_need_fault over [addr, end) with the same CPU flags for every page. */
  private rangeNeedFault(addr: u64, end: u64, cpuFlags: u64): u32 {
    if (((this.defaultFlags | this.pfnFlagsMask) & HMM_PFN_REQ_FAULT) == 0) return 0;
    let required: u32 = 0;
    for (let a = addr; a < end; a += 4096) {
      required |= this.needFault(load<u64>(this.slot(a)), cpuFlags);
      if (required == (NEED_FAULT | NEED_WRITE_FAULT)) break;
    }
    return required;
  }

  /** hmm_vma_fault: the CPU faults [addr, end); the walk restarts at addr (-EBUSY) to read the new state. */
  private fault(addr: u64, end: u64, required: u32): i32 {
    this.last = addr;
    let flags: u32 = 0;
    if ((required & NEED_WRITE_FAULT) != 0) {
      if ((changetype<Vma>(walkVma).flags & VM_WRITE) == 0) return -EPERM;
      flags = FAULT_FLAG_WRITE;
    }
    for (let a = addr; a < end; a += 4096) {
      const r = handleMmFault(walkMm, a, flags);
      if ((r & VM_FAULT_BLOCKED) != 0) return -EAGAIN;
      if ((r & VM_FAULT_ERROR) != 0) return -EFAULT;
      this.cpuFaults++;
    }
    return -EBUSY;
  }

  private fill(addr: u64, end: u64, v: u64): void {
    for (let a = addr; a < end; a += 4096) store<u64>(this.slot(a), v);
  }

  /** hmm_vma_walk_test: VMAs a device cannot mirror are ERROR, or -EFAULT when a fault is asked there. */
  testWalk(vma: Vma): i32 {
    if ((vma.flags & (VM_IO | VM_PFNMAP | VM_MIXEDMAP)) == 0 && (vma.flags & VM_READ) != 0) return 0;
    const start = this.last > vma.start ? this.last : vma.start;
    const end = this.rangeEnd < vma.end ? this.rangeEnd : vma.end;
    if (this.rangeNeedFault(start, end, 0) != 0) return -EFAULT;
    this.fill(start, end, HMM_PFN_ERROR);
    return 1;
  }

  // @ts-ignore: decorator
  @inline preVma(vma: Vma, start: u64, end: u64): i32 { return 0; }
  // @ts-ignore: decorator
  @inline postVma(vma: Vma, start: u64, end: u64): void {}

  /** hmm_vma_walk_hole: outside a VMA ERROR (or -EFAULT if asked to fault); a missing table inside one faults or reads 0. */
  hole(addr: u64, next: u64, depth: i32): i32 {
    const required = this.rangeNeedFault(addr, next, 0);
    if (depth < 0) {
      if (required != 0) return -EFAULT;
      this.fill(addr, next, HMM_PFN_ERROR);
      return 0;
    }
    if (required != 0) return this.fault(addr, next, required);
    this.fill(addr, next, 0);
    return 0;
  }

  /** hmm_vma_handle_pmd (and PUD leaves): every 4 KiB slot gets the leaf's pfn + i with its order. */
  upperEntry(level: u32, ep: usize, addr: u64, next: u64): i32 {
    const e = load<u64>(ep);
    if (!isUpperLeaf(e)) {
      if (isSwapPte(e)) {
        // A non-present huge entry (a PMD migration entry): fault = -EFAULT, else ERROR.
        if (this.rangeNeedFault(addr, next, 0) != 0) return -EFAULT;
        this.fill(addr, next, HMM_PFN_ERROR);
        setWalkAction(ACTION_CONTINUE);
      }
      return 0;
    }
    const cpuFlags = pteProtnone(e) ? 0 : HMM_PFN_VALID | (pteWrite(e) ? HMM_PFN_WRITE : 0) | (<u64>(9 * level) << HMM_PFN_ORDER_SHIFT);
    const required = this.rangeNeedFault(addr, next, cpuFlags);
    if (required != 0) return this.fault(addr, next, required);
    const span = <u64>1 << (12 + 9 * <u64>level);
    const first = <u64>leafPfn(e, level) + ((addr & (span - 1)) >> 12);
    let pfn = first;
    for (let a = addr; a < next; a += 4096, pfn++) store<u64>(this.slot(a), cpuFlags == 0 ? 0 : pfn | cpuFlags);
    setWalkAction(ACTION_CONTINUE);
    return 0;
  }

  /** hmm_vma_handle_pte for each PTE of [addr, end). */
  pteRange(ptep: usize, addr: u64, end: u64): i32 {
    for (let a = addr, p = ptep; a < end; a += 4096, p += 8) {
      const r = this.pte(a, end, load<u64>(p));
      if (r != 0) return r;
    }
    return 0;
  }

  private pte(a: u64, end: u64, e: u64): i32 {
    const slot = this.slot(a);
    const input = load<u64>(slot);
    if (e == 0) {
      const required = this.needFault(input, 0);
      if (required != 0) return this.fault(a, end, required);
      store<u64>(slot, 0);
      return 0;
    }
    if (!ptePresent(e)) {
      const type = isSwapPte(e) ? swpType(e) : MAX_SWAPFILES;
      if (isDevicePrivateType(type)) {
        const pfn = <u32>(swpOffset(e) & ((<u64>1 << swpPfnBits(walkMm.levels)) - 1));
        // The driver's own device memory: reported as it is, never faulted.
        if (this.owner != 0 && devicePrivateOwner(pfn) == this.owner) {
          store<u64>(slot, <u64>pfn | HMM_PFN_VALID | (type == SWP_DEVICE_WRITE ? HMM_PFN_WRITE : 0));
          return 0;
        }
      }
      const required = this.needFault(input, 0);
      if (required == 0) { store<u64>(slot, 0); return 0; }
      // A real swap entry, or another owner's device page, is faulted in (swap-in, migrate_to_ram).
      if (type < MAX_SWAPFILES || isDevicePrivateType(type)) return this.fault(a, end, required);
      // The kernel waits for a migration to end and walks again; nothing ends one in ptemu.
      if (isMigrationType(type)) { this.last = a; this.migrating = true; return -EBUSY; }
      return -EFAULT;                                  // hwpoison, markers
    }
    const cpuFlags = pteProtnone(e) ? 0 : HMM_PFN_VALID | (pteWrite(e) ? HMM_PFN_WRITE : 0);
    const required = this.needFault(input, cpuFlags);
    if (required != 0) return this.fault(a, end, required);
    const pfn = <u32>leafPfn(e, 0);
    if (pteSpecial(e) && !isZeroPfn(pfn)) {
      if (this.needFault(input, 0) != 0) return -EFAULT;
      store<u64>(slot, HMM_PFN_ERROR);
      return 0;
    }
    store<u64>(slot, cpuFlags == 0 ? 0 : <u64>pfn | cpuFlags);
    return 0;
  }
}

const op = new HmmRangeOp();
export let hmmCpuFaults: u64 = 0;
/** Where the outputs end when hmm_range_fault fails: entries before it hold outputs, the rest their inputs. */
export let hmmLast: u64 = 0;

/**
 * hmm_range_fault over [start, end) with the pfns array at `pfns` (one u64
 * per page, inputs in, outputs out). 0 or -errno.
 */
export function hmmRangeFault(mm: Mm, sub: u32, seq: u64, start: u64, end: u64, pfns: usize, defaultFlags: u64, mask: u64, owner: u32): i32 {
  op.pfns = pfns; op.rangeStart = start; op.rangeEnd = end;
  op.defaultFlags = defaultFlags; op.pfnFlagsMask = mask; op.owner = owner;
  op.last = start; op.cpuFaults = 0; op.migrating = false;
  let r: i32 = 0;
  do {
    if (intervalCheckRetry(sub, seq)) { r = -EBUSY; break; }
    r = walkPageRange<HmmRangeOp>(op, mm, op.last, end);
  } while (r == -EBUSY && !op.migrating);
  hmmCpuFaults = op.cpuFaults;
  hmmLast = op.last;
  return r;
}
