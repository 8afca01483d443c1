// Entry constructors and decoders exported for m.arch (tests, teaching,
// hand-built mappings). Everything goes through the same arch helpers the
// core uses, so what round-trips here is what the core writes.

import {
  ARM64, pteNone, ptePresent, pteProtnone, pteWrite, pteDirty, pteYoung, pteSpecial, pteSoftDirty, pteUffdWp, pteExec,
  pteCont, pteMkwrite, pteMkdirty, pteMkclean, pteMkyoung, pteMkold, pteMkspecial, pteMksoftDirty,
  pteClearSoftDirty, pfnPte, leafPfn, vmGetPageProt, isTableEntry, isUpperLeaf, pfnHuge, uffdWpBit,
  mkSwap, swpType, swpOffset, swpSoftDirtyBit, swpUffdWpBit, swpExclusiveBit, tableEntryPfn, mkTableEntry, pteMkcont,
  MAX_SWAPFILES, SWP_HWPOISON, SWP_DEVICE_EXCLUSIVE, isMigrationType, isDevicePrivateType,
} from "./arch/index";
import { VM_READ, VM_EXEC } from "./constants";

export const F_WRITE: u32 = 1 << 0;
export const F_DIRTY: u32 = 1 << 1;
export const F_YOUNG: u32 = 1 << 2;
export const F_SPECIAL: u32 = 1 << 3;
export const F_SOFT_DIRTY: u32 = 1 << 4;
export const F_UFFD_WP: u32 = 1 << 5;
export const F_PROTNONE: u32 = 1 << 6;
export const F_EXEC: u32 = 1 << 7;
export const F_CONT: u32 = 1 << 8;
export const F_SWP_EXCLUSIVE: u32 = 1 << 9;
export const F_SWP_SOFT_DIRTY: u32 = 1 << 10;
export const F_SWP_UFFD_WP: u32 = 1 << 11;

export const K_NONE: i32 = 0;
export const K_PRESENT: i32 = 1;
export const K_TABLE: i32 = 2;
export const K_SWAP: i32 = 3;
export const K_MIGRATION: i32 = 4;
export const K_DEVICE_PRIVATE: i32 = 5;
export const K_DEVICE_EXCLUSIVE: i32 = 6;
export const K_HWPOISON: i32 = 7;
export const K_MARKER: i32 = 8;

/** A present user leaf for pfn at `level` (0 pte, 1 pmd, 2 pud) from a read-only base, then the flags. */
export function makePresent(pfn: u64, flags: u32, level: u32): u64 {
  const prot = vmGetPageProt((flags & F_PROTNONE) != 0 ? 0 : (VM_READ | ((flags & F_EXEC) != 0 ? VM_EXEC : 0)));
  let e = level == 0 ? pfnPte(pfn, prot) : pfnHuge(pfn, prot, level);
  if ((flags & F_WRITE) != 0) e = pteMkwrite(e);
  e = (flags & F_DIRTY) != 0 ? pteMkdirty(e) : pteMkclean(e);
  e = (flags & F_YOUNG) != 0 ? pteMkyoung(e) : pteMkold(e);
  if ((flags & F_SPECIAL) != 0) e = pteMkspecial(e);
  e = (flags & F_SOFT_DIRTY) != 0 ? pteMksoftDirty(e) : pteClearSoftDirty(e);
  if ((flags & F_UFFD_WP) != 0) e |= uffdWpBit();
  if ((flags & F_CONT) != 0 && ARM64) e = pteMkcont(e);
  return e;
}

/** A swap-format entry of any type with the three swp flag bits. */
export function makeSwapEntry(type: u32, offset: u64, flags: u32): u64 {
  let e = mkSwap(type, offset);
  if ((flags & F_SWP_EXCLUSIVE) != 0) e |= swpExclusiveBit();
  if ((flags & F_SWP_SOFT_DIRTY) != 0) e |= swpSoftDirtyBit();
  if ((flags & F_SWP_UFFD_WP) != 0) e |= swpUffdWpBit();
  return e;
}

export function makeTable(pfn: u64): u64 { return mkTableEntry(pfn); }

/** Decodes an entry found at `level`: returns its kind; decodedPfn/Flags/Type/Offset hold the fields. */
export let decodedPfn: u64 = 0;
export let decodedFlags: u32 = 0;
export let decodedType: u32 = 0;
export let decodedOffset: u64 = 0;

export function decodeEntry(e: u64, level: u32): i32 {
  decodedPfn = 0; decodedFlags = 0; decodedType = 0; decodedOffset = 0;
  if (level == 0 ? pteNone(e) : e == 0) return K_NONE;
  if (level > 0 && isTableEntry(e)) { decodedPfn = tableEntryPfn(e); return K_TABLE; }
  if (level > 0 ? isUpperLeaf(e) : ptePresent(e)) {
    decodedPfn = leafPfn(e, level);
    let f: u32 = 0;
    if (pteWrite(e)) f |= F_WRITE;
    if (pteDirty(e)) f |= F_DIRTY;
    if (pteYoung(e)) f |= F_YOUNG;
    if (pteSpecial(e)) f |= F_SPECIAL;
    if (pteSoftDirty(e)) f |= F_SOFT_DIRTY;
    if (pteUffdWp(e)) f |= F_UFFD_WP;
    if (pteProtnone(e)) f |= F_PROTNONE;
    if (pteExec(e)) f |= F_EXEC;
    if (pteCont(e)) f |= F_CONT;
    decodedFlags = f;
    return K_PRESENT;
  }
  const type = swpType(e);
  decodedType = type;
  decodedOffset = swpOffset(e);
  let f: u32 = 0;
  if ((e & swpExclusiveBit()) != 0) f |= F_SWP_EXCLUSIVE;
  if ((e & swpSoftDirtyBit()) != 0) f |= F_SWP_SOFT_DIRTY;
  if ((e & swpUffdWpBit()) != 0) f |= F_SWP_UFFD_WP;
  decodedFlags = f;
  if (type < MAX_SWAPFILES) return K_SWAP;
  if (type == SWP_HWPOISON) { decodedPfn = decodedOffset; return K_HWPOISON; }
  if (isMigrationType(type)) { decodedPfn = decodedOffset; return K_MIGRATION; }
  if (isDevicePrivateType(type)) { decodedPfn = decodedOffset; return K_DEVICE_PRIVATE; }
  if (type == SWP_DEVICE_EXCLUSIVE) { decodedPfn = decodedOffset; return K_DEVICE_EXCLUSIVE; }
  return K_MARKER;
}

