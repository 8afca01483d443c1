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

  reset(): void {
    this.present = 0; this.swap = 0; this.markers = 0; this.pmdLeaves = 0; this.pudLeaves = 0; this.pfnSum = 0;
  }

  // @ts-ignore: decorator
  @inline pteEntry(ptep: usize, addr: u64): i32 {
    const e = load<u64>(ptep);
    if (e != 0) {
      if (ptePresent(e)) { this.present++; this.pfnSum += leafPfn(e, 0); }
      else if (isPteMarker(e)) this.markers++;
      else this.swap++;
    }
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
