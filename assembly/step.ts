// Yield points of kernel range operations. When a scenario asks to step
// through an operation, the operation calls out to JavaScript at the points
// where, on a real machine, another CPU could act: after each entry it
// modified, before each TLB flush, at each VMA boundary. The scenario runs
// CPU accesses there, which is how "a write between the clean and the flush"
// is placed. When nobody steps, the cost is one load and branch per point.
//
// While an operation is inside a PTE table it holds that table's lock. An
// access that needs a page fault on that table would spin on the lock: it is
// reported as blocked instead of faulting (see access.ts). Hardware walks and
// A/D updates take no lock and go ahead, exactly the race being studied.

import { Mm } from "./mm";
import { Vma } from "./vma";
import { walkAction, walkVma, walkMm, walkTablePfn, restoreWalkState } from "./walk";

@external("env", "stepCallback")
declare function stepCallback(kind: u32, mm: u32, vpn: f64, endVpn: f64): void;

export const STEP_ENTRY: u32 = 0;      // an entry was modified: [start, end) is its range
export const STEP_FLUSH: u32 = 1;      // a TLB flush of [start, end) is about to be issued
export const STEP_VMA_START: u32 = 2;  // a VMA's part of the operation begins (after notifier start)
export const STEP_VMA_END: u32 = 3;    // a VMA's part is done (after flush and notifier end)

export let stepping: bool = false;
export function setStepping(on: bool): void { stepping = on; }

/** Heap address of the PTE table the stepped operation holds locked, or 0. */
export let ptlHeld: usize = 0;

/**
 * Calls the scenario at a yield point; the walker's state survives whatever
 * walks it runs. What the scenario runs there (a fault that folds a contpte
 * block, say) does not yield itself: only the stepped operation is
 * interleaved, and its table lock stays held until it resumes.
 */
export function yieldStep(kind: u32, mm: Mm, start: u64, end: u64, lockedTable: usize): void {
  const action = walkAction, vma = walkVma, wmm = walkMm, table = walkTablePfn;
  ptlHeld = lockedTable;
  stepping = false;
  stepCallback(kind, mm.id, <f64>(start >> 12), <f64>(end >> 12));
  stepping = true;
  ptlHeld = 0;
  restoreWalkState(action, vma, wmm, table);
}
