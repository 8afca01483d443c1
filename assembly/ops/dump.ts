// ptdump: the range's entries as runs of equal attributes, written as records
// that the TypeScript side formats. A run continues while the level, the kind
// and every attribute bit except the address agree and addresses are
// contiguous.
//
// Record (32 bytes): start u64 | end u64 | first entry u64 | level u32 | count u32

import { Vma } from "../vma";
import { setWalkAction, ACTION_CONTINUE } from "../walk";
import { ptePresent, isUpperLeaf, pfnMask, swpType, swpSoftDirtyBit, swpUffdWpBit, swpExclusiveBit } from "../arch/index";
import { kmalloc, kfree } from "../heap";

export const DUMP_RECORD_BYTES: usize = 32;

@final export class DumpOp {
  buf: usize = 0;
  cap: u32 = 0;
  count: u32 = 0;
  failed: bool = false;
  // The open run.
  runStart: u64 = 0;
  runEnd: u64 = 0;
  runEntry: u64 = 0;
  runSig: u64 = 0;
  runLevel: u32 = 0;
  runLen: u32 = 0;

  reset(): void {
    this.count = 0; this.runLen = 0; this.failed = false;
  }

  signature(e: u64): u64 {
    if (ptePresent(e)) return e & ~pfnMask();
    return (<u64>swpType(e) << 56) | (e & (swpSoftDirtyBit() | swpUffdWpBit() | swpExclusiveBit()));
  }

  add(addr: u64, next: u64, e: u64, level: u32): void {
    const sig = this.signature(e);
    if (this.runLen != 0 && this.runEnd == addr && this.runLevel == level && this.runSig == sig) {
      this.runEnd = next;
      this.runLen++;
      return;
    }
    this.flush();
    this.runStart = addr; this.runEnd = next; this.runEntry = e; this.runSig = sig; this.runLevel = level; this.runLen = 1;
  }

  flush(): void {
    if (this.runLen == 0) return;
    if (this.count == this.cap) {
      const cap = this.cap == 0 ? 256 : this.cap * 2;
      const nb = kmalloc(<usize>cap * DUMP_RECORD_BYTES);
      if (nb == 0) { this.failed = true; this.runLen = 0; return; }
      if (this.buf != 0) { memory.copy(nb, this.buf, <usize>this.count * DUMP_RECORD_BYTES); kfree(this.buf, <usize>this.cap * DUMP_RECORD_BYTES); }
      this.buf = nb; this.cap = cap;
    }
    const r = this.buf + <usize>this.count * DUMP_RECORD_BYTES;
    store<u64>(r, this.runStart);
    store<u64>(r, this.runEnd, 8);
    store<u64>(r, this.runEntry, 16);
    store<u32>(r, this.runLevel, 24);
    store<u32>(r, this.runLen, 28);
    this.count++;
    this.runLen = 0;
  }

  pteRange(ptep: usize, addr: u64, end: u64): i32 {
    for (let a = addr; a < end; a += 4096, ptep += 8) this.pteEntry(ptep, a);
    return 0;
  }

  // @ts-ignore: decorator
  @inline pteEntry(ptep: usize, addr: u64): i32 {
    const e = load<u64>(ptep);
    if (e != 0) this.add(addr, addr + 4096, e, 0);
    return 0;
  }

  upperEntry(level: u32, ep: usize, addr: u64, next: u64): i32 {
    const e = load<u64>(ep);
    if (isUpperLeaf(e)) {
      this.add(addr, next, e, level);
      setWalkAction(ACTION_CONTINUE);
    }
    return 0;
  }
  // @ts-ignore: decorator
  @inline hole(addr: u64, next: u64, depth: i32): i32 { return 0; }
  // @ts-ignore: decorator
  @inline testWalk(vma: Vma): i32 { return 0; }
  // @ts-ignore: decorator
  @inline preVma(vma: Vma, start: u64, end: u64): i32 { return 0; }
  // @ts-ignore: decorator
  @inline postVma(vma: Vma, start: u64, end: u64): void {}
}
