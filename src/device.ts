// Devices that mirror a process's address space (seed 001, HMM): mmu
// interval notifiers with their sequence numbers, and the seed's mirror
// page tables filled by device faults (assembly/mirror.ts,
// assembly/ops/mirrorfault.ts).

import type { Core } from './core.js';
import type { Machine } from './machine.js';
import { liveProcessOf, type Process } from './process.js';
import { EmuError, shown, optionsArg } from './errors.js';
import { toBigAddr, checkUserRange } from './addr.js';
import { stepped, type StepOptions } from './step.js';

const PAGE = 4096;

/** Validates [addr, +npages) of p and returns its first page number. */
function pageRange(m: Machine, p: Process, addr: number | bigint, npages: number, what: string): number {
  const a = toBigAddr(addr, 'addr') & ~0xfffn;
  if (!Number.isSafeInteger(npages) || npages < 1) throw new EmuError('EINVAL', `${what}: npages must be a positive integer, got ${shown(npages)}`, 'npages');
  checkUserRange(m.geometry, a, BigInt(npages) * 4096n, 'addr', 'EINVAL');
  liveProcessOf(m, p, 'process');
  return Number(a >> 12n);
}

/**
 * mmu_interval_notifier: a subscription to invalidations of [start, end) of
 * one process. `readBegin()` takes a sequence number; `checkRetry(seq)`
 * says whether an invalidation overlapped the range since (the page tables
 * changed there, so whatever was read from them must be read again).
 */
export class IntervalNotifier {
  /** @internal */ readonly id: number;
  readonly process: Process;
  readonly start: number;
  readonly end: number;
  private readonly core: Core;
  private removed = false;

  /** @internal */
  constructor(core: Core, process: Process, start: number, end: number) {
    const id = core.x.notifierNew(process.pid, start / PAGE, (end - start) / PAGE);
    if (id < 0) throw EmuError.fromErrno(id, 'no notifier slot left', 'process');
    this.core = core;
    this.id = id;
    this.process = process;
    this.start = start;
    this.end = end;
  }

  private live(): void {
    if (this.removed) throw new EmuError('EINVAL', 'this notifier was removed', 'notifier');
    if (this.process.exited) throw new EmuError('ENOENT', `process ${this.process.pid} has exited`, 'notifier');
  }

  /** mmu_interval_read_begin. EBUSY inside a stepped operation while an invalidation is in progress (the kernel would sleep). */
  readBegin(): number {
    this.live();
    const seq = this.core.x.notifierReadBegin(this.id);
    if (seq < 0) throw EmuError.fromErrno(seq, seq === -16 ? 'an invalidation of the range is in progress' : 'the notifier is gone', 'notifier');
    return seq;
  }

  /** mmu_interval_check_retry / mmu_interval_read_retry: true if an invalidation overlapped since `seq`. */
  checkRetry(seq: number): boolean {
    this.live();
    if (!Number.isSafeInteger(seq) || seq < 0) throw new EmuError('EINVAL', `seq must come from readBegin(), got ${shown(seq)}`, 'seq');
    return this.core.x.notifierCheckRetry(this.id, seq) !== 0;
  }

  /** mmu_interval_read_retry: the same test, made under the driver's lock before it installs what it read. */
  readRetry(seq: number): boolean { return this.checkRetry(seq); }

  /** How many invalidations overlapped the range so far. */
  get invalidations(): number { this.live(); return this.core.x.notifierInvalidations(this.id); }

  /** mmu_interval_notifier_remove. */
  remove(): void {
    if (this.removed) return;
    this.removed = true;
    if (!this.process.exited) this.core.x.notifierFree(this.id);
  }
}

/** A mirror entry as the device sees it. */
export interface MirrorEntry {
  valid: boolean;
  write: boolean;
  /** The device wrote through it since it was filled. */
  dirty: boolean;
  pfn: number;
  /** The raw 64-bit entry: VALID bit 0, WRITE bit 1, DIRTY bit 2, pfn from bit 4. */
  raw: bigint;
}

export interface MirrorStats {
  /** False once the process has exited (the notifier's ->release freed the tables). */
  live: boolean;
  /** Directory pages (4 KiB each) below the root. */
  directories: number;
  /** Bytes of those directories (about 2 MiB of leaf directories per GiB mirrored). */
  bytes: number;
  /** Bytes of the root, allocated with the mirror: (TASK_SIZE >> 39) + 1 entries. */
  rootBytes: number;
  validEntries: number;
  faults: number;
  /** Pages the CPU side faulted for device faults (the -ENOENT path). */
  cpuFaults: number;
  /** -EAGAIN rounds: after CPU faults, or after backing off an invalidation. */
  retries: number;
  backoffs: number;
  invalidations: number;
}

/** What one device fault took. */
export interface MirrorFaultResult { cpuFaults: number; retries: number; backoffs: number }

/**
 * The seed's mirror of one process for one device: its own page table
 * (512-entry directories, 8-byte entries), filled by device faults and
 * cleared or write-protected by the process's mmu notifiers.
 */
export class Mirror {
  readonly device: Device;
  readonly process: Process;
  /** @internal */ readonly id: number;
  private readonly core: Core;
  private released = false;

  /** @internal */
  constructor(core: Core, device: Device, process: Process) {
    const id = core.x.mirrorNew(process.pid, device.id);
    if (id < 0) throw EmuError.fromErrno(id, 'cannot create the mirror', 'process');
    this.core = core;
    this.id = id;
    this.device = device;
    this.process = process;
  }

  private usable(): void {
    if (this.released) throw new EmuError('EINVAL', 'this mirror was released', 'mirror');
  }

  /**
   * A device fault on [addr, +npages): 'r' or 'w'. Entries are filled from
   * the CPU page tables; where the CPU side lacks what the device needs, the
   * CPU faults first and the device fault retries. Throws EFAULT (a gap, a
   * VM_IO/PFNMAP VMA, a CPU fault that failed), EACCES (write to a VMA
   * without VM_WRITE), ENODEV (the process exited), EAGAIN (the CPU fault is
   * waiting on ->page_mkwrite). A CPU fault a userfaultfd would handle is
   * EFAULT with no message queued: hmm's faults cannot wait (no
   * FAULT_FLAG_ALLOW_RETRY), so handle_userfault fails them. `onStep` runs after each
   * chunk pushed to the device: CPU accesses there that invalidate the range
   * make the fault back off and retry.
   */
  fault(addr: number | bigint, npages: number, mode: 'r' | 'w', opts: StepOptions = {}): MirrorFaultResult {
    optionsArg(opts);
    this.usable();
    if (mode !== 'r' && mode !== 'w') throw new EmuError('EINVAL', `mode must be 'r' or 'w', got ${shown(mode)}`, 'mode');
    if (this.process.exited) throw new EmuError('ENODEV', `process ${this.process.pid} has exited`, 'mirror');
    const vpn = pageRange(this.device.machine, this.process, addr, npages, 'fault');
    const before = this.stats;
    const r = stepped(this.core, opts, () => this.core.x.mirrorFaultRange(this.id, vpn, npages, mode === 'w' ? 1 : 0));
    if (r < 0) throw EmuError.fromErrno(r, `device ${mode === 'w' ? 'write' : 'read'} fault at 0x${(vpn * PAGE).toString(16)} failed`, 'addr');
    const after = this.stats;
    return { cpuFaults: after.cpuFaults - before.cpuFaults, retries: after.retries - before.retries, backoffs: after.backoffs - before.backoffs };
  }

  /** The mirror entry for addr. */
  lookup(addr: number | bigint): MirrorEntry {
    this.usable();
    const vpn = Number(toBigAddr(addr, 'addr') >> 12n);
    this.core.x.mirrorEntryAt(this.id, vpn);
    const raw = this.core.resultBig(0);
    return { valid: (raw & 1n) !== 0n, write: (raw & 2n) !== 0n, dirty: (raw & 4n) !== 0n, pfn: Number(raw >> 4n), raw };
  }

  /**
   * The count of the leaf directory covering addr: its valid entries plus the
   * walkers inside it (none at rest), the seed's pruning rule. 0 if absent.
   */
  leafDirectoryCount(addr: number | bigint): number {
    this.usable();
    return this.core.x.mirrorDirCount(this.id, Number(toBigAddr(addr, 'addr') >> 12n));
  }

  /** The device writes `tag` to the page at addr through its mirror entry (which becomes DIRTY). EFAULT if not valid and writable. */
  deviceWrite(addr: number | bigint, tag: number): void {
    this.usable();
    if (!Number.isInteger(tag) || tag < 0 || tag > 0xffffffff) throw new EmuError('EINVAL', 'tag must be a 32-bit unsigned integer', 'tag');
    const vpn = Number(toBigAddr(addr, 'addr') >> 12n);
    const r = this.core.x.mirrorWrite(this.id, vpn);
    if (r < 0) throw EmuError.fromErrno(r, `no writable mirror entry at 0x${(vpn * PAGE).toString(16)}`, 'addr');
    this.core.x.dmaWriteTag(this.lookup(addr).pfn, tag);
  }

  get stats(): MirrorStats {
    this.usable();
    const c = this.core;
    c.x.mirrorInfo(this.id);
    const directories = c.result(1);
    return {
      live: c.result(0) === 1, directories, bytes: directories * PAGE, rootBytes: c.result(2), validEntries: c.result(3), faults: c.result(4),
      cpuFaults: c.result(5), retries: c.result(6), backoffs: c.result(7), invalidations: c.result(8),
    };
  }

  /**
   * migrate_vma to the device's private memory over [addr, +npages) of one
   * private anonymous VMA: each present, exclusively mapped, unpinned small
   * page moves (content kept) and its PTE becomes a device-private entry; a
   * CPU access later faults it back (migrateToRam). Returns how many moved
   * (pages that cannot move stay where they are, as migrate_vma skips them).
   * EINVAL for another kind of VMA or a range beyond it; ENOMEM without
   * device memory.
   */
  migrateToDevice(addr: number | bigint, npages: number): number {
    this.usable();
    if (this.process.exited) throw new EmuError('ENODEV', `process ${this.process.pid} has exited`, 'mirror');
    const vpn = pageRange(this.device.machine, this.process, addr, npages, 'migrateToDevice');
    const r = this.core.x.migrateRangeToDevice(this.process.pid, this.device.id, vpn, npages);
    if (r < 0) throw EmuError.fromErrno(r, r === -12 ? `device ${this.device.name} has no private memory (device.addMemory)` : 'the range must lie in one private anonymous VMA', r === -12 ? 'device' : 'addr');
    return r;
  }

  /** hmm_mirror_unregister: the entries and directories go. */
  release(): void {
    if (this.released) return;
    this.released = true;
    this.core.x.mirrorFree(this.id);
  }
}

/** A device (m.device(name)): mirrors of processes, and private memory of its own. */
export class Device {
  readonly name: string;
  /** @internal */ readonly id: number;
  /** @internal */ readonly machine: Machine;

  /** @internal */
  constructor(machine: Machine, name: string, id: number) {
    this.machine = machine;
    this.name = name;
    this.id = id;
  }

  /**
   * Device-private memory (memremap_pages of MEMORY_DEVICE_PRIVATE): `pages`
   * frames, a power of two, taken from the machine's memory for the
   * device's life. Once per device.
   */
  addMemory(pages: number): void {
    if (!Number.isInteger(pages) || pages < 1 || (pages & (pages - 1)) !== 0 || pages > 1 << 18) {
      throw new EmuError('EINVAL', `pages must be a power of two from 1 to ${1 << 18}, got ${shown(pages)}`, 'pages');
    }
    const r = this.machine.core.x.devicePool(this.id, Math.log2(pages));
    if (r < 0) throw EmuError.fromErrno(r, r === -22 ? `device ${this.name} already has memory` : 'no memory for the device', 'pages');
  }

  /** Its private memory: pages, free ones, pages migrated to it and back to RAM so far. */
  get memory(): { pages: number; free: number; migratedToDevice: number; migratedToRam: number } {
    const c = this.machine.core;
    c.x.devicePoolStats(this.id);
    return { pages: c.result(0), free: c.result(1), migratedToDevice: c.result(2), migratedToRam: c.result(3) };
  }

  /** A mirror of p's address space (hmm_mirror_register). */
  mirror(p: Process): Mirror {
    liveProcessOf(this.machine, p, 'p');
    return new Mirror(this.machine.core, this, p);
  }
}
