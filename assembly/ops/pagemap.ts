// /proc/PID/pagemap (fs/proc/task_mmu.c pagemap_pmd_range / pte_to_pagemap_entry):
// one 64-bit value per page of [start, end), written to a buffer.
//
//   63 present | 62 swapped | 61 file-page or shared-anon | 58 guard region
//   57 uffd-wp | 56 exclusively mapped | 55 soft-dirty | 54..0 pfn, or swap type (5 bits) | offset << 5

import { setWalkAction, ACTION_CONTINUE, walkVma } from "../walk";
import { Vma } from "../vma";
import {
  ptePresent, pteSpecial, pteSoftDirty, pteUffdWp, leafPfn, isUpperLeaf, swpType, swpOffset, swpSoftDirtyBit,
  swpUffdWpBit, isPfnSwapType, SWP_PTE_MARKER, PTE_MARKER_UFFD_WP, PTE_MARKER_GUARD,
} from "../arch/index";
import { isZeroPfn, testFlag, folioHead, pageMapcount, PG_ANON } from "../frames";
import { VM_SOFTDIRTY } from "../constants";

export const PM_PFRAME_MASK: u64 = (<u64>1 << 55) - 1;
export const PM_SOFT_DIRTY: u64 = <u64>1 << 55;
export const PM_MMAP_EXCLUSIVE: u64 = <u64>1 << 56;
export const PM_UFFD_WP: u64 = <u64>1 << 57;
export const PM_GUARD_REGION: u64 = <u64>1 << 58;
export const PM_FILE: u64 = <u64>1 << 61;
export const PM_SWAP: u64 = <u64>1 << 62;
export const PM_PRESENT: u64 = <u64>1 << 63;

/** pte_to_pagemap_entry. */
export function pagemapOfPte(e: u64, vma: Vma): u64 {
  let flags: u64 = 0, frame: u64 = 0;
  let page: u32 = 0;
  let hasPage = false;
  if (e == 0) {
    // none
  } else if (ptePresent(e)) {
    const pfn = <u32>leafPfn(e, 0);
    frame = <u64>pfn;
    flags |= PM_PRESENT;
    if (!pteSpecial(e) && !isZeroPfn(pfn)) { page = pfn; hasPage = true; }   // vm_normal_page
    if (pteSoftDirty(e)) flags |= PM_SOFT_DIRTY;
    if (pteUffdWp(e)) flags |= PM_UFFD_WP;
  } else {
    if ((e & swpSoftDirtyBit()) != 0) flags |= PM_SOFT_DIRTY;
    if ((e & swpUffdWpBit()) != 0) flags |= PM_UFFD_WP;
    const type = swpType(e);
    const offset = swpOffset(e);
    frame = <u64>type | (offset << 5);
    flags |= PM_SWAP;
    if (isPfnSwapType(type)) { page = <u32>offset; hasPage = true; }
    if (type == SWP_PTE_MARKER) {
      if ((offset & PTE_MARKER_UFFD_WP) != 0) flags |= PM_UFFD_WP;
      if ((offset & PTE_MARKER_GUARD) != 0) flags |= PM_GUARD_REGION;
    }
  }
  if (hasPage) {
    if (!testFlag(folioHead(page), PG_ANON)) flags |= PM_FILE;
    if ((flags & PM_PRESENT) != 0 && pageMapcount(page) == 1) flags |= PM_MMAP_EXCLUSIVE;
  }
  if ((vma.flags & VM_SOFTDIRTY) != 0) flags |= PM_SOFT_DIRTY;
  return (frame & PM_PFRAME_MASK) | flags;
}

@final export class PagemapOp {
  buf: usize = 0;
  start: u64 = 0;

  // @ts-ignore: decorator
  @inline slot(addr: u64): usize { return this.buf + (<usize>((addr - this.start) >> 12) << 3); }

  pteRange(ptep: usize, addr: u64, end: u64): i32 {
    for (let a = addr; a < end; a += 4096, ptep += 8) this.pteEntry(ptep, a);
    return 0;
  }

  // @ts-ignore: decorator
  @inline pteEntry(ptep: usize, addr: u64): i32 {
    store<u64>(this.slot(addr), pagemapOfPte(load<u64>(ptep), changetype<Vma>(walkVma)));
    return 0;
  }

  hole(addr: u64, next: u64, depth: i32): i32 {
    // Outside VMAs nothing is reported; inside, only the VMA's soft-dirty flag.
    const v: u64 = depth >= 0 && (changetype<Vma>(walkVma).flags & VM_SOFTDIRTY) != 0 ? PM_SOFT_DIRTY : 0;
    for (let a = addr; a < next; a += 4096) store<u64>(this.slot(a), v);
    return 0;
  }

  upperEntry(level: u32, ep: usize, addr: u64, next: u64): i32 {
    const e = load<u64>(ep);
    if (!isUpperLeaf(e)) return 0;
    // pagemap_pmd_range: pmd_page() without vm_normal_page, so the huge zero page reads as a file page.
    const vma = changetype<Vma>(walkVma);
    let flags: u64 = PM_PRESENT;
    if (pteSoftDirty(e) || (vma.flags & VM_SOFTDIRTY) != 0) flags |= PM_SOFT_DIRTY;
    if (pteUffdWp(e)) flags |= PM_UFFD_WP;
    const shift = 12 + 9 * <u64>level;
    const base = <u32>leafPfn(e, level);
    const first = <u32>((addr & ((<u64>1 << shift) - 1)) >> 12);
    if (!testFlag(folioHead(base), PG_ANON)) flags |= PM_FILE;
    let i = first;
    for (let a = addr; a < next; a += 4096, i++) {
      const pfn = base + i;
      let f = flags;
      if (pageMapcount(pfn) == 1) f |= PM_MMAP_EXCLUSIVE;
      store<u64>(this.slot(a), (<u64>pfn & PM_PFRAME_MASK) | f);
    }
    setWalkAction(ACTION_CONTINUE);
    return 0;
  }
  // @ts-ignore: decorator
  @inline testWalk(vma: Vma): i32 { return 0; }
  // @ts-ignore: decorator
  @inline preVma(vma: Vma, start: u64, end: u64): i32 { return 0; }
  // @ts-ignore: decorator
  @inline postVma(vma: Vma, start: u64, end: u64): void {}
}
