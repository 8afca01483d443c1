// Multi-size THP for anonymous memory (mm/memory.c alloc_anon_folio,
// hugepages-<size>kB/enabled): a write fault maps the largest enabled folio
// whose naturally aligned range fits the VMA with every PTE still none, all
// its PTEs dirty and writable at once; otherwise smaller sizes, then 4 KiB.

import { describe, it, expect } from 'vitest';
import { machine, expectClean, PAGE, MiB } from './helpers.js';

describe('mTHP anonymous faults', () => {
  for (const arch of ['x86_64', 'arm64'] as const) {
    it(`${arch}: one write maps a whole aligned 64 KiB folio with 16 dirty writable PTEs`, async () => {
      const m = await machine({ arch, mthp: { '64K': 'always' } });
      const p = m.spawn();
      const a = p.mmap({ length: MiB, prot: 'rw', addr: 0x4000_0000 });
      const w = p.write(a.start + 0x13000, 0xab);
      if (!w.ok) throw new Error('write failed');
      const head = p.entry(a.start + 0x10000).pfn!;
      expect(head % 16).toBe(0);
      expect(w.pfn).toBe(head + 3);
      for (let i = 0; i < 16; i++) {
        expect(p.entry(a.start + 0x10000 + i * PAGE)).toMatchObject({ kind: 'present', pfn: head + i, write: true, dirty: true });
      }
      expect(p.entry(a.start + 0xf000).kind).toBe('none');
      expect(p.entry(a.start + 0x20000).kind).toBe('none');
      expect(m.frame(head)).toMatchObject({ order: 4, refcount: 16, mapcount: 1, anon: true, exclusive: true });
      expect(m.frame(head + 3)).toMatchObject({ tag: 0xab, mapcount: 1, exclusive: true });
      expect(m.frame(head + 4).tag).toBe(0);
      expect(p.rss.anon).toBe(16);
      expect(p.faults.minor).toBe(1);
      expect(m.stats.mthp['64K']).toEqual({ faultAlloc: 1, faultFallback: 0 });
      // The other pages need no fault.
      expect(p.write(a.start + 0x1f000, 1)).toMatchObject({ ok: true, faults: 0, pfn: head + 15 });
      expectClean(m);
    });
  }

  it('falls back to smaller enabled sizes when the range is partly mapped or outside the VMA, then to 4 KiB', async () => {
    const m = await machine({ mthp: { '64K': 'always', '16K': 'always' } });
    const p = m.spawn();
    const a = p.mmap({ length: 40 * PAGE, prot: 'rw', addr: 0x4000_0000 });
    p.read(a.start + 0x1000);                                          // the zero page: that block is not empty
    p.write(a.start + 0x3000, 1);
    expect(m.frame(p.entry(a.start + 0x3000).pfn!).order).toBe(0);     // 64K and 16K blocks around it both hold 0x1000
    p.write(a.start + 0x9000, 2);
    expect(m.frame(p.entry(a.start + 0x9000).pfn!).order).toBe(2);      // 16K block 0x8000..0xc000
    expect(p.entry(a.start + 0x8000)).toMatchObject({ kind: 'present', dirty: true });
    p.write(a.start + 0x10000, 3);
    expect(m.frame(p.entry(a.start + 0x10000).pfn!).order).toBe(4);
    p.write(a.start + 0x24000, 4);                                     // the 64K block 0x20000.. passes the VMA end (0x28000)
    expect(m.frame(p.entry(a.start + 0x24000).pfn!).order).toBe(2);
    expect(m.stats.mthp['64K'].faultAlloc).toBe(1);
    expect(m.stats.mthp['16K'].faultAlloc).toBe(2);
    expectClean(m);
  });

  it('policies: madvise needs MADV_HUGEPAGE, inherit follows thp, NOHUGEPAGE and shared mappings never', async () => {
    const m = await machine({ thp: 'madvise', mthp: { '32K': 'madvise', '128K': 'inherit' } });
    const p = m.spawn();
    const a = p.mmap({ length: MiB, prot: 'rw', addr: 0x4000_0000 });
    p.write(a.start, 1);
    expect(m.frame(p.entry(a.start).pfn!).order).toBe(0);
    p.madvise(a.start, MiB, 'hugepage');
    p.write(a.start + 0x40000, 2);
    expect(m.frame(p.entry(a.start + 0x40000).pfn!).order).toBe(5);     // inherit + madvise policy + VM_HUGEPAGE
    p.madvise(a.start, MiB, 'nohugepage');
    p.write(a.start + 0x80000, 3);
    expect(m.frame(p.entry(a.start + 0x80000).pfn!).order).toBe(0);
    const s = p.mmap({ length: MiB, prot: 'rw', shared: true });
    p.write(s.start, 4);
    expect(m.frame(p.entry(s.start).pfn!).order).toBe(0);
    expectClean(m);
  });

  it('COW, DONTNEED, pageout and fork of mTHP folios keep every invariant', async () => {
    const m = await machine({ mthp: { '64K': 'always' }, swap: '16MiB' });
    const p = m.spawn();
    const a = p.mmap({ length: 256 * 1024, prot: 'rw', addr: 0x4000_0000 });
    p.touch(a.start, a.length, 'w', 5);
    expect(p.rss.anon).toBe(64);
    const c = p.fork();
    expect(c.write(a.start + PAGE, 6)).toMatchObject({ ok: true });
    expect(m.frame(c.entry(a.start + PAGE).pfn!).order).toBe(0);        // a COW copy is a small page
    expect(p.read(a.start + PAGE)).toMatchObject({ tag: 5 });
    c.exit();
    p.madvise(a.start + 4 * PAGE, 2 * PAGE, 'dontneed');
    expect(p.entry(a.start + 4 * PAGE).kind).toBe('none');
    p.madvise(a.start + 0x10000, 0x10000, 'pageout');
    expect(p.entry(a.start + 0x10000).kind).toBe('swap');
    expect(p.read(a.start + 0x10000)).toMatchObject({ ok: true, tag: 5 });
    expectClean(m);
  });

  it('rejects bad settings by name', async () => {
    await expect(machine({ mthp: { '8K': 'always' } as never })).rejects.toMatchObject({ code: 'EINVAL', arg: 'mthp' });
    await expect(machine({ mthp: { '64K': 'yes' } as never })).rejects.toMatchObject({ code: 'EINVAL', arg: 'mthp' });
  });
});
