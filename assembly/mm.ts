// mm_struct: one address space. Lives in the core heap; TypeScript refers to
// it by id (its slot in the mm table).

import { kzalloc, kfree } from "./heap";
import { unsubscribeAll } from "./notifier";

@unmanaged export class Mm {
  id: u32;
  levels: u32;            // 4 or 5
  root: u32;              // pfn of the top table
  nrTables: u32;          // table pages held, deposited ones included
  rss0: i64;              // MM_FILEPAGES
  rss1: i64;              // MM_ANONPAGES
  rss2: i64;              // MM_SWAPENTS
  rss3: i64;              // MM_SHMEMPAGES
  vmas: usize;            // sorted array of Vma records
  nrVmas: u32;
  capVmas: u32;
  vmaCache: u32;          // index of the last VMA found
  flags: u32;             // MMF_* bits
  minFlt: u64;            // getrusage ru_minflt
  majFlt: u64;
  taskSize: u64;          // user VA limit (TASK_SIZE)
  cpumask: u64;           // mm_cpumask: CPUs that have run this mm (shootdowns reach them)
  lastCpu: u32;           // the CPU the mm last ran on: kernel work for it starts there
  flushPending: u32;      // mm->tlb_flush_pending
  tlbSizes: u32;          // page sizes this mm has ever had in a TLB (sticky): lookups skip the others
  nrSubscriptions: u32;   // interval notifiers and mirrors on this mm (notifier.ts): 0 skips the dispatch
  activeInvalidations: u32; // invalidate_range_start calls not yet ended
  invalidateSeq: u64;     // odd while an invalidation is active (mmu_notifier_subscriptions.invalidate_seq)
}

export const MMF_HAS_PINNED: u32 = 1;
/** The kernel's own address space (init_mm): never folded into contiguous blocks, no VMAs. */
export const MMF_KERNEL: u32 = 2;
export const MAX_MMS: u32 = 1 << 16;

let mmTable: usize = 0;   // u32 pointers, index = id
let mmTableCap: u32 = 0;
export let nrMms: u32 = 0;

/** rss counter access by kernel index. */
// @ts-ignore: decorator
@inline export function rssPtr(mm: Mm, counter: u32): usize { return changetype<usize>(mm) + offsetof<Mm>("rss0") + (<usize>counter << 3); }
// @ts-ignore: decorator
@inline export function addRss(mm: Mm, counter: u32, d: i64): void { store<i64>(rssPtr(mm, counter), load<i64>(rssPtr(mm, counter)) + d); }
// @ts-ignore: decorator
@inline export function getRss(mm: Mm, counter: u32): i64 { return load<i64>(rssPtr(mm, counter)); }

export function mmById(id: u32): Mm | null {
  if (id >= mmTableCap) return null;
  return changetype<Mm | null>(load<u32>(mmTable + (<usize>id << 2)));
}

/** Allocates an mm struct with a free id (no tables yet); null when out of memory. */
export function mmAllocStruct(levels: u32, taskSize: u64): Mm | null {
  let id: u32 = 1;
  while (id < mmTableCap && load<u32>(mmTable + (<usize>id << 2)) != 0) id++;
  if (id >= MAX_MMS) return null;
  if (id >= mmTableCap) {
    const cap = mmTableCap == 0 ? 64 : mmTableCap * 2;
    const t = kzalloc(<usize>cap << 2);
    if (t == 0) return null;
    if (mmTable != 0) { memory.copy(t, mmTable, <usize>mmTableCap << 2); kfree(mmTable, <usize>mmTableCap << 2); }
    mmTable = t; mmTableCap = cap;
  }
  const p = kzalloc(offsetof<Mm>());
  if (p == 0) return null;
  const mm = changetype<Mm>(p);
  mm.id = id;
  mm.levels = levels;
  mm.taskSize = taskSize;
  store<u32>(mmTable + (<usize>id << 2), <u32>p);
  nrMms++;
  return mm;
}

export function mmFreeStruct(mm: Mm): void {
  unsubscribeAll(mm);
  store<u32>(mmTable + (<usize>mm.id << 2), 0);
  kfree(changetype<usize>(mm), offsetof<Mm>());
  nrMms--;
}

/** First slot for iteration over live mms (ids from 1). */
export function mmTableCapacity(): u32 { return mmTableCap; }
