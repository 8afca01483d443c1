// Files: what mmap maps besides anonymous memory. A memfd is shmem (its pages
// are swap-backed); a regular file here has a page cache and, optionally, a
// ->page_mkwrite (write-notify) so shared writable mappings fault on first write.

import type { Core } from './core.js';
import { EmuError } from './errors.js';
import { parseSize, PAGE_SIZE } from './units.js';

export const FILE_SHMEM = 1;
export const FILE_WRITENOTIFY = 2;

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
  private closed = false;

  /** @internal */
  constructor(core: Core, id: number, kind: 'memfd' | 'file') {
    this.core = core;
    this.id = id;
    this.kind = kind;
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
    if (!Number.isSafeInteger(pgoff) || pgoff < 0) throw new EmuError('EINVAL', `pgoff must be a non-negative integer, got ${pgoff}`, 'pgoff');
    const k = this.core.x.fileLookup(this.id, pgoff);
    if (k === 1) return { state: 'page', pfn: this.core.result(0) };
    if (k === 2) return { state: 'swapped', slot: this.core.result(0) };
    return { state: 'empty' };
  }

  /** Drops the caller's handle; the file lives on while mappings hold it. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.core.x.fileClose(this.id);
  }
}
