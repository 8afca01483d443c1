// arm64 behaviour that differs from x86: DBM hardware dirtiness, the access
// flag with and without FEAT_HAFDBS, old prefaulted PTEs, and the same
// scenarios (anon, swap, THP, shared) running on arm64 tables.

import { describe, it, expect } from 'vitest';
import { machine, expectClean, PAGE, MiB } from './helpers.js';

const RDONLY = 1n << 7n, AF = 1n << 10n, DBM = 1n << 51n, DIRTY = 1n << 55n;

describe('arm64 hardware A/D (FEAT_HAFDBS)', () => {
  it('a shared writable page maps clean-writable (WRITE|RDONLY); a write clears RDONLY in hardware without a fault', async () => {
    const m = await machine({ arch: 'arm64' });
    const f = m.memfd({ size: PAGE });
    const p = m.spawn();
    const a = p.mmap({ file: f, shared: true, length: PAGE, prot: 'rw' });
    p.read(a.start);
    const clean = p.entry(a.start);
    expect(clean).toMatchObject({ write: true, dirty: false });
    expect(clean.raw & (DBM | RDONLY)).toBe(DBM | RDONLY);
    expect(p.write(a.start, 1)).toMatchObject({ ok: true, faults: 0 });
    const dirty = p.entry(a.start);
    expect(dirty).toMatchObject({ write: true, dirty: true });
    expect(dirty.raw & RDONLY).toBe(0n);
    expect(dirty.raw & DIRTY).toBe(0n);            // hardware dirty, not the software bit
    expectClean(m);
  });

  it('without DBM the write faults and the kernel sets the software DIRTY bit', async () => {
    const m = await machine({ arch: 'arm64', hwDirty: false });
    const f = m.memfd({ size: PAGE });
    const p = m.spawn();
    const a = p.mmap({ file: f, shared: true, length: PAGE, prot: 'rw' });
    p.read(a.start);
    expect(p.write(a.start, 1)).toMatchObject({ ok: true, faults: 1 });
    const e = p.entry(a.start);
    expect(e).toMatchObject({ write: true, dirty: true });
    expect(e.raw & (DIRTY | RDONLY)).toBe(DIRTY);
    expectClean(m);
  });

  it('fault-around maps neighbours old with hardware AF; without it the first access of an old page faults to set AF', async () => {
    for (const hwAccessFlag of [true, false]) {
      const m = await machine({ arch: 'arm64', hwAccessFlag });
      const f = m.memfd({ size: 16 * PAGE });
      const w = m.spawn();
      const wa = w.mmap({ file: f, shared: true, length: 16 * PAGE, prot: 'rw' });
      w.touch(wa.start, wa.length, 'w', 5);
      const p = m.spawn();
      const a = p.mmap({ addr: 0x40000000, file: f, length: 16 * PAGE, prot: 'r' });
      expect(p.read(a.start).ok).toBe(true);
      const neighbour = p.entry(a.start + 3 * PAGE);
      expect(neighbour.kind).toBe('present');
      expect(neighbour.young).toBe(!hwAccessFlag);    // arch_wants_old_prefaulted_pte() == cpu_has_hw_af()
      const r = p.read(a.start + 3 * PAGE);
      expect(r).toMatchObject({ ok: true, tag: 5, faults: 0 });
      expect(p.entry(a.start + 3 * PAGE).raw & AF).toBe(AF);   // set by the MMU
      expectClean(m);
    }
    const m = await machine({ arch: 'arm64', hwAccessFlag: false });
    const p = m.spawn();
    const a = p.mmap({ length: PAGE, prot: 'rw' });
    p.write(a.start, 1);
    expect(p.entry(a.start).young).toBe(true);
  });
});

describe('arm64 runs the common scenarios', () => {
  it('anonymous faults, mprotect, pageout and swap-in, THP split', async () => {
    const m = await machine({ arch: 'arm64' });
    const p = m.spawn();
    const a = p.mmap({ length: 4 * MiB, prot: 'rw' });
    expect(p.pageWalk(a.start).map((e) => e.level)).toEqual(['pgd']);
    p.madvise(a.start, 2 * MiB, 'hugepage');
    p.touch(a.start, a.length, 'w', 9);
    expect(p.entry(a.start)).toMatchObject({ level: 'pmd', write: true, dirty: true, size: 2 * MiB });
    expect(p.entry(a.start + 2 * MiB)).toMatchObject({ level: 'pte', write: true, dirty: true });
    expect(p.rss.anon).toBe(1024);
    p.mprotect(a.start + 8 * PAGE, PAGE, 'none');
    expect(p.entry(a.start + 8 * PAGE)).toMatchObject({ level: 'pte', protnone: true, dirty: true });
    expect(p.read(a.start + 8 * PAGE)).toMatchObject({ ok: false, code: 'SEGV_ACCERR' });
    p.madvise(a.start + 2 * MiB, 2 * MiB, 'pageout');
    expect(p.rss).toMatchObject({ anon: 512, swap: 512 });
    expect(p.entry(a.start + 2 * MiB)).toMatchObject({ kind: 'swap', swpExclusive: true, swpSoftDirty: false });
    expect(p.read(a.start + 3 * MiB)).toMatchObject({ ok: true, tag: 9 });
    expect(p.pagemap(a.start + 3 * MiB)).toMatchObject({ present: true, exclusive: true, softDirty: false });
    expectClean(m);
    p.exit();
    expectClean(m);
  });
});
