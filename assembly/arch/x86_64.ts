// x86-64 page-table entry codec (arch/x86/include/asm/pgtable_types.h, pgtable_64.h).
//
// Present leaf (P=1), or PROT_NONE (P=0, PROTNONE=1):
//
//   63  62..59 58  57    52..12           11  10  9   8   7   6 5 4   3   2  1  0
//   NX  PKEY   SD  DEVMAP pfn (40 bits)   SD  UW  SP  G   PSE D A PCD PWT US RW P
//              ^saved-dirty               ^soft-dirty ^special; G doubles as PROTNONE when P=0
//                                              ^uffd-wp
//
// PROT_NONE entries store the pfn inverted (L1TF mitigation): pfn_pte and
// pte_pfn flip it whenever the value is non-zero and not present.
//
// Swap-format (P=0):  63..59 type | 58..9 ~offset | 3 exclusive | 2 uffd-wp | 1 soft-dirty
// (bits 4..8 stay clear: A/D erratum, PSE and PROTNONE must read 0).

export const _PAGE_PRESENT: u64 = 1 << 0;
export const _PAGE_RW: u64 = 1 << 1;
export const _PAGE_USER: u64 = 1 << 2;
export const _PAGE_PWT: u64 = 1 << 3;
export const _PAGE_PCD: u64 = 1 << 4;
export const _PAGE_ACCESSED: u64 = 1 << 5;
export const _PAGE_DIRTY: u64 = 1 << 6;
export const _PAGE_PSE: u64 = 1 << 7;
export const _PAGE_GLOBAL: u64 = 1 << 8;
export const _PAGE_PROTNONE: u64 = _PAGE_GLOBAL;
export const _PAGE_SPECIAL: u64 = 1 << 9;
export const _PAGE_UFFD_WP: u64 = 1 << 10;
export const _PAGE_SOFT_DIRTY: u64 = 1 << 11;
export const _PAGE_PAT_LARGE: u64 = 1 << 12;
export const _PAGE_DEVMAP: u64 = 1 << 57;
export const _PAGE_SAVED_DIRTY: u64 = 1 << 58;
export const _PAGE_NX: u64 = 1 << 63;
export const PTE_PFN_MASK: u64 = 0x000F_FFFF_FFFF_F000;

export const _PAGE_SWP_SOFT_DIRTY: u64 = _PAGE_RW;

/** CONFIG_MEM_SOFT_DIRTY: without it _PAGE_SOFT_DIRTY and _PAGE_SWP_SOFT_DIRTY are 0. */
export let softDirtyBit: u64 = _PAGE_SOFT_DIRTY;
export let swpSoftDirtyBit: u64 = _PAGE_SWP_SOFT_DIRTY;
export function setSoftDirtySupport(on: bool): void {
  softDirtyBit = on ? _PAGE_SOFT_DIRTY : 0;
  swpSoftDirtyBit = on ? _PAGE_SWP_SOFT_DIRTY : 0;
}
export const _PAGE_SWP_UFFD_WP: u64 = _PAGE_USER;
export const _PAGE_SWP_EXCLUSIVE: u64 = _PAGE_PWT;
const SWP_TYPE_BITS: u64 = 5;
const SWP_OFFSET_SHIFT: u64 = 14;     // first offset bit (9) + type bits

/** Bits pte_modify keeps (_PAGE_CHG_MASK). */
export const _PAGE_CHG_MASK: u64 = PTE_PFN_MASK | _PAGE_PCD | _PAGE_PWT | _PAGE_SPECIAL | _PAGE_ACCESSED |
  _PAGE_DIRTY | _PAGE_SAVED_DIRTY | _PAGE_SOFT_DIRTY | _PAGE_DEVMAP | _PAGE_UFFD_WP;
/** _PAGE_TABLE: what a table-pointing entry carries besides the address. */
export const _PAGE_TABLE: u64 = _PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED | _PAGE_DIRTY;

// Protections (pgtable_types.h), indexed by protection_map below.
const PAGE_NONE: u64 = _PAGE_ACCESSED | _PAGE_PROTNONE;
const PAGE_SHARED: u64 = _PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED | _PAGE_NX;
const PAGE_SHARED_EXEC: u64 = _PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED;
const PAGE_COPY: u64 = _PAGE_PRESENT | _PAGE_USER | _PAGE_ACCESSED | _PAGE_NX;
const PAGE_COPY_EXEC: u64 = _PAGE_PRESENT | _PAGE_USER | _PAGE_ACCESSED;
const PAGE_READONLY: u64 = _PAGE_PRESENT | _PAGE_USER | _PAGE_ACCESSED | _PAGE_NX;
const PAGE_READONLY_EXEC: u64 = _PAGE_PRESENT | _PAGE_USER | _PAGE_ACCESSED;

/** protection_map[VM_READ|VM_WRITE|VM_EXEC|VM_SHARED] (arch/x86/mm/pgprot.c). */
export function protectionMap(i: u32): u64 {
  switch (i & 15) {
    case 0: return PAGE_NONE;
    case 1: return PAGE_READONLY;
    case 2: return PAGE_COPY;
    case 3: return PAGE_COPY;
    case 4: return PAGE_READONLY_EXEC;
    case 5: return PAGE_READONLY_EXEC;
    case 6: return PAGE_COPY_EXEC;
    case 7: return PAGE_COPY_EXEC;
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
@inline function needsInvert(v: u64): bool { return v != 0 && (v & _PAGE_PRESENT) == 0; }
// @ts-ignore: decorator
@inline function protnoneMask(v: u64): u64 { return needsInvert(v) ? <u64>-1 : 0; }

// @ts-ignore: decorator
@inline export function pteNone(e: u64): bool { return (e & ~(_PAGE_ACCESSED | _PAGE_DIRTY)) == 0; }
// @ts-ignore: decorator
@inline export function ptePresent(e: u64): bool { return (e & (_PAGE_PRESENT | _PAGE_PROTNONE)) != 0; }
/** Upper-level present check (pmd_present): PSE also counts, for huge PROT_NONE leaves under split. */
// @ts-ignore: decorator
@inline export function pmdPresent(e: u64): bool { return (e & (_PAGE_PRESENT | _PAGE_PROTNONE | _PAGE_PSE)) != 0; }
// @ts-ignore: decorator
@inline export function pteProtnone(e: u64): bool { return (e & (_PAGE_PROTNONE | _PAGE_PRESENT)) == _PAGE_PROTNONE; }
// @ts-ignore: decorator
@inline export function pteWrite(e: u64): bool { return (e & _PAGE_RW) != 0; }
// @ts-ignore: decorator
@inline export function pteDirty(e: u64): bool { return (e & (_PAGE_DIRTY | _PAGE_SAVED_DIRTY)) != 0; }
// @ts-ignore: decorator
@inline export function pteYoung(e: u64): bool { return (e & _PAGE_ACCESSED) != 0; }
// @ts-ignore: decorator
@inline export function pteSpecial(e: u64): bool { return (e & _PAGE_SPECIAL) != 0; }
// @ts-ignore: decorator
@inline export function pteSoftDirty(e: u64): bool { return (e & softDirtyBit) != 0; }
// @ts-ignore: decorator
@inline export function pteUffdWp(e: u64): bool { return (e & _PAGE_UFFD_WP) != 0; }
// @ts-ignore: decorator
@inline export function pteExec(e: u64): bool { return (e & _PAGE_NX) == 0; }

// @ts-ignore: decorator
@inline export function pteMkwrite(e: u64): u64 { return e | _PAGE_RW; }
// @ts-ignore: decorator
@inline export function pteWrprotect(e: u64): u64 { return e & ~_PAGE_RW; }

/** pte_mkdirty also sets soft-dirty: that is how a write fault re-marks a page for CRIU-style tracking. */
// @ts-ignore: decorator
@inline export function pteMkdirty(e: u64): u64 { return e | _PAGE_DIRTY | softDirtyBit; }
// @ts-ignore: decorator
@inline export function pteMkclean(e: u64): u64 { return e & ~(_PAGE_DIRTY | _PAGE_SAVED_DIRTY); }
// @ts-ignore: decorator
@inline export function pteMkyoung(e: u64): u64 { return e | _PAGE_ACCESSED; }
// @ts-ignore: decorator
@inline export function pteMkold(e: u64): u64 { return e & ~_PAGE_ACCESSED; }
// @ts-ignore: decorator
@inline export function pteMkspecial(e: u64): u64 { return e | _PAGE_SPECIAL; }
// @ts-ignore: decorator
@inline export function pteMksoftDirty(e: u64): u64 { return e | softDirtyBit; }
// @ts-ignore: decorator
@inline export function pteClearSoftDirty(e: u64): u64 { return e & ~_PAGE_SOFT_DIRTY; }
// @ts-ignore: decorator
@inline export function pteMkuffdWp(e: u64): u64 { return pteWrprotect(e | _PAGE_UFFD_WP); }
// @ts-ignore: decorator
@inline export function pteClearUffdWp(e: u64): u64 { return e & ~_PAGE_UFFD_WP; }

/** pfn_pte: PROT_NONE protections get the inverted pfn. */
// @ts-ignore: decorator
@inline export function pfnPte(pfn: u64, prot: u64): u64 {
  return (((pfn << 12) ^ protnoneMask(prot)) & PTE_PFN_MASK) | prot;
}

/** PTE_PFN_MASK, PHYSICAL_PMD_PAGE_MASK, PHYSICAL_PUD_PAGE_MASK: the address bits of a leaf at `level`. */
// @ts-ignore: decorator
@inline function leafAddrMask(level: u32): u64 {
  return level == 0 ? PTE_PFN_MASK : PTE_PFN_MASK & ~((<u64>1 << (12 + 9 * <u64>level)) - 1);
}

/**
 * pte_pfn / pmd_pfn / pud_pfn for a present leaf at `level` (0 pte, 1 pmd, 2 pud).
 * A present entry is never 0, so protnone_mask reduces to "P clear": (e & P) - 1
 * is all ones exactly then, which keeps the hot loops branch-free.
 */
// @ts-ignore: decorator
@inline export function leafPfn(e: u64, level: u32): u64 {
  return ((e ^ ((e & _PAGE_PRESENT) - 1)) & leafAddrMask(level)) >> 12;
}

/** pte_modify: keep _PAGE_CHG_MASK, take the rest from newprot, re-invert the pfn across PROT_NONE changes. */
export function pteModify(e: u64, prot: u64): u64 {
  let v = (e & _PAGE_CHG_MASK) | (prot & ~_PAGE_CHG_MASK);
  if (needsInvert(e) != needsInvert(v)) v = (v & ~PTE_PFN_MASK) | (~v & PTE_PFN_MASK);
  return v;
}

/** pmd_modify / pud_modify: PSE is kept (_HPAGE_CHG_MASK), and the PROT_NONE flip covers only the huge address bits. */
export function hugeModify(e: u64, prot: u64, level: u32): u64 {
  const keep = _PAGE_CHG_MASK | _PAGE_PSE;
  let v = (e & keep) | (prot & ~keep);
  const mask = leafAddrMask(level);
  if (needsInvert(e) != needsInvert(v)) v = (v & ~mask) | (~v & mask);
  return v;
}

/**
 * pte_needs_flush (arch/x86/include/asm/tlbflush.h): no flush from a
 * non-present entry, a flush when the pfn changes, when any bit outside the
 * "enable" set changes, or when an enable bit (RW, D, A, G) is cleared.
 */
export function pteNeedsFlush(old: u64, nw: u64): bool {
  if ((old & _PAGE_PRESENT) == 0) return false;
  if (leafPfn(old, 0) != leafPfn(nw, 0)) return true;
  const ignore: u64 = _PAGE_SPECIAL | _PAGE_UFFD_WP | _PAGE_SOFT_DIRTY | _PAGE_DEVMAP | _PAGE_SAVED_DIRTY;
  const enable: u64 = _PAGE_RW | _PAGE_DIRTY | _PAGE_ACCESSED | _PAGE_GLOBAL;
  const flagMask: u64 = ~PTE_PFN_MASK;
  const diff = (old ^ nw) & flagMask & ~ignore;
  return (diff & ~enable) != 0 || (diff & old & enable) != 0;
}

// ---- upper levels ----------------------------------------------------------------
// @ts-ignore: decorator
@inline export function mkTableEntry(pfn: u64): u64 { return (pfn << 12) | _PAGE_TABLE; }
// @ts-ignore: decorator
@inline export function tableEntryPfn(e: u64): u64 { return (e & PTE_PFN_MASK) >> 12; }
/** A present entry that points at a lower table. */
// @ts-ignore: decorator
@inline export function isTableEntry(e: u64): bool { return (e & (_PAGE_PRESENT | _PAGE_PSE)) == _PAGE_PRESENT; }
/** pmd_leaf / pud_leaf: a huge mapping (present or PROT_NONE). */
// @ts-ignore: decorator
@inline export function isUpperLeaf(e: u64): bool { return (e & _PAGE_PSE) != 0 && pmdPresent(e); }
/** pmd_mkhuge on a pte-format value. */
// @ts-ignore: decorator
@inline export function mkHuge(e: u64): u64 { return e | _PAGE_PSE; }
/** The pte for subpage `i` of a huge leaf being split (__split_huge_pmd_locked keeps every attribute). */
export function hugeToPte(e: u64, level: u32, i: u64): u64 {
  const pfn = leafPfn(e, level) + i;
  const attrs = e & ~(PTE_PFN_MASK | _PAGE_PSE);
  return pfnPte(pfn, attrs);
}
/** pfn_pmd / pfn_pud: a huge leaf for an aligned pfn, PROT_NONE inverting only the huge address bits. */
export function pfnHuge(pfn: u64, prot: u64, level: u32): u64 {
  return mkHuge((((pfn << 12) ^ protnoneMask(prot)) & leafAddrMask(level)) | prot);
}

// ---- hardware ------------------------------------------------------------------------
export const ACCESS_READ: u32 = 0;
export const ACCESS_WRITE: u32 = 1;
export const ACCESS_EXEC: u32 = 2;

/**
 * What the MMU does with a leaf on a user access: the value it writes back
 * (A set; D set on a write), or 0 when the access faults.
 */
export function hwAccess(e: u64, kind: u32): u64 {
  if ((e & (_PAGE_PRESENT | _PAGE_USER)) != (_PAGE_PRESENT | _PAGE_USER)) return 0;
  if (kind == ACCESS_WRITE) {
    if ((e & _PAGE_RW) == 0) return 0;
    return e | _PAGE_ACCESSED | _PAGE_DIRTY;
  }
  if (kind == ACCESS_EXEC && (e & _PAGE_NX) != 0) return 0;
  return e | _PAGE_ACCESSED;
}

/**
 * What a TLB entry filled from leaf `e` allows (see assembly/tlb.ts): a write
 * completes without the PTE only when RW and D were both set at fill time; a
 * writable clean entry must re-walk to set D.
 */
export function tlbPerms(e: u64): u32 {
  if ((e & (_PAGE_PRESENT | _PAGE_USER)) != (_PAGE_PRESENT | _PAGE_USER)) return 0;      // no user access at all
  let p: u32 = 1;                                                                          // TLB_READ
  if ((e & _PAGE_RW) != 0) p |= (e & _PAGE_DIRTY) != 0 ? 2 : 4;                         // TLB_WRITE / TLB_WRITE_UPDATE
  if ((e & _PAGE_NX) == 0) p |= 8;                                                         // TLB_EXEC
  if ((e & _PAGE_GLOBAL) != 0) p |= 16;                                                    // TLB_GLOBAL
  return p;
}

// ---- swap-format -----------------------------------------------------------------
// @ts-ignore: decorator
@inline export function mkSwap(type: u64, offset: u64): u64 {
  return ((~offset << SWP_OFFSET_SHIFT) >> SWP_TYPE_BITS) | (type << (64 - SWP_TYPE_BITS));
}
// @ts-ignore: decorator
@inline export function swpType(e: u64): u64 { return e >> (64 - SWP_TYPE_BITS); }
// @ts-ignore: decorator
@inline export function swpOffset(e: u64): u64 { return (~e << SWP_TYPE_BITS) >> SWP_OFFSET_SHIFT; }
export const SWP_OFFSET_BITS: u32 = 50;
