// Transparent huge pages. The host kernel (test/probes/probe_thp.c, Linux
// 6.18, enabled=madvise, use_zero_page=1): a write fault in a MADV_HUGEPAGE
// range maps a 2 MiB-aligned folio (consecutive pfns, every subpage
// exclusive); mprotect of one 4 KiB page splits the PMD mapping (not the
// folio) and keeps every pfn; a read fault first maps the huge zero page,
// which reads as a file page, and a later write allocates a real THP.

import { describe, it, expect } from 'vitest';
import { machine, expectClean, PAGE, MiB } from './helpers.js';

describe('THP', () => {
  it('a write fault in an aligned hugepage range maps one PMD leaf; mprotect of one page splits it into 512 PTEs with the same frames', async () => {
    const m = await machine();
    const p = m.spawn();
    const a = p.mmap({ length: 4 * MiB, prot: 'rw' });
    expect(a.start % (2 * MiB)).toBe(0);
    p.madvise(a.start, a.length, 'hugepage');
    const tables0 = p.pageTableBytes;
    const w = p.write(a.start + 5 * PAGE, 9);
    if (!w.ok) throw new Error('write failed');
    const leaf = p.entry(a.start);
    expect(leaf).toMatchObject({ kind: 'present', level: 'pmd', write: true, dirty: true, size: 2 * MiB });
    const base = leaf.pfn!;
    expect(base % 512).toBe(0);
    expect(w.pfn).toBe(base + 5);
    expect(m.frame(base)).toMatchObject({ order: 9, refcount: 1, entireMapcount: 1, anon: true, exclusive: true });
    expect(p.rss.anon).toBe(512);
    expect(m.stats.thpFaultAlloc).toBe(1);
    // A PUD table, the PMD table, and a PTE table deposited for a later split.
    expect(p.pageTableBytes).toBe(tables0 + 3 * PAGE);
    const pm = p.pagemapRange(a.start, 2 * MiB);
    for (let i = 0; i < 512; i++) {
      expect(pm[i]! & ((1n << 55n) - 1n)).toBe(BigInt(base + i));
      expect((pm[i]! >> 56n) & 1n).toBe(1n);
    }
    expect(p.read(a.start + 5 * PAGE)).toMatchObject({ tag: 9, pfn: base + 5 });
    expectClean(m);

    p.mprotect(a.start + 256 * PAGE, PAGE, 'r');
    expect(p.vmas.map((v) => v.prot)).toEqual(['rw-', 'r--', 'rw-']);
    expect(p.entry(a.start).level).toBe('pte');
    for (let i = 0; i < 512; i++) {
      const e = p.entry(a.start + i * PAGE);
      expect(e.pfn).toBe(base + i);
      expect(e.write).toBe(i !== 256);
      expect(e.dirty).toBe(true);
    }
    expect(m.frame(base)).toMatchObject({ order: 9, refcount: 512, entireMapcount: 0 });
    expect(m.frame(base + 7)).toMatchObject({ mapcount: 1, exclusive: true });
    expect(p.pageTableBytes).toBe(tables0 + 3 * PAGE);    // the deposited table is now in use
    expect(m.stats.thpSplitPmd).toBe(1);
    expect(p.write(a.start + 5 * PAGE, 10)).toMatchObject({ ok: true, pfn: base + 5, faults: 0 });
    expectClean(m);

    // Unmapping part of the PTE-mapped folio keeps the folio until its last page goes.
    p.munmap(a.start, MiB);
    expect(m.frame(base)).toMatchObject({ order: 9, refcount: 256 });
    p.munmap(a.start + MiB, MiB);
    expect(m.frame(base).kind).toBe('free');
    expectClean(m);
  });

  it('a read fault maps the huge zero page; a write then allocates a THP', async () => {
    const m = await machine();
    const p = m.spawn();
    const a = p.mmap({ length: 2 * MiB, prot: 'rw' });
    p.madvise(a.start, a.length, 'hugepage');
    expect(p.read(a.start + PAGE)).toMatchObject({ ok: true, tag: 0 });
    const z = p.entry(a.start);
    expect(z).toMatchObject({ level: 'pmd', write: false, special: true });
    expect(m.frame(z.pfn!).zero).toBe(true);
    expect(p.pagemap(a.start + PAGE)).toMatchObject({ present: true, file: true, exclusive: false, pfn: z.pfn! + 1 });
    expect(p.rss.anon).toBe(0);
    const w = p.write(a.start, 1);
    if (!w.ok) throw new Error('write failed');
    expect(p.entry(a.start)).toMatchObject({ level: 'pmd', write: true, special: false });
    expect(p.rss.anon).toBe(512);
    expectClean(m);
  });

  it('DONTNEED of a sub-range splits the PMD; of the whole PMD zaps it with its deposited table', async () => {
    const m = await machine();
    const p = m.spawn();
    const a = p.mmap({ length: 4 * MiB, prot: 'rw' });
    p.madvise(a.start, a.length, 'hugepage');
    p.touch(a.start, a.length, 'w', 3);
    expect(p.scan(a.start, a.length).pmdLeaves).toBe(2);
    const t = p.pageTableBytes;
    p.madvise(a.start, 2 * MiB, 'dontneed');
    expect(p.pageTableBytes).toBe(t - PAGE);
    expect(p.entry(a.start).kind).toBe('none');
    p.madvise(a.start + 2 * MiB + 8 * PAGE, 8 * PAGE, 'dontneed');
    const s = p.scan(a.start, a.length);
    expect(s).toMatchObject({ pmdLeaves: 0, present: 504 });
    expect(p.rss.anon).toBe(504);                         // rss counts mapped pages, not folios
    expect(p.read(a.start + 2 * MiB + 9 * PAGE)).toMatchObject({ ok: true, tag: 0 });
    expectClean(m);
  });

  it('policy never, NOHUGEPAGE and unaligned ranges fault 4 KiB pages', async () => {
    const m = await machine({ thp: 'always' });
    const p = m.spawn();
    const a = p.mmap({ length: 4 * MiB, prot: 'rw' });
    p.madvise(a.start, 2 * MiB, 'nohugepage');
    p.write(a.start, 1);
    p.write(a.start + 2 * MiB, 1);
    expect(p.entry(a.start).level).toBe('pte');
    expect(p.entry(a.start + 2 * MiB).level).toBe('pmd');
    const b = p.mmap({ length: 2 * MiB + PAGE, prot: 'rw' });       // not a PMD multiple: not aligned
    if (b.start % (2 * MiB) !== 0) {
      p.write(b.start, 1);
      expect(p.entry(b.start).level).toBe('pte');
    }
    const n = await machine({ thp: 'never' });
    const q = n.spawn();
    const c = q.mmap({ length: 2 * MiB, prot: 'rw' });
    q.madvise(c.start, c.length, 'hugepage');
    q.write(c.start, 1);
    expect(q.entry(c.start).level).toBe('pte');
    expectClean(m);
    expectClean(n);
  });

  it('pages out a PMD-mapped THP by splitting it', async () => {
    const m = await machine();
    const p = m.spawn();
    const a = p.mmap({ length: 2 * MiB, prot: 'rw' });
    p.madvise(a.start, a.length, 'hugepage');
    p.touch(a.start, a.length, 'w', 6);
    p.madvise(a.start, a.length, 'pageout');
    expect(p.rss).toMatchObject({ anon: 0, swap: 512 });
    expect(p.read(a.start + 100 * PAGE)).toMatchObject({ ok: true, tag: 6 });
    expectClean(m);
  });
});
