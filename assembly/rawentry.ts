// Raw entries handed to the kernel-primitive API (set_pte_at, set_ptes,
// ptep_set_access_flags, a walk callback's setEntry). As in the kernel, the
// caller owns the rmap, refcount and TLB obligations, and m.check() judges
// what it did. But an entry that would send the core's own walkers off the
// rails is refused up front: a frame number beyond memory, a page-table or
// free frame mapped as data, a pointer to a table, a swap slot not in use, a
// device page no pool owns. Those are not states a kernel bug can be
// studied in; they are states in which the emulator itself would fault.

import { Mm } from "./mm";
import { nrFrames, kindOf, KIND_TABLE, KIND_FREE, isZeroPfn, folioHead, orderOf } from "./frames";
import {
  ptePresent, pteSpecial, leafPfn, isUpperLeaf, isTableEntry, swpType, swpOffset, swpPfnBits,
  MAX_SWAPFILES, SWP_PTE_MARKER, SWP_DEVICE_EXCLUSIVE, isDevicePrivateType, isPfnSwapType,
} from "./arch/index";
import { swapSlots, swapSlotInUse } from "./swap";
import { devicePrivateOwner, devicePrivatePfn } from "./devmem";

export const RAW_PFN_RANGE: i32 = 1;       // the frame number is beyond physical memory
export const RAW_FRAME_KIND: i32 = 2;      // it maps a page-table or free frame
export const RAW_TABLE_POINTER: i32 = 3;   // a pointer to a table, not a leaf
export const RAW_SWAP_SLOT: i32 = 4;       // a swap entry for a slot not in use
export const RAW_DEVICE_PFN: i32 = 5;      // a device-private entry no pool owns
export const RAW_SWAP_TYPE: i32 = 6;       // a swap type the core does not know (device-exclusive)
export const RAW_PMD_SWAP: i32 = 7;        // a non-present PMD other than none (PMD migration entries are not emulated)
export const RAW_HUGE_FOLIO: i32 = 8;      // a PMD leaf that is not an aligned PMD-size folio
export const RAW_REPLACES_TABLE: i32 = 9;  // the PMD it would overwrite points to a PTE table
export const RAW_UPPER_LEVEL: i32 = 10;    // PUD and higher entries are the core's (no PUD leaves)
export const RAW_NOT_PRESENT: i32 = 11;    // an access-bit primitive aimed at a PTE that is not present

/** Whether a data frame may be mapped: in memory, not a table, not free. */
function mappable(pfn: u32): i32 {
  if (pfn >= nrFrames) return RAW_PFN_RANGE;
  const k = kindOf(pfn);
  return k == KIND_TABLE || k == KIND_FREE ? RAW_FRAME_KIND : 0;
}

/**
 * Why `e` may not be stored as the entry at `level` (0 PTE, 1 PMD) over
 * `old`, for `nr` consecutive PTEs (set_ptes: the pfn advances); 0 if it may.
 */
export function rawEntryProblem(mm: Mm, e: u64, old: u64, level: u32, nr: u32): i32 {
  if (e == old && nr == 1) return 0;                 // writing back what is there
  if (level > 1) return RAW_UPPER_LEVEL;
  if (level > 0 && old != 0 && isTableEntry(old) && !isUpperLeaf(old)) return RAW_REPLACES_TABLE;
  if (e == 0) return 0;
  if (level > 0) {
    if (!ptePresent(e)) return RAW_PMD_SWAP;
    if (!isUpperLeaf(e)) return RAW_TABLE_POINTER;
    const pfn = <u32>leafPfn(e, 1);
    if ((pfn & 511) != 0) return RAW_HUGE_FOLIO;
    if (pfn + 512 > nrFrames) return RAW_PFN_RANGE;
    if (pteSpecial(e) || isZeroPfn(pfn)) return 0;
    const r = mappable(pfn);
    if (r != 0) return r;
    return orderOf(folioHead(pfn)) != 9 || folioHead(pfn) != pfn ? RAW_HUGE_FOLIO : 0;
  }
  if (ptePresent(e)) {
    const pfn = <u32>leafPfn(e, 0);
    if (<u64>pfn + <u64>nr > <u64>nrFrames) return RAW_PFN_RANGE;
    if (pteSpecial(e)) return 0;
    for (let i: u32 = 0; i < nr; i++) {
      if (isZeroPfn(pfn + i)) continue;
      const r = mappable(pfn + i);
      if (r != 0) return r;
    }
    return 0;
  }
  const type = swpType(e);
  if (type == SWP_PTE_MARKER) return 0;
  if (type < MAX_SWAPFILES) {
    const slot = swpOffset(e);
    return slot == 0 || slot >= <u64>swapSlots() || !swapSlotInUse(<u32>slot) ? RAW_SWAP_SLOT : 0;
  }
  if (isDevicePrivateType(type)) return devicePrivateOwner(devicePrivatePfn(mm, e)) == 0 ? RAW_DEVICE_PFN : 0;
  if (isPfnSwapType(type) && type != SWP_DEVICE_EXCLUSIVE) {
    // hwpoison and migration entries name a frame.
    const pfn = swpOffset(e) & ((<u64>1 << swpPfnBits(mm.levels)) - 1);
    return pfn >= <u64>nrFrames ? RAW_PFN_RANGE : mappable(<u32>pfn);
  }
  return RAW_SWAP_TYPE;
}
