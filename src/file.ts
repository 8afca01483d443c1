// Files: what mmap maps besides anonymous memory. A memfd is shmem (its pages
// are swap-backed); a regular file here has a page cache and, optionally, a
// ->page_mkwrite (write-notify) so shared writable mappings fault on first write.

import type { Core } from './core.js';
import { EmuError, shown, optionsArg } from './errors.js';
import { parseSize, PAGE_SIZE } from './units.js';
import { stepped, type StepOptions } from './step.js';

export const FILE_SHMEM = 1;
export const FILE_WRITENOTIFY = 2;
export const FILE_MKWRITE_HOOK = 4;
export const FILE_HUGE = 8;

/** What ->page_mkwrite is told: a write fault is about to make a page of a shared mapping writable. */
export interface PageMkwriteEvent {
  file: File;
  pgoff: number;
  pid: number;
  addr: number;
}

/**
 * A file's ->page_mkwrite. Return nothing (or 'ok') to let the write in,
 * 'block' to make the writer wait (the access reports `blocked: 'page-mkwrite'`
 * and can be retried later), or 'sigbus' to fail it.
 */
export type PageMkwriteHook = (ev: PageMkwriteEvent) => void | 'ok' | 'block' | 'sigbus';

/** Options of the dirty-tracking helpers. */
export interface MappingWalkOptions extends StepOptions {
  /**
   * walk_page_mapping stops the whole walk at the first VMA (in i_mmap
   * order) that the helper skips, e.g. a private mapping of the file: the
   * kernel's behaviour, kept by default. true walks on past it.
   */
  walkOnSkip?: boolean;
}

export interface CleanRecordOptions extends MappingWalkOptions {
  /** The pgoff that bit 0 of the bitmap stands for (bitmap_pgoff). Default 0. */
  bitmapOffset?: number;
  /** Where to set bits: any unsigned typed array, bits in little-endian order (the kernel's unsigned longs). Default: a new Uint8Array. */
  bitmap?: Uint8Array | Uint16Array | Uint32Array | BigUint64Array;
  /** The caller's range of set bits so far (start >= end: none set). Default 0, 0. */
  start?: number;
  end?: number;
}

export interface CleanRecordResult {
  /** PTEs cleaned (the kernel's return value). */
  cleaned: number;
  /** The bitmap the bits were set in (the caller's own when given). */
  bitmap: Uint8Array | Uint16Array | Uint32Array | BigUint64Array;
  /** The range of set bits after the call (start = nr, end = 0 when none was ever set). */
  start: number;
  end: number;
}

/** The largest bitmap cleanRecord works with (2^33 bits). */
const MAX_BITMAP_BYTES = 1 << 30;

/** What a page-cache slot holds. */
export type CacheSlot =
  | { state: 'empty' }
  | { state: 'page'; pfn: number }
  | { state: 'swapped'; slot: number };

export interface FileStats {
  /** Size in pages. */
  pages: number;
  /** Pages in the page cache. */
  cached: number;
  /** shmem pages out on swap. */
  swapped: number;
  /** ->page_mkwrite calls so far. */
  pageMkwrite: number;
}

export class File {
  /** @internal */ readonly core: Core;
  readonly id: number;
  readonly kind: 'memfd' | 'file';
  /** tmpfs huge=always: PMD-size folios in the page cache where the range allows. */
  readonly huge: boolean;
  private closed = false;

  /** @internal */
  constructor(core: Core, id: number, kind: 'memfd' | 'file', huge = false) {
    this.core = core;
    this.id = id;
    this.kind = kind;
    this.huge = huge;
  }

  /** @internal */
  assertOpen(arg = 'file'): void {
    if (this.closed) throw new EmuError('EINVAL', `${arg} has been closed`, arg);
  }

  /** Size in bytes. */
  get size(): number { this.assertOpen(); this.core.x.fileInfo(this.id); return this.core.result(0) * PAGE_SIZE; }

  get stats(): FileStats {
    this.assertOpen();
    this.core.x.fileInfo(this.id);
    return { pages: this.core.result(0), cached: this.core.result(1), swapped: this.core.result(2), pageMkwrite: this.core.result(3) };
  }

  /** ftruncate: shrinking unmaps the pages beyond the new size from every process and drops them. */
  truncate(size: number | bigint | string): void {
    this.assertOpen();
    const bytes = parseSize(size, 'size');
    if (bytes % PAGE_SIZE !== 0) throw new EmuError('EINVAL', `size ${bytes} is not a multiple of the page size`, 'size');
    this.core.x.fileTruncate(this.id, bytes / PAGE_SIZE);
  }

  /** The page-cache slot for a page index. */
  lookup(pgoff: number): CacheSlot {
    this.assertOpen();
    if (!Number.isSafeInteger(pgoff) || pgoff < 0) throw new EmuError('EINVAL', `pgoff must be a non-negative integer, got ${shown(pgoff)}`, 'pgoff');
    const k = this.core.x.fileLookup(this.id, pgoff);
    if (k === 1) return { state: 'page', pfn: this.core.result(0) };
    if (k === 2) return { state: 'swapped', slot: this.core.result(0) };
    return { state: 'empty' };
  }

  /**
   * wp_shared_mapping_range: write-protects every PTE that maps pages
   * [firstIndex, firstIndex + nr) in the shared writable mappings of this
   * file, in every process; returns how many were writable. One notifier
   * range and at most one TLB flush (of the PTEs changed) per mapping.
   */
  writeProtect(firstIndex: number, nr: number, opts: MappingWalkOptions = {}): number {
    optionsArg(opts);
    this.assertOpen();
    const o = checkWalkOptions(opts, ['onStep', 'walkOnSkip']);
    checkIndex(firstIndex, 'firstIndex');
    checkIndex(nr, 'nr');
    return stepped(this.core, o, () => this.core.x.fileWriteProtect(this.id, firstIndex, nr, o.walkOnSkip ? 1 : 0));
  }

  /**
   * clean_record_shared_mapping_range: cleans every dirty PTE mapping pages
   * [firstIndex, firstIndex + nr) in the shared writable mappings of this
   * file, sets bit (pgoff - bitmapOffset) for each, and widens [start, end)
   * over the set bits. PTEs keep their write permission: the next write
   * dirties them again without a fault.
   */
  cleanRecord(firstIndex: number, nr: number, opts: CleanRecordOptions = {}): CleanRecordResult {
    optionsArg(opts);
    this.assertOpen();
    const o = checkWalkOptions(opts, ['onStep', 'walkOnSkip', 'bitmapOffset', 'bitmap', 'start', 'end']);
    checkIndex(firstIndex, 'firstIndex');
    checkIndex(nr, 'nr');
    const offset = o.bitmapOffset ?? 0;
    checkIndex(offset, 'bitmapOffset');
    if (offset > firstIndex) throw new EmuError('EINVAL', `bitmapOffset ${offset} is above firstIndex ${firstIndex}: the bitmap must cover the range`, 'bitmapOffset');
    const start = o.start ?? 0, end = o.end ?? 0;
    checkIndex(start, 'start');
    checkIndex(end, 'end');
    // Bits [lo, hi) can be set. The core ORs whole 64-bit words (the kernel's unsigned
    // longs), so the words holding them travel to the core and back.
    const lo = firstIndex - offset, hi = lo + nr;
    const hiByte = Math.ceil(hi / 8);
    const loWord = Math.floor(lo / 64) * 8, hiWord = Math.ceil(hi / 64) * 8;
    // Bitmaps past 1 GiB are refused up front (a default one is allocated here, and the words travel to the core).
    if (hiWord - loWord > MAX_BITMAP_BYTES || (o.bitmap === undefined && hiByte > MAX_BITMAP_BYTES)) {
      throw new EmuError('EINVAL', `bits ${lo} to ${hi - 1} need a bitmap of more than 1 GiB: set bitmapOffset near firstIndex or make nr smaller`, nr / 8 > MAX_BITMAP_BYTES / 2 ? 'nr' : 'bitmapOffset');
    }
    let bitmap = o.bitmap;
    if (bitmap === undefined) bitmap = new Uint8Array(hiByte);
    else if (!isUnsignedArray(bitmap)) throw new EmuError('EINVAL', 'bitmap must be a Uint8Array, Uint16Array, Uint32Array or BigUint64Array', 'bitmap');
    if (bitmap.byteLength < hiByte) throw new EmuError('EINVAL', `bitmap has ${bitmap.byteLength} bytes; bits up to ${hi - 1} need ${hiByte}`, 'bitmap');
    const bytes = new Uint8Array(bitmap.buffer, bitmap.byteOffset, bitmap.byteLength).subarray(loWord, hiWord);
    const x = this.core.x;
    const size = Math.max(8, hiWord - loWord);
    const buf = x.allocBuffer(size);
    if (buf === 0) throw new EmuError('ENOMEM', 'no memory for the bitmap', 'bitmap');
    try {
      const inCore = (): Uint8Array => new Uint8Array(this.core.x.memory.buffer, buf >>> 0, size);
      inCore().fill(0).set(bytes);
      // The core indexes bits from bitmapOffset; the buffer starts at byte loWord (modular pointer arithmetic).
      const cleaned = stepped(this.core, o, () => x.fileCleanRecord(this.id, firstIndex, nr, offset, (buf - loWord) >>> 0, start, end, o.walkOnSkip ? 1 : 0));
      bytes.set(inCore().subarray(0, bytes.length));
      return { cleaned, bitmap, start: this.core.result(0), end: this.core.result(1) };
    } finally {
      this.core.x.freeBuffer(buf, size);
    }
  }

  /** Drops the caller's handle; the file lives on while mappings hold it. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.core.x.fileClose(this.id);
  }
}

function checkIndex(v: unknown, arg: string): asserts v is number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new EmuError('EINVAL', `${arg} must be a non-negative integer, got ${shown(v)}`, arg);
}

function checkWalkOptions<T extends MappingWalkOptions>(opts: T, keys: readonly string[]): T {
  if (opts === null || typeof opts !== 'object') throw new EmuError('EINVAL', 'options must be an object', 'opts');
  for (const k of Object.keys(opts)) if (!keys.includes(k)) throw new EmuError('EINVAL', `unknown option ${k}`, k);
  if (opts.walkOnSkip !== undefined && typeof opts.walkOnSkip !== 'boolean') throw new EmuError('EINVAL', 'walkOnSkip must be a boolean', 'walkOnSkip');
  return opts;
}

function isUnsignedArray(b: unknown): boolean {
  return b instanceof Uint8Array || b instanceof Uint16Array || b instanceof Uint32Array || b instanceof BigUint64Array;
}
