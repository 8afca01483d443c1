// How much of a range is folded into contiguous blocks (arm64 PTE_CONT), and
// how much could be: a read-only scan for statistics and for m.kernel users.
// Per aligned 16-PTE block it decides, 128 bits at a time: folded (all 16
// valid, CONT, consecutive frames from an aligned one, one set of attributes
// A/D aside), foldable but not folded (the same without CONT, over one large
// folio), or broken (some CONT, yet not a proper block).

import { Vma } from "../vma";
import { ARM64, leafPfn, isUpperLeaf } from "../arch/index";
import { setWalkAction, ACTION_CONTINUE } from "../walk";
import * as a64 from "../arch/arm64";
import { folioHead, orderOf, nrFrames } from "../frames";

@final export class ContScanOp {
  folded: u64 = 0;
  foldable: u64 = 0;
  broken: u64 = 0;
  /** Aligned blocks whose first entry is valid (the ones judged). */
  blocks: u64 = 0;

  pteRange(ptep: usize, addr: u64, end: u64): i32 {
    if (!ARM64) return 0;
    const last = ptep + <usize>((end - addr) >> 9);
    // Only whole aligned blocks inside the range are judged.
    let p = (ptep + 127) & ~<usize>127;
    const norm = i64x2.splat(a64.PTE_AF | a64.PTE_DIRTY | a64.PTE_CONT);
    const rdonly = i64x2.splat(a64.PTE_RDONLY);
    const cont = i64x2.splat(a64.PTE_CONT);
    const step = i64x2(0x2000, 0x2000);
    for (; p + 128 <= last; p += 128) {
      const e0 = load<u64>(p);
      if ((e0 & a64.PTE_VALID) == 0) continue;
      // Normalised entries (old, clean, CONT off) must be e0's plus i pages; CONT must be on all or none.
      const n0 = (e0 & ~(a64.PTE_AF | a64.PTE_DIRTY | a64.PTE_CONT)) | a64.PTE_RDONLY;
      let want = i64x2(<i64>n0, <i64>(n0 + 0x1000));
      let same = i64x2.splat(-1);
      let anyCont = i64x2.splat(0), allCont = i64x2.splat(-1);
      for (let i: usize = 0; i < 128; i += 16) {
        const v = v128.load(p + i);
        same = v128.and(same, i64x2.eq(v128.or(v128.andnot(v, norm), rdonly), want));
        const c = v128.and(v, cont);
        anyCont = v128.or(anyCont, c);
        allCont = v128.and(allCont, i64x2.ne(c, i64x2.splat(0)));
        want = i64x2.add(want, step);
      }
      this.blocks++;
      const consistent = i64x2.all_true(same) && (leafPfn(e0, 0) & 15) == 0 && coveredByFolio(<u32>leafPfn(e0, 0));
      if (!v128.any_true(anyCont)) {
        if (consistent) this.foldable++;
      } else if (i64x2.all_true(allCont) && consistent) {
        this.folded++;
      } else {
        this.broken++;
      }
    }
    return 0;
  }

  /** Huge leaves are not PTEs: never descend (and so never split them). */
  upperEntry(level: u32, ep: usize, addr: u64, next: u64): i32 {
    if (isUpperLeaf(load<u64>(ep))) setWalkAction(ACTION_CONTINUE);
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

/** Whether the 16 frames from pfn lie in one large folio. */
function coveredByFolio(pfn: u32): bool {
  if (pfn + 15 >= nrFrames) return false;
  const head = folioHead(pfn);
  return orderOf(head) >= 4 && folioHead(pfn + 15) == head;
}
