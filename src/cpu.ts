// m.cpu(i): one CPU of the machine. Accesses go through its TLB hierarchy
// (or the functional cache), and the kernel's fault handler runs on it when
// an access cannot complete.

import type { Core } from './core.js';
import type { Machine } from './machine.js';
import { liveProcessOf, type Process, type AccessResult } from './process.js';
import { EmuError, shown } from './errors.js';
import { toBigAddr } from './addr.js';
import type { PageSizeName } from './tlb.js';

/** Where a translation came from. */
export type HitLevel = 'l1' | 'l2' | 'walk';

export type CpuAccessResult = AccessResult & { hit?: HitLevel };

export type BySize = Record<PageSizeName, number>;

/** A CPU's modelled-TLB counters (model mode only). */
export interface TlbStats {
  accesses: number;
  l1Hits: BySize;
  l2Hits: BySize;
  walks: number;
  /** Walks by the size of the leaf they found. */
  walksBySize: BySize;
  /** Page-table entries read by walks (what the paging-structure caches did not save). */
  walkRefs: number;
  walkCacheHits: number;
  /** Exceptions taken (the kernel then handled them, or sent a signal). */
  pageFaults: number;
  /** Writes through a cached clean-writable entry that re-walked to set dirty. */
  dirtyRewalks: number;
  /** Invalidations that reached this CPU, and how many of them came by IPI. */
  flushes: number;
  ipis: number;
  signals: number;
  /** Why translations failed: no present leaf, a write to a read-only one, another permission, a failed dirty update. */
  faultKinds: { notPresent: number; writeProtect: number; permission: number; dirtyUpdate: number };
}

const SIZES: PageSizeName[] = ['4K', '64K', '2M', '1G'];
const HITS: (HitLevel | undefined)[] = [undefined, 'l1', 'l2', 'walk'];
export const NR_STATS = 32;

/** Reads a CPU's raw counters. */
export function readCpuStats(core: Core, cpu: number): bigint[] {
  const p = core.x.cpuStats(cpu);
  return Array.from({ length: NR_STATS }, (_, i) => core.u64At(p + i * 8));
}

/** Turns raw counters (or a difference of them) into TlbStats. */
export function toTlbStats(v: readonly bigint[]): TlbStats {
  const n = (i: number): number => Number(v[i]!);
  const bySize = (base: number): BySize => ({ '4K': n(base), '64K': n(base + 1), '2M': n(base + 2), '1G': n(base + 3) });
  return {
    accesses: n(0), l1Hits: bySize(1), l2Hits: bySize(5), walks: n(9), walkRefs: n(10), walkCacheHits: n(11),
    pageFaults: n(12), dirtyRewalks: n(13), flushes: n(14), ipis: n(15), walksBySize: bySize(16), signals: n(20),
    faultKinds: { notPresent: n(21), writeProtect: n(22), permission: n(23), dirtyUpdate: n(24) },
  };
}

/** A cached translation, as inspected without disturbing replacement. */
export interface CachedTranslation {
  where: 'l1' | 'l2' | 'functional';
  pfn: number;
  size: PageSizeName;
  readable: boolean;
  /** A write completes through this entry without touching the PTE. */
  writable: boolean;
  /** A write re-walks to set the PTE dirty (x86 cached D=0; arm64 RDONLY with DBM). */
  writeNeedsDirtyUpdate: boolean;
  executable: boolean;
  global: boolean;
}

export class Cpu {
  readonly id: number;
  private readonly machine: Machine;
  private readonly core: Core;

  /** @internal */
  constructor(machine: Machine, core: Core, id: number) {
    this.machine = machine;
    this.core = core;
    this.id = id;
  }

  /** One access by this CPU on behalf of p: 'r', 'w' (storing tag) or 'x'. */
  access(p: Process, addr: number | bigint, kind: 'r' | 'w' | 'x', tag = 0): CpuAccessResult {
    this.ownProcess(p);
    if (kind !== 'r' && kind !== 'w' && kind !== 'x') throw new EmuError('EINVAL', `kind must be 'r', 'w' or 'x', got ${shown(kind)}`, 'kind');
    return p.accessOn(this.id, addr, kind === 'r' ? 0 : kind === 'w' ? 1 : 2, tag);
  }

  read(p: Process, addr: number | bigint): CpuAccessResult { return this.access(p, addr, 'r'); }
  write(p: Process, addr: number | bigint, tag: number): CpuAccessResult { return this.access(p, addr, 'w', tag); }

  /** The TLB of this CPU: counters and inspection. */
  get tlb(): { stats: TlbStats; lookup(p: Process, addr: number | bigint): CachedTranslation | null; occupancy: number[] } {
    const core = this.core;
    const id = this.id;
    return {
      stats: toTlbStats(readCpuStats(core, id)),
      lookup: (p: Process, addr: number | bigint): CachedTranslation | null => {
        this.ownProcess(p);
        const vpn = Number(toBigAddr(addr, 'addr') >> 12n);
        const where = core.x.cpuPeek(id, p.pid, vpn);
        if (where <= 0) return null;
        const perms = core.result(1);
        return {
          where: where === 1 ? 'l1' : where === 2 ? 'l2' : 'functional', pfn: core.result(0), size: SIZES[core.result(2)]!,
          readable: (perms & 1) !== 0, writable: (perms & 2) !== 0, writeNeedsDirtyUpdate: (perms & 4) !== 0,
          executable: (perms & 8) !== 0, global: (perms & 16) !== 0,
        };
      },
      occupancy: this.occupancy(),
    };
  }

  private ownProcess(p: Process): void {
    liveProcessOf(this.machine, p);
  }

  /** Valid entries per array, in configuration order. */
  private occupancy(): number[] {
    const n = this.core.x.cpuInfo(this.id);
    const lo = this.core.resultBig(1), hi = this.core.resultBig(2);
    return Array.from({ length: n }, (_, i) => Number(((i < 4 ? lo : hi) >> BigInt(16 * (i % 4))) & 0xffffn));
  }

  /** The pid of the process this CPU last ran (0: none). */
  get running(): number {
    this.core.x.cpuInfo(this.id);
    return this.core.result(0);
  }

  /** @internal */
  static hitName(code: number): HitLevel | undefined { return HITS[code]; }
}
