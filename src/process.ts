// A process: one mm (address space) of a Machine. Every method validates its
// arguments completely before the core is called, so a thrown EmuError means
// nothing changed.

import type { Machine } from './machine.js';
import type { Core } from './core.js';
import { EmuError, shown, ownEntry, optionsArg } from './errors.js';
import { type Addr, toBigAddr, checkUserRange, checkAligned } from './addr.js';
import { parseSize, PAGE_SIZE, type Size } from './units.js';
import { File } from './file.js';
import { decodePagemap, type PagemapEntry } from './pagemap.js';
import { LEVEL_NAMES, type DecodedEntry, type EntryLevel } from './arch.js';
import { formatDump } from './dump.js';
import { Cpu, type HitLevel } from './cpu.js';
import { stepped, type StepOptions } from './step.js';
import { Userfaultfd, type UffdFeature } from './userfaultfd.js';

export const VM_READ = 0x1;
export const VM_WRITE = 0x2;
export const VM_EXEC = 0x4;
export const VM_SHARED = 0x8;
export const VM_MAYREAD = 0x10;
export const VM_MAYWRITE = 0x20;
export const VM_MAYEXEC = 0x40;
export const VM_MAYSHARE = 0x80;
export const VM_DONTCOPY = 0x20000;
export const VM_SOFTDIRTY = 0x8000000;
export const VM_HUGEPAGE = 0x20000000;
export const VM_NOHUGEPAGE = 0x40000000;

/** Protection: any combination of the letters r, w, x (e.g. 'rw', 'r-x'), or 'none'. */
export type Prot = string;

export interface MmapOptions {
  /** Where to map. Without `fixed`, an overlap fails with EEXIST (MAP_FIXED_NOREPLACE). */
  addr?: Addr;
  length: Size;
  prot?: Prot;
  /** MAP_SHARED (anonymous shared memory is shmem, as in the kernel). */
  shared?: boolean;
  file?: File;
  /** File offset in bytes, page-aligned. */
  offset?: Size;
  /** MAP_FIXED: replace whatever is mapped there. */
  fixed?: boolean;
  /**
   * How the file descriptor was opened. 'rdonly' (O_RDONLY): PROT_WRITE is
   * EACCES, and MAP_SHARED maps without VM_SHARED and VM_MAYWRITE, as the
   * kernel does, so the mapping can never become writable. Default 'rdwr'.
   */
  openMode?: 'rdwr' | 'rdonly';
}

export interface Mapping {
  start: number;
  end: number;
  length: number;
  /** Exact bounds, for addresses beyond 2^53 on 5-level machines. */
  startBig: bigint;
  endBig: bigint;
}

/** madvise advice. 'remove' (MADV_REMOVE) punches a hole in the file of a shared writable mapping. */
export type Advice = 'dontneed' | 'remove' | 'pageout' | 'dontfork' | 'dofork' | 'hugepage' | 'nohugepage';
const ADVICE: Record<Advice, number> = { dontneed: 4, remove: 9, dontfork: 10, dofork: 11, hugepage: 14, nohugepage: 15, pageout: 21 };

/** What can be written to /proc/PID/clear_refs (CLEAR_REFS_MM_HIWATER_RSS is not modelled). */
export type ClearRefs = 'all' | 'anon' | 'mapped' | 'soft-dirty';
const CLEAR_REFS: Record<string, number> = { all: 1, anon: 2, mapped: 3, 'soft-dirty': 4 };

/** PAGEMAP_SCAN page categories (PAGE_IS_*). */
export type PageCategory = 'wp-allowed' | 'written' | 'file' | 'present' | 'swapped' | 'pfn-zero' | 'huge' | 'soft-dirty' | 'guard';
const CATEGORIES: readonly PageCategory[] = ['wp-allowed', 'written', 'file', 'present', 'swapped', 'pfn-zero', 'huge', 'soft-dirty', 'guard'];

export interface PagemapScanOptions {
  start: Addr;
  end: Addr;
  categoryMask?: PageCategory[];
  categoryInverted?: PageCategory[];
  categoryAnyof?: PageCategory[];
  returnMask: PageCategory[];
  /** PM_SCAN_WP_MATCHING. */
  wpMatching?: boolean;
  /** PM_SCAN_CHECK_WPASYNC. */
  checkWpAsync?: boolean;
  /** Stop after this many pages (0: no limit). */
  maxPages?: number;
  /** Room for this many regions (vec_len). Default 1024. */
  maxRegions?: number;
}

export interface ScanRegion { start: number; end: number; categories: readonly PageCategory[] }

function categoryBits(names: unknown, arg: string): number {
  if (names === undefined) return 0;
  if (!Array.isArray(names)) throw new EmuError('EINVAL', `${arg} must be an array of categories`, arg);
  let bits = 0;
  for (const n of names) {
    const i = CATEGORIES.indexOf(n as PageCategory);
    if (i < 0) throw new EmuError('EINVAL', `${arg}: unknown category ${shown(n)}`, arg);
    bits |= 1 << i;
  }
  return bits;
}

/** The names of a category set; one frozen array per set, shared by every region that has it. */
const categoryNameSets = new Map<number, readonly PageCategory[]>();
function categoryNames(bits: number): readonly PageCategory[] {
  let names = categoryNameSets.get(bits);
  if (!names) {
    names = Object.freeze(CATEGORIES.filter((_, i) => (bits & (1 << i)) !== 0));
    categoryNameSets.set(bits, names);
  }
  return names;
}

/** PAGEMAP_SCAN's region records (start u64 | end u64 | categories u64, from 32-bit word w0); addresses stay below 2^53. */
function decodeRegions(w: Uint32Array, w0: number, n: number): ScanRegion[] {
  const regions: ScanRegion[] = [];
  for (let i = 0, r = w0; i < n; i++, r += 6) {
    regions.push({ start: w[r]! + w[r + 1]! * 0x1_0000_0000, end: w[r + 2]! + w[r + 3]! * 0x1_0000_0000, categories: categoryNames(w[r + 4]!) });
  }
  return regions;
}

export type Signal = 'SIGSEGV' | 'SIGBUS';
export type SignalCode = 'SEGV_MAPERR' | 'SEGV_ACCERR' | 'BUS_ADRERR' | 'BUS_MCEERR_AR' | 'OOM';

/**
 * What a faulting access waits on instead of completing: the page-table lock
 * of an operation stopped at a yield point (onStep), or ->page_mkwrite
 * making the writer wait. Nothing happened; retry the access later.
 */
export type BlockedOn = 'page-table-lock' | 'page-mkwrite' | 'userfaultfd';
const BLOCKED: Record<number, BlockedOn> = { 1: 'page-table-lock', 2: 'page-mkwrite', 3: 'userfaultfd' };
const ACCESS_BLOCKED = 6;

/** The outcome of a user access: failures are values, as on real hardware. */
export type AccessResult =
  | { ok: true; tag: number; pfn: number; faults: number; signal?: undefined; blocked?: undefined }
  | { ok: false; signal: Signal; code: SignalCode; addr: bigint; faults: number; blocked?: undefined }
  | { ok: false; blocked: BlockedOn; addr: bigint; faults: number; signal?: undefined; code?: undefined };

export type TouchResult =
  | { ok: true; pages: number }
  | { ok: false; pages: number; signal: Signal; code: SignalCode; addr: bigint; blocked?: undefined }
  | { ok: false; pages: number; blocked: BlockedOn; addr: bigint; signal?: undefined; code?: undefined };

export interface Rss { anon: number; file: number; shmem: number; swap: number }

export interface VmaInfo {
  start: number;
  end: number;
  prot: string;
  shared: boolean;
  flags: number;
  /** Mapped file id, 0 for anonymous. */
  file: number;
  pgoff: number;
}

const SIGNALS: Record<number, { signal: Signal; code: SignalCode }> = {
  1: { signal: 'SIGSEGV', code: 'SEGV_MAPERR' },
  2: { signal: 'SIGSEGV', code: 'SEGV_ACCERR' },
  3: { signal: 'SIGBUS', code: 'BUS_ADRERR' },
  4: { signal: 'SIGBUS', code: 'OOM' },
  5: { signal: 'SIGBUS', code: 'BUS_MCEERR_AR' },
};

/**
 * Checks that `p` is a live process of `machine` (argument `arg`): every API
 * taking a process goes through here, so a process of another machine, an
 * exited one or a non-process is an EINVAL naming the argument.
 */
export function liveProcessOf(machine: Machine, p: unknown, arg = 'p'): Process {
  if (!(p instanceof Process) || p.machine !== machine) throw new EmuError('EINVAL', `${arg} must be a process of this machine`, arg);
  if (p.exited) throw new EmuError('EINVAL', `${arg}: process ${p.pid} has exited`, arg);
  return p;
}
/** One pagemap buffer of 8 bytes per page stays under 512 MiB of the core's memory. */
const MAX_PAGEMAP_PAGES = 1 << 26;

export function parseProt(prot: unknown, arg = 'prot'): number {
  if (prot === undefined) return VM_READ | VM_WRITE;
  if (typeof prot !== 'string') throw new EmuError('EINVAL', `${arg} must be a string like 'rw' or 'none', got ${typeof prot}`, arg);
  if (prot === 'none' || prot === '') return 0;
  let v = 0;
  for (const c of prot) {
    if (c === 'r') v |= VM_READ;
    else if (c === 'w') v |= VM_WRITE;
    else if (c === 'x') v |= VM_EXEC;
    else if (c !== '-') throw new EmuError('EINVAL', `${arg} has unknown protection letter ${JSON.stringify(c)} in ${JSON.stringify(prot)}`, arg);
  }
  return v;
}

function checkTag(tag: unknown): number {
  if (typeof tag !== 'number' || !Number.isInteger(tag) || tag < 0 || tag > 0xffffffff) {
    throw new EmuError('EINVAL', `tag must be a 32-bit unsigned integer, got ${shown(tag)}`, 'tag');
  }
  return tag;
}

export class Process {
  readonly machine: Machine;
  /** The mm id, used as the pid. */
  readonly pid: number;
  private readonly core: Core;
  private alive = true;

  /** @internal */
  constructor(machine: Machine, core: Core, pid: number) {
    this.machine = machine;
    this.core = core;
    this.pid = pid;
  }

  private live(): void {
    if (!this.alive) throw new EmuError('EINVAL', `process ${this.pid} has exited`, 'process');
  }

  /** Validates (addr, len) for a range syscall and returns page numbers. */
  private range(addr: unknown, len: unknown, code: 'EINVAL' | 'ENOMEM'): { vpn: number; pages: number; start: bigint; bytes: bigint } {
    const start = toBigAddr(addr, 'addr');
    checkAligned(start, 'addr');
    const n = parseSize(len, 'length');
    if (n === 0) throw new EmuError('EINVAL', 'length must not be zero', 'length');
    const bytes = (BigInt(n) + 0xfffn) & ~0xfffn;
    checkUserRange(this.machine.geometry, start, bytes, 'addr', code);
    return { vpn: Number(start >> 12n), pages: Number(bytes >> 12n), start, bytes };
  }

  mmap(opts: MmapOptions): Mapping {
    optionsArg(opts);
    this.live();
    if (opts === null || typeof opts !== 'object') throw new EmuError('EINVAL', 'mmap needs an options object', 'opts');
    for (const k of Object.keys(opts)) {
      if (!['addr', 'length', 'prot', 'shared', 'file', 'offset', 'fixed', 'openMode'].includes(k)) throw new EmuError('EINVAL', `unknown mmap option ${k}`, k);
    }
    const prot = parseProt(opts.prot);
    const len = parseSize(opts.length, 'length');
    if (len === 0) throw new EmuError('EINVAL', 'length must not be zero', 'length');
    const bytes = (BigInt(len) + 0xfffn) & ~0xfffn;
    const pages = Number(bytes >> 12n);
    const shared = opts.shared === true;
    const offset = opts.offset === undefined ? 0 : parseSize(opts.offset, 'offset');
    if (offset % PAGE_SIZE !== 0) throw new EmuError('EINVAL', `offset ${offset} is not page-aligned`, 'offset');
    let file = opts.file;
    if (file !== undefined) {
      if (!(file instanceof File) || file.core !== this.core) throw new EmuError('EINVAL', 'file must be a File of this machine', 'file');
      file.assertOpen('file');
    } else if (offset !== 0) {
      throw new EmuError('EINVAL', 'offset is only meaningful with a file', 'offset');
    }
    const openMode = opts.openMode ?? 'rdwr';
    if (openMode !== 'rdwr' && openMode !== 'rdonly') throw new EmuError('EINVAL', `openMode must be 'rdwr' or 'rdonly', got ${shown(openMode)}`, 'openMode');
    if (openMode === 'rdonly') {
      if (!file) throw new EmuError('EINVAL', 'openMode is only meaningful with a file', 'openMode');
      if (shared && (prot & VM_WRITE) !== 0) throw new EmuError('EACCES', 'PROT_WRITE on a MAP_SHARED mapping of a file opened read-only', 'prot');
    }
    const g = this.machine.geometry;
    let start: bigint;
    if (opts.addr !== undefined) {
      start = toBigAddr(opts.addr, 'addr');
      checkAligned(start, 'addr');
      checkUserRange(g, start, bytes, 'addr', 'ENOMEM');
      if (start < 65536n) throw new EmuError('EPERM', `addr 0x${start.toString(16)} is below mmap_min_addr (0x10000)`, 'addr');
    } else {
      // THP-able anonymous private mappings of whole PMDs are PMD-aligned (thp_get_unmapped_area),
      // and so are mappings of huge tmpfs files at 2 MiB-aligned offsets (shmem_get_unmapped_area).
      const pmdSized = bytes % (2n << 20n) === 0n;
      const align = (!file && !shared && pmdSized) || (file?.huge && bytes >= 2n << 20n && offset % (2 << 20) === 0) ? 512 : 1;
      const vpn = this.core.x.unmappedArea(this.pid, pages, align, Number(this.machine.mmapBase >> 12n));
      if (vpn === 0) throw new EmuError('ENOMEM', `no free range of ${bytes} bytes in the address space`, 'length');
      start = BigInt(vpn) << 12n;
    }

    let flags = prot | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC;
    if (shared) flags |= VM_SHARED | VM_MAYSHARE;
    if (shared && openMode === 'rdonly') flags &= ~(VM_MAYWRITE | VM_SHARED);
    let fileId = 0;
    let ownFile: File | undefined;
    if (file) {
      fileId = file.id;
    } else if (shared) {
      // Shared anonymous memory is an unnamed shmem file (shmem_zero_setup).
      ownFile = this.machine.memfd({ size: Number(bytes) });
      fileId = ownFile.id;
    }
    const r = this.core.x.mmap(this.pid, Number(start >> 12n), pages, flags, fileId, offset / PAGE_SIZE, opts.fixed === true ? 1 : 0);
    ownFile?.close();
    if (r < 0) {
      if (r === -17) throw new EmuError('EEXIST', `range 0x${start.toString(16)}+0x${bytes.toString(16)} overlaps an existing mapping (use fixed: true to replace)`, 'addr');
      throw EmuError.fromErrno(r, `mmap at 0x${start.toString(16)} failed`, 'length');
    }
    const end = start + bytes;
    return { start: Number(start), end: Number(end), length: Number(bytes), startBig: start, endBig: end };
  }

  munmap(addr: Addr, length: Size): void {
    this.live();
    const r = this.range(addr, length, 'EINVAL');
    const e = this.core.x.munmap(this.pid, r.vpn, r.pages);
    if (e < 0) throw EmuError.fromErrno(e, 'munmap failed', 'addr');
  }

  mprotect(addr: Addr, length: Size, prot: Prot): void {
    this.live();
    const p = parseProt(prot);
    const r = this.range(addr, length, 'ENOMEM');
    const e = this.core.x.mprotect(this.pid, r.vpn, r.pages, p);
    if (e === -12) throw new EmuError('ENOMEM', `range 0x${r.start.toString(16)}+0x${r.bytes.toString(16)} is not fully mapped`, 'addr');
    if (e === -13) throw new EmuError('EACCES', `protection ${prot} exceeds what the mapping allows`, 'prot');
    if (e < 0) throw EmuError.fromErrno(e, 'mprotect failed', 'addr');
  }

  madvise(addr: Addr, length: Size, advice: Advice): void {
    this.live();
    const a = ownEntry(ADVICE, advice);
    if (a === undefined) {
      throw new EmuError('EINVAL', `unknown advice ${shown(advice)} (${Object.keys(ADVICE).join(', ')})`, 'advice');
    }
    const r = this.range(addr, length, 'ENOMEM');
    const e = this.core.x.madvise(this.pid, r.vpn, r.pages, a);
    if (e === -12) throw new EmuError('ENOMEM', `range 0x${r.start.toString(16)}+0x${r.bytes.toString(16)} is not fully mapped`, 'addr');
    if (e < 0) throw EmuError.fromErrno(e, `madvise ${advice} failed`, 'addr');
  }

  /**
   * Writing to /proc/PID/clear_refs. 'soft-dirty' (4): every present entry
   * is write-protected and loses its soft-dirty bit (x86 bit 11), VMAs lose
   * VM_SOFTDIRTY, so the next write to a page faults and marks it again
   * (pagemap bit 55); DMA-pinned pages of private mappings are left alone.
   * 'all' / 'anon' / 'mapped' (1/2/3) clear the accessed bit. Takes onStep.
   */
  clearRefs(what: ClearRefs, opts: StepOptions = {}): void {
    this.live();
    const type = ownEntry(CLEAR_REFS, what);
    if (type === undefined) throw new EmuError('EINVAL', `clear_refs takes 'soft-dirty', 'all', 'anon' or 'mapped', got ${shown(what)}`, 'what');
    stepped(this.core, opts, () => this.core.x.clearRefs(this.pid, type));
  }

  /**
   * The PAGEMAP_SCAN ioctl on /proc/PID/pagemap: the pages of [start, end)
   * whose categories match (`categoryMask` all, `categoryAnyof` at least
   * one, after `categoryInverted`), as regions of adjacent pages with the
   * same `returnMask`ed categories. `wpMatching` write-protects what it
   * reports (uffd-wp, in VMAs registered with an async write-protect
   * userfaultfd: others are skipped); `checkWpAsync` makes such VMAs EPERM.
   * `maxPages` and `maxRegions` stop the walk early; `walkEnd` says where.
   */
  pagemapScan(opts: PagemapScanOptions): { regions: ScanRegion[]; walkEnd: number } {
    optionsArg(opts);
    this.live();
    if (opts === null || typeof opts !== 'object') throw new EmuError('EINVAL', 'pagemapScan needs an options object', 'opts');
    const start = toBigAddr(opts.start, 'start'), end = (toBigAddr(opts.end, 'end') + 0xfffn) & ~0xfffn;
    if (start & 0xfffn) throw new EmuError('EINVAL', 'start must be page-aligned', 'start');
    if (end < start) throw new EmuError('EINVAL', 'end must not be below start', 'end');
    checkUserRange(this.machine.geometry, start, end - start, 'start', 'EINVAL');
    const mask = categoryBits(opts.categoryMask, 'categoryMask'), inverted = categoryBits(opts.categoryInverted, 'categoryInverted');
    const anyof = categoryBits(opts.categoryAnyof, 'categoryAnyof'), ret = categoryBits(opts.returnMask, 'returnMask');
    if (ret === 0) throw new EmuError('EINVAL', 'returnMask must name at least one category', 'returnMask');
    const maxPages = opts.maxPages ?? 0, maxRegions = opts.maxRegions ?? 1024;
    if (!Number.isSafeInteger(maxPages) || maxPages < 0) throw new EmuError('EINVAL', 'maxPages must be a non-negative integer', 'maxPages');
    if (!Number.isInteger(maxRegions) || maxRegions < 1 || maxRegions > 1 << 20) throw new EmuError('EINVAL', 'maxRegions must be an integer in [1, 2^20]', 'maxRegions');
    const flags = (opts.wpMatching ? 1 : 0) | (opts.checkWpAsync ? 2 : 0);
    const x = this.core.x;
    const buf = x.allocBuffer(maxRegions * 24);
    if (buf === 0) throw new EmuError('ENOMEM', 'no memory for the regions', 'maxRegions');
    try {
      const n = x.pagemapScanRange(this.pid, Number(start >> 12n), Number((end - start) >> 12n), flags, inverted, mask, anyof, ret, maxPages, buf, maxRegions);
      if (n === -1) throw new EmuError('EPERM', 'a VMA of the range is not registered with an async write-protect userfaultfd', 'checkWpAsync');
      if (n < 0) throw EmuError.fromErrno(n, 'pagemapScan failed', 'start');
      const walkEnd = this.core.result(0) * PAGE_SIZE;
      return { regions: decodeRegions(this.core.words(), buf >>> 2, n), walkEnd };
    } finally {
      x.freeBuffer(buf, maxRegions * 24);
    }
  }

  /** userfaultfd(2): a context whose registered ranges report faults as messages. */
  userfaultfd(opts: { features?: UffdFeature[] } = {}): Userfaultfd {
    optionsArg(opts);
    this.live();
    if (opts === null || typeof opts !== 'object') throw new EmuError('EINVAL', 'options must be an object', 'opts');
    const features = opts.features ?? [];
    if (!Array.isArray(features)) throw new EmuError('EINVAL', 'features must be an array', 'features');
    return new Userfaultfd(this.core, this, features);
  }

  /** exit_mmap: everything unmapped, every table freed. The process object is dead afterwards. */
  exit(): void {
    this.live();
    if (this.core.x.mmExit(this.pid) < 0) throw new EmuError('ENOMEM', 'no memory for the exit flush bookkeeping', 'process');
    this.alive = false;
    this.machine.forget(this);
  }

  get exited(): boolean { return !this.alive; }

  /**
   * fork(): a child with a copy of every VMA but the MADV_DONTFORK ones.
   * Private pages are shared copy-on-write (both sides read-only), except
   * pages that may be DMA-pinned, which the child gets copies of at once
   * (the machine's `era` says which rule decides). `lastFork` reports the
   * EAGAIN/prealloc rounds and early copies.
   */
  fork(): Process {
    this.live();
    const id = this.core.x.mmFork(this.pid, this.machine.options.era === 'seed' ? 1 : 0);
    if (id < 0) throw new EmuError('ENOMEM', 'no memory to copy the address space; the parent is unchanged and no child exists', 'process');
    this.lastFork = { retries: this.core.result(0), earlyCopies: this.core.result(1) };
    return this.machine.adopt(id);
  }

  /** Counters of this process's last fork. */
  lastFork: { retries: number; earlyCopies: number } = { retries: 0, earlyCopies: 0 };

  /** MMF_HAS_PINNED: set by the first FOLL_PIN on this mm and never cleared. */
  get hasPinned(): boolean { return (this.core.x.mmFlags(this.pid) & 1) !== 0; }

  /** @internal One access on a CPU (kind 0 read, 1 write, 2 exec). */
  accessOn(cpu: number, addr: unknown, kind: number, tag: number): AccessResult & { hit?: HitLevel } {
    this.live();
    checkTag(tag);
    const a = toBigAddr(addr, 'addr');
    if (a >= this.machine.geometry.taskSize) {
      return { ok: false, signal: 'SIGSEGV', code: 'SEGV_MAPERR', addr: a, faults: 1 };
    }
    const r = this.core.x.access(cpu, this.pid, Number(a >> 12n), kind, tag);
    this.core.takeHookError();
    const faults = this.core.result(2);
    const hit = Cpu.hitName(this.core.result(3));
    if (r === 0) return { ok: true, tag: this.core.result(1), pfn: this.core.result(0), faults, ...(hit ? { hit } : {}) };
    if (r === ACCESS_BLOCKED) return { ok: false, blocked: BLOCKED[this.core.result(4)]!, addr: a, faults };
    const s = SIGNALS[r] ?? { signal: 'SIGBUS', code: 'BUS_ADRERR' };
    return { ok: false, ...s, addr: a, faults };
  }

  /** A user read on a CPU (default 0): the page's content tag, or the signal the process would get. */
  read(addr: Addr, opts: { cpu?: number } = {}): AccessResult {
    optionsArg(opts);
    return this.accessOn(this.machine.cpuIndex(opts.cpu), addr, 0, 0);
  }

  /** A user write of a content tag (a 32-bit stand-in for the page's bytes). */
  write(addr: Addr, tag: number, opts: { cpu?: number } = {}): AccessResult {
    optionsArg(opts);
    return this.accessOn(this.machine.cpuIndex(opts.cpu), addr, 1, checkTag(tag));
  }

  /** Reads or writes every page of [addr, addr+length) in one call into the core. Writes store `tag`. */
  touch(addr: Addr, length: Size, kind: 'r' | 'w' = 'r', tag = 0, opts: { cpu?: number } = {}): TouchResult {
    optionsArg(opts);
    this.live();
    const cpu = this.machine.cpuIndex(opts.cpu);
    if (kind !== 'r' && kind !== 'w') throw new EmuError('EINVAL', `kind must be 'r' or 'w', got ${shown(kind)}`, 'kind');
    checkTag(tag);
    const start = toBigAddr(addr, 'addr');
    const n = parseSize(length, 'length');
    const first = start >> 12n;
    const last = (start + BigInt(n) + 0xfffn) >> 12n;
    const pages = Number(last - first);
    if (pages === 0) return { ok: true, pages: 0 };
    checkUserRange(this.machine.geometry, first << 12n, BigInt(pages) << 12n, 'addr', 'EINVAL');
    const r = this.core.x.touch(cpu, this.pid, Number(first), pages, kind === 'w' ? 1 : 0, tag);
    this.core.takeHookError();
    const done = this.core.result(0);
    if (r === 0) return { ok: true, pages: done };
    if (r === ACCESS_BLOCKED) return { ok: false, pages: done, blocked: BLOCKED[this.core.result(1)]!, addr: (first + BigInt(done)) << 12n };
    const s = SIGNALS[r] ?? { signal: 'SIGBUS', code: 'BUS_ADRERR' };
    return { ok: false, pages: done, ...s, addr: (first + BigInt(done)) << 12n };
  }

  /** /proc/PID/pagemap for the page holding addr, decoded. */
  pagemap(addr: Addr): PagemapEntry {
    return decodePagemap(this.pagemapRange(addr, PAGE_SIZE)[0]!);
  }

  /** /proc/PID/pagemap for every page of [addr, addr+length): one raw value per page. */
  pagemapRange(addr: Addr, length: Size): BigUint64Array {
    this.live();
    const start = toBigAddr(addr, 'addr') & ~0xfffn;
    const n = parseSize(length, 'length');
    const pages = Number((BigInt(n) + 0xfffn) >> 12n);
    if (pages === 0) return new BigUint64Array(0);
    if (pages > MAX_PAGEMAP_PAGES) throw new EmuError('EINVAL', `length covers ${pages} pages; read at most ${MAX_PAGEMAP_PAGES} per call`, 'length');
    checkUserRange(this.machine.geometry, start, BigInt(pages) << 12n, 'addr', 'EINVAL');
    const ptr = this.core.x.pagemap(this.pid, Number(start >> 12n), pages);
    if (ptr === 0) throw new EmuError('ENOMEM', 'no memory for the pagemap buffer', 'length');
    const out = this.core.copyU64(ptr, pages);
    this.core.x.freeBuffer(ptr, pages * 8);
    return out;
  }

  /** The entry that maps addr, at whatever level maps it (a none entry reports the level where the walk stopped). */
  entry(addr: Addr): DecodedEntry {
    this.live();
    const a = toBigAddr(addr, 'addr');
    checkUserRange(this.machine.geometry, a & ~0xfffn, 4096n, 'addr', 'EINVAL');
    const level = this.core.x.entryAt(this.pid, Number(a >> 12n));
    return this.machine.arch.decode(this.core.resultBig(0), this.levelName(level));
  }

  /** Level names of this machine: the top table is the PGD (on 4 levels the P4D is folded into it). */
  private levelName(level: number): EntryLevel {
    return level === this.machine.options.levels - 1 ? 'pgd' : LEVEL_NAMES[level]!;
  }

  /**
   * The page walk the MMU does for addr: the entry read at each level, from
   * the top table down to the leaf (or to the none / non-table entry that
   * ends the walk).
   */
  pageWalk(addr: Addr): DecodedEntry[] {
    this.live();
    const a = toBigAddr(addr, 'addr');
    checkUserRange(this.machine.geometry, a & ~0xfffn, 4096n, 'addr', 'EINVAL');
    const n = this.core.x.entryPath(this.pid, Number(a >> 12n));
    const raws = Array.from({ length: n }, (_, i) => this.core.resultBig(i));
    const top = this.machine.options.levels - 1;
    return raws.map((raw, i) => this.machine.arch.decode(raw, this.levelName(top - i)));
  }

  /** ptdump-style text of the page tables over [addr, addr+length) (default: all of user space). */
  dump(addr?: Addr, length?: Size): string {
    this.live();
    const start = addr === undefined ? 0n : toBigAddr(addr, 'addr') & ~0xfffn;
    const len = length === undefined ? this.machine.geometry.taskSize - start : BigInt(parseSize(length, 'length'));
    const pages = Number((len + 0xfffn) >> 12n);
    if (pages === 0) return '';
    checkUserRange(this.machine.geometry, start, BigInt(pages) << 12n, 'addr', 'EINVAL');
    const n = this.core.x.dump(this.pid, Number(start >> 12n), pages);
    if (n < 0) throw new EmuError('ENOMEM', 'no memory for the dump records', 'length');
    return formatDump(this.core, this.machine.arch, n, this.vmas);
  }

  /**
   * Counts what the page tables hold over [addr, addr+length) in one walk:
   * present PTEs, swap entries, markers, huge leaves (and the pfn sum, a
   * checksum of the frames mapped).
   */
  scan(addr: Addr, length: Size): { present: number; swap: number; markers: number; pmdLeaves: number; pudLeaves: number; pfnSum: number } {
    this.live();
    const start = toBigAddr(addr, 'addr') & ~0xfffn;
    const pages = Number((BigInt(parseSize(length, 'length')) + 0xfffn) >> 12n);
    if (pages > 0) checkUserRange(this.machine.geometry, start, BigInt(pages) << 12n, 'addr', 'EINVAL');
    this.core.x.walkStats(this.pid, Number(start >> 12n), pages);
    const c = this.core;
    return { present: c.result(0), swap: c.result(1), markers: c.result(2), pmdLeaves: c.result(3), pudLeaves: c.result(4), pfnSum: c.result(5) };
  }

  /** RSS counters in pages (MM_ANONPAGES, MM_FILEPAGES, MM_SHMEMPAGES, MM_SWAPENTS). */
  get rss(): Rss {
    this.live();
    this.core.x.mmInfo(this.pid);
    const c = this.core;
    return { file: c.result(0), anon: c.result(1), swap: c.result(2), shmem: c.result(3) };
  }

  /** Bytes of page-table pages this process holds (every level, deposited THP tables included). */
  get pageTableBytes(): number {
    this.live();
    this.core.x.mmInfo(this.pid);
    return this.core.result(4) * PAGE_SIZE;
  }

  /** Page faults handled so far (getrusage minflt/majflt). */
  get faults(): { minor: number; major: number } {
    this.live();
    this.core.x.mmInfo(this.pid);
    return { minor: this.core.result(5), major: this.core.result(6) };
  }

  /** The VMAs, in address order. */
  get vmas(): VmaInfo[] {
    this.live();
    this.core.x.mmInfo(this.pid);
    const n = this.core.result(7);
    const out: VmaInfo[] = [];
    for (let i = 0; i < n; i++) {
      this.core.x.vmaInfo(this.pid, i);
      const c = this.core;
      const flags = c.result(3);
      out.push({
        start: c.result(0), end: c.result(1), pgoff: c.result(2), flags, file: c.result(4),
        prot: `${flags & VM_READ ? 'r' : '-'}${flags & VM_WRITE ? 'w' : '-'}${flags & VM_EXEC ? 'x' : '-'}`,
        shared: (flags & VM_SHARED) !== 0,
      });
    }
    return out;
  }
}

