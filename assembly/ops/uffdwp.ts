// change_protection with MM_CP_UFFD_WP / MM_CP_UFFD_WP_RESOLVE
// (mm/mprotect.c, mm/userfaultfd.c uffd_wp_range): userfaultfd write-protect
// and its undoing over a range.
//
// Protect: present entries get the uffd-wp bit and lose write permission;
// swap entries get the swp uffd-wp bit; empty slots get a UFFD_WP marker
// where markers are used (file and shmem VMAs, anonymous ones with
// wp-unpopulated), page tables allocated as needed; a huge PMD the range
// covers whole is protected whole, one it cuts is split. Resolve: the bits
// go, uffd-wp markers are dropped, and an entry becomes writable again only
// where the fault handler would make it so (can_change_pte_writable).
// Every permission reduction widens the current mmu_gather (one flush at the end).

import { Vma } from "../vma";
import { Mm } from "../mm";
import { walkMm, walkVma, setWalkAction, ACTION_CONTINUE } from "../walk";
import { Gather, currentGather, tlbFlushPteRange, tlbFlushPmdRange } from "../gather";
import { pmdOffsetAlloc, pteTableAlloc } from "../fault";
import { tablePtr } from "../pgtable";
import {
  ptePresent, pteWrite, pteMkuffdWp, pteClearUffdWp, pteMkwrite, pteNeedsFlush, isUpperLeaf, isTableEntry,
  tableEntryPfn, isSwapPte, swpType, swpOffset, swpUffdWpBit, mkPteMarker, mkuffdWp4, NOT_ALL_PRESENT, MAX_SWAPFILES, SWP_PTE_MARKER,
  PTE_MARKER_UFFD_WP,
} from "../arch/index";
import { contpteMm, ptepGetAndClear, setPtes } from "../arch/contpte";
import { canChangePteWritable } from "./changeprot";
import { PMD_SIZE, ENOMEM } from "../constants";

@final export class UffdWpOp {
  /** true: MM_CP_UFFD_WP; false: MM_CP_UFFD_WP_RESOLVE. */
  protect: bool = true;
  /** userfaultfd_wp_use_markers for the VMA being walked. */
  markers: bool = false;
  /** MM_CP_TRY_CHANGE_WRITABLE (resolve in a VMA that wants manual write upgrades). */
  tryWritable: bool = false;
  pages: u64 = 0;

  pteRange(ptep: usize, addr: u64, end: u64): i32 {
    const mm = walkMm, vma = changetype<Vma>(walkVma), g = currentGather;
    const cont = contpteMm(mm);
    // Four present entries at a time (arch/index.ts), the bulk of a protect; anything else goes one by one.
    const bulk = this.protect && !cont;
    const last = ptep + <usize>((end - addr) >> 9);
    for (let p = ptep; p < last; ) {
      const a = addr + (<u64>(p - ptep) << 9);
      if (bulk && p + 32 <= last) {
        const r = mkuffdWp4(p);
        if (r != NOT_ALL_PRESENT) {
          this.pages += <u64>popcnt(r & 15);
          const f = r >> 4;
          if (f != 0) tlbFlushPteRange(g, a + (<u64>ctz(f) << 12), <u64>(32 - clz(f) - ctz(f)) << 12);
          p += 32;
          continue;
        }
      }
      this.entry(mm, vma, g, cont, p, a);
      p += 8;
    }
    return 0;
  }

  /** One entry: present, none (a marker where markers are used), swap or marker. */
  private entry(mm: Mm, vma: Vma, g: Gather, cont: bool, p: usize, a: u64): void {
    const e = load<u64>(p);
    if (e == 0) {
      if (this.protect && this.markers) { store<u64>(p, mkPteMarker(PTE_MARKER_UFFD_WP)); this.pages++; }
      return;
    }
    if (ptePresent(e)) {
      if (this.change(vma, e) == e) return;
      // ptep_modify_prot_start/commit (arm64: through the contpte layer).
      const old = cont ? ptepGetAndClear(mm, a, p) : e;
      const n = this.change(vma, old);
      if (cont) setPtes(mm, a, p, n, 1); else store<u64>(p, n);
      this.pages++;
      if (pteNeedsFlush(old, n)) tlbFlushPteRange(g, a, 4096);
      return;
    }
    if (!isSwapPte(e)) return;
    const type = swpType(e);
    if (type < MAX_SWAPFILES) {
      const n = this.protect ? e | swpUffdWpBit() : e & ~swpUffdWpBit();
      if (n != e) { store<u64>(p, n); this.pages++; }
    } else if (type == SWP_PTE_MARKER && !this.protect && (swpOffset(e) & PTE_MARKER_UFFD_WP) != 0) {
      // Poison and guard markers are left alone; a uffd-wp one is dropped (the next fault goes through normally).
      const rest = swpOffset(e) & ~PTE_MARKER_UFFD_WP;
      store<u64>(p, rest == 0 ? 0 : mkPteMarker(rest));
      this.pages++;
    }
  }

  /** The new value of a present entry. */
  // @ts-ignore: decorator
  @inline private change(vma: Vma, e: u64): u64 {
    if (this.protect) return pteMkuffdWp(e);
    let n = pteClearUffdWp(e);
    if (this.tryWritable && !pteWrite(n) && canChangePteWritable(vma, n)) n = pteMkwrite(n);
    return n;
  }

  /** change_huge_pmd with uffd-wp: a leaf the range covers whole changes in place; one it cuts is split (SUBTREE). */
  upperEntry(level: u32, ep: usize, addr: u64, next: u64): i32 {
    const e = load<u64>(ep);
    if (!isUpperLeaf(e)) return 0;
    if (level != 1 || ((addr & (PMD_SIZE - 1)) == 0 && next - addr == PMD_SIZE)) {
      if (ptePresent(e)) {
        const n = this.protect ? pteMkuffdWp(e) : pteClearUffdWp(e);
        if (n != e) {
          store<u64>(ep, n);
          this.pages += 512;
          if (pteNeedsFlush(e, n)) tlbFlushPmdRange(currentGather, addr, PMD_SIZE);
        }
      }
      setWalkAction(ACTION_CONTINUE);
    }
    return 0;
  }

  /** Where no table exists, protecting a VMA that uses markers allocates tables and fills them with markers. */
  hole(addr: u64, next: u64, depth: i32): i32 {
    if (depth < 0 || !this.protect || !this.markers) return 0;
    const n = fillMarkers(walkMm, addr, next);
    if (n < 0) return <i32>n;
    this.pages += <u64>n;
    return 0;
  }

  // @ts-ignore: decorator
  @inline testWalk(vma: Vma): i32 { return 0; }
  // @ts-ignore: decorator
  @inline preVma(vma: Vma, start: u64, end: u64): i32 { return 0; }
  // @ts-ignore: decorator
  @inline postVma(vma: Vma, start: u64, end: u64): void {}
}

/** UFFD_WP markers in every empty slot of [addr, next), page tables allocated; the markers placed, or -ENOMEM. */
export function fillMarkers(mm: Mm, addr: u64, next: u64): i64 {
  let n: i64 = 0;
  for (let a = addr; a < next; ) {
    const stop = ((a | (PMD_SIZE - 1)) + 1) < next ? (a | (PMD_SIZE - 1)) + 1 : next;
    const pmdp = pmdOffsetAlloc(mm, a);
    if (pmdp == 0) return -ENOMEM;
    if (load<u64>(pmdp) == 0 && pteTableAlloc(mm, pmdp) == 0) return -ENOMEM;
    const pmd = load<u64>(pmdp);
    if (isTableEntry(pmd)) {
      const base = tablePtr(<u32>tableEntryPfn(pmd));
      for (let b = a; b < stop; b += 4096) {
        const p = base + (<usize>((b >> 12) & 511) << 3);
        if (load<u64>(p) == 0) { store<u64>(p, mkPteMarker(PTE_MARKER_UFFD_WP)); n++; }
      }
    }
    a = stop;
  }
  return n;
}
