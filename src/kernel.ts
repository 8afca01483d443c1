// m.kernel: kernel-level primitives under their kernel names, for people
// testing mm algorithms. walkPageRange is mm/pagewalk.c's walk_page_range
// with JavaScript callbacks (a slow path: one call per visited entry).

import type { Machine } from './machine.js';
import type { Process } from './process.js';
import { EmuError, shown, ownEntry, optionsArg } from './errors.js';
import { toBigAddr, checkUserRange } from './addr.js';
import { stepped, type StepOptions } from './step.js';
import { Process as ProcessCtor, liveProcessOf } from './process.js';
import { LEVEL_NAMES, type DecodedEntry, type EntryLevel } from './arch.js';
import { NOTIFIER_EVENTS, type NotifierEvent } from './logs.js';

export type WalkActionName = 'subtree' | 'continue' | 'again';
const ACTIONS: Record<WalkActionName, number> = { subtree: 0, continue: 1, again: 2 };

/** What a callback can do besides returning: steer the walk, rewrite the entry it was given. */
export interface WalkControl {
  /** walk->action for this entry (upper levels): 'subtree' (default, descend), 'continue' (skip), 'again' (revisit). */
  setAction(action: WalkActionName): void;
  /** set_pte / set_pmd on the entry handed to this callback. Bookkeeping is the caller's business (m.check() will judge). */
  setEntry(raw: bigint): void;
}

/** A VMA as the per-VMA callbacks see it. */
export interface WalkVma { start: number; end: number; flags: number }

/**
 * mm_walk_ops. Every callback returns 0 to continue, > 0 to stop the walk and
 * return that value, < 0 to stop with an error. Entries arrive decoded (with
 * `raw`); `depth` follows pte_hole (pgd 0, p4d 1, pud 2, pmd 3; -1 outside VMAs).
 */
export interface WalkOps {
  pgdEntry?(entry: DecodedEntry, addr: number, next: number, walk: WalkControl): number;
  p4dEntry?(entry: DecodedEntry, addr: number, next: number, walk: WalkControl): number;
  pudEntry?(entry: DecodedEntry, addr: number, next: number, walk: WalkControl): number;
  pmdEntry?(entry: DecodedEntry, addr: number, next: number, walk: WalkControl): number;
  pteEntry?(entry: DecodedEntry, addr: number, next: number, walk: WalkControl): number;
  pteHole?(addr: number, next: number, depth: number, walk: WalkControl): number;
  testWalk?(vma: WalkVma): number;
  preVma?(vma: WalkVma): number;
  postVma?(vma: WalkVma): void;
}

const CALLBACK_BITS: [keyof WalkOps, number][] = [
  ['pteEntry', 1], ['pmdEntry', 2], ['pudEntry', 4], ['p4dEntry', 8], ['pgdEntry', 16],
  ['pteHole', 32], ['testWalk', 64], ['preVma', 128], ['postVma', 256],
];

/** Why the core refused a raw entry (assembly/rawentry.ts): entries it could not survive walking. */
const RAW_ENTRY_PROBLEMS: Record<number, string> = {
  1: 'its frame number is beyond physical memory',
  2: 'it maps a page-table or free frame',
  3: 'it points to a table: raw writes are leaves and non-present entries',
  4: 'its swap slot is not in use',
  5: 'no device pool owns its device-private page',
  6: 'its swap type is not emulated (device-exclusive)',
  7: 'a non-present PMD must be none (PMD migration entries are not emulated)',
  8: 'a PMD leaf must map the head of a PMD-size folio',
  9: 'the PMD it would overwrite points to a PTE table',
  10: 'entries above the PMD belong to the core (no PUD leaves)',
  11: 'the PTE is not present: this primitive is for present entries',
};

function rawEntryError(reason: number, arg: string): EmuError {
  return new EmuError(reason === 9 ? 'EBUSY' : 'EINVAL', `${arg} refused: ${RAW_ENTRY_PROBLEMS[reason] ?? `reason ${reason}`}`, arg);
}

/** An mmu_gather opened with m.kernel.tlbGather(). */
export interface TlbGather {
  /** tlb_remove_tlb_entry: a PTE at addr was cleared. */
  removeTlbEntry(addr: number | bigint): void;
  /** tlb_remove_pmd_tlb_entry: a huge PMD at addr was cleared. */
  removePmdTlbEntry(addr: number | bigint): void;
  /** tlb_finish_mmu: flushes (nothing if nothing was removed); returns the flushes issued. */
  finish(): number;
}

export class Kernel {
  private readonly machine: Machine;

  /** @internal */
  constructor(machine: Machine) { this.machine = machine; }

  private live(p: Process): void {
    liveProcessOf(this.machine, p);
  }

  /** flush_tlb_page: one page, on every CPU that ran p. */
  flushTlbPage(p: Process, addr: number | bigint): void {
    this.live(p);
    const a = toBigAddr(addr, 'addr') >> 12n;
    this.machine.core.x.kFlushTlbRange(p.pid, Number(a), Number(a) + 1, 12);
  }

  /** flush_tlb_range / flush_tlb_mm_range: above the ceiling (in strides) it flushes the whole mm. */
  flushTlbRange(p: Process, start: number | bigint, end: number | bigint, opts: { stride?: '4K' | '2M' } = {}): void {
    optionsArg(opts);
    this.live(p);
    const s = toBigAddr(start, 'start'), e = toBigAddr(end, 'end');
    if (e <= s) throw new EmuError('EINVAL', 'end must be above start', 'end');
    const shift = opts.stride === '2M' ? 21 : 12;
    this.machine.core.x.kFlushTlbRange(p.pid, Number(s >> 12n), Number((e + 0xfffn) >> 12n), shift);
  }

  /**
   * mmu_notifier_invalidate_range_start and _end over [start, end) of p with
   * `event`, without changing any entry: interval notifiers and device
   * mirrors see an invalidation (a driver's view of, say, page migration).
   */
  invalidateRange(p: Process, start: number | bigint, end: number | bigint, event: NotifierEvent = 'clear'): void {
    this.live(p);
    const s = toBigAddr(start, 'start') & ~0xfffn, e = (toBigAddr(end, 'end') + 0xfffn) & ~0xfffn;
    if (e <= s) throw new EmuError('EINVAL', 'end must be above start', 'end');
    const ev = NOTIFIER_EVENTS.indexOf(event);
    if (ev < 0) throw new EmuError('EINVAL', `event must be one of ${NOTIFIER_EVENTS.join(', ')}`, 'event');
    this.machine.core.x.kInvalidateRange(p.pid, Number(s >> 12n), Number(e >> 12n), ev);
  }

  /** flush_tlb_mm. */
  flushTlbMm(p: Process): void { this.live(p); this.machine.core.x.kFlushTlbMm(p.pid); }

  /** flush_tlb_all (global entries included), issued from `cpu`. */
  flushTlbAll(cpu = 0): void { this.machine.core.x.kFlushTlbAll(this.machine.cpuIndex(cpu)); }

  /** inc_tlb_flush_pending / dec_tlb_flush_pending on p's mm; returns the new count. */
  incTlbFlushPending(p: Process): number { this.live(p); return this.machine.core.x.kFlushPending(p.pid, 1); }
  decTlbFlushPending(p: Process): number {
    this.live(p);
    const r = this.machine.core.x.kFlushPending(p.pid, -1);
    if (r < 0) throw new EmuError('EINVAL', 'no flush is pending on this mm', 'p');
    return r;
  }

  /** tlb_gather_mmu (or _fullmm): an mmu_gather on p's mm. */
  tlbGather(p: Process, opts: { fullmm?: boolean } = {}): TlbGather {
    optionsArg(opts);
    this.live(p);
    const core = this.machine.core;
    const g = core.x.kGatherBegin(p.pid, opts.fullmm ? 1 : 0);
    if (g === 0) throw new EmuError('ENOMEM', 'no memory for an mmu_gather', 'p');
    let done = false;
    const open = (): void => { if (done) throw new EmuError('EINVAL', 'this mmu_gather is finished', 'gather'); };
    return {
      removeTlbEntry: (addr) => { open(); core.x.kGatherRemove(g, Number(toBigAddr(addr, 'addr') >> 12n), 0); },
      removePmdTlbEntry: (addr) => { open(); core.x.kGatherRemove(g, Number(toBigAddr(addr, 'addr') >> 12n), 1); },
      finish: () => { open(); done = true; return core.x.kGatherFinish(g); },
    };
  }

  /**
   * set_pte_at / set_pmd_at with a raw value: no flush and no bookkeeping,
   * exactly like the kernel primitive (callers own rmap and TLB obligations;
   * m.check() judges the result). The tables down to `level` must exist.
   */
  setEntry(p: Process, addr: number | bigint, raw: bigint, level: 'pte' | 'pmd' = 'pte'): void {
    this.live(p);
    if (typeof raw !== 'bigint' || raw < 0n || raw >= 1n << 64n) throw new EmuError('EINVAL', 'raw must be a 64-bit bigint', 'raw');
    const a = toBigAddr(addr, 'addr');
    if (level !== 'pte' && level !== 'pmd') throw new EmuError('EINVAL', `level must be 'pte' or 'pmd', got ${shown(level)}`, 'level');
    const r = this.machine.core.x.kSetEntry(p.pid, Number(a >> 12n), level === 'pmd' ? 1 : 0, Number(raw & 0xffffffffn), Number(raw >> 32n));
    if (r > 0) throw rawEntryError(r, 'raw');
    if (r < 0) throw new EmuError('EINVAL', `no page table holds the ${level} for 0x${a.toString(16)}`, 'addr');
  }

  // ---- the PTE API: what core mm code calls; on arm64 user mms the contpte layer ----

  /**
   * init_mm: the kernel's own address space. It has no VMAs; the PTE
   * primitives work on it, and never fold contiguous blocks there.
   */
  get initMm(): Process {
    if (!this.kernelMm) {
      const core = this.machine.core;
      const id = core.x.mmNew(this.machine.options.levels, Number(this.machine.geometry.taskSize >> 12n));
      if (id < 0) throw new EmuError('ENOMEM', 'no memory for init_mm', 'initMm');
      core.x.mmSetKernel(id);
      this.kernelMm = new ProcessCtor(this.machine, core, id);
    }
    return this.kernelMm;
  }
  private kernelMm: Process | undefined;

  /** The PTE slot's page number for addr, checked; `nr` slots must stay inside one PTE table. */
  private slot(p: Process, addr: number | bigint, nr = 1): number {
    this.live(p);
    const a = toBigAddr(addr, 'addr');
    if (a >= this.machine.geometry.taskSize) throw new EmuError('EINVAL', `addr 0x${a.toString(16)} is beyond the address space`, 'addr');
    if (!Number.isInteger(nr) || nr < 1) throw new EmuError('EINVAL', `nr must be a positive integer, got ${shown(nr)}`, 'nr');
    const vpn = Number(a >> 12n);
    if ((vpn % 512) + nr > 512) throw new EmuError('EINVAL', `${nr} PTEs from 0x${a.toString(16)} cross a PTE table`, 'nr');
    return vpn;
  }

  private checked(r: number, addr: number | bigint): void {
    if (r > 0) throw rawEntryError(r, r === 11 ? 'addr' : 'entry');
    if (r === -14) throw new EmuError('EFAULT', `no PTE table maps 0x${BigInt(addr).toString(16)}`, 'addr');
    if (r < 0) throw EmuError.fromErrno(r, 'PTE operation failed', 'addr');
  }

  /**
   * set_ptes: nr consecutive pages from `pte` (its frame advancing), tables
   * allocated as needed. PTE_CONT is stripped from `pte`; on arm64, nr == 1
   * unfolds the target's block first and folds it after writing its last slot
   * when it qualifies; nr > 1 writes aligned whole 64 KiB chunks folded.
   */
  setPtes(p: Process, addr: number | bigint, pte: bigint, nr = 1, opts: StepOptions = {}): void {
    const vpn = this.slot(p, addr, nr);
    if (typeof pte !== 'bigint' || pte < 0n || pte >= 1n << 64n) throw new EmuError('EINVAL', 'pte must be a 64-bit bigint', 'pte');
    const x = this.machine.core.x;
    this.checked(stepped(this.machine.core, opts, () => x.kSetPtes(p.pid, vpn, Number(pte & 0xffffffffn), Number(pte >> 32n), nr)), addr);
  }

  /** ptep_get: on arm64 a folded slot reports its block's ORed access/dirty bits, CONT included. */
  ptepGet(p: Process, addr: number | bigint): bigint { return this.read(p, addr, 1); }

  /** __ptep_get: the slot's own bits. 0n when no PTE table maps addr. */
  ptepGetRaw(p: Process, addr: number | bigint): bigint { return this.read(p, addr, 0); }

  /**
   * ptep_get_lockless: like ptepGet, checked against the block changing under
   * it. null when the read would have to start again (the block is
   * mid-change, e.g. read from an onStep of an unfold): never a mixed value.
   */
  ptepGetLockless(p: Process, addr: number | bigint): bigint | null {
    const v = this.read(p, addr, 2);
    return this.machine.core.result(1) === 0 ? null : v;
  }

  private read(p: Process, addr: number | bigint, how: number): bigint {
    const vpn = this.slot(p, addr);
    const core = this.machine.core;
    const r = core.x.kPteGet(p.pid, vpn, how);
    if (r === -14) return 0n;
    this.checked(r, addr);
    return core.resultBig(0);
  }

  private op(p: Process, addr: number | bigint, op: number, nr: number, opts: StepOptions, entry = 0n, flags = 0): bigint {
    const vpn = this.slot(p, addr, nr);
    const core = this.machine.core;
    this.checked(stepped(core, opts, () => core.x.kPteOp(p.pid, vpn, op, nr, Number(entry & 0xffffffffn), Number(entry >> 32n), flags)), addr);
    return core.resultBig(0);
  }

  /** ptep_get_and_clear: on arm64 a folded block unfolds first, so the value carries the block's A/D. */
  ptepGetAndClear(p: Process, addr: number | bigint, opts: StepOptions = {}): bigint { return this.op(p, addr, 0, 1, opts); }

  /** get_and_clear_full_ptes: partly covered blocks unfold; the first value with the A/D of all nr ORed in. */
  getAndClearFullPtes(p: Process, addr: number | bigint, nr: number, opts: StepOptions = {}): bigint { return this.op(p, addr, 1, nr, opts); }

  /** ptep_test_and_clear_young: a folded block loses AF on all 16 slots; true if any had it. */
  ptepTestAndClearYoung(p: Process, addr: number | bigint): boolean { return this.op(p, addr, 2, 1, {}) !== 0n; }

  /** ptep_clear_flush_young: as ptepTestAndClearYoung, then one flush (of the 64 KiB block when folded) if anything was young. */
  ptepClearFlushYoung(p: Process, addr: number | bigint): boolean { return this.op(p, addr, 3, 1, {}) !== 0n; }

  /** wrprotect_ptes: nr == 1 unfolds a folded target; nr > 1 unfolds only partly covered blocks, whole ones stay folded. */
  wrprotectPtes(p: Process, addr: number | bigint, nr = 1, opts: StepOptions = {}): void { this.op(p, addr, 4, nr, opts); }

  /**
   * ptep_set_access_flags: `entry`'s access/dirty/write bits onto the slot
   * (the frame is kept). A folded target keeps its block folded unless the
   * write permission changes. Returns whether anything changed.
   */
  ptepSetAccessFlags(p: Process, addr: number | bigint, entry: bigint, dirty: boolean, opts: StepOptions = {}): boolean {
    if (typeof entry !== 'bigint' || entry < 0n || entry >= 1n << 64n) throw new EmuError('EINVAL', 'entry must be a 64-bit bigint', 'entry');
    return this.op(p, addr, 5, 1, opts, entry, dirty ? 1 : 0) !== 0n;
  }

  /** clear_young_dirty_ptes: a range starting or ending inside a folded block widens to the whole block. */
  clearYoungDirtyPtes(p: Process, addr: number | bigint, nr: number, what: { young?: boolean; dirty?: boolean }): void {
    const flags = (what?.young ? 1 : 0) | (what?.dirty ? 2 : 0);
    if (flags === 0) throw new EmuError('EINVAL', 'say what to clear: { young, dirty }', 'what');
    this.op(p, addr, 6, nr, {}, 0n, flags);
  }

  /**
   * Unfolds every folded block in [start, start+length): what splitting a
   * large folio does to the blocks that map it (each one contpte_convert,
   * with its flush). A no-op off arm64.
   */
  unfoldRange(p: Process, start: number | bigint, length: number | bigint, opts: StepOptions = {}): void {
    this.live(p);
    const s = toBigAddr(start, 'start');
    const len = toBigAddr(length, 'length');
    checkUserRange(this.machine.geometry, s, len, 'start', 'EINVAL');
    const core = this.machine.core;
    stepped(core, opts, () => core.x.kUnfoldRange(p.pid, Number(s >> 12n), Number((len + 0xfffn) >> 12n)));
  }

  /**
   * Contiguous-block census of [start, start+length) (arm64): aligned 16-PTE
   * blocks folded, foldable but not folded, broken (CONT on a block that is
   * not a proper one: never expected), and blocks judged (first slot valid).
   */
  contScan(p: Process, start: number | bigint, length: number | bigint): { folded: number; foldable: number; broken: number; blocks: number } {
    this.live(p);
    const s = toBigAddr(start, 'start');
    const len = toBigAddr(length, 'length');
    checkUserRange(this.machine.geometry, s, len, 'start', 'EINVAL');
    const core = this.machine.core;
    core.x.contScan(p.pid, Number(s >> 12n), Number((len + 0xfffn) >> 12n));
    return { folded: core.result(0), foldable: core.result(1), broken: core.result(2), blocks: core.result(3) };
  }

  /**
   * walk_page_range(mm, start, end, ops): visits each VMA overlapping
   * [start, end) (holes between them reported at depth -1), descending only
   * as deep as the deepest callback. A PMD leaf met with 'subtree' and a
   * pteEntry is split first, as the kernel does for VMA walks.
   * Returns what the walk returned (0, a callback's positive value, or -errno).
   */
  walkPageRange(p: Process, start: number | bigint, end: number | bigint, ops: WalkOps): number {
    liveProcessOf(this.machine, p);
    const s = toBigAddr(start, 'start');
    const e = toBigAddr(end, 'end');
    if (s >= e) throw new EmuError('EINVAL', `start 0x${s.toString(16)} must be below end 0x${e.toString(16)}`, 'start');
    if (((s | e) & 0xfffn) !== 0n) throw new EmuError('EINVAL', 'start and end must be page-aligned', 'start');
    if (e > this.machine.geometry.taskSize) throw new EmuError('EINVAL', 'end is beyond the user address space', 'end');
    if (ops === null || typeof ops !== 'object') throw new EmuError('EINVAL', 'ops must be an object', 'ops');
    let has = 0;
    for (const [name, bit] of CALLBACK_BITS) {
      const f = ops[name];
      if (f !== undefined && typeof f !== 'function') throw new EmuError('EINVAL', `ops.${name} must be a function`, name);
      if (f) has |= bit;
    }
    const core = this.machine.core;
    const arch = this.machine.arch;
    const top = this.machine.options.levels - 1;
    const walk: WalkControl = {
      setAction: (a) => {
        if (ownEntry(ACTIONS, a) === undefined) throw new EmuError('EINVAL', `unknown walk action ${shown(a)}`, 'action');
        core.x.walkSetActionExport(ACTIONS[a]);
      },
      setEntry: (raw) => {
        if (typeof raw !== 'bigint' || raw < 0n || raw >= 1n << 64n) throw new EmuError('EINVAL', 'raw must be a 64-bit bigint', 'raw');
        const r = core.x.walkSetEntry(Number(raw & 0xffffffffn), Number(raw >> 32n));
        if (r > 0) throw rawEntryError(r, 'raw');
        if (r < 0) throw new EmuError('EINVAL', 'setEntry is for use inside a callback of the walk', 'raw');
      },
    };
    const name = (level: number): EntryLevel => (level === top || level === 4 ? 'pgd' : LEVEL_NAMES[level]!);
    const prev = core.walkHandler;
    let thrown: unknown;
    core.walkHandler = (kind, level, vpn, nextVpn, signedEntry, depth) => {
      if (thrown !== undefined) return 1;
      const entry = BigInt.asUintN(64, signedEntry);   // i64 crosses as a signed bigint
      try {
        const addr = vpn * 4096, next = nextVpn * 4096;
        const vma: WalkVma = { start: addr, end: next, flags: Number(entry) };
        switch (kind) {
          case 0: return ops.pteEntry!(arch.decode(entry, 'pte'), addr, next, walk) | 0;
          case 1: {
            const cb = level === 4 ? ops.pgdEntry : level === 3 ? ops.p4dEntry : level === 2 ? ops.pudEntry : ops.pmdEntry;
            const lvName = level === 4 ? 'pgd' : level === 3 ? (top === 3 ? 'pgd' : 'p4d') : name(level);
            return cb ? cb(arch.decode(entry, lvName), addr, next, walk) | 0 : 0;
          }
          case 2: return ops.pteHole!(addr, next, depth, walk) | 0;
          case 3: return ops.testWalk!(vma) | 0;
          case 4: return ops.preVma!(vma) | 0;
          default: ops.postVma!(vma); return 0;
        }
      } catch (err) {
        thrown = err;
        return 1;
      }
    };
    try {
      const r = core.x.jsWalk(p.pid, Number(s >> 12n), Number(e >> 12n), has);
      if (thrown !== undefined) throw thrown;
      return r;
    } finally {
      core.walkHandler = prev;
    }
  }
}
