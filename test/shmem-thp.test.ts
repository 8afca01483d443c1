// Huge tmpfs (memfd with huge=always): PMD-size folios in the page cache,
// mapped by one PMD where 2 MiB of the file and of the mapping line up.
// Kernel rules followed (mm/shmem.c, mm/memory.c do_set_pmd, mm/huge_memory.c
// __split_huge_pmd for file VMAs): the cache holds one reference per page; a
// PMD mapping holds one reference and one entire mapcount; a file PMD is
// split by unmapping it (faults then map PTEs of the same folio); private
// writes copy 4 KiB pages; a folio across a truncation point is split.

import { describe, it, expect } from 'vitest';
import { machine, expectClean, PAGE, MiB } from './helpers.js';

describe('huge memfd', () => {
  it('a shared write fault allocates one PMD-size folio, caches it at 512 indices and maps it with one writable dirty PMD', async () => {
    const m = await machine({ cpus: 1 });
    const f = m.memfd({ size: 4 * MiB, huge: true });
    const p = m.spawn(), q = m.spawn();
    const a = p.mmap({ file: f, shared: true, length: 4 * MiB, prot: 'rw' });
    expect(a.start % (2 * MiB)).toBe(0);                           // shmem_get_unmapped_area aligns
    const w = p.write(a.start + 5 * PAGE, 0x55);
    if (!w.ok) throw new Error('write failed');
    const e = p.entry(a.start);
    expect(e).toMatchObject({ level: 'pmd', kind: 'present', write: true, dirty: true, size: 2 * MiB });
    const head = e.pfn!;
    expect(w.pfn).toBe(head + 5);
    expect(m.frame(head)).toMatchObject({ order: 9, refcount: 513, entireMapcount: 1, anon: false, swapbacked: true, dirty: true, index: 0, owner: f.id });
    expect(f.lookup(0)).toEqual({ state: 'page', pfn: head });
    expect(f.lookup(511)).toEqual({ state: 'page', pfn: head + 511 });
    expect(f.lookup(512)).toEqual({ state: 'empty' });
    expect(f.stats.cached).toBe(512);
    expect(p.rss).toMatchObject({ shmem: 512, anon: 0 });
    expect(p.pagemap(a.start + 5 * PAGE)).toMatchObject({ present: true, file: true, exclusive: true, pfn: head + 5 });
    expect(m.stats).toMatchObject({ thpFileAlloc: 1, thpFileMapped: 1 });

    // A second process maps the same folio with its own PMD (a read: writable but clean, no write-notify on shmem).
    const b = q.mmap({ file: f, shared: true, length: 4 * MiB, prot: 'rw' });
    expect(q.read(b.start + 5 * PAGE)).toMatchObject({ ok: true, tag: 0x55, pfn: head + 5 });
    expect(q.entry(b.start)).toMatchObject({ level: 'pmd', pfn: head, write: true, dirty: false });
    expect(m.frame(head)).toMatchObject({ refcount: 514, entireMapcount: 2 });
    expect(p.pagemap(a.start).exclusive).toBe(false);
    expect(m.stats).toMatchObject({ thpFileAlloc: 1, thpFileMapped: 2 });
    expectClean(m);

    q.exit();
    p.munmap(a.start, 4 * MiB);
    expect(m.frame(head)).toMatchObject({ refcount: 512, entireMapcount: 0, kind: 'page' });   // the cache's references
    const free = m.stats.freeFrames;
    f.close();
    expect(m.stats.freeFrames).toBe(free + 512);
    expectClean(m);
  });

  it('a VMA boundary inside the PMD unmaps it; faults then map PTEs of the same folio', async () => {
    const m = await machine();
    const f = m.memfd({ size: 2 * MiB, huge: true });
    const p = m.spawn();
    const a = p.mmap({ file: f, shared: true, length: 2 * MiB, prot: 'rw' });
    p.write(a.start, 1);
    const head = p.entry(a.start).pfn!;
    const splits = m.stats.thpSplitPmd;
    m.clearFlushLog();
    p.mprotect(a.start + PAGE, PAGE, 'r');
    expect(m.stats.thpSplitPmd).toBe(splits + 1);
    expect(p.entry(a.start)).toMatchObject({ level: 'pmd', kind: 'none' });
    expect(m.flushLog[0]).toMatchObject({ start: a.start, end: a.start + 2 * MiB, strideShift: 21 });
    expect(m.frame(head)).toMatchObject({ order: 9, refcount: 512, entireMapcount: 0, dirty: true });
    expect(p.read(a.start + PAGE)).toMatchObject({ ok: true, pfn: head + 1 });
    expect(p.entry(a.start + PAGE)).toMatchObject({ level: 'pte', write: false, pfn: head + 1 });
    expect(p.read(a.start)).toMatchObject({ ok: true, tag: 1, pfn: head });
    expect(m.frame(head)).toMatchObject({ mapcount: 1, refcount: 512 + p.rss.shmem });
    expect(p.write(a.start + PAGE, 2)).toMatchObject({ ok: false, signal: 'SIGSEGV' });
    expectClean(m);
  });

  it('private mappings: a read maps the folio read-only by PMD; a write unmaps it and copies one 4 KiB page', async () => {
    const m = await machine();
    const f = m.memfd({ size: 2 * MiB, huge: true });
    const p = m.spawn();
    const s = p.mmap({ file: f, shared: true, length: 2 * MiB, prot: 'rw' });
    p.write(s.start + 3 * PAGE, 33);
    const priv = p.mmap({ file: f, length: 2 * MiB, prot: 'rw' });
    expect(p.read(priv.start + 3 * PAGE)).toMatchObject({ ok: true, tag: 33 });
    const e = p.entry(priv.start);
    expect(e).toMatchObject({ level: 'pmd', write: false });
    const c = p.write(priv.start + 3 * PAGE, 44);
    if (!c.ok) throw new Error('private write failed');
    expect(m.frame(c.pfn)).toMatchObject({ anon: true, order: 0, tag: 44 });
    expect(p.entry(priv.start + 3 * PAGE)).toMatchObject({ level: 'pte', write: true, pfn: c.pfn });
    expect(p.read(s.start + 3 * PAGE)).toMatchObject({ tag: 33 });
    expect(p.read(priv.start)).toMatchObject({ ok: true, pfn: e.pfn });   // the rest refaults from the cache
    expectClean(m);
  });

  it('mappings that do not line up with the file fall back to PTEs of the huge folio', async () => {
    const m = await machine();
    const f = m.memfd({ size: 4 * MiB, huge: true });
    const p = m.spawn();
    const a = p.mmap({ file: f, shared: true, length: 4 * MiB, prot: 'rw' });
    p.write(a.start, 1);
    // Offset 4 KiB: virtual and file offsets disagree modulo 2 MiB.
    const b = p.mmap({ file: f, shared: true, offset: PAGE, length: 2 * MiB, prot: 'rw' });
    expect(p.read(b.start)).toMatchObject({ ok: true, pfn: p.entry(a.start).pfn! + 1 });
    expect(p.entry(b.start).level).toBe('pte');
    // Pages already cached small keep the range small: pgoffs 512.. were touched through b first.
    p.write(b.start + 511 * PAGE, 9);                                       // pgoff 512, a small page
    expect(m.frame(f.lookup(512).state === 'page' ? (f.lookup(512) as { pfn: number }).pfn : 0).order).toBe(0);
    expect(p.read(a.start + 2 * MiB)).toMatchObject({ ok: true, tag: 9 });
    expect(p.entry(a.start + 2 * MiB).level).toBe('pte');
    expectClean(m);
  });

  it('truncation splits a folio across the new end; a pinned one stays whole with the truncated pages zeroed', async () => {
    const m = await machine();
    const f = m.memfd({ size: 4 * MiB, huge: true });
    const p = m.spawn();
    const a = p.mmap({ file: f, shared: true, length: 4 * MiB, prot: 'rw' });
    p.touch(a.start, 4 * MiB, 'w', 7);
    const h0 = p.entry(a.start).pfn!, h1 = p.entry(a.start + 2 * MiB).pfn!;
    const pin = m.pin(p, a.start + 2 * MiB, 1);
    f.truncate(3 * MiB);                                                    // inside the second (pinned) folio
    expect(m.frame(h1)).toMatchObject({ order: 9 });
    expect(f.lookup(767)).toEqual({ state: 'page', pfn: h1 + 255 });
    expect(f.lookup(768)).toEqual({ state: 'page', pfn: h1 + 256 });          // kept past EOF, zeroed
    expect(m.frame(h1 + 256).tag).toBe(0);
    expect(m.frame(h1 + 255).tag).toBe(7);
    expect(p.read(a.start + 3 * MiB)).toMatchObject({ ok: false, signal: 'SIGBUS' });
    pin.unpin();
    f.truncate(1 * MiB);                                                    // inside the first folio: split
    expect(m.frame(h0)).toMatchObject({ order: 0, index: 0 });
    expect(m.frame(h0 + 255)).toMatchObject({ order: 0, index: 255, tag: 7 });
    expect(f.lookup(256)).toEqual({ state: 'empty' });
    expect(f.stats.cached).toBe(256);
    expect(p.read(a.start + 255 * PAGE)).toMatchObject({ ok: true, tag: 7, pfn: h0 + 255 });
    expect(p.entry(a.start).level).toBe('pte');
    expectClean(m);
  });

  it('DONTNEED, pageout and fork', async () => {
    const m = await machine({ swap: '64MiB' });
    const f = m.memfd({ size: 4 * MiB, huge: true });
    const p = m.spawn();
    const a = p.mmap({ file: f, shared: true, length: 4 * MiB, prot: 'rw' });
    p.touch(a.start, 4 * MiB, 'w', 3);
    const h0 = p.entry(a.start).pfn!;
    p.madvise(a.start, 2 * MiB, 'pageout');                                 // PMD-mapped: left alone
    expect(p.entry(a.start)).toMatchObject({ level: 'pmd', pfn: h0 });
    const c = p.fork();
    expect(c.entry(a.start).kind).toBe('none');                             // shared file mappings are refaulted
    expect(c.read(a.start + PAGE)).toMatchObject({ ok: true, tag: 3, pfn: h0 + 1 });
    expect(c.entry(a.start)).toMatchObject({ level: 'pmd', pfn: h0 });
    c.exit();
    p.madvise(a.start, 2 * MiB, 'dontneed');
    expect(p.entry(a.start).kind).toBe('none');
    expect(m.frame(h0)).toMatchObject({ refcount: 512, entireMapcount: 0 });
    // A 4 KiB range of a PTE-mapped huge folio: the folio is split, the page goes to swap inside the file.
    p.madvise(a.start + 2 * MiB, PAGE, 'dontneed');                          // unmaps the second PMD...
    p.read(a.start + 2 * MiB + PAGE);
    expect(p.entry(a.start + 2 * MiB).level).toBe('pmd');                    // ...which the next fault maps again
    p.mprotect(a.start + 2 * MiB, PAGE, 'r');                                // a VMA boundary: from now on PTEs
    p.read(a.start + 2 * MiB + PAGE);
    const h1 = p.entry(a.start + 2 * MiB + PAGE).pfn! - 1;
    p.madvise(a.start + 2 * MiB + PAGE, PAGE, 'pageout');
    expect(f.lookup(513)).toMatchObject({ state: 'swapped' });
    expect(m.frame(h1)).toMatchObject({ order: 0 });
    expect(p.read(a.start + 2 * MiB + PAGE)).toMatchObject({ ok: true, tag: 3 });
    expectClean(m);
  });

  it('bad options name themselves', async () => {
    const m = await machine();
    expect(() => m.memfd({ size: 4096, huge: 'yes' as unknown as boolean })).toThrow(expect.objectContaining({ code: 'EINVAL', arg: 'huge' }));
    expect(() => m.memfd({ size: 4096, hugee: true } as { size: number })).toThrow(expect.objectContaining({ arg: 'hugee' }));
    expect(() => m.file({ size: 4096, huge: true } as { size: number })).toThrow(expect.objectContaining({ arg: 'huge' }));
  });
});
