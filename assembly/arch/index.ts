// The arch layer: one entry codec per architecture behind arch-neutral names
// (the kernel's pte_* helpers). Generic code calls only these. The selector is
// a compile-time constant (asc --use ARM64_BUILD=0|1, one .wasm per arch), so
// every helper inlines to one arch's code with no branch left in hot loops;
// measured ~20% faster on range walks than a runtime flag.

import * as x86 from "./x86_64";
import * as a64 from "./arm64";

export const ARCH_X86_64: u32 = 0;
export const ARCH_ARM64: u32 = 1;

export const ARM64: bool = ARM64_BUILD != 0;
/** arm64 FEAT_HAFDBS: hardware access flag and dirty-bit management. */
export let hwAF = true;
export let hwDBM = true;

/** Soft-dirty tracking (CONFIG_MEM_SOFT_DIRTY; x86 only). */
export let softDirtySupported = true;

/** Sets the machine's hardware features; false if `arch` is not the one this core was built for. */
export function archInit(arch: u32, ha: bool, dbm: bool, softDirty: bool): bool {
  if ((arch == ARCH_ARM64) != ARM64) return false;
  hwAF = ha;
  hwDBM = dbm;
  softDirtySupported = softDirty && !ARM64;
  x86.setSoftDirtySupport(softDirtySupported);
  return true;
}

/** Physical-address bits of a leaf (what ptdump masks out to compare attributes). */
// @ts-ignore: decorator
@inline export function pfnMask(): u64 { return ARM64 ? a64.PTE_ADDR_MASK : x86.PTE_PFN_MASK; }

// ---- present leaves -----------------------------------------------------------------
// @ts-ignore: decorator
@inline export function pteNone(e: u64): bool { return ARM64 ? a64.pteNone(e) : x86.pteNone(e); }
// @ts-ignore: decorator
@inline export function ptePresent(e: u64): bool { return ARM64 ? a64.ptePresent(e) : x86.ptePresent(e); }
// @ts-ignore: decorator
@inline export function pteProtnone(e: u64): bool { return ARM64 ? a64.pteProtnone(e) : x86.pteProtnone(e); }
// @ts-ignore: decorator
@inline export function pteWrite(e: u64): bool { return ARM64 ? a64.pteWrite(e) : x86.pteWrite(e); }
// @ts-ignore: decorator
@inline export function pteDirty(e: u64): bool { return ARM64 ? a64.pteDirty(e) : x86.pteDirty(e); }
// @ts-ignore: decorator
@inline export function pteYoung(e: u64): bool { return ARM64 ? a64.pteYoung(e) : x86.pteYoung(e); }
// @ts-ignore: decorator
@inline export function pteSpecial(e: u64): bool { return ARM64 ? a64.pteSpecial(e) : x86.pteSpecial(e); }
// @ts-ignore: decorator
@inline export function pteSoftDirty(e: u64): bool { return ARM64 ? false : x86.pteSoftDirty(e); }
// @ts-ignore: decorator
@inline export function pteUffdWp(e: u64): bool { return ARM64 ? a64.pteUffdWp(e) : x86.pteUffdWp(e); }
// @ts-ignore: decorator
@inline export function pteExec(e: u64): bool { return ARM64 ? a64.pteExec(e) : x86.pteExec(e); }
// @ts-ignore: decorator
@inline export function pteCont(e: u64): bool { return ARM64 ? a64.pteCont(e) : false; }
// @ts-ignore: decorator
@inline export function pteMkwrite(e: u64): u64 { return ARM64 ? a64.pteMkwrite(e) : x86.pteMkwrite(e); }
// @ts-ignore: decorator
@inline export function pteWrprotect(e: u64): u64 { return ARM64 ? a64.pteWrprotect(e) : x86.pteWrprotect(e); }
// @ts-ignore: decorator
@inline export function pteMkdirty(e: u64): u64 { return ARM64 ? a64.pteMkdirty(e) : x86.pteMkdirty(e); }
// @ts-ignore: decorator
@inline export function pteMkclean(e: u64): u64 { return ARM64 ? a64.pteMkclean(e) : x86.pteMkclean(e); }
// @ts-ignore: decorator
@inline export function pteMkyoung(e: u64): u64 { return ARM64 ? a64.pteMkyoung(e) : x86.pteMkyoung(e); }
// @ts-ignore: decorator
@inline export function pteMkold(e: u64): u64 { return ARM64 ? a64.pteMkold(e) : x86.pteMkold(e); }
// @ts-ignore: decorator
@inline export function pteMkspecial(e: u64): u64 { return ARM64 ? a64.pteMkspecial(e) : x86.pteMkspecial(e); }
// @ts-ignore: decorator
@inline export function pteMksoftDirty(e: u64): u64 { return ARM64 ? e : x86.pteMksoftDirty(e); }
// @ts-ignore: decorator
@inline export function pteClearSoftDirty(e: u64): u64 { return ARM64 ? e : x86.pteClearSoftDirty(e); }
// @ts-ignore: decorator
@inline export function pteMkuffdWp(e: u64): u64 { return ARM64 ? a64.pteMkuffdWp(e) : x86.pteMkuffdWp(e); }
// @ts-ignore: decorator
@inline export function pteClearUffdWp(e: u64): u64 { return ARM64 ? a64.pteClearUffdWp(e) : x86.pteClearUffdWp(e); }
// @ts-ignore: decorator
@inline export function pfnPte(pfn: u64, prot: u64): u64 { return ARM64 ? a64.pfnPte(pfn, prot) : x86.pfnPte(pfn, prot); }
/** pfn of a present leaf at `level` (0 pte, 1 pmd, 2 pud). */
// @ts-ignore: decorator
@inline export function leafPfn(e: u64, level: u32): u64 { return ARM64 ? a64.leafPfn(e, level) : x86.leafPfn(e, level); }
// @ts-ignore: decorator
@inline export function pteModify(e: u64, prot: u64): u64 { return ARM64 ? a64.pteModify(e, prot) : x86.pteModify(e, prot); }
/** pmd_modify: like pte_modify, but x86 keeps PSE (_HPAGE_CHG_MASK); arm64 keeps the block type anyway. */
// @ts-ignore: decorator
@inline export function pmdModify(e: u64, prot: u64): u64 { return ARM64 ? a64.pteModify(e, prot) : x86.hugeModify(e, prot, 1); }
/** vm_get_page_prot: index is VM_READ|VM_WRITE|VM_EXEC|VM_SHARED (the low four VM flags). */
// @ts-ignore: decorator
@inline export function vmGetPageProt(vmFlags: u32): u64 { return ARM64 ? a64.protectionMap(vmFlags & 15) : x86.protectionMap(vmFlags & 15); }

// ---- upper levels ----------------------------------------------------------------
// @ts-ignore: decorator
@inline export function mkTableEntry(pfn: u64): u64 { return ARM64 ? a64.mkTableEntry(pfn) : x86.mkTableEntry(pfn); }
// @ts-ignore: decorator
@inline export function tableEntryPfn(e: u64): u64 { return ARM64 ? a64.tableEntryPfn(e) : x86.tableEntryPfn(e); }
// @ts-ignore: decorator
@inline export function isTableEntry(e: u64): bool { return ARM64 ? a64.isTableEntry(e) : x86.isTableEntry(e); }
// @ts-ignore: decorator
@inline export function isUpperLeaf(e: u64): bool { return ARM64 ? a64.isUpperLeaf(e) : x86.isUpperLeaf(e); }
// @ts-ignore: decorator
@inline export function pmdPresent(e: u64): bool { return ARM64 ? a64.pmdPresent(e) : x86.pmdPresent(e); }
// @ts-ignore: decorator
@inline export function hugeToPte(e: u64, level: u32, i: u64): u64 { return ARM64 ? a64.hugeToPte(e, level, i) : x86.hugeToPte(e, level, i); }
// @ts-ignore: decorator
@inline export function mkHuge(e: u64): u64 { return ARM64 ? a64.mkHuge(e) : x86.mkHuge(e); }
/** The uffd-wp software bit of a present entry. */
// @ts-ignore: decorator
@inline export function uffdWpBit(): u64 { return ARM64 ? a64.PTE_UFFD_WP : x86._PAGE_UFFD_WP; }
// @ts-ignore: decorator
@inline export function pteMkcont(e: u64): u64 { return ARM64 ? a64.pteMkcont(e) : e; }
// @ts-ignore: decorator
@inline export function pteMknoncont(e: u64): u64 { return ARM64 ? a64.pteMknoncont(e) : e; }
/** Some entry of the four at p carries PTE_CONT (arm64). */
// @ts-ignore: decorator
@inline export function anyCont4(p: usize): bool {
  if (!ARM64) return false;
  const m = i64x2.splat(a64.PTE_CONT);
  return v128.any_true(v128.or(v128.and(v128.load(p), m), v128.and(v128.load(p, 16), m)));
}
// @ts-ignore: decorator
@inline export function pfnHuge(pfn: u64, prot: u64, level: u32): u64 { return ARM64 ? a64.pfnHuge(pfn, prot, level) : x86.pfnHuge(pfn, prot, level); }

// ---- hardware ------------------------------------------------------------------------
export const ACCESS_READ: u32 = 0;
export const ACCESS_WRITE: u32 = 1;
export const ACCESS_EXEC: u32 = 2;
/** The MMU's view of a leaf on a user access: the value it writes back (A/D updated), or 0 for a fault. */
// @ts-ignore: decorator
@inline export function hwAccess(e: u64, kind: u32): u64 { return ARM64 ? a64.hwAccess(e, kind, hwAF, hwDBM) : x86.hwAccess(e, kind); }

/** pte_needs_flush: x86 skips upgrades; arm64 (the generic version) flushes every change of a present entry. */
// @ts-ignore: decorator
@inline export function pteNeedsFlush(old: u64, nw: u64): bool { return ARM64 ? old != nw : x86.pteNeedsFlush(old, nw); }

/** TLB permissions cached from a leaf: TLB_READ 1, TLB_WRITE 2, TLB_WRITE_UPDATE 4, TLB_EXEC 8, TLB_GLOBAL 16. */
// @ts-ignore: decorator
@inline export function tlbPerms(e: u64): u32 { return ARM64 ? a64.tlbPerms(e, hwDBM) : x86.tlbPerms(e); }

// ---- swap-format entries (include/linux/swapops.h, swap.h) ----------------------------------
// Type numbers of the newest kernels: device-exclusive is one type.
export const MAX_SWAPFILES: u32 = 24;
export const SWP_HWPOISON: u32 = 24;
export const SWP_MIGRATION_READ: u32 = 25;
export const SWP_MIGRATION_READ_EXCLUSIVE: u32 = 26;
export const SWP_MIGRATION_WRITE: u32 = 27;
export const SWP_DEVICE_WRITE: u32 = 28;
export const SWP_DEVICE_READ: u32 = 29;
export const SWP_DEVICE_EXCLUSIVE: u32 = 30;
export const SWP_PTE_MARKER: u32 = 31;

export const PTE_MARKER_UFFD_WP: u64 = 1;
export const PTE_MARKER_POISONED: u64 = 2;
export const PTE_MARKER_GUARD: u64 = 4;
export const PTE_MARKER_MASK: u64 = 7;

// @ts-ignore: decorator
@inline export function mkSwap(type: u32, offset: u64): u64 { return ARM64 ? a64.mkSwap(<u64>type, offset) : x86.mkSwap(<u64>type, offset); }
// @ts-ignore: decorator
@inline export function swpType(e: u64): u32 { return <u32>(ARM64 ? a64.swpType(e) : x86.swpType(e)); }
// @ts-ignore: decorator
@inline export function swpOffset(e: u64): u64 { return ARM64 ? a64.swpOffset(e) : x86.swpOffset(e); }
/** The three swp flag bits kept outside type/offset (arm64 has no soft-dirty: 0). */
// @ts-ignore: decorator
@inline export function swpSoftDirtyBit(): u64 { return ARM64 ? 0 : x86.swpSoftDirtyBit; }
// @ts-ignore: decorator
@inline export function swpUffdWpBit(): u64 { return ARM64 ? a64.PTE_SWP_UFFD_WP : x86._PAGE_SWP_UFFD_WP; }
// @ts-ignore: decorator
@inline export function swpExclusiveBit(): u64 { return ARM64 ? a64.PTE_SWP_EXCLUSIVE : x86._PAGE_SWP_EXCLUSIVE; }
/** Swap-format bits that belong to type and offset (not the flags). */
// @ts-ignore: decorator
@inline export function swpEntryBits(e: u64): u64 { return e & ~(swpSoftDirtyBit() | swpUffdWpBit() | swpExclusiveBit()); }

/** is_swap_pte: neither none nor present. */
// @ts-ignore: decorator
@inline export function isSwapPte(e: u64): bool { return !pteNone(e) && !ptePresent(e); }
// @ts-ignore: decorator
@inline export function isPteMarker(e: u64): bool { return isSwapPte(e) && swpType(e) == SWP_PTE_MARKER; }
// @ts-ignore: decorator
@inline export function mkPteMarker(bits: u64): u64 { return mkSwap(SWP_PTE_MARKER, bits); }
/** A genuine swap entry (slot of a swap device), not a special type. */
// @ts-ignore: decorator
@inline export function isRealSwapPte(e: u64): bool { return isSwapPte(e) && swpType(e) < MAX_SWAPFILES; }
// @ts-ignore: decorator
@inline export function isMigrationType(t: u32): bool { return t >= SWP_MIGRATION_READ && t <= SWP_MIGRATION_WRITE; }
// @ts-ignore: decorator
@inline export function isDevicePrivateType(t: u32): bool { return t == SWP_DEVICE_WRITE || t == SWP_DEVICE_READ; }
/** Entry kinds whose offset is a pfn (is_pfn_swap_entry). */
// @ts-ignore: decorator
@inline export function isPfnSwapType(t: u32): bool { return t >= SWP_HWPOISON && t <= SWP_DEVICE_EXCLUSIVE; }

/** Width of a pfn inside a migration entry's offset: SWP_PFN_BITS = MAX_PHYSMEM_BITS - PAGE_SHIFT. */
export function swpPfnBits(levels: u32): u32 { return ARM64 ? 36 : (levels == 5 ? 40 : 34); }

// ---- four entries at a time -------------------------------------------------------------
// Range edits that change few entries spend their time proving entries need
// nothing, and the per-entry branches cost more than the edit. These apply an
// edit to the four entries at p with two 128-bit lanes pairs, branch-free, write
// back only the halves that changed, and return which entries changed (bit i
// for entry i). Each matches its scalar counterpart entry for entry.

/** Lanes of v whose entry is present (pte_present: x86 P or PROTNONE; arm64 VALID or PRESENT_INVALID). */
// @ts-ignore: decorator
@inline function presentLanes(v: v128): v128 {
  const m = i64x2.splat(ARM64 ? a64.PTE_VALID | a64.PTE_PRESENT_INVALID : x86._PAGE_PRESENT | x86._PAGE_PROTNONE);
  return i64x2.ne(v128.and(v, m), i64x2.splat(0));
}

/** arm64 hardware-dirty lanes: DBM-writable and RDONLY clear. */
// @ts-ignore: decorator
@inline function hwDirtyLanes(v: v128): v128 {
  return i64x2.eq(v128.and(v, i64x2.splat(a64.PTE_WRITE | a64.PTE_RDONLY)), i64x2.splat(a64.PTE_WRITE));
}

/** pte_wrprotect on the present writable entries of one pair; returns the changed-lanes mask. */
// @ts-ignore: decorator
@inline function wrprotectPair(p: usize): u32 {
  const v = v128.load(p);
  const w = i64x2.splat(ARM64 ? a64.PTE_WRITE : x86._PAGE_RW);
  const change = v128.and(presentLanes(v), i64x2.ne(v128.and(v, w), i64x2.splat(0)));
  const m = i64x2.bitmask(change);
  if (m != 0) {
    let n: v128;
    if (ARM64) {
      // The hardware dirty state moves into the software DIRTY bit, then WRITE off, RDONLY on.
      n = v128.or(v, v128.and(hwDirtyLanes(v), i64x2.splat(a64.PTE_DIRTY)));
      n = v128.or(v128.andnot(n, w), i64x2.splat(a64.PTE_RDONLY));
    } else {
      n = v128.andnot(v, w);
    }
    v128.store(p, v128.bitselect(n, v, change));
  }
  return m;
}

/** pte_mkclean on the present dirty entries of one pair; returns the changed-lanes mask. */
// @ts-ignore: decorator
@inline function mkcleanPair(p: usize): u32 {
  const v = v128.load(p);
  let dirty: v128, n: v128;
  if (ARM64) {
    const sw = i64x2.splat(a64.PTE_DIRTY);
    dirty = v128.or(i64x2.ne(v128.and(v, sw), i64x2.splat(0)), hwDirtyLanes(v));
    n = v128.or(v128.andnot(v, sw), i64x2.splat(a64.PTE_RDONLY));
  } else {
    const d = i64x2.splat(x86._PAGE_DIRTY | x86._PAGE_SAVED_DIRTY);
    dirty = i64x2.ne(v128.and(v, d), i64x2.splat(0));
    n = v128.andnot(v, d);
  }
  const change = v128.and(presentLanes(v), dirty);
  const m = i64x2.bitmask(change);
  if (m != 0) v128.store(p, v128.bitselect(n, v, change));
  return m;
}

/** Write-protects the present writable entries among the four at p (pteWrprotect); bit i set if entry i changed. */
// @ts-ignore: decorator
@inline export function wrprotect4(p: usize): u32 { return wrprotectPair(p) | (wrprotectPair(p + 16) << 2); }

/**
 * pteMkuffdWp on the four entries at p when all four are present (else
 * nothing changes and the result is NOT_ALL_PRESENT): bit i set if entry i
 * changed, bit 4+i if that change needs a TLB flush (pteNeedsFlush: x86 only
 * for an entry that was writable, arm64 for any change).
 */
export const NOT_ALL_PRESENT: u32 = 0x100;
// @ts-ignore: decorator
@inline export function mkuffdWp4(p: usize): u32 {
  const v0 = v128.load(p), v1 = v128.load(p, 16);
  if ((i64x2.bitmask(presentLanes(v0)) & i64x2.bitmask(presentLanes(v1))) != 3) return NOT_ALL_PRESENT;
  const a = mkuffdWpPair(p, v0), b = mkuffdWpPair(p + 16, v1);
  return (a & 3) | ((b & 3) << 2) | ((a & 12) << 2) | ((b & 12) << 4);
}

/** mkuffdWp4 on one pair of present entries v (at p): changed lanes in bits 0-1, those needing a flush in bits 2-3. */
// @ts-ignore: decorator
@inline function mkuffdWpPair(p: usize, v: v128): u32 {
  let n: v128, flush: v128;
  if (ARM64) {
    n = v128.or(v, i64x2.splat(a64.PTE_UFFD_WP));
    n = v128.or(n, v128.and(hwDirtyLanes(n), i64x2.splat(a64.PTE_DIRTY)));
    n = v128.or(v128.andnot(n, i64x2.splat(a64.PTE_WRITE)), i64x2.splat(a64.PTE_RDONLY));
    flush = i64x2.ne(n, v);
  } else {
    const rw = i64x2.splat(x86._PAGE_RW);
    n = v128.andnot(v128.or(v, i64x2.splat(x86._PAGE_UFFD_WP)), rw);
    flush = i64x2.ne(v128.and(v, rw), i64x2.splat(0));
  }
  const change = i64x2.ne(n, v);
  const m = i64x2.bitmask(change);
  if (m != 0) v128.store(p, v128.bitselect(n, v, change));
  return m | (i64x2.bitmask(v128.and(flush, change)) << 2);
}

/**
 * Whether all eight entries at p are present and uffd-wp: what a scan for
 * WRITTEN passes over. Conservative: only x86 P / arm64 VALID count as
 * present here, so PROT_NONE or present-invalid entries take the scalar path.
 */
// @ts-ignore: decorator
@inline export function allUffdWpPresent8(p: usize): bool {
  const need = i64x2.splat(ARM64 ? a64.PTE_UFFD_WP | a64.PTE_VALID : x86._PAGE_UFFD_WP | x86._PAGE_PRESENT);
  const all = v128.and(v128.and(v128.load(p), v128.load(p, 16)), v128.and(v128.load(p, 32), v128.load(p, 48)));
  return i64x2.all_true(i64x2.eq(v128.and(all, need), need));
}

/** Cleans the present dirty entries among the four at p (pteMkclean); bit i set if entry i changed. */
// @ts-ignore: decorator
@inline export function mkclean4(p: usize): u32 { return mkcleanPair(p) | (mkcleanPair(p + 16) << 2); }
