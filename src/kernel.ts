// m.kernel: kernel-level primitives under their kernel names, for people
// testing mm algorithms. walkPageRange is mm/pagewalk.c's walk_page_range
// with JavaScript callbacks (a slow path: one call per visited entry).

import type { Machine } from './machine.js';
import type { Process } from './process.js';
import { EmuError } from './errors.js';
import { toBigAddr } from './addr.js';
import { LEVEL_NAMES, type DecodedEntry, type EntryLevel } from './arch.js';

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
    if (p.machine !== this.machine || p.exited) throw new EmuError('EINVAL', 'p must be a live process of this machine', 'p');
  }

  /** flush_tlb_page: one page, on every CPU that ran p. */
  flushTlbPage(p: Process, addr: number | bigint): void {
    this.live(p);
    const a = toBigAddr(addr, 'addr') >> 12n;
    this.machine.core.x.kFlushTlbRange(p.pid, Number(a), Number(a) + 1, 12);
  }

  /** flush_tlb_range / flush_tlb_mm_range: above the ceiling (in strides) it flushes the whole mm. */
  flushTlbRange(p: Process, start: number | bigint, end: number | bigint, opts: { stride?: '4K' | '2M' } = {}): void {
    this.live(p);
    const s = toBigAddr(start, 'start'), e = toBigAddr(end, 'end');
    if (e <= s) throw new EmuError('EINVAL', 'end must be above start', 'end');
    const shift = opts.stride === '2M' ? 21 : 12;
    this.machine.core.x.kFlushTlbRange(p.pid, Number(s >> 12n), Number((e + 0xfffn) >> 12n), shift);
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
    const r = this.machine.core.x.kSetEntry(p.pid, Number(a >> 12n), level === 'pmd' ? 1 : 0, Number(raw & 0xffffffffn), Number(raw >> 32n));
    if (r < 0) throw new EmuError('EINVAL', `no page table holds the ${level} for 0x${a.toString(16)}`, 'addr');
  }

  /** ptep_get: the raw PTE for addr (0n when no table exists). */
  ptepGet(p: Process, addr: number | bigint): bigint {
    const e = p.entry(addr);
    return e.level === 'pte' ? e.raw : 0n;
  }

  /**
   * walk_page_range(mm, start, end, ops): visits each VMA overlapping
   * [start, end) (holes between them reported at depth -1), descending only
   * as deep as the deepest callback. A PMD leaf met with 'subtree' and a
   * pteEntry is split first, as the kernel does for VMA walks.
   * Returns what the walk returned (0, a callback's positive value, or -errno).
   */
  walkPageRange(p: Process, start: number | bigint, end: number | bigint, ops: WalkOps): number {
    if (p.machine !== this.machine || p.exited) throw new EmuError('EINVAL', 'p must be a live process of this machine', 'p');
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
        if (!(a in ACTIONS)) throw new EmuError('EINVAL', `unknown walk action ${String(a)}`, 'action');
        core.x.walkSetActionExport(ACTIONS[a]);
      },
      setEntry: (raw) => core.x.walkSetEntry(Number(raw & 0xffffffffn), Number((raw >> 32n) & 0xffffffffn)),
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
