// truncate_pagecache: unmap the file's pages beyond the new size from every
// mapping (private copies included: even_cows), dropping their markers as the
// locked second pass does, then empty those page-cache slots.

import { Mm, mmById, mmTableCapacity } from "./mm";
import { vmaAt, vmaPages } from "./vma";
import { walkPageRange } from "./walk";
import { ZapOp } from "./ops/zap";
import { File, cacheForEach, cacheRelease } from "./file";
import { gatherBegin, gatherEnd } from "./gather";

const zapOp = new ZapOp();

/** Returns false when memory for the flush bookkeeping ran out (before anything changed in that mapping). */
export function truncateFile(f: File, newPages: u64): bool {
  if (newPages < f.sizePages) {
    zapOp.dropMarkers = true;
    zapOp.evenCows = true;
    for (let id: u32 = 1; id < mmTableCapacity(); id++) {
      const m = mmById(id);
      if (m == null) continue;
      const mm = changetype<Mm>(m);
      for (let i: u32 = 0; i < mm.nrVmas; i++) {
        const v = vmaAt(mm, i);
        if (v.file != f.id) continue;
        const last = v.pgoff + vmaPages(v);
        if (last <= newPages) continue;
        const from = newPages > v.pgoff ? v.start + ((newPages - v.pgoff) << 12) : v.start;
        if (!gatherBegin(mm, false)) return false;
        walkPageRange<ZapOp>(zapOp, mm, from, v.end);
        gatherEnd();
      }
    }
    cacheForEach(f, newPages, cacheRelease);
  }
  f.sizePages = newPages;
  return true;
}
