// TLB hierarchies: presets and custom configurations, validated here and
// built once per machine in the core (the same hierarchy on every CPU).

import { EmuError, shown, ownEntry } from './errors.js';
import type { ArchName } from './arch.js';

export type PageSizeName = '4K' | '64K' | '2M' | '1G';
export type TlbKind = 'data' | 'instruction' | 'unified';
export type TlbPolicy = 'lru' | 'plru';

/** One set-associative array: `entries` = sets x ways (give either entries or sets). */
export interface TlbArrayConfig {
  level: 1 | 2;
  kind: TlbKind;
  sizes: PageSizeName[];
  ways: number;
  entries?: number;
  sets?: number;
  policy?: TlbPolicy;
  /** A label for reports, e.g. 'L1 dTLB 4K'. */
  name?: string;
}

/** Paging-structure caches: entries per level of cached upper entry. */
export interface WalkCacheConfig { pmd?: number; pud?: number; p4d?: number; pgd?: number }

export interface TlbConfig {
  arrays: TlbArrayConfig[];
  walkCache?: WalkCacheConfig;
}

export type TlbPreset = 'skylake' | 'neoverse-n1' | 'tiny' | 'none';

export const TLB_PRESETS: Record<TlbPreset, TlbConfig> = {
  // Intel Skylake client: split L1 arrays per page size, a 1536-entry 12-way STLB for 4K and 2M.
  skylake: {
    arrays: [
      { name: 'L1 dTLB 4K', level: 1, kind: 'data', sizes: ['4K'], entries: 64, ways: 4 },
      { name: 'L1 dTLB 2M', level: 1, kind: 'data', sizes: ['2M'], entries: 32, ways: 4 },
      { name: 'L1 dTLB 1G', level: 1, kind: 'data', sizes: ['1G'], entries: 4, ways: 4 },
      { name: 'L1 iTLB 4K', level: 1, kind: 'instruction', sizes: ['4K'], entries: 128, ways: 8 },
      { name: 'L1 iTLB 2M', level: 1, kind: 'instruction', sizes: ['2M'], entries: 8, ways: 8 },
      { name: 'STLB 4K/2M', level: 2, kind: 'unified', sizes: ['4K', '2M'], entries: 1536, ways: 12 },
      { name: 'STLB 1G', level: 2, kind: 'unified', sizes: ['1G'], entries: 16, ways: 4 },
    ],
    walkCache: { pmd: 32, pud: 4, p4d: 2, pgd: 2 },
  },
  // Arm Neoverse N1: fully associative 48-entry L1s and a 1280-entry 5-way L2, all page sizes,
  // contiguous 64K blocks held as one entry.
  'neoverse-n1': {
    arrays: [
      { name: 'L1 iTLB', level: 1, kind: 'instruction', sizes: ['4K', '64K', '2M', '1G'], entries: 48, ways: 48 },
      { name: 'L1 dTLB', level: 1, kind: 'data', sizes: ['4K', '64K', '2M', '1G'], entries: 48, ways: 48 },
      { name: 'L2 TLB', level: 2, kind: 'unified', sizes: ['4K', '64K', '2M', '1G'], entries: 1280, ways: 5 },
    ],
    walkCache: { pmd: 32, pud: 8, p4d: 4, pgd: 4 },
  },
  // A handful of entries, to watch hits, misses and evictions by hand.
  tiny: {
    arrays: [
      { name: 'L1 dTLB', level: 1, kind: 'data', sizes: ['4K', '2M'], entries: 4, ways: 2 },
      { name: 'L1 iTLB', level: 1, kind: 'instruction', sizes: ['4K', '2M'], entries: 2, ways: 2 },
      { name: 'L2 TLB', level: 2, kind: 'unified', sizes: ['4K', '2M'], entries: 8, ways: 2 },
    ],
    walkCache: { pmd: 2, pud: 1, p4d: 1, pgd: 1 },
  },
  // No TLB: every access walks the tables (for measuring kernel work alone).
  none: { arrays: [] },
};

const SIZE_BITS: Record<PageSizeName, number> = { '4K': 1, '64K': 2, '2M': 4, '1G': 8 };
const KINDS: Record<TlbKind, number> = { data: 0, instruction: 1, unified: 2 };

/** A validated array ready for the core. */
export interface ResolvedArray {
  name: string;
  level: 1 | 2;
  kind: number;
  sizes: number;
  sets: number;
  ways: number;
  policy: number;
}

export interface ResolvedTlb { arrays: ResolvedArray[]; walkCache: [number, number, number, number] }

/** Resolves a preset name or a custom config for an arch; throws EmuError naming what is wrong. */
export function resolveTlb(spec: TlbPreset | TlbConfig | undefined, arch: ArchName): ResolvedTlb {
  const cfg = spec === undefined ? TLB_PRESETS[arch === 'arm64' ? 'neoverse-n1' : 'skylake']
    : typeof spec === 'string' ? TLB_PRESETS[spec] : spec;
  if (cfg === undefined || cfg === null || typeof cfg !== 'object' || !Array.isArray(cfg.arrays)) {
    throw new EmuError('EINVAL', `tlb must be one of ${Object.keys(TLB_PRESETS).join(', ')} or a { arrays } config`, 'tlb');
  }
  if (cfg.arrays.length > 8) throw new EmuError('EINVAL', 'tlb: at most 8 arrays per CPU', 'tlb');
  const arrays = cfg.arrays.map((a, i): ResolvedArray => {
    const where = `tlb.arrays[${i}]`;
    if (a === null || typeof a !== 'object') throw new EmuError('EINVAL', `${where} must be an object`, 'tlb');
    if (a.level !== 1 && a.level !== 2) throw new EmuError('EINVAL', `${where}.level must be 1 or 2`, 'tlb');
    if (ownEntry(KINDS, a.kind) === undefined) throw new EmuError('EINVAL', `${where}.kind must be data, instruction or unified`, 'tlb');
    if (!Array.isArray(a.sizes) || a.sizes.length === 0) throw new EmuError('EINVAL', `${where}.sizes must list page sizes`, 'tlb');
    let sizes = 0;
    for (const s of a.sizes) {
      const b = ownEntry(SIZE_BITS, s);
      if (b === undefined) throw new EmuError('EINVAL', `${where}.sizes has unknown size ${shown(s)} (4K, 64K, 2M, 1G)`, 'tlb');
      if (s === '64K' && arch !== 'arm64') throw new EmuError('EINVAL', `${where}: 64K contiguous entries exist on arm64 only`, 'tlb');
      sizes |= b;
    }
    if (!Number.isInteger(a.ways) || a.ways < 1 || a.ways > 64) throw new EmuError('EINVAL', `${where}.ways must be an integer in [1, 64]`, 'tlb');
    let sets = a.sets;
    if (sets === undefined) {
      if (!Number.isInteger(a.entries) || a.entries! < 1 || a.entries! % a.ways !== 0) {
        throw new EmuError('EINVAL', `${where}.entries must be a positive multiple of ways`, 'tlb');
      }
      sets = a.entries! / a.ways;
    }
    if (!Number.isInteger(sets) || sets < 1 || sets > 1 << 16) throw new EmuError('EINVAL', `${where}.sets must be an integer in [1, 65536]`, 'tlb');
    const policy = a.policy ?? 'lru';
    if (policy !== 'lru' && policy !== 'plru') throw new EmuError('EINVAL', `${where}.policy must be lru or plru`, 'tlb');
    if (policy === 'plru' && (a.ways & (a.ways - 1)) !== 0) throw new EmuError('EINVAL', `${where}: tree-PLRU needs a power-of-two number of ways`, 'tlb');
    if (policy === 'plru' && a.ways > 32) throw new EmuError('EINVAL', `${where}: tree-PLRU supports at most 32 ways`, 'tlb');
    return { name: a.name ?? `L${a.level} ${a.kind} ${a.sizes.join('/')}`, level: a.level, kind: KINDS[a.kind], sizes, sets, ways: a.ways, policy: policy === 'plru' ? 1 : 0 };
  });
  const w = cfg.walkCache ?? {};
  const wc = [w.pmd ?? 0, w.pud ?? 0, w.p4d ?? 0, w.pgd ?? 0] as [number, number, number, number];
  for (const n of wc) if (!Number.isInteger(n) || n < 0 || n > 4096) throw new EmuError('EINVAL', 'tlb.walkCache sizes must be integers in [0, 4096]', 'tlb');
  return { arrays, walkCache: wc };
}
