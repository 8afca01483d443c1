// /proc/PID/pagemap values (Documentation/admin-guide/mm/pagemap.rst).

import { EmuError } from './errors.js';

export const PM_PFRAME_MASK = (1n << 55n) - 1n;
export const PM_SOFT_DIRTY = 1n << 55n;
export const PM_MMAP_EXCLUSIVE = 1n << 56n;
export const PM_UFFD_WP = 1n << 57n;
export const PM_GUARD_REGION = 1n << 58n;
export const PM_FILE = 1n << 61n;
export const PM_SWAP = 1n << 62n;
export const PM_PRESENT = 1n << 63n;

/** One pagemap entry, decoded. */
export interface PagemapEntry {
  raw: bigint;
  present: boolean;
  swapped: boolean;
  /** Page-cache page or shared anonymous (shmem) page. */
  file: boolean;
  uffdWp: boolean;
  exclusive: boolean;
  softDirty: boolean;
  guard: boolean;
  /** Frame number when present. */
  pfn?: number;
  /** Swap type and offset when swapped (markers included: type 31). */
  swapType?: number;
  swapOffset?: number;
}

export function decodePagemap(raw: bigint): PagemapEntry {
  if (typeof raw !== 'bigint' || raw < 0n || raw >= 1n << 64n) throw new EmuError('EINVAL', 'raw must be a 64-bit bigint', 'raw');
  const e: PagemapEntry = {
    raw,
    present: (raw & PM_PRESENT) !== 0n,
    swapped: (raw & PM_SWAP) !== 0n,
    file: (raw & PM_FILE) !== 0n,
    uffdWp: (raw & PM_UFFD_WP) !== 0n,
    exclusive: (raw & PM_MMAP_EXCLUSIVE) !== 0n,
    softDirty: (raw & PM_SOFT_DIRTY) !== 0n,
    guard: (raw & PM_GUARD_REGION) !== 0n,
  };
  const frame = raw & PM_PFRAME_MASK;
  if (e.present) e.pfn = Number(frame);
  else if (e.swapped) { e.swapType = Number(frame & 31n); e.swapOffset = Number(frame >> 5n); }
  return e;
}
