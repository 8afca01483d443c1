// Linear-memory manager for the core.
//
// Everything the core owns (frame descriptors, page-table pages, VMA arrays,
// page-cache nodes, swap map) lives in one WebAssembly memory. The
// AssemblyScript runtime is the allocation-free "stub": the core never uses
// managed objects after start-up, so it can own the memory above the runtime's
// last allocation. Blocks come in power-of-two size classes with one free list
// per class (a slab in spirit): page-table pages are class 12, so a table is a
// 4 KiB block at a 4 KiB-aligned address and its "arena slot" is ptr >> 12.
//
// Growth is explicit and checked: a failed memory.grow makes kmalloc return 0,
// which callers turn into ENOMEM. The core never traps on exhaustion.

const MIN_CLASS: u32 = 4;       // 16 bytes
const MAX_CLASS: u32 = 31;      // 2 GiB
const WASM_PAGE: usize = 65536;

let brk: usize = 0;             // end of the carved region
let freeLists = new StaticArray<usize>(32);
let bytesInUse: usize = 0;

/** Sets the heap base just above whatever the runtime allocated at start-up. */
export function heapInit(): void {
  if (brk != 0) return;
  const probe = heap.alloc(16);
  brk = (probe + 16 + WASM_PAGE - 1) & ~(WASM_PAGE - 1);
}

/** Size class (log2 of the block size) for a request of `size` bytes. */
// @ts-ignore: decorator
@inline export function sizeClass(size: usize): u32 {
  if (size <= (1 << MIN_CLASS)) return MIN_CLASS;
  return <u32>(32 - clz<u32>(<u32>(size - 1)));
}

/** Test hook: linear memory does not grow (memory.grow failing, as at the engine's limit). */
let growthBlocked = false;
export function setGrowthBlocked(on: bool): void { growthBlocked = on; }

/** Extends the carved region to `end`, growing linear memory; false if it cannot. */
function ensureMemory(end: usize): bool {
  const have = <usize>memory.size() * WASM_PAGE;
  if (end <= have) return true;
  if (end > 0xFFFF_0000 || growthBlocked) return false;
  const need = <i32>((end - have + WASM_PAGE - 1) / WASM_PAGE);
  // Grow by at least a quarter of the current size to keep growth calls rare,
  // but fall back to the exact need when memory is nearly at its 4 GiB limit.
  const quarter = memory.size() >> 2;
  if (quarter > need && memory.grow(quarter) >= 0) return true;
  return memory.grow(need) >= 0;
}

/** Allocates a block of at least `size` bytes aligned to min(blockSize, 4096); 0 when out of memory. Not zeroed. */
export function kmalloc(size: usize): usize {
  const cls = sizeClass(size);
  if (cls > MAX_CLASS) return 0;
  const head = unchecked(freeLists[cls]);
  if (head != 0) {
    unchecked(freeLists[cls] = load<usize>(head));
    bytesInUse += <usize>1 << cls;
    return head;
  }
  const bsize = <usize>1 << cls;
  const align: usize = bsize < 4096 ? bsize : 4096;
  const ptr = (brk + align - 1) & ~(align - 1);
  if (ptr + bsize < ptr || !ensureMemory(ptr + bsize)) return 0;
  brk = ptr + bsize;
  bytesInUse += bsize;
  return ptr;
}

/** Allocates and zeroes. */
export function kzalloc(size: usize): usize {
  const p = kmalloc(size);
  if (p != 0) memory.fill(p, 0, <usize>1 << sizeClass(size));
  return p;
}

/** Returns a block obtained from kmalloc(size) (same size) to its class. */
export function kfree(ptr: usize, size: usize): void {
  if (ptr == 0) return;
  const cls = sizeClass(size);
  store<usize>(ptr, unchecked(freeLists[cls]));
  unchecked(freeLists[cls] = ptr);
  bytesInUse -= <usize>1 << cls;
}

/**
 * krealloc for growing arrays: a block of newSize bytes holding the first
 * `used` bytes of ptr (a block of oldSize, or 0), which is freed. Returns 0,
 * leaving ptr untouched, when out of memory.
 */
export function krealloc(ptr: usize, oldSize: usize, newSize: usize, used: usize): usize {
  const p = kmalloc(newSize);
  if (p == 0) return 0;
  if (ptr != 0) {
    memory.copy(p, ptr, used);
    kfree(ptr, oldSize);
  }
  return p;
}

/** Bytes of live kmalloc blocks (tables, VMAs, caches...). */
export function heapBytesInUse(): usize { return bytesInUse; }

/** Total linear memory, for reports. */
export function heapBytesReserved(): usize { return <usize>memory.size() * WASM_PAGE; }
