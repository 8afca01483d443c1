// The PAGEMAP_SCAN ioctl (fs/proc/task_mmu.c do_pagemap_scan) as a walker op:
// each page's categories, the interesting ones reported as regions of
// adjacent pages with the same (returned) categories, and with WP_MATCHING
// the reported pages write-protected again (uffd-wp), which is how a process
// tracks its own writes with an async userfaultfd.
//
// Region record (24 bytes): start u64 | end u64 | categories u64

import { Vma } from "../vma";
import { Mm } from "../mm";
import { fillMarkers } from "./uffdwp";
import { gatherBegin, gatherEnd } from "../gather";
import { mmuNotifierInvalidateStart, mmuNotifierInvalidateEnd, MMU_NOTIFY_PROTECTION_VMA } from "../notifier";
import { walkMm, walkVma, walkPageRange, setWalkAction, ACTION_CONTINUE } from "../walk";
import { currentGather, tlbFlushPteRange, tlbFlushPmdRange } from "../gather";
import {
  ptePresent, pteUffdWp, pteSoftDirty, pteSpecial, pteMkuffdWp, leafPfn, isUpperLeaf, isSwapPte, swpType, swpOffset,
  swpUffdWpBit, swpSoftDirtyBit, mkPteMarker, pteNeedsFlush, allUffdWpPresent8, MAX_SWAPFILES, SWP_PTE_MARKER, PTE_MARKER_UFFD_WP, PTE_MARKER_GUARD,
} from "../arch/index";
import { contpteMm, ptepGetAndClear, setPtes } from "../arch/contpte";
import { isZeroPfn, folioHead, testFlag, PG_ANON } from "../frames";
import { uffdWpAsync, uffdWpUseMarkers } from "../uffd";
import { VM_SOFTDIRTY, VM_PFNMAP, PMD_SIZE, EPERM, ENOMEM } from "../constants";

export const PAGE_IS_WPALLOWED: u64 = 1 << 0;
export const PAGE_IS_WRITTEN: u64 = 1 << 1;
export const PAGE_IS_FILE: u64 = 1 << 2;
export const PAGE_IS_PRESENT: u64 = 1 << 3;
export const PAGE_IS_SWAPPED: u64 = 1 << 4;
export const PAGE_IS_PFNZERO: u64 = 1 << 5;
export const PAGE_IS_HUGE: u64 = 1 << 6;
export const PAGE_IS_SOFT_DIRTY: u64 = 1 << 7;
export const PAGE_IS_GUARD: u64 = 1 << 8;

export const PM_SCAN_WP_MATCHING: u32 = 1;
export const PM_SCAN_CHECK_WPASYNC: u32 = 2;

const REGION: usize = 24;
/** pteRange's code when the scan must stop (pages or regions exhausted). */
const STOP: i32 = 1;

@final export class PagemapScanOp {
  flags: u32 = 0;
  inverted: u64 = 0;
  mask: u64 = 0;
  anyof: u64 = 0;
  returnMask: u64 = 0;
  maxPages: u64 = 0;
  vec: usize = 0;
  vecLen: u32 = 0;
  // Progress.
  regions: u32 = 0;
  pages: u64 = 0;
  walkEnd: u64 = 0;
  vmaCategory: u64 = 0;
  /** Some filter or the return mask asks for FILE or PFNZERO, which need the page's frame. */
  needFrame: bool = false;
  /**
   * The filter requires WRITTEN: a present uffd-wp page can be passed over
   * on its PTE alone, which is what keeps a tracking scan of a mostly clean
   * range near one load per page.
   */
  skipProtected: bool = false;

  /** pagemap_scan_is_interesting_page. */
  // @ts-ignore: decorator
  @inline private interesting(categories: u64): bool {
    const c = categories ^ this.inverted;
    if ((c & this.mask) != this.mask) return false;
    return this.anyof == 0 || (c & this.anyof) != 0;
  }

  /**
   * pagemap_scan_output: adds [addr, end) with these categories to the
   * regions (merging with the last one when adjacent and alike). Returns the
   * end actually taken (short when max pages or the region vector run out).
   */
  private output(categories: u64, addr: u64, end: u64): u64 {
    const c = categories & this.returnMask;
    if (this.maxPages != 0 && this.pages + ((end - addr) >> 12) > this.maxPages) end = addr + ((this.maxPages - this.pages) << 12);
    if (end <= addr) return addr;
    const last = this.vec + <usize>(this.regions - 1) * REGION;
    if (this.regions > 0 && load<u64>(last, 8) == addr && load<u64>(last, 16) == c) {
      store<u64>(last, end, 8);
    } else {
      if (this.regions == this.vecLen) return addr;
      const r = this.vec + <usize>this.regions * REGION;
      store<u64>(r, addr); store<u64>(r, end, 8); store<u64>(r, c, 16);
      this.regions++;
    }
    this.pages += (end - addr) >> 12;
    return end;
  }

  pteRange(ptep: usize, addr: u64, end: u64): i32 {
    const mm = walkMm, vma = changetype<Vma>(walkVma);
    const wp = (this.flags & PM_SCAN_WP_MATCHING) != 0;
    const markers = uffdWpUseMarkers(vma);
    const cont = contpteMm(mm);
    const skipProtected = this.skipProtected, needFrame = this.needFrame;
    let a = addr, p = ptep;
    while (a < end) {
      // Eight protected pages at a time (arch/index.ts), the usual case of a tracking scan.
      if (skipProtected && a + 32768 <= end && allUffdWpPresent8(p)) { a += 32768; p += 64; continue; }
      const e = load<u64>(p);
      if (!skipProtected || !pteUffdWp(e) || !ptePresent(e)) {
        const categories = this.vmaCategory | pageCategory(e, needFrame);
        if (this.interesting(categories)) {
          if (this.output(categories, a, a + 4096) == a) { this.walkEnd = a; return STOP; }
          if (wp) this.protect(mm, vma, a, p, e, markers, cont);
        }
      }
      a += 4096; p += 8;
    }
    return 0;
  }

  /** make_uffd_wp_pte. */
  private protect(mm: Mm, vma: Vma, a: u64, p: usize, e: u64, markers: bool, cont: bool): void {
    if (e == 0) {
      if (markers) store<u64>(p, mkPteMarker(PTE_MARKER_UFFD_WP));
    } else if (ptePresent(e)) {
      if (pteUffdWp(e)) return;
      const old = cont ? ptepGetAndClear(mm, a, p) : e;
      const n = pteMkuffdWp(old);
      if (cont) setPtes(mm, a, p, n, 1); else store<u64>(p, n);
      if (pteNeedsFlush(old, n)) tlbFlushPteRange(currentGather, a, 4096);
    } else if (isSwapPte(e) && swpType(e) < MAX_SWAPFILES) {
      store<u64>(p, e | swpUffdWpBit());
    }
  }

  /** A huge PMD: its pages share one set of categories; with WP_MATCHING a leaf the range covers whole is protected whole. */
  upperEntry(level: u32, ep: usize, addr: u64, next: u64): i32 {
    const e = load<u64>(ep);
    if (!isUpperLeaf(e)) return 0;
    if (level != 1) { setWalkAction(ACTION_CONTINUE); return 0; }
    const whole = (addr & (PMD_SIZE - 1)) == 0 && next - addr == PMD_SIZE;
    let categories = this.vmaCategory | PAGE_IS_PRESENT | PAGE_IS_HUGE;
    if (!pteUffdWp(e)) categories |= PAGE_IS_WRITTEN;
    if (pteSoftDirty(e)) categories |= PAGE_IS_SOFT_DIRTY;
    const pfn = <u32>leafPfn(e, 1);
    if (isZeroPfn(pfn)) categories |= PAGE_IS_PFNZERO;
    else if (!testFlag(folioHead(pfn), PG_ANON)) categories |= PAGE_IS_FILE;
    if (!this.interesting(categories)) { setWalkAction(ACTION_CONTINUE); return 0; }
    const wp = (this.flags & PM_SCAN_WP_MATCHING) != 0;
    // Protecting part of a huge leaf (the range, or max pages, cuts it) needs the split the walker does
    // when descending (SUBTREE): the pages are then reported one by one.
    if (wp && (!whole || (this.maxPages != 0 && this.pages + 512 > this.maxPages))) return 0;
    const took = this.output(categories, addr, next);
    if (took != next) { this.walkEnd = took; return STOP; }
    if (wp && !pteUffdWp(e)) {
      const n = pteMkuffdWp(e);
      store<u64>(ep, n);
      if (pteNeedsFlush(e, n)) tlbFlushPmdRange(currentGather, addr, PMD_SIZE);
    }
    setWalkAction(ACTION_CONTINUE);
    return 0;
  }

  /** pagemap_scan_pte_hole: no table; the pages are reported with the VMA's categories, and protected with markers. */
  hole(addr: u64, next: u64, depth: i32): i32 {
    if (depth < 0 || !this.interesting(this.vmaCategory)) return 0;
    const took = this.output(this.vmaCategory, addr, next);
    if ((this.flags & PM_SCAN_WP_MATCHING) != 0 && uffdWpUseMarkers(changetype<Vma>(walkVma)) && took > addr) {
      const r = fillMarkers(walkMm, addr, took);
      if (r < 0) return <i32>r;
    }
    if (took != next) { this.walkEnd = took; return STOP; }
    return 0;
  }

  /** pagemap_scan_test_walk. */
  testWalk(vma: Vma): i32 {
    const wpAllowed = uffdWpAsync(vma) && uffdWpUseMarkers(vma);
    if (!wpAllowed) {
      if ((this.flags & PM_SCAN_CHECK_WPASYNC) != 0) return -EPERM;
      if ((this.flags & PM_SCAN_WP_MATCHING) != 0) return 1;
    }
    if ((vma.flags & VM_PFNMAP) != 0) return 1;
    let c: u64 = 0;
    if (wpAllowed) c |= PAGE_IS_WPALLOWED;
    if ((vma.flags & VM_SOFTDIRTY) != 0) c |= PAGE_IS_SOFT_DIRTY;
    const required = this.mask & PAGE_IS_WPALLOWED;
    if (((c ^ this.inverted) & required) != required) return 1;
    this.vmaCategory = c;
    return 0;
  }

  // @ts-ignore: decorator
  @inline preVma(vma: Vma, start: u64, end: u64): i32 { return 0; }
  // @ts-ignore: decorator
  @inline postVma(vma: Vma, start: u64, end: u64): void {}
}

/** pagemap_page_category for one PTE (the VMA's categories aside); FILE and PFNZERO only when asked for. */
// @ts-ignore: decorator
@inline function pageCategory(e: u64, needFrame: bool): u64 {
  if (e == 0) return 0;
  let c: u64 = 0;
  if (ptePresent(e)) {
    c |= PAGE_IS_PRESENT;
    if (!pteUffdWp(e)) c |= PAGE_IS_WRITTEN;
    if (needFrame) {
      const pfn = <u32>leafPfn(e, 0);
      if (isZeroPfn(pfn)) c |= PAGE_IS_PFNZERO;
      else if (!pteSpecial(e) && !testFlag(folioHead(pfn), PG_ANON)) c |= PAGE_IS_FILE;
    }
    if (pteSoftDirty(e)) c |= PAGE_IS_SOFT_DIRTY;
    return c;
  }
  if (!isSwapPte(e)) return 0;
  c |= PAGE_IS_SWAPPED;
  const type = swpType(e);
  const uffdWp = type == SWP_PTE_MARKER ? (swpOffset(e) & PTE_MARKER_UFFD_WP) != 0 : (e & swpUffdWpBit()) != 0;
  if (!uffdWp) c |= PAGE_IS_WRITTEN;
  if (type == SWP_PTE_MARKER && (swpOffset(e) & PTE_MARKER_GUARD) != 0) c |= PAGE_IS_GUARD;
  if ((e & swpSoftDirtyBit()) != 0) c |= PAGE_IS_SOFT_DIRTY;
  return c;
}

const op = new PagemapScanOp();

/**
 * do_pagemap_scan over [start, end): regions written to `vec` (up to vecLen),
 * at most maxPages pages (0: no limit). Returns the regions, or -errno;
 * `scanWalkEnd` says where the walk stopped.
 */
export let scanWalkEnd: u64 = 0;
export function pagemapScan(mm: Mm, start: u64, end: u64, flags: u32, inverted: u64, mask: u64, anyof: u64, returnMask: u64,
  maxPages: u64, vec: usize, vecLen: u32): i32 {
  op.flags = flags; op.inverted = inverted; op.mask = mask; op.anyof = anyof; op.returnMask = returnMask;
  op.maxPages = maxPages; op.vec = vec; op.vecLen = vecLen;
  op.regions = 0; op.pages = 0; op.walkEnd = end;
  op.needFrame = ((mask | anyof | returnMask) & (PAGE_IS_FILE | PAGE_IS_PFNZERO)) != 0;
  op.skipProtected = (mask & ~inverted & PAGE_IS_WRITTEN) != 0;
  const wp = (flags & PM_SCAN_WP_MATCHING) != 0;
  if (wp) {
    if (!gatherBegin(mm, false)) return -ENOMEM;
    mmuNotifierInvalidateStart(mm, MMU_NOTIFY_PROTECTION_VMA, start, end);
  }
  const r = walkPageRange<PagemapScanOp>(op, mm, start, end);
  if (wp) {
    mmuNotifierInvalidateEnd(mm, MMU_NOTIFY_PROTECTION_VMA, start, end);
    gatherEnd();
  }
  scanWalkEnd = op.walkEnd;
  if (r < 0) return r;
  return <i32>op.regions;
}
