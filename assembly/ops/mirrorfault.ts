// The seed's device page fault (hmm_mirror_fault, HMM v3..v6): fill a
// device mirror from the CPU page tables over [start, end).
//
// The walk stops with -ENOENT at the first page the CPU side cannot give the
// device as asked (no table, not present, PROT_NONE, or read-only for a
// write fault); the CPU then faults every page from there to the end
// (hmm_mm_fault) and the device fault retries (-EAGAIN to the driver, which
// calls again: here the loop does). A huge PMD fills its whole 2 MiB as 512
// small mirror entries. A CPU invalidation overlapping a device fault in
// flight makes it back off and retry (mirror.ts sets `backoff`).

import { Mm, mmById } from "../mm";
import { Vma } from "../vma";
import { walkPageRange, walkMm, setWalkAction, ACTION_CONTINUE } from "../walk";
import { Mirror, mirrorLive, mirrorLeafBegin, mirrorLeafEnd, mirrorEntry } from "../mirror";
import { handleMmFault } from "../fault";
import { stepping, yieldStep, STEP_ENTRY } from "../step";
import { ptePresent, pteProtnone, pteWrite, leafPfn, isUpperLeaf } from "../arch/index";
import {
  VM_IO, VM_PFNMAP, VM_MIXEDMAP, VM_HUGETLB, VM_READ, VM_WRITE, VM_FAULT_OOM, VM_FAULT_ERROR, VM_FAULT_BLOCKED,
  FAULT_FLAG_WRITE, PMD_SIZE, EFAULT, EACCES, ENOMEM, ENODEV, EINVAL, EAGAIN,
} from "../constants";

/** pteRange / upperEntry / hole: stop, the CPU must fault from `failAddr`. */
const NEED_CPU_FAULT: i32 = 1;
/** Stop: an invalidation overlapped; retry. */
const BACK_OFF: i32 = 2;

@final export class MirrorFaultOp {
  mirror: Mirror = changetype<Mirror>(0);
  write: bool = false;
  failAddr: u64 = 0;

  /** The seed rejects VM_IO / PFNMAP / MIXEDMAP / HUGETLB VMAs, and a write where the VMA has no VM_WRITE. */
  testWalk(vma: Vma): i32 {
    if ((vma.flags & (VM_IO | VM_PFNMAP | VM_MIXEDMAP | VM_HUGETLB)) != 0) return -EFAULT;
    if (this.write && (vma.flags & VM_WRITE) == 0) return -EACCES;
    // The CPU fault it may need would be an access error (SIGSEGV): nothing to mirror there.
    if ((vma.flags & (VM_READ | VM_WRITE)) == 0) return -EFAULT;
    return 0;
  }

  // @ts-ignore: decorator
  @inline preVma(vma: Vma, start: u64, end: u64): i32 { return 0; }
  // @ts-ignore: decorator
  @inline postVma(vma: Vma, start: u64, end: u64): void {}

  /** A gap between VMAs is -EFAULT; a missing table inside one needs the CPU fault. */
  hole(addr: u64, next: u64, depth: i32): i32 {
    if (depth < 0) return -EFAULT;
    this.failAddr = addr;
    return NEED_CPU_FAULT;
  }

  /** hmm_mirror_fault_hpmd: the whole PMD as 512 entries, unless a write meets a read-only one. */
  upperEntry(level: u32, ep: usize, addr: u64, next: u64): i32 {
    const e = load<u64>(ep);
    if (!isUpperLeaf(e)) return 0;
    if (level != 1 || pteProtnone(e) || (this.write && !pteWrite(e))) { this.failAddr = addr; return NEED_CPU_FAULT; }
    const haddr = addr & ~(PMD_SIZE - 1);
    const leaf = mirrorLeafBegin(this.mirror, haddr);
    if (leaf == 0) { mirrorLeafEnd(this.mirror, 0); return -ENOMEM; }
    const pfn = <u32>leafPfn(e, 1), w = pteWrite(e);
    let added: u32 = 0;
    for (let i: u32 = 0; i < 512; i++) added += mirrorEntry(leaf + (<usize>i << 3), pfn + i, w);
    mirrorLeafEnd(this.mirror, added);
    setWalkAction(ACTION_CONTINUE);
    return this.pushed(haddr, haddr + PMD_SIZE);
  }

  /** PTEs in order: each present one is copied; the first the device cannot have stops the walk. */
  pteRange(ptep: usize, addr: u64, end: u64): i32 {
    const leaf = mirrorLeafBegin(this.mirror, addr);
    if (leaf == 0) { mirrorLeafEnd(this.mirror, 0); return -ENOMEM; }
    const write = this.write;
    let added: u32 = 0, r: i32 = 0;
    let a = addr, p = ptep, m = leaf + <usize>(((addr >> 12) & 511) << 3);
    for (; a < end; a += 4096, p += 8, m += 8) {
      const e = load<u64>(p);
      if (!ptePresent(e) || pteProtnone(e) || (write && !pteWrite(e))) { this.failAddr = a; r = NEED_CPU_FAULT; break; }
      added += mirrorEntry(m, <u32>leafPfn(e, 0), pteWrite(e));
    }
    mirrorLeafEnd(this.mirror, added);
    if (a > addr) {
      const b = this.pushed(addr, a);
      if (b != 0) return b;
    }
    return r;
  }

  /** device->ops->update after a chunk: a yield point; an invalidation since the start means backing off. */
  private pushed(start: u64, end: u64): i32 {
    if (stepping) yieldStep(STEP_ENTRY, walkMm, start, end, 0);
    return this.mirror.backoff != 0 ? BACK_OFF : 0;
  }
}

const op = new MirrorFaultOp();

/** hmm_mirror_fault over [start, end) with the driver's retry loop; 0 or -errno. */
export function mirrorFault(m: Mirror, start: u64, end: u64, write: bool): i32 {
  if (!mirrorLive(m)) return -ENODEV;
  const mm = changetype<Mm>(mmById(m.mm));
  start &= ~<u64>4095;
  end = (end + 4095) & ~<u64>4095;
  if (end > mm.taskSize) end = mm.taskSize;
  if (start >= end) return -EINVAL;
  m.faults++;
  op.mirror = m;
  op.write = write;
  let addr = start;
  let stuckAt: u64 = <u64>-1, stuckRounds: u32 = 0;
  while (true) {
    m.faultActive = 1; m.backoff = 0; m.faultStart = addr; m.faultEnd = end;
    const r = walkPageRange<MirrorFaultOp>(op, mm, addr, end);
    m.faultActive = 0;
    if (r == BACK_OFF) { m.backoffs++; m.retries++; continue; }
    if (r <= 0) return r;
    // -ENOENT: the CPU faults from there to the end, then the device fault is retried (-EAGAIN).
    // A CPU fault may need a second round (a uffd-wp marker first becomes a read-only page, then the
    // write fault resolves it); one that still has not given the device what it needs after that never will.
    if (op.failAddr == stuckAt) { if (++stuckRounds >= 3) return -EFAULT; } else { stuckAt = op.failAddr; stuckRounds = 0; }
    for (let a = op.failAddr; a < end; a += 4096) {
      const f = handleMmFault(mm, a, write ? FAULT_FLAG_WRITE : 0);
      if ((f & VM_FAULT_BLOCKED) != 0) return -EAGAIN;
      if ((f & VM_FAULT_OOM) != 0) return -ENOMEM;
      if ((f & VM_FAULT_ERROR) != 0) return -EFAULT;
      m.cpuFaults++;
    }
    m.retries++;
    addr = op.failAddr;
  }
  return 0;
}
