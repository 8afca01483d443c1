// truncate_pagecache: unmap the file's pages beyond the new size from every
// mapping (private copies included: even_cows), dropping their markers as the
// locked second pass does, then empty those page-cache slots. The mappings
// are found through the file's i_mmap, as unmap_mapping_range does. A huge
// folio across the new end is split first.

import { Mm, mmById } from "./mm";
import { Vma, vmaLookup, vmaPages } from "./vma";
import { walkPageRange } from "./walk";
import { ZapOp } from "./ops/zap";
import { File, cacheForEach, cacheRelease, cacheLookup, cacheSlot, CACHE_PAGE } from "./file";
import { folioHead, orderOf, indexOf, setTag } from "./frames";
import { splitFolio } from "./thp";
import { unfoldRange } from "./arch/contpte";
import { immapKeyAt, immapPgoffAt, keyMm, keyStart } from "./immap";
import { gatherBegin, gatherEnd } from "./gather";
import { mmuNotifierInvalidateStart, mmuNotifierInvalidateEnd, MMU_NOTIFY_CLEAR } from "./notifier";

const zapOp = new ZapOp();

/**
 * unmap_mapping_range_vma -> zap_page_range_single for one VMA's part, its
 * gather begun: MMU_NOTIFY_CLEAR over it, ended after the flush.
 */
function zapMappingRange(mm: Mm, start: u64, end: u64): void {
  mmuNotifierInvalidateStart(mm, MMU_NOTIFY_CLEAR, start, end);
  walkPageRange<ZapOp>(zapOp, mm, start, end);
  gatherEnd();
  mmuNotifierInvalidateEnd(mm, MMU_NOTIFY_CLEAR, start, end);
}

/** Returns false when memory for the flush bookkeeping ran out (before anything changed in that mapping). */
export function truncateFile(f: File, newPages: u64): bool {
  if (newPages < f.sizePages) {
    zapOp.dropMarkers = true;
    zapOp.evenCows = true;
    for (let i: u32 = 0; i < f.immapCount; i++) {
      const key = immapKeyAt(f, i);
      const mm = changetype<Mm>(mmById(keyMm(key)));
      const v = changetype<Vma>(vmaLookup(mm, keyStart(key)));
      const pgoff = immapPgoffAt(f, i);
      if (pgoff + vmaPages(v) <= newPages) continue;
      const from = newPages > pgoff ? v.start + ((newPages - pgoff) << 12) : v.start;
      if (!gatherBegin(mm, false)) return false;
      zapMappingRange(mm, from, v.end);
    }
    cacheForEach(f, releaseFrom(f, newPages), cacheRelease);
  }
  f.sizePages = newPages;
  return true;
}

/**
 * truncate_inode_partial_folio: a large folio straddling the new end is split
 * so that its pages past the end can go. One that cannot be split (pinned,
 * held by GUP) stays whole, its pages past the end zeroed, and the release
 * starts after it. Returns the first pgoff to release.
 */
function releaseFrom(f: File, newPages: u64): u64 {
  const v = cacheLookup(f, newPages);
  if ((v & 3) != CACHE_PAGE) return newPages;
  const head = folioHead(<u32>(v >> 2));
  const n = <u64>1 << orderOf(head);
  const index = <u64>indexOf(head);
  if (n == 1 || index >= newPages) return newPages;
  unfoldFolioMappings(f, index, n);
  if (splitFolio(head)) return newPages;
  for (let i = newPages - index; i < n; i++) setTag(head + <u32>i, 0);
  return index + n;
}

/** arm64: the folded blocks that map file pages [index, index + n) in any mapping unfold before the folio splits. */
function unfoldFolioMappings(f: File, index: u64, n: u64): void {
  for (let i: u32 = 0; i < f.immapCount; i++) {
    const pgoff = immapPgoffAt(f, i);
    if (pgoff >= index + n) break;
    const key = immapKeyAt(f, i);
    const mm = changetype<Mm>(mmById(keyMm(key)));
    const v = changetype<Vma>(vmaLookup(mm, keyStart(key)));
    const lo = index > pgoff ? index : pgoff, hi = index + n < pgoff + vmaPages(v) ? index + n : pgoff + vmaPages(v);
    if (lo < hi) unfoldRange(mm, v.start + ((lo - pgoff) << 12), v.start + ((hi - pgoff) << 12));
  }
}

/**
 * fallocate(PUNCH_HOLE) on pgoffs [first, end) (MADV_REMOVE): the pages are
 * unmapped from every mapping (private copies kept, markers kept: the zap
 * leaves uffd-wp markers where protection must survive), then leave the
 * cache. A huge folio the hole cuts is split; one that cannot be keeps its
 * pages, the punched ones zeroed. Returns false when memory ran out.
 */
export function punchHole(f: File, first: u64, end: u64): bool {
  zapOp.dropMarkers = false;
  zapOp.evenCows = false;
  for (let i: u32 = 0; i < f.immapCount; i++) {
    const pgoff = immapPgoffAt(f, i);
    if (pgoff >= end) break;
    const key = immapKeyAt(f, i);
    const mm = changetype<Mm>(mmById(keyMm(key)));
    const v = changetype<Vma>(vmaLookup(mm, keyStart(key)));
    const lo = first > pgoff ? first : pgoff, hi = end < pgoff + vmaPages(v) ? end : pgoff + vmaPages(v);
    if (lo >= hi) continue;
    if (!gatherBegin(mm, false)) return false;
    zapMappingRange(mm, v.start + ((lo - pgoff) << 12), v.start + ((hi - pgoff) << 12));
  }
  for (let pg = first; pg < end && pg < f.sizePages; pg++) {
    const v = cacheLookup(f, pg);
    if ((v & 3) == CACHE_PAGE) {
      const head = folioHead(<u32>(v >> 2));
      const n = <u64>1 << orderOf(head), index = <u64>indexOf(head);
      if (n > 1 && (index < first || index + n > end)) {
        unfoldFolioMappings(f, index, n);
        if (!splitFolio(head)) { setTag(<u32>(v >> 2), 0); continue; }
      }
    }
    if (v != 0) cacheRelease(f, pg, cacheSlot(f, pg));
  }
  return true;
}
