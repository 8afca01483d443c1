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
import { orderOf, nrFrames } from "../frames";

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
    // Normalising an entry (old, clean, CONT off) clears AF, DIRTY and CONT and sets RDONLY: mask all four out.
    const norm = i64x2.splat(a64.PTE_AF | a64.PTE_DIRTY | a64.PTE_CONT | a64.PTE_RDONLY);
    const step = i64x2(0x2000, 0x2000), step2 = i64x2(0x4000, 0x4000), step3 = i64x2(0x6000, 0x6000);
    const step4 = i64x2(0x8000, 0x8000), step5 = i64x2(0xa000, 0xa000), step6 = i64x2(0xc000, 0xc000), step7 = i64x2(0xe000, 0xe000);
    let folded: u64 = 0, foldable: u64 = 0, broken: u64 = 0, blocks: u64 = 0;
    for (; p + 128 <= last; p += 128) {
      const e0 = load<u64>(p);
      if ((e0 & a64.PTE_VALID) == 0) continue;
      // Every slot normalised must be e0's plus i pages (diff stays 0); AND and OR of all show CONT on all / any.
      const n0 = e0 & ~(a64.PTE_AF | a64.PTE_DIRTY | a64.PTE_CONT | a64.PTE_RDONLY);
      // Unrolled (no loop, so no per-iteration interrupt check in V8's code): slots 0-1, 2-3, ... 14-15.
      const w0 = i64x2(<i64>n0, <i64>(n0 + 0x1000));
      const s0 = v128.load(p), s1 = v128.load(p, 16), s2 = v128.load(p, 32), s3 = v128.load(p, 48);
      const s4 = v128.load(p, 64), s5 = v128.load(p, 80), s6 = v128.load(p, 96), s7 = v128.load(p, 112);
      const d0 = v128.or(v128.xor(v128.andnot(s0, norm), w0), v128.xor(v128.andnot(s1, norm), i64x2.add(w0, step)));
      const d1 = v128.or(v128.xor(v128.andnot(s2, norm), i64x2.add(w0, step2)), v128.xor(v128.andnot(s3, norm), i64x2.add(w0, step3)));
      const d2 = v128.or(v128.xor(v128.andnot(s4, norm), i64x2.add(w0, step4)), v128.xor(v128.andnot(s5, norm), i64x2.add(w0, step5)));
      const d3 = v128.or(v128.xor(v128.andnot(s6, norm), i64x2.add(w0, step6)), v128.xor(v128.andnot(s7, norm), i64x2.add(w0, step7)));
      const diff = v128.or(v128.or(d0, d1), v128.or(d2, d3));
      const all = v128.and(v128.and(v128.and(s0, s1), v128.and(s2, s3)), v128.and(v128.and(s4, s5), v128.and(s6, s7)));
      const any = v128.or(v128.or(v128.or(s0, s1), v128.or(s2, s3)), v128.or(v128.or(s4, s5), v128.or(s6, s7)));
      blocks++;
      const allCont = (i64x2.extract_lane(all, 0) & i64x2.extract_lane(all, 1) & a64.PTE_CONT) != 0;
      const anyCont = ((i64x2.extract_lane(any, 0) | i64x2.extract_lane(any, 1)) & a64.PTE_CONT) != 0;
      const consistent = !v128.any_true(diff) && (leafPfn(e0, 0) & 15) == 0 && coveredByFolio(<u32>leafPfn(e0, 0));
      if (!anyCont) {
        if (consistent) foldable++;
      } else if (allCont && consistent) {
        folded++;
      } else {
        broken++;
      }
    }
    this.folded += folded; this.foldable += foldable; this.broken += broken; this.blocks += blocks;
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

/**
 * Whether the 16 frames from pfn (16-aligned) lie in one large folio: folios
 * are naturally aligned and every page carries its folio's order, so an
 * order of 4 or more at pfn is enough.
 */
// @ts-ignore: decorator
@inline function coveredByFolio(pfn: u32): bool { return pfn < nrFrames && orderOf(pfn) >= 4; }
