// arm64 page-table entry codec, 4 KiB granule, stage 1
// (arch/arm64/include/asm/pgtable-hwdef.h, pgtable-prot.h, pgtable.h; modern layout).
//
// Valid leaf:
//
//   58  57     56  55    54  53  52   51        50  47..12     11  10  9..8 7      6    4..2  1    0
//   UW  DEVMAP SP  DIRTY UXN PXN CONT WRITE/DBM GP  pfn        nG  AF  SH   RDONLY USER Attr  TYPE VALID
//
// Software dirty is DIRTY, hardware dirty is WRITE && !RDONLY (the DBM rule):
// a clean writable page is WRITE=1, RDONLY=1, and the MMU clears RDONLY on the
// first write. PROT_NONE is "present-invalid": VALID=0 with nG (bit 11) reused
// as PTE_PRESENT_INVALID. Blocks (PMD/PUD leaves) are the same with bit 1 clear.
//
// Swap-format (VALID=0, bit 11 = 0):  61..12 offset | 10..6 type | 3 uffd-wp | 2 exclusive.
// arm64 has no soft-dirty.

export const PTE_VALID: u64 = 1 << 0;
export const PTE_TYPE_PAGE: u64 = 3;           // valid + page (bit 1)
export const PTE_TABLE_BIT: u64 = 1 << 1;
export const PTE_ATTRINDX_MASK: u64 = 7 << 2;
export const PTE_USER: u64 = 1 << 6;
export const PTE_RDONLY: u64 = 1 << 7;
export const PTE_SHARED: u64 = 3 << 8;
export const PTE_AF: u64 = 1 << 10;
export const PTE_NG: u64 = 1 << 11;
export const PTE_PRESENT_INVALID: u64 = PTE_NG;
export const PTE_GP: u64 = 1 << 50;
export const PTE_DBM: u64 = 1 << 51;
export const PTE_WRITE: u64 = PTE_DBM;
export const PTE_CONT: u64 = 1 << 52;
export const PTE_PXN: u64 = 1 << 53;
export const PTE_UXN: u64 = 1 << 54;
export const PTE_DIRTY: u64 = 1 << 55;
export const PTE_SPECIAL: u64 = 1 << 56;
export const PTE_DEVMAP: u64 = 1 << 57;
export const PTE_UFFD_WP: u64 = 1 << 58;
export const PTE_PO_IDX_MASK: u64 = 7 << 60;
export const PTE_ADDR_MASK: u64 = 0x0000_FFFF_FFFF_F000;   // 48-bit physical addresses
export const PMD_TYPE_TABLE: u64 = 3;

export const PTE_SWP_EXCLUSIVE: u64 = 1 << 2;
export const PTE_SWP_UFFD_WP: u64 = 1 << 3;
const SWP_TYPE_SHIFT: u64 = 6;
const SWP_TYPE_MASK: u64 = 31;
const SWP_OFFSET_SHIFT: u64 = 12;
export const SWP_OFFSET_BITS: u32 = 50;
const SWP_OFFSET_MASK: u64 = (<u64>1 << SWP_OFFSET_BITS) - 1;

// _PROT_DEFAULT | PTE_ATTRINDX(MT_NORMAL)
const PAGE_DEFAULT: u64 = PTE_TYPE_PAGE | PTE_AF | PTE_SHARED;
const PAGE_NONE: u64 = (PAGE_DEFAULT & ~PTE_VALID) | PTE_PRESENT_INVALID | PTE_RDONLY | PTE_NG | PTE_PXN | PTE_UXN;
const PAGE_SHARED: u64 = PAGE_DEFAULT | PTE_USER | PTE_RDONLY | PTE_NG | PTE_PXN | PTE_UXN | PTE_WRITE;
const PAGE_SHARED_EXEC: u64 = PAGE_DEFAULT | PTE_USER | PTE_RDONLY | PTE_NG | PTE_PXN | PTE_WRITE;
const PAGE_READONLY: u64 = PAGE_DEFAULT | PTE_USER | PTE_RDONLY | PTE_NG | PTE_PXN | PTE_UXN;
const PAGE_READONLY_EXEC: u64 = PAGE_DEFAULT | PTE_USER | PTE_RDONLY | PTE_NG | PTE_PXN;

/** protection_map (arch/arm64/mm/mmap.c): private writable maps start read-only (COW). */
export function protectionMap(i: u32): u64 {
  switch (i & 15) {
    case 0: return PAGE_NONE;
    case 1: return PAGE_READONLY;
    case 2: return PAGE_READONLY;
    case 3: return PAGE_READONLY;
    case 4: return PAGE_READONLY_EXEC;
    case 5: return PAGE_READONLY_EXEC;
    case 6: return PAGE_READONLY_EXEC;
    case 7: return PAGE_READONLY_EXEC;
    case 8: return PAGE_NONE;
    case 9: return PAGE_READONLY;
    case 10: return PAGE_SHARED;
    case 11: return PAGE_SHARED;
    case 12: return PAGE_READONLY_EXEC;
    case 13: return PAGE_READONLY_EXEC;
    case 14: return PAGE_SHARED_EXEC;
    default: return PAGE_SHARED_EXEC;
  }
}

// @ts-ignore: decorator
@inline function presentInvalid(e: u64): bool { return (e & (PTE_VALID | PTE_PRESENT_INVALID)) == PTE_PRESENT_INVALID; }
// @ts-ignore: decorator
@inline function hwDirty(e: u64): bool { return (e & (PTE_WRITE | PTE_RDONLY)) == PTE_WRITE; }

// @ts-ignore: decorator
@inline export function pteNone(e: u64): bool { return e == 0; }
// @ts-ignore: decorator
@inline export function ptePresent(e: u64): bool { return (e & PTE_VALID) != 0 || presentInvalid(e); }
// @ts-ignore: decorator
@inline export function pmdPresent(e: u64): bool { return ptePresent(e); }
// @ts-ignore: decorator
@inline export function pteProtnone(e: u64): bool { return presentInvalid(e) && (e & PTE_USER) == 0 && (e & PTE_UXN) != 0; }
// @ts-ignore: decorator
@inline export function pteWrite(e: u64): bool { return (e & PTE_WRITE) != 0; }
// @ts-ignore: decorator
@inline export function pteDirty(e: u64): bool { return (e & PTE_DIRTY) != 0 || hwDirty(e); }
// @ts-ignore: decorator
@inline export function pteYoung(e: u64): bool { return (e & PTE_AF) != 0; }
// @ts-ignore: decorator
@inline export function pteSpecial(e: u64): bool { return (e & PTE_SPECIAL) != 0; }
// @ts-ignore: decorator
@inline export function pteSoftDirty(e: u64): bool { return false; }
// @ts-ignore: decorator
@inline export function pteUffdWp(e: u64): bool { return (e & PTE_UFFD_WP) != 0; }
// @ts-ignore: decorator
@inline export function pteExec(e: u64): bool { return (e & PTE_UXN) == 0; }
// @ts-ignore: decorator
@inline export function pteCont(e: u64): bool { return (e & PTE_CONT) != 0; }

// @ts-ignore: decorator
@inline export function pteMkwrite(e: u64): u64 { return (e | PTE_WRITE) & ~PTE_RDONLY; }
/** pte_wrprotect: hardware dirtiness moves to the software DIRTY bit first, so it survives. */
// @ts-ignore: decorator
@inline export function pteWrprotect(e: u64): u64 {
  if (hwDirty(e)) e |= PTE_DIRTY;
  return (e & ~PTE_WRITE) | PTE_RDONLY;
}
// @ts-ignore: decorator
@inline export function pteMkdirty(e: u64): u64 {
  e |= PTE_DIRTY;
  return (e & PTE_WRITE) != 0 ? e & ~PTE_RDONLY : e;
}
/** pte_mkclean keeps WRITE: the page stays writable, and the next write dirties it again through DBM. */
// @ts-ignore: decorator
@inline export function pteMkclean(e: u64): u64 { return (e & ~PTE_DIRTY) | PTE_RDONLY; }
// @ts-ignore: decorator
@inline export function pteMkyoung(e: u64): u64 { return e | PTE_AF; }
// @ts-ignore: decorator
@inline export function pteMkold(e: u64): u64 { return e & ~PTE_AF; }
// @ts-ignore: decorator
@inline export function pteMkspecial(e: u64): u64 { return e | PTE_SPECIAL; }
// @ts-ignore: decorator
@inline export function pteMksoftDirty(e: u64): u64 { return e; }
// @ts-ignore: decorator
@inline export function pteClearSoftDirty(e: u64): u64 { return e; }
// @ts-ignore: decorator
@inline export function pteMkuffdWp(e: u64): u64 { return pteWrprotect(e | PTE_UFFD_WP); }
// @ts-ignore: decorator
@inline export function pteClearUffdWp(e: u64): u64 { return e & ~PTE_UFFD_WP; }
// @ts-ignore: decorator
@inline export function pteMkcont(e: u64): u64 { return e | PTE_CONT; }
// @ts-ignore: decorator
@inline export function pteMknoncont(e: u64): u64 { return e & ~PTE_CONT; }

// @ts-ignore: decorator
@inline export function pfnPte(pfn: u64, prot: u64): u64 { return ((pfn << 12) & PTE_ADDR_MASK) | prot; }
// @ts-ignore: decorator
@inline export function leafPfn(e: u64, level: u32): u64 {
  const mask = level == 0 ? PTE_ADDR_MASK : PTE_ADDR_MASK & ~((<u64>1 << (12 + 9 * level)) - 1);
  return (e & mask) >> 12;
}

/** pte_modify: hardware dirtiness is saved into DIRTY before the permission bits are replaced. */
export function pteModify(e: u64, prot: u64): u64 {
  const mask = PTE_USER | PTE_PXN | PTE_UXN | PTE_RDONLY | PTE_PRESENT_INVALID | PTE_VALID |
    PTE_WRITE | PTE_GP | PTE_ATTRINDX_MASK | PTE_PO_IDX_MASK;
  if (hwDirty(e)) e |= PTE_DIRTY;
  e = (e & ~mask) | (prot & mask);
  if ((e & PTE_DIRTY) != 0) e = pteMkdirty(e);
  return e;
}

// ---- upper levels ----------------------------------------------------------------
// @ts-ignore: decorator
@inline export function mkTableEntry(pfn: u64): u64 { return (pfn << 12) | PMD_TYPE_TABLE; }
// @ts-ignore: decorator
@inline export function tableEntryPfn(e: u64): u64 { return (e & PTE_ADDR_MASK) >> 12; }
// @ts-ignore: decorator
@inline export function isTableEntry(e: u64): bool { return (e & 3) == PMD_TYPE_TABLE; }
/** pmd_leaf: present and not a table descriptor (present-invalid blocks count as leaves). */
// @ts-ignore: decorator
@inline export function isUpperLeaf(e: u64): bool { return ptePresent(e) && (e & 3) != PMD_TYPE_TABLE; }
// @ts-ignore: decorator
@inline export function mkHuge(e: u64): u64 { return e & ~PTE_TABLE_BIT; }
export function hugeToPte(e: u64, level: u32, i: u64): u64 {
  const pfn = leafPfn(e, level) + i;
  return pfnPte(pfn, (e & ~PTE_ADDR_MASK) | PTE_TABLE_BIT);
}
export function pfnHuge(pfn: u64, prot: u64, level: u32): u64 { return mkHuge(pfnPte(pfn, prot)); }

// ---- hardware (FEAT_HAFDBS) ---------------------------------------------------------
/**
 * What the MMU does with a leaf on a user access, given the hardware
 * access-flag (ha) and dirty-bit (dbm) features: the value written back, or 0
 * for a fault (translation, access-flag or permission).
 */
export function hwAccess(e: u64, kind: u32, ha: bool, dbm: bool): u64 {
  if ((e & PTE_VALID) == 0) return 0;
  if (kind == 2) {
    if ((e & PTE_UXN) != 0) return 0;
  } else if ((e & PTE_USER) == 0) return 0;
  if ((e & PTE_AF) == 0) {
    if (!ha) return 0;
    e |= PTE_AF;
  }
  if (kind == 1 && (e & PTE_RDONLY) != 0) {
    if ((e & PTE_DBM) == 0 || !dbm) return 0;
    e &= ~PTE_RDONLY;
  }
  return e;
}

/**
 * What a TLB entry filled from leaf `e` allows: RDONLY clear means the cached
 * entry accepts writes until invalidated; RDONLY set with DBM means a write
 * re-walks to clear RDONLY in the PTE (hardware dirty).
 */
export function tlbPerms(e: u64, dbm: bool): u32 {
  let p: u32 = 0;
  if ((e & (PTE_VALID | PTE_USER | PTE_AF)) == (PTE_VALID | PTE_USER | PTE_AF)) p |= 1;    // TLB_READ
  if ((e & PTE_RDONLY) == 0) p |= 2;                                                       // TLB_WRITE
  else if ((e & PTE_DBM) != 0 && dbm) p |= 4;                                               // TLB_WRITE_UPDATE
  if ((e & (PTE_VALID | PTE_AF | PTE_UXN)) == (PTE_VALID | PTE_AF)) p |= 8;                  // TLB_EXEC
  if ((e & PTE_NG) == 0) p |= 16;                                                           // TLB_GLOBAL
  return p;
}

// ---- swap-format -----------------------------------------------------------------
// @ts-ignore: decorator
@inline export function mkSwap(type: u64, offset: u64): u64 {
  return ((type & SWP_TYPE_MASK) << SWP_TYPE_SHIFT) | ((offset & SWP_OFFSET_MASK) << SWP_OFFSET_SHIFT);
}
// @ts-ignore: decorator
@inline export function swpType(e: u64): u64 { return (e >> SWP_TYPE_SHIFT) & SWP_TYPE_MASK; }
// @ts-ignore: decorator
@inline export function swpOffset(e: u64): u64 { return (e >> SWP_OFFSET_SHIFT) & SWP_OFFSET_MASK; }
