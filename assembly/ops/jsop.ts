// The slow path: a walk whose callbacks are JavaScript functions
// (m.kernel.walkPageRange). One import call per visited entry; only for
// teaching, tests and tools, never for the hot ops. The callbacks follow
// mm/pagewalk.c: pte_entry for every PTE slot, upper-level callbacks with
// walk->action, pte_hole with the kernel's depths, test_walk/pre_vma/post_vma,
// and descent only as deep as a callback asks.

import { Vma } from "../vma";
import { setWalkAction, walkAction, ACTION_CONTINUE, ACTION_SUBTREE } from "../walk";
import { walkMm } from "../walk";

// @ts-ignore: decorator
@external("env", "walkCallback")
declare function walkCallback(kind: u32, level: u32, vpn: f64, nextVpn: f64, entry: u64, depth: i32): i32;

export const CB_PTE: u32 = 0;
export const CB_UPPER: u32 = 1;
export const CB_HOLE: u32 = 2;
export const CB_TEST_WALK: u32 = 3;
export const CB_PRE_VMA: u32 = 4;
export const CB_POST_VMA: u32 = 5;

// Which callbacks exist (bit per callback): the JS side passes them.
export const HAS_PTE: u32 = 1 << 0;
export const HAS_PMD: u32 = 1 << 1;
export const HAS_PUD: u32 = 1 << 2;
export const HAS_P4D: u32 = 1 << 3;
export const HAS_PGD: u32 = 1 << 4;
export const HAS_HOLE: u32 = 1 << 5;
export const HAS_TEST_WALK: u32 = 1 << 6;
export const HAS_PRE_VMA: u32 = 1 << 7;
export const HAS_POST_VMA: u32 = 1 << 8;

/** Pointer of the entry handed to the current callback (for walkSetEntry). */
export let jsWalkEntry: usize = 0;
/** Its level: 0 PTE, 1 PMD, ... */
export let jsWalkLevel: u32 = 0;
export function setJsWalkEntry(p: usize): void { jsWalkEntry = p; }

// @ts-ignore: decorator
@inline function vpnOf(a: u64): f64 { return <f64>(a >> 12); }

@final export class JsOp {
  has: u32 = 0;

  pteRange(ptep: usize, addr: u64, end: u64): i32 {
    if ((this.has & HAS_PTE) == 0) return 0;
    for (let a = addr; a < end; a += 4096, ptep += 8) {
      jsWalkEntry = ptep;
      jsWalkLevel = 0;
      const r = walkCallback(CB_PTE, 0, vpnOf(a), vpnOf(a + 4096), load<u64>(ptep), 4);
      if (r != 0) return r;
    }
    return 0;
  }

  upperEntry(level: u32, ep: usize, addr: u64, next: u64): i32 {
    const top = walkMm.levels - 1;
    // Callbacks present at this level (the top table is the PGD; on 4 levels the folded P4D is the same entry).
    let r: i32 = 0;
    jsWalkEntry = ep;
    jsWalkLevel = level;
    if (level == top) {
      if ((this.has & HAS_PGD) != 0) r = walkCallback(CB_UPPER, 4, vpnOf(addr), vpnOf(next), load<u64>(ep), 0);
      if (r == 0 && top == 3 && (this.has & HAS_P4D) != 0) r = walkCallback(CB_UPPER, 3, vpnOf(addr), vpnOf(next), load<u64>(ep), 1);
      setWalkAction(ACTION_SUBTREE);       // pgd/p4d levels ignore walk->action
    } else if (level == 3) {
      if ((this.has & HAS_P4D) != 0) r = walkCallback(CB_UPPER, 3, vpnOf(addr), vpnOf(next), load<u64>(ep), 1);
      setWalkAction(ACTION_SUBTREE);
    } else if (level == 2) {
      if ((this.has & HAS_PUD) != 0) r = walkCallback(CB_UPPER, 2, vpnOf(addr), vpnOf(next), load<u64>(ep), 2);
    } else {
      if ((this.has & HAS_PMD) != 0) r = walkCallback(CB_UPPER, 1, vpnOf(addr), vpnOf(next), load<u64>(ep), 3);
    }
    if (r != 0) return r;
    // Descend only as deep as the deepest callback.
    if (walkAction == ACTION_SUBTREE) {
      let deeper: u32 = 0;
      if (level >= 2) deeper |= HAS_PMD | HAS_PTE;
      if (level >= 3) deeper |= HAS_PUD;
      if (level == 4) deeper |= HAS_P4D;
      if (level == 1) deeper = HAS_PTE;
      if ((this.has & deeper) == 0) setWalkAction(ACTION_CONTINUE);
    }
    return 0;
  }

  hole(addr: u64, next: u64, depth: i32): i32 {
    if ((this.has & HAS_HOLE) == 0) return 0;
    return walkCallback(CB_HOLE, 0, vpnOf(addr), vpnOf(next), 0, depth);
  }

  testWalk(vma: Vma): i32 {
    if ((this.has & HAS_TEST_WALK) == 0) return 0;
    return walkCallback(CB_TEST_WALK, 0, vpnOf(vma.start), vpnOf(vma.end), <u64>vma.flags, 0);
  }

  preVma(vma: Vma, start: u64, end: u64): i32 {
    if ((this.has & HAS_PRE_VMA) == 0) return 0;
    return walkCallback(CB_PRE_VMA, 0, vpnOf(start), vpnOf(end), <u64>vma.flags, 0);
  }

  postVma(vma: Vma, start: u64, end: u64): void {
    if ((this.has & HAS_POST_VMA) != 0) walkCallback(CB_POST_VMA, 0, vpnOf(start), vpnOf(end), <u64>vma.flags, 0);
  }
}
