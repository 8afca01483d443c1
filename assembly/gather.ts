// mmu_gather (include/asm-generic/tlb.h, mm/mmu_gather.c): batches the TLB
// invalidations of a page-table teardown or permission change, and holds
// the pages being freed until after the flush, so no CPU can still reach a
// page through a stale entry once it is reused.
//
// Range tracking: start = min, end = max of the removed entries; the stride
// is the smallest level cleared (PTEs: 4 KiB, only PMDs: 2 MiB). A flush
// happens at tlb_end_vma on arches without MMU_GATHER_MERGE_VMAS (arm64; x86
// merges), when the page batch fills up, and at tlb_finish_mmu. If another
// gather is pending on the same mm at finish (mm_tlb_flush_nested), the
// whole mm is flushed.

import { kmalloc, kzalloc, kfree } from "./heap";
import { Mm } from "./mm";
import { ARM64 } from "./arch/index";
import { flushTlbRange, flushTlbMm } from "./flush";
import { putMappedFolio } from "./rmap";

/** Pages held back per gather before a forced flush (MAX_GATHER_BATCH * MAX_GATHER_BATCH_COUNT, about 10k). */
export const GATHER_BATCH: u32 = 10000;

@unmanaged export class Gather {
  mm: Mm;
  start: u64;
  end: u64;
  fullmm: bool;
  freedTables: bool;
  clearedPtes: bool;
  clearedPmds: bool;
  clearedPuds: bool;
  nr: u32;              // pages in the batch
  pages: usize;         // u32 folio heads whose mapping reference drops after the flush
  flushes: u32;         // flushes this gather issued
}

/** The gather the walker ops of the operation in progress collect into. */
export let currentGather: Gather = changetype<Gather>(0);


export function gatherAlloc(): Gather | null {
  const g = kzalloc(offsetof<Gather>());
  if (g == 0) return null;
  const p = kmalloc(<usize>GATHER_BATCH << 2);
  if (p == 0) { kfree(g, offsetof<Gather>()); return null; }
  changetype<Gather>(g).pages = p;
  return changetype<Gather>(g);
}

export function gatherFree(g: Gather): void {
  kfree(g.pages, <usize>GATHER_BATCH << 2);
  kfree(changetype<usize>(g), offsetof<Gather>());
}

function resetRange(g: Gather): void {
  g.start = g.fullmm ? 0 : <u64>-1;
  g.end = 0;
  g.clearedPtes = false; g.clearedPmds = false; g.clearedPuds = false; g.freedTables = false;
}

/** tlb_gather_mmu / tlb_gather_mmu_fullmm. */
export function tlbGatherMmu(g: Gather, mm: Mm, fullmm: bool): void {
  g.mm = mm;
  g.fullmm = fullmm;
  g.nr = 0;
  g.flushes = 0;
  resetRange(g);
  mm.flushPending++;            // inc_tlb_flush_pending
}

// @ts-ignore: decorator
@inline function adjustRange(g: Gather, addr: u64, size: u64): void {
  if (addr < g.start) g.start = addr;
  if (addr + size > g.end) g.end = addr + size;
}

/** tlb_remove_tlb_entry / tlb_flush_pte_range. */
// @ts-ignore: decorator
@inline export function tlbFlushPteRange(g: Gather, addr: u64, size: u64): void { adjustRange(g, addr, size); g.clearedPtes = true; }
/** tlb_remove_pmd_tlb_entry / tlb_flush_pmd_range. */
export function tlbFlushPmdRange(g: Gather, addr: u64, size: u64): void { adjustRange(g, addr, size); g.clearedPmds = true; }
/** pte_free_tlb: a PTE table under [addr, addr+PAGE) goes away. */
export function tlbFreePteTable(g: Gather, addr: u64): void { adjustRange(g, addr, 4096); g.clearedPmds = true; g.freedTables = true; }
/** pmd_free_tlb / pud_free_tlb. */
export function tlbFreeUpperTable(g: Gather, addr: u64): void { adjustRange(g, addr, 4096); g.clearedPuds = true; g.freedTables = true; }

/** Queues a folio whose mapping reference must outlive the flush; a full batch forces the flush now. */
export function tlbRemovePage(g: Gather, head: u32): void {
  store<u32>(g.pages + (<usize>g.nr << 2), head);
  if (++g.nr == GATHER_BATCH) tlbFlushMmu(g);
}

/** tlb_flush_mmu_tlbonly: the TLB part, when anything was cleared. */
function tlbFlushMmuTlbonly(g: Gather): void {
  if (!(g.clearedPtes || g.clearedPmds || g.clearedPuds || g.freedTables)) return;
  if (g.fullmm) flushTlbMm(g.mm);
  else {
    // tlb_get_unmap_shift: the smallest level that was cleared sets the stride.
    const stride: u32 = g.clearedPtes ? 12 : g.clearedPmds ? 21 : 30;
    flushTlbRange(g.mm, g.start, g.end, stride);
  }
  g.flushes++;
  resetRange(g);
}

/** tlb_flush_mmu: flush, then release the batched pages. */
export function tlbFlushMmu(g: Gather): void {
  tlbFlushMmuTlbonly(g);
  for (let i: u32 = 0; i < g.nr; i++) putMappedFolio(load<u32>(g.pages + (<usize>i << 2)));
  g.nr = 0;
}

/** tlb_end_vma: arches that do not merge VMAs (arm64) flush at every VMA boundary. */
export function tlbEndVma(g: Gather): void {
  if (g.fullmm || !ARM64) return;     // x86 selects MMU_GATHER_MERGE_VMAS
  tlbFlushMmuTlbonly(g);
}

/** tlb_finish_mmu: a concurrent gather on the mm forces a whole-mm flush (mm_tlb_flush_nested). */
export function tlbFinishMmu(g: Gather): void {
  if (g.mm.flushPending > 1) {
    g.fullmm = true;
    g.freedTables = true;
    g.clearedPtes = true;
  }
  tlbFlushMmu(g);
  g.mm.flushPending--;              // dec_tlb_flush_pending
}

/** The mmu_gather of the operation in progress (the core runs one kernel operation at a time). */
let opGather: Gather = changetype<Gather>(0);

/** tlb_gather_mmu for a kernel operation; false when out of memory (nothing has changed yet). */
export function gatherBegin(mm: Mm, fullmm: bool): bool {
  if (changetype<usize>(opGather) == 0) {
    const g = gatherAlloc();
    if (g == null) return false;
    opGather = changetype<Gather>(g);
  }
  tlbGatherMmu(opGather, mm, fullmm);
  currentGather = opGather;
  return true;
}

/** tlb_finish_mmu: the flush, then the pages held back for it are released. */
export function gatherEnd(): void {
  tlbFinishMmu(opGather);
}
