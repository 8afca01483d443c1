// userfaultfd: a context for one process (p.userfaultfd()), registrations of
// ranges, write-protection, and the messages its faults produce. A fault it
// must handle makes the access return { ok: false, blocked: 'userfaultfd' }
// with nothing changed; resolve it (e.g. writeProtect(..., false)) and run
// the access again, as the woken thread would.

import type { Core } from './core.js';
import type { Process } from './process.js';
import { EmuError, shown, ownEntry, optionsArg } from './errors.js';
import { toBigAddr } from './addr.js';

/** UFFD_FEATURE_* that ptemu implements. */
export type UffdFeature = 'event-fork' | 'event-remove' | 'sigbus' | 'wp-hugetlbfs-shmem' | 'wp-unpopulated' | 'wp-async';
const FEATURES: Record<UffdFeature, number> = {
  'event-fork': 1 << 1, 'event-remove': 1 << 3, sigbus: 1 << 7, 'wp-hugetlbfs-shmem': 1 << 12, 'wp-unpopulated': 1 << 13, 'wp-async': 1 << 15,
};
const VM_UFFD_MISSING = 0x200, VM_UFFD_WP = 0x1000;

/** A message read from the context. */
export type UffdMessage =
  | {
    type: 'pagefault';
    /** Page-aligned faulting address. */
    address: number;
    /** UFFD_PAGEFAULT_FLAG_WRITE / _WP. */
    write: boolean;
    wp: boolean;
    /** The CPU the faulting access ran on (a pin's fault: 0, the caller's context). */
    cpu: number;
  }
  /** UFFD_EVENT_FORK (event-fork): the child's context, whose registered VMAs kept their protection. */
  | { type: 'fork'; uffd: Userfaultfd }
  /** UFFD_EVENT_REMOVE (event-remove): MADV_DONTNEED or MADV_REMOVE dropped [start, end) of a registered VMA. */
  | { type: 'remove'; start: number; end: number };

export class Userfaultfd {
  /** @internal */ readonly core: Core;
  readonly process: Process;
  readonly id: number;
  readonly features: readonly UffdFeature[];
  private read = 0;
  private closed = false;

  /** @internal `existing`: a context the core made (a fork's child). */
  constructor(core: Core, process: Process, features: readonly UffdFeature[] = [], existing = 0) {
    if (!Array.isArray(features)) throw new EmuError('EINVAL', `features must be an array, got ${shown(features)}`, 'features');
    for (const f of features) if (ownEntry(FEATURES, f) === undefined) throw new EmuError('EINVAL', `unknown userfaultfd feature ${shown(f)}`, 'features');
    const mask = features.reduce((m: number, f: UffdFeature) => m | FEATURES[f], 0);
    const id = existing || core.x.uffdNew(process.pid, mask);
    if (id < 0) throw EmuError.fromErrno(id, 'no userfaultfd context available', 'features');
    this.core = core;
    this.process = process;
    this.id = id;
    this.features = [...features];
    // Messages logged before this context existed are not its own.
    core.x.uffdEvents();
    this.read = core.result(0);
  }

  private range(addr: number | bigint, len: number | bigint): [number, number] {
    if (this.closed) throw new EmuError('EBADF', 'this userfaultfd is closed', 'uffd');
    if (this.process.exited) throw new EmuError('EBADF', 'the process has exited', 'uffd');
    const a = toBigAddr(addr, 'addr'), l = toBigAddr(len, 'len');
    if ((a | l) & 0xfffn) throw new EmuError('EINVAL', 'addr and len must be page-aligned', 'addr');
    if (l === 0n) throw new EmuError('EINVAL', 'len must not be zero', 'len');
    return [Number(a >> 12n), Number(l >> 12n)];
  }

  /**
   * UFFDIO_REGISTER: the VMAs of [addr, addr+len) (no hole) report faults
   * here: `missing` faults on pages that do not exist yet (the monitor
   * provides them with copy() or zeropage()), `wp` write faults on
   * write-protected pages. Anonymous memory and shmem (write-protect on
   * shmem needs wp-hugetlbfs-shmem). VMAs are split at the edges.
   */
  register(addr: number | bigint, len: number | bigint, mode: { missing?: boolean; wp?: boolean } = { wp: true }): void {
    const [vpn, pages] = this.range(addr, len);
    if (mode === null || typeof mode !== 'object' || (!mode.missing && !mode.wp)) throw new EmuError('EINVAL', 'register needs { missing: true } and/or { wp: true }', 'mode');
    const r = this.core.x.uffdRegisterRange(this.id, vpn, pages, (mode.missing ? VM_UFFD_MISSING : 0) | (mode.wp ? VM_UFFD_WP : 0));
    if (r < 0) throw EmuError.fromErrno(r, r === -16 ? 'part of the range is registered with another userfaultfd' : 'the range has a hole, or a mapping userfaultfd cannot handle', 'addr');
  }

  /** UFFDIO_UNREGISTER: protection is resolved (bits and markers go) and the range no longer reports faults. */
  unregister(addr: number | bigint, len: number | bigint): void {
    const [vpn, pages] = this.range(addr, len);
    const r = this.core.x.uffdUnregisterRange(this.id, vpn, pages);
    if (r < 0) throw EmuError.fromErrno(r, 'unregister failed', 'addr');
  }

  /**
   * UFFDIO_WRITEPROTECT: protect (or resolve) [addr, addr+len). Empty slots
   * get markers where the VMA uses them (shmem; anonymous with
   * wp-unpopulated). ENOENT when a part is not registered for write-protect
   * here. Returns the entries changed.
   */
  writeProtect(addr: number | bigint, len: number | bigint, enable: boolean): number {
    const [vpn, pages] = this.range(addr, len);
    if (typeof enable !== 'boolean') throw new EmuError('EINVAL', 'enable must be a boolean', 'enable');
    const r = this.core.x.uffdWp(this.id, vpn, pages, enable ? 1 : 0);
    if (r === -2) throw new EmuError('ENOENT', 'part of the range is not registered for write-protect with this userfaultfd', 'addr');
    if (r === -11) throw new EmuError('EAGAIN', 'a fork or remove message is waiting to be read (events()) first', 'uffd');
    if (r < 0) throw EmuError.fromErrno(r, 'writeProtect failed', 'addr');
    return this.core.result(0);
  }

  /**
   * UFFDIO_COPY: fills [addr, addr+len) with new pages holding `tag`, mapped
   * as the fault would have (`wp`: write-protected). Stops at the first page
   * already there (EEXIST if it is the first); returns the pages filled.
   */
  copy(addr: number | bigint, len: number | bigint, tag: number, opts: { wp?: boolean } = {}): number {
    optionsArg(opts);
    if (typeof tag !== 'number' || !Number.isInteger(tag) || tag < 0 || tag > 0xffffffff) throw new EmuError('EINVAL', 'tag must be a 32-bit unsigned integer', 'tag');
    return this.fill(addr, len, tag, false, opts.wp === true);
  }

  /** UFFDIO_ZEROPAGE: the zero page (anonymous) or a zeroed page (shmem) in each slot of [addr, addr+len). */
  zeropage(addr: number | bigint, len: number | bigint, opts: { wp?: boolean } = {}): number {
    optionsArg(opts);
    return this.fill(addr, len, 0, true, opts.wp === true);
  }

  private fill(addr: number | bigint, len: number | bigint, tag: number, zero: boolean, wp: boolean): number {
    const [vpn, pages] = this.range(addr, len);
    const r = this.core.x.uffdFill(this.id, vpn, pages, tag, zero ? 1 : 0, wp ? 1 : 0);
    if (r === -17) throw new EmuError('EEXIST', 'the first page is already mapped', 'addr');
    if (r === -2) throw new EmuError('ENOENT', 'the range is not registered with this userfaultfd', 'addr');
    if (r === -11) throw new EmuError('EAGAIN', 'a fork or remove message is waiting to be read (events()) first', 'uffd');
    if (r < 0) throw EmuError.fromErrno(r, 'the fill failed', 'addr');
    return r;
  }

  /** The messages not read yet (read(2) on the descriptor). */
  events(): UffdMessage[] {
    const core = this.core;
    const base = core.x.uffdEvents();
    const n = core.result(0);
    const out: UffdMessage[] = [];
    const records: [number, number, number, bigint][] = [];
    for (let i = this.read; i < n; i++) {
      const r = base + i * 32;
      if (core.u32At(r + 8) === this.id) records.push([core.u32At(r + 12), core.u32At(r + 16), core.u32At(r + 20), core.u64At(r + 24)]);
    }
    this.read = n;
    core.x.uffdRead(this.id);
    for (const [kind, flags, cpu, arg] of records) {
      if (kind === 0x13) {
        const ctx = Number(arg);
        const child = this.process.machine.procs.find((q) => q.pid === core.x.uffdOwner(ctx));
        if (child) out.push({ type: 'fork', uffd: new Userfaultfd(core, child, this.features, ctx) });
      } else if (kind === 0x15) {
        out.push({ type: 'remove', start: Number(arg), end: flags + cpu * 2 ** 32 });
      } else {
        out.push({ type: 'pagefault', address: Number(arg), write: (flags & 1) !== 0, wp: (flags & 2) !== 0, cpu });
      }
    }
    return out;
  }

  /** close(2): every registration of this context goes. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (!this.process.exited) this.core.x.uffdClose(this.id);
  }
}
