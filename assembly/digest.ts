// A digest of the machine's memory-management state: every frame
// descriptor, every mm (counters, VMAs, every page-table entry, walked from
// the root), every file's page cache, every swap slot. Two runs of the same
// operations must give the same digest (determinism), and a call that fails
// must leave it unchanged (hostile-input tests). Heap garbage, TLBs and
// statistics are not state here: the TypeScript side adds the statistics.

import { frames, nrFrames } from "./frames";
import { Mm, mmById, mmTableCapacity } from "./mm";
import { vmaAt } from "./vma";
import { tablePtr } from "./pgtable";
import { isTableEntry, isUpperLeaf, tableEntryPfn } from "./arch/index";
import { File, fileById, fileTableCapacity, cacheForEach } from "./file";
import { swapSlots, swapCount, swapCachePfn, swapTag } from "./swap";

let h: u64 = 0;

/** One 64-bit word into the digest (FNV-1a's idea, a word at a time, with a final avalanche). */
// @ts-ignore: decorator
@inline function mix(v: u64): void { h = (h ^ v) * 0x100000001b3; h ^= h >> 29; }

function mixTable(pfn: u32, level: u32): void {
  const p = tablePtr(pfn);
  for (let i: u32 = 0; i < 512; i++) {
    const e = load<u64>(p + (<usize>i << 3));
    if (e == 0) continue;
    mix(<u64>i); mix(e);
    if (level > 0 && isTableEntry(e) && !isUpperLeaf(e)) mixTable(<u32>tableEntryPfn(e), level - 1);
  }
}

function mixMm(mm: Mm): void {
  mix(<u64>mm.id); mix(<u64>mm.levels); mix(<u64>mm.nrTables); mix(<u64>mm.flags); mix(mm.taskSize);
  mix(<u64>mm.rss0); mix(<u64>mm.rss1); mix(<u64>mm.rss2); mix(<u64>mm.rss3);
  mix(<u64>mm.nrVmas);
  for (let i: u32 = 0; i < mm.nrVmas; i++) {
    const v = vmaAt(mm, i);
    mix(v.start); mix(v.end); mix(v.pgoff); mix(<u64>v.flags); mix(<u64>v.file); mix(<u64>v.uffd); mix(v.pageProt);
  }
  mixTable(mm.root, mm.levels - 1);
}

function mixCacheSlot(f: File, pgoff: u64, slot: usize): void { mix(pgoff); mix(load<u64>(slot)); }

export function machineDigest(): u64 {
  h = 0xcbf29ce484222325;
  mix(<u64>nrFrames);
  const words = <usize>nrFrames << 1;
  for (let i: usize = 0; i < words; i++) mix(load<u64>(frames + (i << 3)));
  for (let id: u32 = 1; id < mmTableCapacity(); id++) {
    const mm = mmById(id);
    if (mm != null) mixMm(changetype<Mm>(mm));
  }
  for (let id: u32 = 1; id < fileTableCapacity(); id++) {
    const f = fileById(id);
    if (f == null) continue;
    mix(<u64>id);
    cacheForEach(changetype<File>(f), 0, mixCacheSlot);
  }
  const slots = swapSlots();
  for (let s: u32 = 1; s < slots; s++) {
    const c = swapCount(s);
    if (c == 0 && swapCachePfn(s) == 0) continue;
    mix(<u64>s); mix(<u64>c); mix(<u64>swapCachePfn(s)); mix(<u64>swapTag(s));
  }
  h ^= h >> 33; h *= 0xff51afd7ed558ccd; h ^= h >> 33;
  return h;
}
