// Entry codecs (m.arch): bit-exact encodings and round trips for x86-64 and
// arm64, per /work/shared/SEMANTICS.md §1 (entry model and layouts) and §9.A
// (acceptance behaviours A1-A11).
//
// Two kinds of checks:
//  - hand-computed literals for a handful of entries, with the derivation in
//    a comment next to each literal;
//  - grids (full flag enumeration x a seeded sample of pfns/offsets) where
//    every value make*() returns is compared with an independent reference
//    encoder written below straight from the spec tables, and decode() must
//    give back every field.
//
// Grid tests collect mismatches and assert once at the end, grouped by kind
// of mismatch (count + first example), so one failure message shows every
// distinct problem instead of the first one only.

import { describe, it, expect, beforeAll } from 'vitest';
import { Machine, SWP, PTE_MARKER } from '../src/index.js';
import type { ArchName, DecodedEntry, EntryLevel, MarkerKind } from '../src/index.js';

// ---- small helpers ----------------------------------------------------------------------

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
const U64_LIMIT = 1n << 64n;
const bit = (n: number): bigint => 1n << BigInt(n);
/** Fixed-width hex, so literal/actual diffs line up; a negative bigint stays visibly negative. */
const hex = (v: bigint): string => (v < 0n ? '-0x' + (-v).toString(16) : '0x' + v.toString(16).padStart(16, '0'));
const LEVELS: readonly EntryLevel[] = ['pte', 'pmd', 'pud'];
const LEVEL_INDEX: Record<string, number> = { pte: 0, pmd: 1, pud: 2 };
const leafSize = (level: EntryLevel): number => 4096 * 512 ** LEVEL_INDEX[level]!;
const MAX_PFN = 2 ** 36 - 1; // the API's pfn range (36-bit pfns = 48-bit physical addresses)
const MAX_OFFSET = 2 ** 50 - 1; // 50-bit swap offsets on both arches (§1.2, §1.3)

/** mulberry32: a tiny seeded PRNG so the sample is the same on every run. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0);
  };
}
/** A random integer in [0, 2^bits) for bits <= 52. */
function randBits(rng: () => number, bits: number): number {
  const hi = bits > 32 ? rng() % 2 ** (bits - 32) : 0;
  const lo = bits >= 32 ? rng() : rng() % 2 ** bits;
  return hi * 2 ** 32 + lo;
}
/** Every subset of `names`, as records of booleans. */
function allCombos<K extends string>(names: readonly K[]): Record<K, boolean>[] {
  const out: Record<K, boolean>[] = [];
  for (let m = 0; m < 1 << names.length; m++) {
    const r = {} as Record<K, boolean>;
    names.forEach((n, i) => { r[n] = (m & (1 << i)) !== 0; });
    out.push(r);
  }
  return out;
}

/**
 * Mismatch collector for grid tests: groups problems by kind, keeps a count and
 * the first example of each, and is asserted empty once at the end.
 */
class Mismatches {
  private readonly groups = new Map<string, { count: number; first: string }>();
  add(kind: string, example: string): void {
    const g = this.groups.get(kind);
    if (g) g.count++;
    else this.groups.set(kind, { count: 1, first: example });
  }
  /** A raw value must be an unsigned 64-bit bigint (what decode() accepts). Returns it normalised, so field checks can continue. */
  raw(label: string, raw: bigint): bigint {
    if (raw < 0n || raw >= U64_LIMIT) {
      this.add('make*() returned a value outside [0, 2^64) (signed i64 leaked from the core)', `${label}: got ${hex(raw)}, i.e. ${hex(BigInt.asUintN(64, raw))} as u64`);
      return BigInt.asUintN(64, raw);
    }
    return raw;
  }
  bits(label: string, actual: bigint, expected: bigint): void {
    if (actual !== expected) this.add('raw bits differ from the spec layout', `${label}: got ${hex(actual)}, spec ${hex(expected)}, differing bits ${hex(actual ^ expected)}`);
  }
  fields(label: string, d: DecodedEntry, expected: Partial<DecodedEntry>): void {
    for (const [k, v] of Object.entries(expected)) {
      const got = (d as unknown as Record<string, unknown>)[k];
      if (JSON.stringify(got) !== JSON.stringify(v)) this.add(`decode().${k} wrong`, `${label}: ${k} = ${JSON.stringify(got)}, expected ${JSON.stringify(v)} (raw ${hex(d.raw)})`);
    }
  }
  report(): Record<string, { count: number; first: string }> { return Object.fromEntries(this.groups); }
}

// ---- reference encoders, written from the spec tables (not from the codec) ---------------

/** Present-leaf fields as the API takes them, all explicit. */
interface Leaf {
  pfn: number; write: boolean; dirty: boolean; young: boolean; special: boolean; softDirty: boolean;
  uffdWp: boolean; protnone: boolean; exec: boolean; cont: boolean;
}
const LEAF_FLAGS = ['write', 'dirty', 'young', 'special', 'softDirty', 'uffdWp', 'protnone', 'exec', 'cont'] as const;

// §1.2 x86-64 bits.
const X = {
  P: bit(0), RW: bit(1), US: bit(2), PWT: bit(3), A: bit(5), D: bit(6), PSE: bit(7), G: bit(8) /* = PROTNONE when P=0 */,
  SPECIAL: bit(9), UFFD_WP: bit(10), SOFT_DIRTY: bit(11), PAT_LARGE: bit(12), NX: bit(63),
  // swap-format flags (P=0): bits 1, 2, 3
  SWP_SOFT_DIRTY: bit(1), SWP_UFFD_WP: bit(2), SWP_EXCLUSIVE: bit(3),
};
/** Physical-address bits 12..51 (PTE_PFN_MASK, __PHYSICAL_MASK_SHIFT = 52). */
const X86_PFN_MASK = ((1n << 52n) - 1n) & ~0xfffn;
const OFFSET_MASK = (1n << 50n) - 1n;

/**
 * x86 present leaf from a read-only user base (PAGE_READONLY = P|US|A|NX, or
 * PAGE_READONLY_EXEC without NX; PROT_NONE: PAGE_NONE = PROTNONE(G)|A, P=0,
 * §1.2), then RW/D/A/SPECIAL/UFFD_WP/SOFT_DIRTY as asked. PROT_NONE leaves
 * store the address inverted (L1TF), masked to the leaf's own address bits:
 * pfn_pte uses PTE_PFN_MASK, pfn_pmd PHYSICAL_PMD_PAGE_MASK, pfn_pud
 * PHYSICAL_PUD_PAGE_MASK (arch/x86/include/asm/pgtable.h). Upper-level leaves
 * carry PSE (bit 7).
 */
function x86Leaf(f: Leaf, level: EntryLevel, softDirtyOn = true): bigint {
  let v = 0n;
  if (f.protnone) v |= X.G;
  else v |= X.P | X.US | (f.exec ? 0n : X.NX);
  if (f.young) v |= X.A;
  if (f.write) v |= X.RW;
  if (f.dirty) v |= X.D;
  if (f.special) v |= X.SPECIAL;
  if (f.uffdWp) v |= X.UFFD_WP;
  if (f.softDirty && softDirtyOn) v |= X.SOFT_DIRTY;
  const addrMask = X86_PFN_MASK & ~((1n << BigInt(12 + 9 * LEVEL_INDEX[level]!)) - 1n);
  const pa = BigInt(f.pfn) << 12n;
  v |= (f.protnone ? ~pa : pa) & addrMask;
  if (level !== 'pte') v |= X.PSE;
  return v;
}

/** x86 swap-format (§1.2): type in 59-63, offset inverted in 9-58, soft-dirty/uffd-wp/exclusive in bits 1/2/3. */
function x86Swap(type: number, offset: number, fl: SwpFlags, softDirtyOn = true): bigint {
  return (BigInt(type) << 59n) | ((~BigInt(offset) & OFFSET_MASK) << 9n) |
    (fl.softDirty && softDirtyOn ? X.SWP_SOFT_DIRTY : 0n) | (fl.uffdWp ? X.SWP_UFFD_WP : 0n) | (fl.exclusive ? X.SWP_EXCLUSIVE : 0n);
}

// §1.3 arm64 bits.
const A = {
  VALID: bit(0), TABLE: bit(1) /* page (pte) / table (pmd,pud) */, USER: bit(6), RDONLY: bit(7), SH: 3n << 8n, AF: bit(10),
  NG: bit(11) /* = PTE_PRESENT_INVALID when VALID=0 */, WRITE: bit(51) /* = DBM */, CONT: bit(52), PXN: bit(53), UXN: bit(54),
  DIRTY: bit(55), SPECIAL: bit(56), UFFD_WP: bit(58),
  SWP_EXCLUSIVE: bit(2), SWP_UFFD_WP: bit(3),
};

/**
 * arm64 present leaf (§1.3): _PROT_DEFAULT = TYPE_PAGE|AF|SH, AttrIndx(MT_NORMAL)=0;
 * PAGE_READONLY adds USER|RDONLY|nG|PXN|UXN (READONLY_EXEC drops UXN);
 * PAGE_NONE is the default minus VALID plus PRESENT_INVALID(nG)|RDONLY|PXN|UXN
 * (no USER). Then the DBM table: RDONLY is clear only for writable+dirty,
 * WRITE = writable, sw DIRTY = dirty (pte_mkdirty always sets it). Blocks
 * (pmd/pud leaves) clear bit 1 (§1.5).
 */
function arm64Leaf(f: Leaf, level: EntryLevel): bigint {
  let v = A.TABLE | A.SH | A.NG | A.PXN;
  if (f.protnone) v |= A.UXN;
  else v |= A.VALID | A.USER | (f.exec ? 0n : A.UXN);
  if (f.young) v |= A.AF;
  if (f.write) v |= A.WRITE;
  if (!(f.write && f.dirty)) v |= A.RDONLY;
  if (f.dirty) v |= A.DIRTY;
  if (f.special) v |= A.SPECIAL;
  if (f.uffdWp) v |= A.UFFD_WP;
  if (f.cont) v |= A.CONT;
  v |= BigInt(f.pfn) << 12n;
  if (level !== 'pte') v &= ~A.TABLE;
  return v;
}

/** arm64 swap-format (§1.3): exclusive bit 2, uffd-wp bit 3, type 6-10, offset 12-61; no soft-dirty. */
function arm64Swap(type: number, offset: number, fl: SwpFlags): bigint {
  return (BigInt(type) << 6n) | (BigInt(offset) << 12n) | (fl.exclusive ? A.SWP_EXCLUSIVE : 0n) | (fl.uffdWp ? A.SWP_UFFD_WP : 0n);
}

interface SwpFlags { exclusive: boolean; softDirty: boolean; uffdWp: boolean }
const SWP_FLAG_COMBOS = allCombos(['exclusive', 'softDirty', 'uffdWp'] as const);

/** The decode() kind of a swap-format entry of `type` (§1.4, generation B numbering). */
function swapKind(type: number): DecodedEntry['kind'] {
  if (type < SWP.MAX_SWAPFILES) return 'swap';
  if (type === SWP.HWPOISON) return 'hwpoison';
  if (type <= SWP.MIGRATION_WRITE) return 'migration';
  if (type <= SWP.DEVICE_READ) return 'device-private';
  if (type === SWP.DEVICE_EXCLUSIVE) return 'device-exclusive';
  return 'marker';
}

const NOT_PRESENT = { write: false, dirty: false, young: false, special: false, softDirty: false, uffdWp: false, protnone: false, exec: false, cont: false };
const NOT_SWAP = { swpExclusive: false, swpSoftDirty: false, swpUffdWp: false, swapType: undefined, swapOffset: undefined, markers: undefined };

/** What decode() must report for a present leaf built from `f` (§1.1 fields, per arch). */
function expectedLeaf(arch: ArchName, f: Leaf, level: EntryLevel, softDirtyOn = true): Partial<DecodedEntry> {
  const x86 = arch === 'x86_64';
  const cont = !x86 && f.cont;
  return {
    kind: 'present', pfn: f.pfn, write: f.write, dirty: f.dirty, young: f.young, special: f.special, uffdWp: f.uffdWp,
    protnone: f.protnone,
    softDirty: x86 && softDirtyOn && f.softDirty, // soft-dirty is x86 bit 11 only (§1.1)
    // PROT_NONE ignores exec: x86 PAGE_NONE has no NX (so pte_exec is true), arm64 PAGE_NONE has UXN.
    exec: f.protnone ? x86 : f.exec,
    cont, // PTE_CONT exists on arm64 only
    size: cont && level === 'pte' ? 64 * KiB : leafSize(level),
    ...NOT_SWAP,
  };
}

/** What decode() must report for a swap-format entry (§1.4). */
function expectedSwap(arch: ArchName, type: number, offset: number, fl: SwpFlags, softDirtyOn = true): Partial<DecodedEntry> {
  const kind = swapKind(type);
  const pfnKind = kind !== 'swap' && kind !== 'marker';
  return {
    kind, pfn: pfnKind ? offset : undefined, swapType: type, swapOffset: offset,
    swpExclusive: fl.exclusive, swpUffdWp: fl.uffdWp,
    swpSoftDirty: arch === 'x86_64' && softDirtyOn && fl.softDirty, // arm64 has no swp soft-dirty (§1.3)
    markers: kind === 'marker' ? (Object.keys(PTE_MARKER) as MarkerKind[]).filter((k) => (offset & PTE_MARKER[k]) !== 0) : undefined,
    ...NOT_PRESENT,
  };
}

/** Pfns for grids: the edges plus a seeded sample, aligned for the level. */
function samplePfns(level: EntryLevel, seed: number, n = 6): number[] {
  const align = 512 ** LEVEL_INDEX[level]!;
  const maxAligned = Math.floor(MAX_PFN / align) * align;
  const rng = prng(seed);
  const out = [0, align, 0x1234 * align, maxAligned];
  for (let i = 0; i < n; i++) out.push(Math.floor(randBits(rng, 36) / align) * align);
  return out;
}

async function machine(arch: ArchName, softDirty = true): Promise<Machine> {
  return Machine.create({ arch, memory: '64MiB', softDirty });
}

// =========================================================================================
// x86-64
// =========================================================================================

describe('x86-64 codec: exact bits (SEMANTICS §1.2, §1.4, §9.A)', () => {
  let m: Machine;
  beforeAll(async () => { m = await machine('x86_64'); });

  it('A1: present pfn 0x1234 RW US A D, non-exec user page -> bits 0,1,2,5,6 + pfn<<12 + NX', () => {
    // base PAGE_READONLY = P|US|A|NX (the non-exec protection; §1.2 / pgtable_types.h), + RW + D:
    //   P(0)|RW(1)|US(2)|A(5)|D(6) = 0x67;  pfn<<12 = 0x1234000;  NX = bit 63
    //   -> 0x8000_0000_0123_4067
    const raw = m.arch.makePte({ pfn: 0x1234, write: true, dirty: true });
    expect(hex(raw)).toBe(hex(0x8000_0000_0123_4067n));
  });

  it('values with bit 63 set come back as unsigned 64-bit bigints (NX leaves, swap types >= 16, markers)', () => {
    // WebAssembly i64 results cross into JS as *signed* bigints; make*() must hand out u64 values,
    // which is also the only range decode() accepts.
    const values = [
      m.arch.makePte({ pfn: 1 }), // NX
      m.arch.makeSwap({ type: 16, offset: 1 }), // 16 << 59 = bit 63
      m.arch.makeMigration(1, 'write'),
      m.arch.makeDevicePrivate(1, false),
      m.arch.makeMarker('guard'),
    ];
    for (const v of values) {
      expect(v >= 1n << 63n && v < U64_LIMIT, hex(v)).toBe(true);
      expect(() => m.arch.decode(v)).not.toThrow();
    }
  });

  it('A1: decoding the hand-computed A1 value gives write, dirty, young; not special/uffd-wp/soft-dirty', () => {
    const d = m.arch.decode(0x8000_0000_0123_4067n, 'pte');
    expect(d).toMatchObject({
      kind: 'present', pfn: 0x1234, write: true, dirty: true, young: true,
      special: false, uffdWp: false, softDirty: false, protnone: false, exec: false, size: 4096,
    });
  });

  it('exec page: same as A1 without NX (PAGE_READONLY_EXEC has no NX)', () => {
    // 0x67 | 0x1234 << 12 = 0x0000_0000_0123_4067
    expect(hex(m.arch.makePte({ pfn: 0x1234, write: true, dirty: true, exec: true }))).toBe(hex(0x0000_0000_0123_4067n));
  });

  it('software bits: special = bit 9, uffd-wp = bit 10, soft-dirty = bit 11', () => {
    // read-only exec clean young: P|US|A = 0x25; + 0x200 + 0x400 + 0x800 = 0xE25
    const raw = m.arch.makePte({ pfn: 0x1234, exec: true, special: true, uffdWp: true, softDirty: true });
    expect(hex(raw)).toBe(hex(0x0000_0000_0123_4e25n));
    // and old (young: false) drops A (bit 5): 0x05
    expect(hex(m.arch.makePte({ pfn: 0x1234, exec: true, young: false }))).toBe(hex(0x0000_0000_0123_4005n));
  });

  it('A2: PROT_NONE = bit 8 set, bit 0 clear, pfn stored inverted (L1TF), decodes back to the pfn', () => {
    // PAGE_NONE = PROTNONE(bit 8)|A(bit 5) = 0x120, P clear.
    // address bits 12..51 hold ~(0x1234 << 12): ~0x1234 & (2^40-1) = 0xFF_FFFF_EDCB -> << 12
    //   -> 0x000F_FFFF_FEDC_B000 | 0x120 = 0x000F_FFFF_FEDC_B120
    const raw = m.arch.makePte({ pfn: 0x1234, protnone: true });
    expect(hex(raw)).toBe(hex(0x000f_ffff_fedc_b120n));
    expect(raw & X.P).toBe(0n);
    expect(raw & X.G).toBe(X.G);
    expect(m.arch.decode(0x000f_ffff_fedc_b120n, 'pte')).toMatchObject({ kind: 'present', protnone: true, pfn: 0x1234, young: true });
  });

  it('A2: the same value with bit 0 set is a present Global page, not protnone, and its pfn is no longer inverted', () => {
    const d = m.arch.decode(0x000f_ffff_fedc_b120n | X.P, 'pte');
    expect(d.kind).toBe('present');
    expect(d.protnone).toBe(false);
    // P=1: bits 12..51 read as-is: 0xFF_FFFF_EDCB
    expect(d.pfn).toBe(0xff_ffff_edcb);
  });

  it('PMD leaf: same layout plus PSE (bit 7)', () => {
    // pfn 0x200 (2 MiB aligned): 0x67 | PSE 0x80 = 0xE7; 0x200 << 12 = 0x20_0000; NX
    expect(hex(m.arch.makePte({ pfn: 0x200, write: true, dirty: true }, 'pmd'))).toBe(hex(0x8000_0000_0020_00e7n));
    // PUD: pfn 0x40000 (1 GiB aligned) -> 0x4000_0000, exec: no NX
    expect(hex(m.arch.makePte({ pfn: 0x40000, write: true, dirty: true, exec: true }, 'pud'))).toBe(hex(0x0000_0000_4000_00e7n));
  });

  it('PROT_NONE PMD/PUD: inverted address masked to the huge-page address bits (pfn_pmd/pfn_pud), PAT_LARGE (bit 12) clear', () => {
    // pfn_pmd: pfn ^= protnone_mask; pfn &= PHYSICAL_PMD_PAGE_MASK (bits 21..51):
    //   ~(0x200 << 12) & bits 21..51 = 0x000F_FFFF_FFC0_0000; | A 0x20 | PSE 0x80 | PROTNONE 0x100 = 0x000F_FFFF_FFC0_01A0
    const pmd = m.arch.makePte({ pfn: 0x200, protnone: true }, 'pmd');
    expect(hex(pmd)).toBe(hex(0x000f_ffff_ffc0_01a0n));
    // pfn_pud: PHYSICAL_PUD_PAGE_MASK (bits 30..51): ~(0x40000 << 12) & that = 0x000F_FFFF_8000_0000 | 0x1A0
    const pud = m.arch.makePte({ pfn: 0x40000, protnone: true }, 'pud');
    expect(hex(pud)).toBe(hex(0x000f_ffff_8000_01a0n));
  });

  it('PROT_NONE PMD decodes back (present, protnone, pfn) from the kernel-layout value', () => {
    expect(m.arch.decode(0x000f_ffff_ffc0_01a0n, 'pmd')).toMatchObject({ kind: 'present', protnone: true, pfn: 0x200, size: 2 * MiB });
  });

  it('swap layout: type 5, offset 0xABCDE -> type in 59-63, ~offset in 9-58, bits 0-8 clear', () => {
    // 5 << 59 = 0x2800_0000_0000_0000; (~0xABCDE & (2^50-1)) << 9 = 0x07FF_FFFF_EA86_4200
    //   -> 0x2FFF_FFFF_EA86_4200
    const raw = m.arch.makeSwap({ type: 5, offset: 0xabcde });
    expect(hex(raw)).toBe(hex(0x2fff_ffff_ea86_4200n));
    expect(m.arch.decode(0x2fff_ffff_ea86_4200n)).toMatchObject({ kind: 'swap', swapType: 5, swapOffset: 0xabcde, swpExclusive: false, swpSoftDirty: false, swpUffdWp: false });
  });

  it('swap flags: soft-dirty = bit 1, uffd-wp = bit 2, exclusive = bit 3', () => {
    const base = 0x2fff_ffff_ea86_4200n;
    expect(hex(m.arch.makeSwap({ type: 5, offset: 0xabcde, softDirty: true }))).toBe(hex(base | 0x2n));
    expect(hex(m.arch.makeSwap({ type: 5, offset: 0xabcde, uffdWp: true }))).toBe(hex(base | 0x4n));
    expect(hex(m.arch.makeSwap({ type: 5, offset: 0xabcde, exclusive: true }))).toBe(hex(base | 0x8n));
    expect(m.arch.decode(base | 0xen)).toMatchObject({ kind: 'swap', swapType: 5, swapOffset: 0xabcde, swpSoftDirty: true, swpUffdWp: true, swpExclusive: true });
    expect(m.arch.decode(base | 0x4n)).toMatchObject({ swpSoftDirty: false, swpUffdWp: true, swpExclusive: false });
  });

  it('special swap types set bit 63: hwpoison (type 24) pfn 0x1234', () => {
    // 24 << 59 = 0xC000_0000_0000_0000; (~0x1234 & (2^50-1)) << 9 = 0x07FF_FFFF_FFDB_9600 -> 0xC7FF_FFFF_FFDB_9600
    expect(hex(m.arch.makeSwap({ type: SWP.HWPOISON, offset: 0x1234 }))).toBe(hex(0xc7ff_ffff_ffdb_9600n));
    expect(m.arch.decode(0xc7ff_ffff_ffdb_9600n)).toMatchObject({ kind: 'hwpoison', pfn: 0x1234, swapType: 24 });
  });

  it('A11: markers are type 31 with offset 1 (uffd-wp), 2 (poisoned), 4 (guard), no flag bits', () => {
    // 31 << 59 = 0xF800_0000_0000_0000; offset m inverted in bits 9..58:
    //   uffd-wp  (1): bits 10..58 set          -> 0xFFFF_FFFF_FFFF_FC00
    //   poisoned (2): bits 9, 11..58 set       -> 0xFFFF_FFFF_FFFF_FA00
    //   guard    (4): bits 9, 10, 12..58 set   -> 0xFFFF_FFFF_FFFF_F600
    expect(hex(m.arch.makeMarker('uffd-wp'))).toBe(hex(0xffff_ffff_ffff_fc00n));
    expect(hex(m.arch.makeMarker('poisoned'))).toBe(hex(0xffff_ffff_ffff_fa00n));
    expect(hex(m.arch.makeMarker('guard'))).toBe(hex(0xffff_ffff_ffff_f600n));
  });

  it('A11: decoding the hand-computed markers: kind marker, type 31, offset = marker bits, not none', () => {
    expect(m.arch.decode(0xffff_ffff_ffff_fc00n)).toMatchObject({ kind: 'marker', swapType: 31, swapOffset: 1, markers: ['uffd-wp'], swpUffdWp: false });
    expect(m.arch.decode(0xffff_ffff_ffff_fa00n)).toMatchObject({ kind: 'marker', swapType: 31, swapOffset: 2, markers: ['poisoned'] });
    expect(m.arch.decode(0xffff_ffff_ffff_f600n)).toMatchObject({ kind: 'marker', swapType: 31, swapOffset: 4, markers: ['guard'] });
  });

  it('table entry = address | _PAGE_TABLE (P|RW|US|A|D)', () => {
    // 0x1234 << 12 | 0x67
    expect(hex(m.arch.makeTable(0x1234))).toBe(hex(0x0000_0000_0123_4067n));
  });

  it('none: 0 at every level; at pte level A/D alone is still none (KNL erratum mask, §1.2 bits 4-6)', () => {
    for (const lv of LEVELS) expect(m.arch.decode(0n, lv).kind).toBe('none');
    expect(m.arch.decode(X.A | X.D, 'pte').kind).toBe('none');
  });

  it('swp entry (type 0, offset 2^50-1) is the all-zero value: ~offset is 0 (faithful to __swp_entry; pte_none)', () => {
    // Not a round-trip case: the inverted offset is all zeroes and type 0 adds nothing.
    expect(hex(m.arch.makeSwap({ type: 0, offset: MAX_OFFSET }))).toBe(hex(0n));
    // with a flag bit it is a swap entry again
    expect(m.arch.decode(X.SWP_EXCLUSIVE)).toMatchObject({ kind: 'swap', swapType: 0, swapOffset: MAX_OFFSET, swpExclusive: true });
  });
});

describe('x86-64 codec: CONFIG_MEM_SOFT_DIRTY off (softDirty: false)', () => {
  let on: Machine;
  let off: Machine;
  beforeAll(async () => { on = await machine('x86_64'); off = await machine('x86_64', false); });

  it('with soft-dirty on, softDirty / dirty set bit 11 where asked (so the "off" checks below are not vacuous)', () => {
    expect(on.arch.makePte({ pfn: 1, exec: true, softDirty: true }) & X.SOFT_DIRTY).toBe(X.SOFT_DIRTY);
  });

  it('never sets bit 11 on present leaves, whatever the flags and level', () => {
    const mm = new Mismatches();
    for (const level of LEVELS) {
      for (const c of allCombos(LEAF_FLAGS)) {
        const f: Leaf = { pfn: 512 ** LEVEL_INDEX[level]! * 3, ...c };
        const label = `${level} ${JSON.stringify(c)}`;
        const raw = mm.raw(label, off.arch.makePte(f, level));
        if ((raw & X.SOFT_DIRTY) !== 0n) mm.add('bit 11 set', `${label}: ${hex(raw)}`);
        // Bit-exact otherwise; PROT_NONE huge leaves are left to the PROT_NONE PMD/PUD test, so this
        // test fails only for soft-dirty reasons.
        if (level === 'pte' || !f.protnone) mm.bits(label, raw, x86Leaf(f, level, false));
        mm.fields(label, off.arch.decode(raw, level), { softDirty: false });
      }
    }
    expect(mm.report()).toEqual({});
  });

  it('never sets the swap soft-dirty bit (bit 1): _PAGE_SWP_SOFT_DIRTY is 0 without CONFIG_MEM_SOFT_DIRTY', () => {
    // type 5, offset 0xABCDE without flags = 0x2FFF_FFFF_EA86_4200 (see the swap-layout test); soft-dirty must add nothing
    const raw = off.arch.makeSwap({ type: 5, offset: 0xabcde, softDirty: true });
    expect(hex(raw)).toBe(hex(0x2fff_ffff_ea86_4200n));
    expect(off.arch.decode(BigInt.asUintN(64, raw)).swpSoftDirty).toBe(false);
  });
});

// =========================================================================================
// arm64
// =========================================================================================

describe('arm64 codec: exact bits (SEMANTICS §1.3, §1.4, §9.A)', () => {
  let m: Machine;
  beforeAll(async () => { m = await machine('arm64'); });

  // Read-only user page, clean, young, pfn 0x1234 (PAGE_READONLY):
  //   VALID|PAGE 0x3, USER 0x40, RDONLY 0x80, SH 0x300, AF 0x400, nG 0x800  -> 0xFC3
  //   PXN bit 53 + UXN bit 54                                              -> 0x0060_0000_0000_0000
  //   pfn << 12                                                            -> 0x0123_4000
  const RO_CLEAN = 0x0060_0000_0123_4fc3n;

  it('read-only clean page = PAGE_READONLY | pfn', () => {
    expect(hex(m.arch.makePte({ pfn: 0x1234 }))).toBe(hex(RO_CLEAN));
  });

  it('A5: writable clean = WRITE(51)=1, RDONLY(7)=1, DIRTY(55)=0', () => {
    // RO_CLEAN | WRITE (0x0008_0000_0000_0000) = 0x0068_0000_0123_4FC3
    const raw = m.arch.makePte({ pfn: 0x1234, write: true });
    expect(hex(raw)).toBe(hex(0x0068_0000_0123_4fc3n));
    expect(m.arch.decode(0x0068_0000_0123_4fc3n)).toMatchObject({ kind: 'present', write: true, dirty: false });
  });

  it('writable dirty = WRITE=1, RDONLY=0, sw DIRTY=1', () => {
    // RO_CLEAN | WRITE | DIRTY (bit 55 = 0x0080_...) & ~RDONLY (0x80) = 0x00E8_0000_0123_4F43
    expect(hex(m.arch.makePte({ pfn: 0x1234, write: true, dirty: true }))).toBe(hex(0x00e8_0000_0123_4f43n));
  });

  it('read-only dirty = WRITE=0, RDONLY=1, sw DIRTY=1', () => {
    // RO_CLEAN | DIRTY = 0x00E0_0000_0123_4FC3
    expect(hex(m.arch.makePte({ pfn: 0x1234, dirty: true }))).toBe(hex(0x00e0_0000_0123_4fc3n));
  });

  it('A4: pte_dirty follows the DBM rule on hand-built values', () => {
    // (WRITE=1, RDONLY=0, DIRTY=0): hardware dirty
    expect(m.arch.decode(0x0068_0000_0123_4f43n)).toMatchObject({ write: true, dirty: true });
    // (WRITE=1, RDONLY=1, DIRTY=0): writable clean
    expect(m.arch.decode(0x0068_0000_0123_4fc3n)).toMatchObject({ write: true, dirty: false });
    // (WRITE=0, RDONLY=1, DIRTY=1): software dirty, read-only
    expect(m.arch.decode(0x00e0_0000_0123_4fc3n)).toMatchObject({ write: false, dirty: true });
    // (WRITE=0, RDONLY=0, DIRTY=0): RDONLY clear without WRITE is not dirty (hw dirty needs WRITE)
    expect(m.arch.decode(RO_CLEAN & ~A.RDONLY)).toMatchObject({ write: false, dirty: false });
  });

  it('A7: mkwrite of a clean RO pte (set WRITE, clear RDONLY) decodes as writable and dirty', () => {
    const mkwrite = (RO_CLEAN | A.WRITE) & ~A.RDONLY; // = 0x0068_0000_0123_4F43
    expect(mkwrite).toBe(0x0068_0000_0123_4f43n);
    expect(m.arch.decode(mkwrite)).toMatchObject({ kind: 'present', write: true, dirty: true, pfn: 0x1234 });
  });

  it('software bits: special = 56, uffd-wp = 58, cont = 52; exec clears UXN (54)', () => {
    // RO_CLEAN - UXN (exec) = 0x0020_0000_0123_4FC3; + SPECIAL 0x0100_... + UFFD_WP 0x0400_... + CONT 0x0010_...
    //   -> 0x0530_0000_0123_4FC3
    const raw = m.arch.makePte({ pfn: 0x1234, exec: true, special: true, uffdWp: true, cont: true });
    expect(hex(raw)).toBe(hex(0x0530_0000_0123_4fc3n));
    expect(m.arch.decode(0x0530_0000_0123_4fc3n)).toMatchObject({ exec: true, special: true, uffdWp: true, cont: true, size: 64 * KiB });
  });

  it('no soft-dirty: asking for it changes nothing', () => {
    expect(hex(m.arch.makePte({ pfn: 0x1234, softDirty: true }))).toBe(hex(RO_CLEAN));
  });

  it('PROT_NONE = present-invalid: VALID=0, nG/PRESENT_INVALID=1, USER=0, UXN=1', () => {
    // PAGE_NONE: (TYPE_PAGE & ~VALID) 0x2 | RDONLY 0x80 | SH 0x300 | AF 0x400 | nG 0x800 = 0xF82; PXN|UXN
    //   -> 0x0060_0000_0123_4F82 (the pfn is not inverted on arm64)
    const raw = m.arch.makePte({ pfn: 0x1234, protnone: true });
    expect(hex(raw)).toBe(hex(0x0060_0000_0123_4f82n));
    expect(m.arch.decode(0x0060_0000_0123_4f82n)).toMatchObject({ kind: 'present', protnone: true, pfn: 0x1234, exec: false });
    // present-invalid but USER set: present, not protnone (§1.3 pte_protnone)
    expect(m.arch.decode(0x0060_0000_0123_4f82n | A.USER)).toMatchObject({ kind: 'present', protnone: false });
  });

  it('block (PMD/PUD leaf) = page format with bit 1 clear', () => {
    // pfn 0x200: 0x00E8_0000_0020_0F43 with bit 1 cleared -> 0x00E8_0000_0020_0F41
    expect(hex(m.arch.makePte({ pfn: 0x200, write: true, dirty: true }, 'pmd'))).toBe(hex(0x00e8_0000_0020_0f41n));
    // pud pfn 0x40000 (addr 0x4000_0000), read-only clean: 0x0060_0000_4000_0FC1
    expect(hex(m.arch.makePte({ pfn: 0x40000 }, 'pud'))).toBe(hex(0x0060_0000_4000_0fc1n));
  });

  it('A10: swap type 5, offset 0xABCDE -> type in bits 6-10, offset in 12-61, bits 0,1,11 clear', () => {
    // 5 << 6 = 0x140; 0xABCDE << 12 = 0xABCD_E000 -> 0xABCD_E140
    const raw = m.arch.makeSwap({ type: 5, offset: 0xabcde });
    expect(hex(raw)).toBe(hex(0x0000_0000_abcd_e140n));
    expect(raw & 0x803n).toBe(0n);
    expect(m.arch.decode(0xabcd_e140n)).toMatchObject({ kind: 'swap', swapType: 5, swapOffset: 0xabcde, swpExclusive: false, swpUffdWp: false, swpSoftDirty: false });
  });

  it('A10: swp exclusive = bit 2, swp uffd-wp = bit 3, soft-dirty has no bit', () => {
    expect(hex(m.arch.makeSwap({ type: 5, offset: 0xabcde, exclusive: true }))).toBe(hex(0xabcd_e144n));
    expect(hex(m.arch.makeSwap({ type: 5, offset: 0xabcde, uffdWp: true }))).toBe(hex(0xabcd_e148n));
    expect(hex(m.arch.makeSwap({ type: 5, offset: 0xabcde, softDirty: true }))).toBe(hex(0xabcd_e140n));
    expect(m.arch.decode(0xabcd_e14cn)).toMatchObject({ swpExclusive: true, swpUffdWp: true, swpSoftDirty: false });
    // bit 1 on an arm64 swap entry is not a soft-dirty flag
    expect(m.arch.decode(0xabcd_e142n).swpSoftDirty).toBe(false);
  });

  it('A11: markers are type 31 with offset 1 (uffd-wp), 2 (poisoned), 4 (guard)', () => {
    // 31 << 6 = 0x7C0; offset << 12
    expect(hex(m.arch.makeMarker('uffd-wp'))).toBe(hex(0x17c0n));
    expect(hex(m.arch.makeMarker('poisoned'))).toBe(hex(0x27c0n));
    expect(hex(m.arch.makeMarker('guard'))).toBe(hex(0x47c0n));
    expect(hex(m.arch.makeMarker(['uffd-wp', 'poisoned', 'guard']))).toBe(hex(0x77c0n));
    expect(m.arch.decode(0x17c0n)).toMatchObject({ kind: 'marker', swapType: 31, swapOffset: 1, markers: ['uffd-wp'] });
    expect(m.arch.decode(0x47c0n)).toMatchObject({ kind: 'marker', swapType: 31, swapOffset: 4, markers: ['guard'] });
  });

  it('migration / device-private type numbers land in bits 6-10 (generation B, §1.4)', () => {
    // migration write = 27: 27 << 6 = 0x6C0; pfn 0x1234 << 12 = 0x123_4000 -> 0x123_46C0
    expect(hex(m.arch.makeMigration(0x1234, 'write'))).toBe(hex(0x0123_46c0n));
    // migration read = 25 -> 0x640; read-exclusive = 26 -> 0x680
    expect(hex(m.arch.makeMigration(0x1234, 'read'))).toBe(hex(0x0123_4640n));
    expect(hex(m.arch.makeMigration(0x1234, 'read-exclusive'))).toBe(hex(0x0123_4680n));
    // device write = 28 -> 0x700; device read = 29 -> 0x740
    expect(hex(m.arch.makeDevicePrivate(0x1234, true))).toBe(hex(0x0123_4700n));
    expect(hex(m.arch.makeDevicePrivate(0x1234, false))).toBe(hex(0x0123_4740n));
  });

  it('table entry: bits 1:0 = 0b11 and the table address at 12+', () => {
    const raw = m.arch.makeTable(0x1234);
    expect(raw & 3n).toBe(3n);
    expect((raw >> 12n) & ((1n << 36n) - 1n)).toBe(0x1234n);
  });

  it('none: only the all-zero value (no A/D erratum on arm64)', () => {
    for (const lv of LEVELS) expect(m.arch.decode(0n, lv).kind).toBe('none');
    // swp entry (0, 0) is the all-zero value, as in the kernel (offset 0 is the swap header slot)
    expect(hex(m.arch.makeSwap({ type: 0, offset: 0 }))).toBe(hex(0n));
  });

  it('contiguous PMD (CONT_PMDS = 16): size is the 32 MiB CONT_PMD block, as a CONT pte reports its 64 KiB block', () => {
    // §1.5: arm64 contiguous PMDs group CONT_PMDS = 16 x 2 MiB = 32 MiB (hugetlb). decode().size for a
    // CONT pte is its 64 KiB block (CONT_PTES = 16 x 4 KiB), so by the same rule a CONT pmd is 32 MiB;
    // 64 KiB (the pte block size) is wrong at any level above pte.
    const raw = m.arch.makePte({ pfn: 512 * 16, cont: true }, 'pmd');
    expect(raw & A.CONT).toBe(A.CONT);
    const d = m.arch.decode(raw, 'pmd');
    expect(d).toMatchObject({ kind: 'present', cont: true, pfn: 512 * 16 });
    expect(d.size).toBe(32 * MiB);
  });
});

// =========================================================================================
// Both arches: round trips and distinctness
// =========================================================================================

const ARCHES: readonly ArchName[] = ['x86_64', 'arm64'];
const refLeaf = (arch: ArchName, f: Leaf, level: EntryLevel): bigint => (arch === 'x86_64' ? x86Leaf(f, level) : arm64Leaf(f, level));
const refSwap = (arch: ArchName, type: number, offset: number, fl: SwpFlags): bigint => (arch === 'x86_64' ? x86Swap(type, offset, fl) : arm64Swap(type, offset, fl));

describe.each(ARCHES)('%s round trips (SEMANTICS §1.1, §1.4, §1.5)', (arch) => {
  let m: Machine;
  beforeAll(async () => { m = await machine(arch); });

  /** make -> spec bits -> decode, for one swap-format entry built by `make`. */
  function checkSwap(mm: Mismatches, label: string, made: bigint, type: number, offset: number, fl: SwpFlags, level: EntryLevel = 'pte'): void {
    const raw = mm.raw(label, made);
    const ref = refSwap(arch, type, offset, fl);
    mm.bits(label, raw, ref);
    // A swap entry whose bits are all zero is pte_none (x86 (0, 2^50-1), arm64 (0, 0)); covered by the exact-bit tests.
    if (ref === 0n) return;
    mm.fields(label, m.arch.decode(raw, level), expectedSwap(arch, type, offset, fl));
  }

  for (const level of LEVELS) {
    it(`present ${level} leaves: every flag combination x sampled pfns (incl. 0 and 2^36-1) round-trip bit-exactly`, () => {
      const mm = new Mismatches();
      // arm64 CONT above pte level is covered by its own test (size).
      const flags = arch === 'arm64' && level !== 'pte' ? LEAF_FLAGS.filter((f) => f !== 'cont') : LEAF_FLAGS;
      const pfns = samplePfns(level, 0xc0dec + LEVEL_INDEX[level]!);
      let cases = 0;
      for (const pfn of pfns) {
        for (const c of allCombos(flags)) {
          const f = { pfn, cont: false, ...(c as Partial<Leaf>) } as Leaf; // cont stays false where it is not enumerated
          const label = `${level} pfn=${pfn.toString(16)} ${Object.keys(c).filter((k) => c[k as keyof typeof c]).join(',') || '-'}`;
          const raw = mm.raw(label, m.arch.makePte(f, level));
          mm.bits(label, raw, refLeaf(arch, f, level));
          mm.fields(label, m.arch.decode(raw, level), expectedLeaf(arch, f, level));
          cases++;
        }
      }
      expect(cases).toBeGreaterThan(500);
      expect(mm.report()).toEqual({});
    });
  }

  it('genuine swap entries: types 0..23 x all 8 swp flag combinations x offsets up to 2^50-1', () => {
    const mm = new Mismatches();
    const rng = prng(0x5a9);
    for (let type = 0; type < SWP.MAX_SWAPFILES; type++) {
      const offsets = [0, 1, 0xabcde, MAX_OFFSET - 1, MAX_OFFSET, randBits(rng, 50), randBits(rng, 50), randBits(rng, 20)];
      for (const offset of offsets) {
        for (const fl of SWP_FLAG_COMBOS) {
          checkSwap(mm, `type=${type} off=${offset.toString(16)} ${JSON.stringify(fl)}`, m.arch.makeSwap({ type, offset, ...fl }), type, offset, fl);
        }
      }
    }
    expect(mm.report()).toEqual({});
  });

  // pfn range of the pfn-carrying kinds: 36-bit pfns on arm64; x86 4-level keeps them below
  // SWP_PFN_BITS = 34 (§1.4: bits above the pfn are the migration young/dirty bits).
  const pfnBits = arch === 'x86_64' ? 34 : 36;
  const swapPfns = (seed: number): number[] => {
    const rng = prng(seed);
    return [0, 1, 0x1234, 2 ** pfnBits - 1, randBits(rng, pfnBits), randBits(rng, pfnBits), randBits(rng, pfnBits)];
  };

  it('migration entries (read, read-exclusive, write) keep pfn and swp flags', () => {
    const mm = new Mismatches();
    const types = { read: SWP.MIGRATION_READ, 'read-exclusive': SWP.MIGRATION_READ_EXCLUSIVE, write: SWP.MIGRATION_WRITE } as const;
    for (const [mode, type] of Object.entries(types) as ['read' | 'read-exclusive' | 'write', number][]) {
      for (const pfn of swapPfns(0x316)) {
        for (const fl of SWP_FLAG_COMBOS) {
          checkSwap(mm, `migration ${mode} pfn=${pfn.toString(16)} ${JSON.stringify(fl)}`, m.arch.makeMigration(pfn, mode, fl), type, pfn, fl);
        }
      }
    }
    expect(mm.report()).toEqual({});
  });

  it('device-private entries (read, write) keep pfn and swp flags', () => {
    const mm = new Mismatches();
    for (const write of [false, true]) {
      for (const pfn of swapPfns(0xde7)) {
        for (const fl of SWP_FLAG_COMBOS) {
          const type = write ? SWP.DEVICE_WRITE : SWP.DEVICE_READ;
          checkSwap(mm, `device-private write=${write} pfn=${pfn.toString(16)} ${JSON.stringify(fl)}`, m.arch.makeDevicePrivate(pfn, write, fl), type, pfn, fl);
        }
      }
    }
    expect(mm.report()).toEqual({});
  });

  it('hwpoison (type 24) and device-exclusive (type 30) carry a pfn', () => {
    const mm = new Mismatches();
    for (const type of [SWP.HWPOISON, SWP.DEVICE_EXCLUSIVE]) {
      for (const pfn of swapPfns(type)) {
        for (const fl of SWP_FLAG_COMBOS) {
          checkSwap(mm, `type=${type} pfn=${pfn.toString(16)} ${JSON.stringify(fl)}`, m.arch.makeSwap({ type, offset: pfn, ...fl }), type, pfn, fl);
        }
      }
    }
    expect(mm.report()).toEqual({});
  });

  it('pte markers: each kind and every combination (type 31, offset = bitmask, no flag bits)', () => {
    const mm = new Mismatches();
    const kinds = Object.keys(PTE_MARKER) as MarkerKind[];
    const none: SwpFlags = { exclusive: false, softDirty: false, uffdWp: false };
    for (const c of allCombos(kinds)) {
      const list = kinds.filter((k) => c[k]);
      if (list.length === 0) continue; // a marker is never zero
      const bits = list.reduce((b, k) => b | PTE_MARKER[k], 0);
      checkSwap(mm, `marker ${list.join('+')}`, m.arch.makeMarker(list), SWP.PTE_MARKER, bits, none);
    }
    expect(mm.report()).toEqual({});
  });

  it('decode() of hand-built swap entries of every type gives the right kind (reference encoder, no make*)', () => {
    const mm = new Mismatches();
    const fl: SwpFlags = { exclusive: true, softDirty: false, uffdWp: true };
    for (let type = 0; type < 32; type++) {
      const offset = type === SWP.PTE_MARKER ? PTE_MARKER.guard : 0x1234;
      const raw = refSwap(arch, type, offset, fl);
      mm.fields(`type=${type}`, m.arch.decode(raw), expectedSwap(arch, type, offset, fl));
    }
    expect(mm.report()).toEqual({});
  });
});

describe.each(ARCHES)('%s distinctness across levels (SEMANTICS §1.5)', (arch) => {
  let m: Machine;
  beforeAll(async () => { m = await machine(arch); });
  const x86 = arch === 'x86_64';
  const leaf = (pfn: number): Leaf => ({ pfn, write: true, dirty: true, young: true, special: false, softDirty: false, uffdWp: false, protnone: false, exec: true, cont: false });

  it('a PMD leaf decodes as a 2 MiB present leaf at pmd level', () => {
    const raw = refLeaf(arch, leaf(0x400), 'pmd');
    expect(m.arch.decode(raw, 'pmd')).toMatchObject({ kind: 'present', pfn: 0x400, write: true, dirty: true, size: 2 * MiB });
  });

  it('the same PMD-leaf value at pte level follows the pte rules: a 4 KiB present pte of the same frame', () => {
    // x86: bit 7 is PAT at pte level, P decides presence; arm64: pte_present = VALID (bit 1 is not consulted).
    const raw = refLeaf(arch, leaf(0x400), 'pmd');
    expect(m.arch.decode(raw, 'pte')).toMatchObject({ kind: 'present', pfn: 0x400, write: true, dirty: true, size: 4096 });
  });

  it('a PUD leaf decodes as a 1 GiB present leaf; at pmd level its pfn is read with the pmd mask', () => {
    const raw = refLeaf(arch, leaf(0x40000), 'pud');
    expect(m.arch.decode(raw, 'pud')).toMatchObject({ kind: 'present', pfn: 0x40000, size: GiB });
    expect(m.arch.decode(raw, 'pmd')).toMatchObject({ kind: 'present', pfn: 0x40000, size: 2 * MiB });
  });

  it('a pte-format present value at pmd level is a table pointer (x86: no PSE; arm64: bits 1:0 = 0b11)', () => {
    const raw = refLeaf(arch, leaf(0x1234), 'pte');
    expect(m.arch.decode(raw, 'pmd')).toMatchObject({ kind: 'table', pfn: 0x1234 });
    expect(m.arch.decode(raw, 'pud')).toMatchObject({ kind: 'table', pfn: 0x1234 });
  });

  it('table entries from makeTable decode as table with the right pfn at pmd and pud level', () => {
    for (const pfn of [0, 1, 0x1234, MAX_PFN]) {
      const raw = m.arch.makeTable(pfn);
      expect(m.arch.decode(raw, 'pmd')).toMatchObject({ kind: 'table', pfn, write: false, dirty: false });
      expect(m.arch.decode(raw, 'pud')).toMatchObject({ kind: 'table', pfn });
    }
  });

  it('a table entry at pte level is read as a pte (x86: P|RW|US|A|D without NX; arm64: VALID|PAGE, AF clear)', () => {
    const d = m.arch.decode(m.arch.makeTable(0x1234), 'pte');
    expect(d).toMatchObject({ kind: 'present', pfn: 0x1234, size: 4096 });
    expect(d.young).toBe(x86); // x86 _PAGE_TABLE has A; arm64 PMD_TYPE_TABLE has no AF
  });

  it('PROT_NONE leaves at pmd and pud level stay present (pmd_present counts PROTNONE / PRESENT_INVALID)', () => {
    for (const [level, pfn] of [['pmd', 0x600], ['pud', 0xc0000]] as const) {
      const f = { ...leaf(pfn), write: false, dirty: false, protnone: true };
      const raw = refLeaf(arch, f, level);
      expect(m.arch.decode(raw, level)).toMatchObject({ kind: 'present', protnone: true, pfn, exec: x86 });
    }
  });

  it('a migration entry at pmd level is a swap pmd (is_pmd_migration_entry), not a leaf or table', () => {
    const fl: SwpFlags = { exclusive: false, softDirty: false, uffdWp: true };
    const raw = refSwap(arch, SWP.MIGRATION_WRITE, 0x400, fl);
    expect(m.arch.decode(raw, 'pmd')).toMatchObject({ kind: 'migration', pfn: 0x400, swapType: SWP.MIGRATION_WRITE, swpUffdWp: true });
  });

  it('present-only fields are false on swap entries and swap-only fields are absent on present ones', () => {
    const sw = m.arch.decode(refSwap(arch, 3, 0x77, { exclusive: true, softDirty: true, uffdWp: true }));
    expect(sw).toMatchObject({ kind: 'swap', write: false, dirty: false, young: false, uffdWp: false, softDirty: false, exec: false });
    expect(sw.size).toBeUndefined();
    const pr = m.arch.decode(refLeaf(arch, { ...leaf(0x77), uffdWp: true }, 'pte'));
    expect(pr).toMatchObject({ kind: 'present', uffdWp: true, swpUffdWp: false, swpExclusive: false, swpSoftDirty: false });
    expect(pr.swapType).toBeUndefined();
  });
});
