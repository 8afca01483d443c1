// Device-private memory (ZONE_DEVICE MEMORY_DEVICE_PRIVATE): frames a device
// owns and the CPU cannot address. A CPU page table refers to one only
// through a device-private swap entry; a CPU access to it faults, and the
// device migrates the page back to system memory (migrate_to_ram).
//
// Each device has one pool: frames taken from the buddy allocator when the
// device gets memory, kept out of it for the device's life. The pool holds
// one reference on each of its frames; a page in use also has the reference
// and mapcount of its mapping, like any anonymous page, and is charged to
// MM_ANONPAGES.

import { Mm } from "./mm";
import { Vma, vmaLookup } from "./vma";
import { kzalloc } from "./heap";
import {
  allocPages, allocFolio, desc, setRefcount, refcount, setInfo, info, setTag, tagOf, setIndex, indexOf, setFlag, testFlag,
  addMapcount, mapcount, orderOf, folioHead, folioPut, isZeroPfn, KIND_PAGE, KIND_SHIFT, PG_ANON, PG_SWAPBACKED, PG_EXCLUSIVE,
  PG_SWAPCACHE, PG_LRU, PG_DIRTY,
} from "./frames";
import { leafLookup, lookupLevel } from "./fault";
import { ptepGetAndClear, setPtes } from "./arch/contpte";
import {
  ptePresent, pteProtnone, pteWrite, pteSpecial, leafPfn, pfnPte, pteMkwrite, pteMkdirty, pteMkyoung, pteSoftDirty, pteUffdWp,
  pteMksoftDirty, pteMkuffdWp, mkSwap, swpType, swpOffset, swpPfnBits, swpSoftDirtyBit, swpUffdWpBit, swpExclusiveBit,
  SWP_DEVICE_WRITE, SWP_DEVICE_READ,
} from "./arch/index";
import { flushTlbRange } from "./flush";
import { mmuNotifierInvalidateStart, mmuNotifierInvalidateEnd, MMU_NOTIFY_MIGRATE } from "./notifier";
import { VM_SHARED, VM_WRITE, VM_UFFD_WP, EINVAL, ENOMEM, ENOSPC } from "./constants";

const MAX_POOLS: u32 = 64;
const poolDevice = new StaticArray<u32>(<i32>MAX_POOLS);
const poolBase = new StaticArray<u32>(<i32>MAX_POOLS);
const poolPages = new StaticArray<u32>(<i32>MAX_POOLS);
const poolFree = new StaticArray<usize>(<i32>MAX_POOLS);     // stack of free pfns (u32)
const poolNrFree = new StaticArray<u32>(<i32>MAX_POOLS);
const poolToRam = new StaticArray<u64>(<i32>MAX_POOLS);     // migrate_to_ram calls
const poolToDevice = new StaticArray<u64>(<i32>MAX_POOLS);
let nrPools: u32 = 0;

/** The device owning a device-private frame, 0 for a system frame. */
export function devicePrivateOwner(pfn: u32): u32 {
  const i = poolOf(pfn);
  return i < 0 ? 0 : unchecked(poolDevice[i]);
}

function poolOf(pfn: u32): i32 {
  for (let i: u32 = 0; i < nrPools; i++) if (pfn - unchecked(poolBase[i]) < unchecked(poolPages[i])) return <i32>i;
  return -1;
}

function poolOfDevice(device: u32): i32 {
  for (let i: u32 = 0; i < nrPools; i++) if (unchecked(poolDevice[i]) == device) return <i32>i;
  return -1;
}

/** A frame as the pool keeps it while free: an order-0 page with only the pool's reference. */
function resetFrame(pfn: u32): void {
  memory.fill(desc(pfn), 0, 16);
  setRefcount(pfn, 1);
  setInfo(pfn, KIND_PAGE << KIND_SHIFT);
}

/** Gives `device` 2^order pages of device-private memory (memremap_pages). 0 or -errno. */
export function devicePoolCreate(device: u32, order: u32): i32 {
  if (poolOfDevice(device) >= 0) return -EINVAL;
  if (nrPools == MAX_POOLS) return -ENOSPC;
  const n = <u32>1 << order;
  const stack = kzalloc(<usize>n << 2);
  if (stack == 0) return -ENOMEM;
  const base = allocPages(order);
  if (base == 0) return -ENOMEM;
  for (let i: u32 = 0; i < n; i++) {
    resetFrame(base + i);
    store<u32>(stack + (<usize>i << 2), base + n - 1 - i);   // lowest pfn on top
  }
  const p = nrPools++;
  unchecked(poolDevice[p] = device); unchecked(poolBase[p] = base); unchecked(poolPages[p] = n);
  unchecked(poolFree[p] = stack); unchecked(poolNrFree[p] = n);
  return 0;
}

function pageAlloc(p: i32): u32 {
  const nr = unchecked(poolNrFree[p]);
  if (nr == 0) return 0;
  unchecked(poolNrFree[p] = nr - 1);
  return load<u32>(unchecked(poolFree[p]) + (<usize>(nr - 1) << 2));
}

/** ->page_free: the last mapping went; the page is the pool's again. */
function pageFree(pfn: u32): void {
  const p = poolOf(pfn);
  resetFrame(pfn);
  const nr = unchecked(poolNrFree[p]);
  store<u32>(unchecked(poolFree[p]) + (<usize>nr << 2), pfn);
  unchecked(poolNrFree[p] = nr + 1);
}

/** Drops one mapping of a device-private page (zap, or the end of migrate_to_ram). */
export function devicePageUnmap(pfn: u32): void {
  addMapcount(pfn, -1);
  setRefcount(pfn, refcount(pfn) - 1);
  if (refcount(pfn) == 1) pageFree(pfn);
}

/** One more mapping of a device-private page (fork). */
export function devicePageDup(pfn: u32): void {
  addMapcount(pfn, 1);
  setRefcount(pfn, refcount(pfn) + 1);
}

/** The pfn a device-private entry names. */
// @ts-ignore: decorator
@inline export function devicePrivatePfn(mm: Mm, e: u64): u32 { return <u32>(swpOffset(e) & ((<u64>1 << swpPfnBits(mm.levels)) - 1)); }

/**
 * migrate_vma to device memory over [start, end) of one private anonymous
 * VMA: each present, exclusively mapped, unpinned small anonymous page gets a
 * device page with its content, and its PTE becomes a device-private entry
 * (writable if the PTE was). Others stay (the kernel's collect step skips
 * them). Returns the pages migrated, or -errno.
 */
export function migrateToDevice(mm: Mm, device: u32, start: u64, end: u64): i64 {
  const p = poolOfDevice(device);
  if (p < 0) return -ENOMEM;
  const vma = vmaLookup(mm, start);
  if (vma == null || vma.end < end || vma.file != 0 || (vma.flags & VM_SHARED) != 0) return -EINVAL;
  mmuNotifierInvalidateStart(mm, MMU_NOTIFY_MIGRATE, start, end);
  let moved: i64 = 0;
  for (let a = start; a < end; a += 4096) {
    const ep = leafLookup(mm, a);
    if (ep == 0 || lookupLevel != 0) continue;                 // no table, or a huge mapping (not split here)
    const e = load<u64>(ep);
    if (!ptePresent(e) || pteProtnone(e) || pteSpecial(e)) continue;
    const pfn = <u32>leafPfn(e, 0);
    if (isZeroPfn(pfn) || orderOf(folioHead(pfn)) != 0 || !testFlag(pfn, PG_ANON) || testFlag(pfn, PG_SWAPCACHE)) continue;
    // The refcount freeze of migrate_vma fails for shared or pinned pages.
    if (mapcount(pfn) != 1 || refcount(pfn) != 1) continue;
    const dpfn = pageAlloc(p);
    if (dpfn == 0) break;
    setTag(dpfn, tagOf(pfn));
    setIndex(dpfn, indexOf(pfn));
    setFlag(dpfn, PG_ANON | PG_SWAPBACKED | (testFlag(pfn, PG_EXCLUSIVE) ? PG_EXCLUSIVE : 0));
    devicePageDup(dpfn);
    const old = ptepGetAndClear(mm, a, ep);
    let n = mkSwap(pteWrite(old) ? SWP_DEVICE_WRITE : SWP_DEVICE_READ, <u64>dpfn);
    if (pteSoftDirty(old)) n |= swpSoftDirtyBit();
    if (pteUffdWp(old)) n |= swpUffdWpBit();
    store<u64>(ep, n);
    addMapcount(pfn, -1);
    folioPut(pfn);
    moved++;
  }
  if (moved != 0) flushTlbRange(mm, start, end, 12);
  mmuNotifierInvalidateEnd(mm, MMU_NOTIFY_MIGRATE, start, end);
  unchecked(poolToDevice[p] += <u64>moved);
  return moved;
}

/**
 * The CPU touched a device-private entry: pgmap->ops->migrate_to_ram moves
 * the page back to a new system page (content kept) and maps it; the access
 * then retries. Returns false when no memory was left.
 */
export function migrateToRam(mm: Mm, vma: Vma, addr: u64, ptep: usize): bool {
  const e = load<u64>(ptep);
  const dpfn = devicePrivatePfn(mm, e);
  const pfn = allocFolio(0);
  if (pfn == 0) return false;
  mmuNotifierInvalidateStart(mm, MMU_NOTIFY_MIGRATE, addr, addr + 4096);
  setTag(pfn, tagOf(dpfn));
  setIndex(pfn, indexOf(dpfn));
  setFlag(pfn, PG_ANON | PG_SWAPBACKED | PG_LRU | (testFlag(dpfn, PG_EXCLUSIVE) ? PG_EXCLUSIVE : 0));
  addMapcount(pfn, 1);
  let n = pteMkyoung(pfnPte(<u64>pfn, vma.pageProt));
  if (swpType(e) == SWP_DEVICE_WRITE && (vma.flags & VM_WRITE) != 0) n = pteMkwrite(pteMkdirty(n));
  if ((e & swpSoftDirtyBit()) != 0) n = pteMksoftDirty(n);
  if ((e & swpUffdWpBit()) != 0 && (vma.flags & VM_UFFD_WP) != 0) n = pteMkuffdWp(n);
  setPtes(mm, addr, ptep, n, 1);
  devicePageUnmap(dpfn);
  mmuNotifierInvalidateEnd(mm, MMU_NOTIFY_MIGRATE, addr, addr + 4096);
  const p = poolOf(dpfn);
  unchecked(poolToRam[p]++);
  return true;
}

/** [0] pages, [1] free, [2] to device, [3] to RAM, for `device` (all 0 without memory). */
export function devicePoolInfo(device: u32, out: usize): void {
  const p = poolOfDevice(device);
  store<u64>(out, p < 0 ? 0 : <u64>unchecked(poolPages[p]));
  store<u64>(out, p < 0 ? 0 : <u64>unchecked(poolNrFree[p]), 8);
  store<u64>(out, p < 0 ? 0 : unchecked(poolToDevice[p]), 16);
  store<u64>(out, p < 0 ? 0 : unchecked(poolToRam[p]), 24);
}

/** The checker: every pool frame carries the pool's reference. */
export function devicePoolsForEach(visit: (pfn: u32) => void): void {
  for (let i: u32 = 0; i < nrPools; i++) {
    const base = unchecked(poolBase[i]), n = unchecked(poolPages[i]);
    for (let j: u32 = 0; j < n; j++) visit(base + j);
  }
}
