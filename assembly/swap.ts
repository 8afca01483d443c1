// One swap device: slots with a use count (swap_map), the content written to
// them, and the swap cache (the page, if any, that currently holds a slot's
// content in memory). Slot 0 is the header page and never handed out, so the
// first swap entry has offset 1, as on a real swap file.
//
// Slots live in 64 KiB chunks allocated on first use, so a large device costs
// nothing until it is used.

import { kzalloc } from "./heap";

const SLOTS_PER_CHUNK_SHIFT: u32 = 12;
const SLOTS_PER_CHUNK: u32 = 1 << SLOTS_PER_CHUNK_SHIFT;
const SLOT_BYTES: usize = 16;        // count u32 | cache pfn u32 | tag u32 | spare

let nrSlots: u32 = 0;
let chunkDir: usize = 0;             // u32 pointers
let cursor: u32 = 1;
export let slotsInUse: u32 = 0;

export function swapInit(slots: u32): bool {
  nrSlots = slots;
  if (slots == 0) return true;
  const chunks = (slots + SLOTS_PER_CHUNK - 1) >> SLOTS_PER_CHUNK_SHIFT;
  chunkDir = kzalloc(<usize>chunks << 2);
  return chunkDir != 0;
}

export function swapSlots(): u32 { return nrSlots; }

/** Pointer to a slot record, allocating its chunk when `create`; 0 if absent or out of memory. */
function slotPtr(slot: u32, create: bool): usize {
  if (slot >= nrSlots) return 0;
  const dp = chunkDir + (<usize>(slot >> SLOTS_PER_CHUNK_SHIFT) << 2);
  let chunk = <usize>load<u32>(dp);
  if (chunk == 0) {
    if (!create) return 0;
    chunk = kzalloc(<usize>SLOTS_PER_CHUNK * SLOT_BYTES);
    if (chunk == 0) return 0;
    store<u32>(dp, <u32>chunk);
  }
  return chunk + <usize>(slot & (SLOTS_PER_CHUNK - 1)) * SLOT_BYTES;
}

export function swapCount(slot: u32): u32 { const p = slotPtr(slot, false); return p == 0 ? 0 : load<u32>(p); }
export function swapCachePfn(slot: u32): u32 { const p = slotPtr(slot, false); return p == 0 ? 0 : load<u32>(p, 4); }
export function swapTag(slot: u32): u32 { const p = slotPtr(slot, false); return p == 0 ? 0 : load<u32>(p, 8); }
/** A slot is allocated while referenced by entries or held by the swap cache (SWAP_HAS_CACHE). */
export function swapSlotInUse(slot: u32): bool { const p = slotPtr(slot, false); return p != 0 && (load<u32>(p) != 0 || load<u32>(p, 4) != 0); }

/** get_swap_page: a free slot with count 0 and no cache, or 0 when the device is full. */
export function swapAlloc(): u32 {
  if (slotsInUse + 1 >= nrSlots) return 0;
  for (let n: u32 = 0; n < nrSlots; n++) {
    let s = cursor;
    cursor = cursor + 1 >= nrSlots ? 1 : cursor + 1;
    if (s == 0) continue;
    const p = slotPtr(s, true);
    if (p == 0) return 0;
    if (load<u32>(p) == 0 && load<u32>(p, 4) == 0) {
      slotsInUse++;
      store<u32>(p, 0); store<u32>(p, 0, 4); store<u32>(p, 0, 8);
      return s;
    }
  }
  return 0;
}

function releaseIfUnused(p: usize): void {
  if (load<u32>(p) == 0 && load<u32>(p, 4) == 0) slotsInUse--;
}

/** Writes a page's content to a slot (swap_writepage). */
export function swapWrite(slot: u32, tag: u32): void { store<u32>(slotPtr(slot, true), tag, 8); }
/** swap_duplicate: one more entry refers to the slot. */
export function swapDup(slot: u32): void { const p = slotPtr(slot, true); store<u32>(p, load<u32>(p) + 1); }
/** swap_free: one entry fewer; the slot is released when nothing refers to it. */
export function swapFree(slot: u32): void {
  const p = slotPtr(slot, false);
  store<u32>(p, load<u32>(p) - 1);
  releaseIfUnused(p);
}
export function swapCacheSet(slot: u32, pfn: u32): void {
  const p = slotPtr(slot, true);
  const had = load<u32>(p) != 0 || load<u32>(p, 4) != 0;
  store<u32>(p, pfn, 4);
  if (!had && pfn != 0) slotsInUse++;
  if (pfn == 0) releaseIfUnused(p);
}
