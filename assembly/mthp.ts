// Multi-size THP for anonymous memory (mm/memory.c alloc_anon_folio,
// /sys/kernel/mm/transparent_hugepage/hugepages-<size>kB/enabled): a write
// fault in a private anonymous VMA may allocate a folio of 16 KiB .. 1 MiB
// (orders 2..8) and map all of it at once, when the naturally aligned range
// around the address lies inside the VMA and every PTE of it is still none.
// The largest enabled order that fits and can be allocated wins; each order
// that does not fit or cannot be allocated falls back to the next.
// PMD size (order 9) is the THP path (thp.ts).

import { Vma } from "./vma";
import { thpPolicy } from "./thp";
import { pteNone } from "./arch/index";
import { VM_HUGEPAGE, VM_NOHUGEPAGE, VM_SHARED, VM_UFFD_WP, VM_UFFD_MISSING, THP_ALWAYS, THP_MADVISE } from "./constants";

export const MTHP_MIN_ORDER: u32 = 2;
export const MTHP_MAX_ORDER: u32 = 8;

// Per-size settings as bitmasks of orders: always, madvise (VM_HUGEPAGE only), inherit (the top-level policy).
let alwaysOrders: u32 = 0;
let madviseOrders: u32 = 0;
let inheritOrders: u32 = 0;

/** mthp_stat anon_fault_alloc / anon_fault_fallback, per order. */
export const mthpAlloc = new StaticArray<u64>(10);
export const mthpFallback = new StaticArray<u64>(10);

export function setMthpPolicy(always: u32, madvise: u32, inherit: u32): void {
  const valid: u32 = ((1 << (MTHP_MAX_ORDER + 1)) - 1) & ~((1 << MTHP_MIN_ORDER) - 1);
  alwaysOrders = always & valid;
  madviseOrders = madvise & valid;
  inheritOrders = inherit & valid;
}

/** thp_vma_allowable_orders for a small-order anonymous fault: the bitmask of orders this VMA may use. */
export function mthpAllowedOrders(vma: Vma): u32 {
  if ((alwaysOrders | madviseOrders | inheritOrders) == 0) return 0;
  if ((vma.flags & (VM_NOHUGEPAGE | VM_SHARED | VM_UFFD_WP | VM_UFFD_MISSING)) != 0 || vma.file != 0) return 0;
  const hugepage = (vma.flags & VM_HUGEPAGE) != 0;
  let orders = alwaysOrders;
  if (hugepage) orders |= madviseOrders;
  if (thpPolicy == THP_ALWAYS || (thpPolicy == THP_MADVISE && hugepage)) orders |= inheritOrders;
  return orders;
}

/**
 * The first address of the largest allowed order whose aligned block around
 * addr lies inside the VMA with every PTE none, scanning down from `orders`'
 * highest; sets `mthpOrder` (0: none fits). ptep is addr's PTE.
 */
export let mthpOrder: u32 = 0;
export function mthpFit(vma: Vma, addr: u64, ptep: usize, orders: u32): u64 {
  while (orders != 0) {
    const order = 31 - clz(orders);
    orders &= ~(<u32>1 << order);
    const size: u64 = <u64>4096 << order;
    const base = addr & ~(size - 1);
    if (base < vma.start || base + size > vma.end) continue;
    const first = ptep - <usize>((addr - base) >> 9);
    let none = true;
    for (let p = first; p < first + <usize>(size >> 9); p += 8) if (!pteNone(load<u64>(p))) { none = false; break; }
    if (!none) continue;
    mthpOrder = order;
    return base;
  }
  mthpOrder = 0;
  return 0;
}
