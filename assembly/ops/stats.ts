// Counting walk: what the tables hold over a range (entries by kind, leaves by
// size, tables visited). Also the benchmark's "full walk".

import { Vma } from "../vma";
import { setWalkAction, ACTION_CONTINUE } from "../walk";
import { ptePresent, isUpperLeaf, isPteMarker, leafPfn } from "../arch/index";

@final export class StatsOp {
  present: u64 = 0;
  swap: u64 = 0;
  markers: u64 = 0;
  pmdLeaves: u64 = 0;
  pudLeaves: u64 = 0;
  pfnSum: u64 = 0;

  /** swap counts every non-present entry first; markers are moved out of it in finish(). */
  finish(): void { this.swap -= this.markers; }

  reset(): void {
    this.present = 0; this.swap = 0; this.markers = 0; this.pmdLeaves = 0; this.pudLeaves = 0; this.pfnSum = 0;
  }

  pteRange(ptep: usize, addr: u64, end: u64): i32 {
    let present: u64 = 0, other: u64 = 0, sum: u64 = 0;
    const last = ptep + <usize>((end - addr) >> 9);
    for (let p = ptep; p < last; p += 8) {
      const e = load<u64>(p);
      if (e == 0) continue;
      if (ptePresent(e)) { present++; sum += leafPfn(e, 0); continue; }
      other++;
      if (isPteMarker(e)) this.markers++;
    }
    this.present += present;
    this.pfnSum += sum;
    this.swap += other;
    return 0;
  }

  upperEntry(level: u32, ep: usize, addr: u64, next: u64): i32 {
    const e = load<u64>(ep);
    if (isUpperLeaf(e)) {
      if (level == 1) this.pmdLeaves++; else this.pudLeaves++;
      this.pfnSum += leafPfn(e, level);
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
