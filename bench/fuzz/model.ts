// The reference model of the property fuzzer: what every page must contain
// and which accesses must fail, and nothing else. It knows no page tables,
// no frames, no THP, no swap, no TLBs: only the user-visible contract.
//
//  - A shared file (memfd, regular file, the shmem behind MAP_SHARED|MAP_ANONYMOUS)
//    is a map pgoff -> tag (absent: 0) and a size in pages.
//  - A process is a map page address -> its state: the mapping it belongs to,
//    its protection, MADV_DONTFORK, userfaultfd registration, and `priv`, the
//    content of a private page once it has one (anonymous pages, and private
//    file pages after copy-on-write).
//  - fork copies the map (minus DONTFORK pages, minus userfaultfd state);
//    whether a page is populated is not modelled: an access to a page
//    registered for missing faults may wait on the context (any time), and
//    UFFDIO_COPY then gives it content like a write;
//    munmap and exit drop entries; DONTNEED drops `priv` (anonymous pages read
//    0 again, private file pages read through the file again); MADV_REMOVE
//    punches the file; truncate drops the file's pages past the end and every
//    private copy of them (even_cows).

export const PAGE = 4096;

export type RegionKind = 'anon' | 'anon-shared' | 'file-shared' | 'file-private';
export type ProtName = 'r' | 'rw' | 'none';

/** A file's content. */
export class FileModel {
  readonly data = new Map<number, number>();
  constructor(readonly name: string, public size: number, readonly kind: 'memfd' | 'file' | 'shmem', readonly huge = false) {}
  get(pgoff: number): number { return this.data.get(pgoff) ?? 0; }
  set(pgoff: number, tag: number): void { this.data.set(pgoff, tag); }
  truncate(pages: number): void {
    for (const k of [...this.data.keys()]) if (k >= pages) this.data.delete(k);
    this.size = pages;
  }
  punch(pgoff: number): void { this.data.delete(pgoff); }
}

/** One mmap: where it was made and what it maps. */
export interface RegionModel {
  /** The name its mmap step gives it in a scenario (m0, m1, ...). */
  name: string;
  start: number;
  pages: number;
  kind: RegionKind;
  file?: FileModel;
  /** pgoff of the first page. */
  pgoff: number;
  /** VM_MAYWRITE: false for a MAP_SHARED mapping of a file opened read-only. */
  maywrite: boolean;
}

export interface PageModel {
  reg: RegionModel;
  prot: ProtName;
  dontfork: boolean;
  /** Content of a private page (anonymous, or a private file page after COW). */
  priv?: number;
  /** Registered for userfaultfd write-protect in this process's context. */
  uffd: boolean;
  /** Registered for userfaultfd missing faults: an access to it while unpopulated waits on the context. */
  missing: boolean;
  /** Possibly write-protected by that context (false: certainly not). */
  wp: boolean;
}

export type Expected =
  | { ok: true; tag: number }
  | { ok: false; signal: 'SIGSEGV' | 'SIGBUS'; code: 'SEGV_MAPERR' | 'SEGV_ACCERR' | 'BUS_ADRERR' };

export class ProcModel {
  readonly pages = new Map<number, PageModel>();
  /** Mappings this process made or inherited, in order: ops refer to them by index. */
  regions: RegionModel[] = [];
  constructor(readonly name: string) {}

  page(addr: number): PageModel | undefined { return this.pages.get(addr); }

  pgoffOf(pg: PageModel, addr: number): number { return pg.reg.pgoff + (addr - pg.reg.start) / PAGE; }

  /** What the page holds, if it can be read. */
  content(addr: number): number {
    const pg = this.pages.get(addr);
    if (!pg) return 0;
    if (pg.priv !== undefined) return pg.priv;
    return pg.reg.file ? pg.reg.file.get(this.pgoffOf(pg, addr)) : 0;
  }

  /** The outcome of a user read or write of addr. */
  access(addr: number, write: boolean): Expected {
    const pg = this.pages.get(addr);
    if (!pg) return { ok: false, signal: 'SIGSEGV', code: 'SEGV_MAPERR' };
    if (pg.prot === 'none' || (write && pg.prot !== 'rw')) return { ok: false, signal: 'SIGSEGV', code: 'SEGV_ACCERR' };
    if (pg.reg.file && this.pgoffOf(pg, addr) >= pg.reg.file.size) return { ok: false, signal: 'SIGBUS', code: 'BUS_ADRERR' };
    return { ok: true, tag: this.content(addr) };
  }

  /** A write (or DMA write through a write pin) of tag landed. */
  write(addr: number, tag: number): void {
    const pg = this.pages.get(addr)!;
    if (pg.reg.kind === 'anon' || pg.reg.kind === 'file-private') pg.priv = tag;
    else pg.reg.file!.set(this.pgoffOf(pg, addr), tag);
  }

  /** Copy-on-write of a private file page without a content change (write pin, device write fault). */
  breakCow(addr: number): void {
    const pg = this.pages.get(addr);
    if (pg && pg.reg.kind === 'file-private' && pg.priv === undefined) pg.priv = this.content(addr);
  }

  mapped(addr: number, n: number): boolean {
    for (let i = 0; i < n; i++) if (!this.pages.has(addr + i * PAGE)) return false;
    return true;
  }

  /** mmap: false (EEXIST) if it overlaps without fixed. */
  mmap(reg: RegionModel, prot: ProtName, fixed: boolean): boolean {
    if (!fixed) for (let i = 0; i < reg.pages; i++) if (this.pages.has(reg.start + i * PAGE)) return false;
    for (let i = 0; i < reg.pages; i++) this.pages.set(reg.start + i * PAGE, { reg, prot, dontfork: false, uffd: false, missing: false, wp: false });
    this.regions.push(reg);
    return true;
  }

  munmap(addr: number, n: number): void {
    for (let i = 0; i < n; i++) this.pages.delete(addr + i * PAGE);
  }

  /** mprotect's error, or null once applied. */
  mprotect(addr: number, n: number, prot: ProtName): 'ENOMEM' | 'EACCES' | null {
    if (!this.mapped(addr, n)) return 'ENOMEM';
    for (let i = 0; i < n; i++) if (prot === 'rw' && !this.pages.get(addr + i * PAGE)!.reg.maywrite) return 'EACCES';
    for (let i = 0; i < n; i++) this.pages.get(addr + i * PAGE)!.prot = prot;
    return null;
  }

  /** madvise's error, or null once applied. */
  madvise(addr: number, n: number, advice: string): 'ENOMEM' | 'EINVAL' | 'EACCES' | null {
    if (!this.mapped(addr, n)) return 'ENOMEM';
    const pages = Array.from({ length: n }, (_, i) => [addr + i * PAGE, this.pages.get(addr + i * PAGE)!] as const);
    switch (advice) {
      case 'dontneed':
        for (const [, pg] of pages) delete pg.priv;
        return null;
      case 'remove':
        for (const [, pg] of pages) {
          if (pg.reg.kind === 'anon') return 'EINVAL';
          if (pg.reg.kind === 'file-private' || !pg.reg.maywrite) return 'EACCES';
        }
        for (const [a, pg] of pages) pg.reg.file!.punch(this.pgoffOf(pg, a));
        return null;
      case 'dontfork': for (const [, pg] of pages) pg.dontfork = true; return null;
      case 'dofork': for (const [, pg] of pages) pg.dontfork = false; return null;
      default: return null;   // pageout, hugepage, nohugepage: no content change
    }
  }

  /** The child of a fork: every page but DONTFORK ones, private contents copied, no userfaultfd state. */
  fork(name: string): ProcModel {
    const c = new ProcModel(name);
    for (const [a, pg] of this.pages) if (!pg.dontfork) c.pages.set(a, { ...pg, uffd: false, missing: false, wp: false });
    c.regions = [...this.regions];
    return c;
  }
}

/** Every process and file. */
export class Model {
  procs: ProcModel[] = [];
  files: FileModel[] = [];

  /** ftruncate: the file's pages past the end go, and so do private copies of them (even_cows). */
  truncate(f: FileModel, pages: number): void {
    f.truncate(pages);
    for (const p of this.procs) {
      for (const [a, pg] of p.pages) {
        if (pg.reg.file === f && pg.reg.kind === 'file-private' && p.pgoffOf(pg, a) >= pages) delete pg.priv;
      }
    }
  }
}
