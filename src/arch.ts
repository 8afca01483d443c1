// m.arch: the entry codec of the machine's architecture, for tests, teaching
// and hand-built mappings. Encoding and decoding run in the core (the same
// helpers the core uses), so values are bit-exact.

import type { Core } from './core.js';
import { EmuError, shown, ownEntry } from './errors.js';

export type ArchName = 'x86_64' | 'arm64';
export type EntryLevel = 'pte' | 'pmd' | 'pud' | 'p4d' | 'pgd';
export const LEVEL_NAMES: readonly EntryLevel[] = ['pte', 'pmd', 'pud', 'p4d', 'pgd'];

export type EntryKind = 'none' | 'present' | 'table' | 'swap' | 'migration' | 'device-private' | 'device-exclusive' | 'hwpoison' | 'marker';
const KINDS: readonly EntryKind[] = ['none', 'present', 'table', 'swap', 'migration', 'device-private', 'device-exclusive', 'hwpoison', 'marker'];

// Flag bits shared with assembly/codec.ts.
const F = {
  write: 1 << 0, dirty: 1 << 1, young: 1 << 2, special: 1 << 3, softDirty: 1 << 4, uffdWp: 1 << 5,
  protnone: 1 << 6, exec: 1 << 7, cont: 1 << 8, swpExclusive: 1 << 9, swpSoftDirty: 1 << 10, swpUffdWp: 1 << 11,
} as const;

/** Swap type numbers of the newest kernels (include/linux/swap.h). */
export const SWP = {
  MAX_SWAPFILES: 24, HWPOISON: 24, MIGRATION_READ: 25, MIGRATION_READ_EXCLUSIVE: 26, MIGRATION_WRITE: 27,
  DEVICE_WRITE: 28, DEVICE_READ: 29, DEVICE_EXCLUSIVE: 30, PTE_MARKER: 31,
} as const;

export const PTE_MARKER = { 'uffd-wp': 1, poisoned: 2, guard: 4 } as const;
export type MarkerKind = keyof typeof PTE_MARKER;

/** Fields of a present leaf. */
export interface PresentFields {
  pfn: number;
  write?: boolean;
  dirty?: boolean;
  young?: boolean;
  special?: boolean;
  softDirty?: boolean;
  uffdWp?: boolean;
  protnone?: boolean;
  exec?: boolean;
  /** arm64 PTE_CONT. */
  cont?: boolean;
}

/** Fields of a swap-format entry. */
export interface SwapFields {
  type: number;
  offset: number;
  exclusive?: boolean;
  softDirty?: boolean;
  uffdWp?: boolean;
}

/** A decoded entry. */
export interface DecodedEntry {
  raw: bigint;
  level: EntryLevel;
  kind: EntryKind;
  /** Present leaf or table: the frame; pfn-carrying swap kinds: the pfn in the offset. */
  pfn?: number;
  write: boolean;
  dirty: boolean;
  young: boolean;
  special: boolean;
  softDirty: boolean;
  uffdWp: boolean;
  protnone: boolean;
  exec: boolean;
  cont: boolean;
  /** Swap-format fields. */
  swapType?: number;
  swapOffset?: number;
  swpExclusive: boolean;
  swpSoftDirty: boolean;
  swpUffdWp: boolean;
  /** Marker bits, for kind 'marker'. */
  markers?: MarkerKind[];
  /** Bytes mapped by a present leaf at this level (64 KiB for an arm64 CONT pte). */
  size?: number;
}

function levelIndex(level: EntryLevel | number | undefined, arg = 'level'): number {
  if (level === undefined) return 0;
  const i = typeof level === 'number' ? level : LEVEL_NAMES.indexOf(level);
  if (!Number.isInteger(i) || i < 0 || i > 2) throw new EmuError('EINVAL', `${arg} must be 'pte', 'pmd' or 'pud', got ${shown(level)}`, arg);
  return i;
}

function checkInt(v: unknown, arg: string, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) throw new EmuError('EINVAL', `${arg} must be an integer in [0, ${max}], got ${shown(v)}`, arg);
  return v;
}

function fieldsArg(f: unknown): void {
  if (f === null || typeof f !== 'object') throw new EmuError('EINVAL', `the entry's fields must be an object, got ${shown(f)}`, 'f');
}

export class ArchCodec {
  readonly name: ArchName;
  private readonly core: Core;

  constructor(core: Core, name: ArchName) {
    this.core = core;
    this.name = name;
  }

  /** A present user leaf (pfn_pte on a read-only user base, then mkwrite/mkdirty/... as asked). */
  makePte(f: PresentFields, level: EntryLevel = 'pte'): bigint {
    fieldsArg(f);
    const lv = levelIndex(level);
    const pfn = checkInt(f.pfn, 'pfn', 2 ** 36 - 1);
    if (lv > 0 && pfn % (1 << (9 * lv)) !== 0) throw new EmuError('EINVAL', `pfn ${pfn} is not aligned for a ${level} leaf`, 'pfn');
    let flags = 0;
    if (f.write) flags |= F.write;
    if (f.dirty) flags |= F.dirty;
    if (f.young ?? true) flags |= F.young;
    if (f.special) flags |= F.special;
    if (f.softDirty) flags |= F.softDirty;
    if (f.uffdWp) flags |= F.uffdWp;
    if (f.protnone) flags |= F.protnone;
    if (f.exec) flags |= F.exec;
    if (f.cont) flags |= F.cont;
    return BigInt.asUintN(64, this.core.x.encodePresent(pfn, flags, lv));
  }

  /** A swap-format entry: a genuine swap entry (type < 24) or any special type. */
  makeSwap(f: SwapFields): bigint {
    fieldsArg(f);
    const type = checkInt(f.type, 'type', 31);
    const offset = checkInt(f.offset, 'offset', 2 ** 50 - 1);
    let flags = 0;
    if (f.exclusive) flags |= F.swpExclusive;
    if (f.softDirty) flags |= F.swpSoftDirty;
    if (f.uffdWp) flags |= F.swpUffdWp;
    return BigInt.asUintN(64, this.core.x.encodeSwap(type, offset, flags));
  }

  /** make_pte_marker. */
  makeMarker(kinds: MarkerKind | MarkerKind[]): bigint {
    const list = Array.isArray(kinds) ? kinds : [kinds];
    let bits = 0;
    for (const k of list) {
      const b = ownEntry(PTE_MARKER, k);
      if (b === undefined) throw new EmuError('EINVAL', `unknown marker ${shown(k)} (uffd-wp, poisoned, guard)`, 'kinds');
      bits |= b;
    }
    if (bits === 0) throw new EmuError('EINVAL', 'a marker needs at least one kind', 'kinds');
    return BigInt.asUintN(64, this.core.x.encodeSwap(SWP.PTE_MARKER, bits, 0));
  }

  /** A migration entry for pfn (read, read-exclusive or write). */
  makeMigration(pfn: number, mode: 'read' | 'read-exclusive' | 'write' = 'read', extra: Omit<SwapFields, 'type' | 'offset'> = {}): bigint {
    const type = mode === 'write' ? SWP.MIGRATION_WRITE : mode === 'read-exclusive' ? SWP.MIGRATION_READ_EXCLUSIVE : SWP.MIGRATION_READ;
    return this.makeSwap({ ...extra, type, offset: pfn });
  }

  /** A device-private entry for a device pfn. */
  makeDevicePrivate(pfn: number, write: boolean, extra: Omit<SwapFields, 'type' | 'offset'> = {}): bigint {
    return this.makeSwap({ ...extra, type: write ? SWP.DEVICE_WRITE : SWP.DEVICE_READ, offset: pfn });
  }

  /** A table-pointing entry (what a PGD/PUD/PMD slot holds above a table at pfn). */
  makeTable(pfn: number): bigint { return BigInt.asUintN(64, this.core.x.encodeTable(checkInt(pfn, 'pfn', 2 ** 36 - 1))); }

  /** Decodes a raw entry found at `level`. */
  decode(raw: bigint, level: EntryLevel | number = 'pte'): DecodedEntry {
    if (typeof raw !== 'bigint' || raw < 0n || raw >= 1n << 64n) throw new EmuError('EINVAL', `raw must be a 64-bit bigint, got ${shown(raw)}`, 'raw');
    const lv = typeof level === 'number' ? level : LEVEL_NAMES.indexOf(level);
    if (!Number.isInteger(lv) || lv < 0 || lv > 4) throw new EmuError('EINVAL', `level must be one of ${LEVEL_NAMES.join(', ')}`, 'level');
    const x = this.core;
    const kind = KINDS[x.x.decode(raw, lv)]!;
    const flags = x.result(1);
    const has = (b: number): boolean => (flags & b) !== 0;
    const present = kind === 'present';
    const swapish = kind !== 'none' && kind !== 'present' && kind !== 'table';
    const d: DecodedEntry = {
      raw, level: LEVEL_NAMES[lv]!, kind,
      write: present && has(F.write), dirty: present && has(F.dirty), young: present && has(F.young),
      special: present && has(F.special), softDirty: present && has(F.softDirty), uffdWp: present && has(F.uffdWp),
      protnone: present && has(F.protnone), exec: present && has(F.exec), cont: present && has(F.cont),
      swpExclusive: swapish && has(F.swpExclusive), swpSoftDirty: swapish && has(F.swpSoftDirty), swpUffdWp: swapish && has(F.swpUffdWp),
    };
    if (present || kind === 'table' || kind === 'migration' || kind === 'device-private' || kind === 'device-exclusive' || kind === 'hwpoison') d.pfn = x.result(0);
    if (swapish) { d.swapType = x.result(2); d.swapOffset = x.result(3); }
    if (kind === 'marker') d.markers = (Object.keys(PTE_MARKER) as MarkerKind[]).filter((k) => (d.swapOffset! & PTE_MARKER[k]) !== 0);
    // A CONT pte covers a 64 KiB block (16 entries); a CONT pmd a 32 MiB one (CONT_PMDS = 16).
    if (present) d.size = 4096 * 512 ** lv * (d.cont ? 16 : 1);
    return d;
  }
}
