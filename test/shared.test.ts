// Files and shared memory: memfd (shmem) shared between processes, private
// mappings of it that copy on write, shared anonymous memory, fault-around and
// write-notify. Expectations match the host kernel (test/probes/probe_memfd.c,
// Linux 6.18): shared pages are file pages (pagemap bit 61), exclusive only
// while mapped once; a private write makes an anon copy; a read fault maps
// neighbouring cached pages too (fault-around); a hole reads as a new shmem page.

import { describe, it, expect } from 'vitest';
import { machine, expectClean, PAGE } from './helpers.js';

describe('memfd shared by two processes', () => {
  it('each sees the other\'s writes; a MAP_PRIVATE mapping copies on first write and then stops seeing them', async () => {
    const m = await machine();
    const f = m.memfd({ size: 16 * PAGE });
    const p1 = m.spawn();
    const p2 = m.spawn();
    const a1 = p1.mmap({ file: f, shared: true, length: 16 * PAGE, prot: 'rw' });
    const a2 = p2.mmap({ file: f, shared: true, length: 16 * PAGE, prot: 'rw' });

    const w = p1.write(a1.start + 3 * PAGE, 111);
    if (!w.ok) throw new Error('write failed');
    expect(p2.read(a2.start + 3 * PAGE)).toMatchObject({ ok: true, tag: 111, pfn: w.pfn });
    expect(p2.write(a2.start + 3 * PAGE, 222).ok).toBe(true);
    expect(p1.read(a1.start + 3 * PAGE)).toMatchObject({ tag: 222, pfn: w.pfn });
    expect(f.lookup(3)).toEqual({ state: 'page', pfn: w.pfn });
    expect(m.frame(w.pfn)).toMatchObject({ anon: false, swapbacked: true, mapcount: 2, refcount: 3, index: 3, owner: f.id });
    expect(p1.pagemap(a1.start + 3 * PAGE)).toMatchObject({ present: true, file: true, exclusive: false });
    expect(p1.rss).toMatchObject({ shmem: 1, anon: 0 });

    const p3 = m.spawn();
    const priv = p3.mmap({ file: f, length: 16 * PAGE, prot: 'rw' });
    expect(p3.read(priv.start + 3 * PAGE)).toMatchObject({ tag: 222, pfn: w.pfn });
    expect(p3.entry(priv.start + 3 * PAGE)).toMatchObject({ write: false });
    const c = p3.write(priv.start + 3 * PAGE, 333);
    if (!c.ok) throw new Error('private write failed');
    expect(c.pfn).not.toBe(w.pfn);
    expect(p3.pagemap(priv.start + 3 * PAGE)).toMatchObject({ file: false, exclusive: true, pfn: c.pfn });
    expect(p3.rss).toMatchObject({ anon: 1, shmem: 0 });
    expect(p1.read(a1.start + 3 * PAGE)).toMatchObject({ tag: 222 });
    p1.write(a1.start + 3 * PAGE, 444);
    expect(p3.read(priv.start + 3 * PAGE)).toMatchObject({ tag: 333, pfn: c.pfn });
    expect(p2.read(a2.start + 3 * PAGE)).toMatchObject({ tag: 444 });
    expectClean(m);

    p1.exit(); p2.exit(); p3.exit();
    f.close();
    expect(m.stats.freeFrames).toBe(m.stats.frames - 2);   // pfn 0 and the zero page
    expectClean(m);
  });

  it('fault-around maps cached neighbours on a read fault; holes become new shmem pages', async () => {
    const m = await machine();
    const f = m.memfd({ size: 32 * PAGE });
    const w = m.spawn();
    const wa = w.mmap({ file: f, shared: true, length: 32 * PAGE, prot: 'rw' });
    for (const i of [0, 3, 17]) w.write(wa.start + i * PAGE, 100 + i);
    const r = m.spawn();
    // fault_around_bytes windows are aligned in the virtual address space: place the mapping on one.
    const ra = r.mmap({ addr: 0x40000000, file: f, length: 32 * PAGE, prot: 'r' });
    expect(r.read(ra.start + 2 * PAGE)).toMatchObject({ ok: true, tag: 0 });   // a hole: new page
    expect(f.lookup(2).state).toBe('page');
    // The 64 KiB window around page 2 held pages 0 and 3: mapped without faults of their own.
    expect(r.pagemap(ra.start).present).toBe(true);
    expect(r.pagemap(ra.start + 3 * PAGE).present).toBe(true);
    expect(r.pagemap(ra.start + PAGE).present).toBe(false);
    expect(r.pagemap(ra.start + 17 * PAGE).present).toBe(false);      // outside the window
    const faults = r.faults.minor;
    expect(r.read(ra.start + 3 * PAGE)).toMatchObject({ tag: 103, faults: 0 });
    expect(r.faults.minor).toBe(faults);
    expect(r.rss.shmem).toBe(3);
    expectClean(m);
  });

  it('accesses beyond the end of the file raise SIGBUS; truncation unmaps and frees', async () => {
    const m = await machine();
    const f = m.memfd({ size: 4 * PAGE });
    const p = m.spawn();
    const a = p.mmap({ file: f, shared: true, length: 8 * PAGE, prot: 'rw' });
    expect(p.read(a.start + 5 * PAGE)).toMatchObject({ ok: false, signal: 'SIGBUS' });
    p.touch(a.start, 4 * PAGE, 'w', 9);
    const q = m.spawn();
    const qa = q.mmap({ file: f, length: 4 * PAGE, prot: 'rw' });
    const copy = q.write(qa.start + 3 * PAGE, 10);
    if (!copy.ok) throw new Error('write failed');
    const victim = f.lookup(3);
    f.truncate(2 * PAGE);
    expect(p.entry(a.start + 3 * PAGE).kind).toBe('none');
    expect(p.read(a.start + 3 * PAGE)).toMatchObject({ ok: false, signal: 'SIGBUS' });
    expect(q.entry(qa.start + 3 * PAGE).kind).toBe('none');       // even private copies go (even_cows)
    expect(m.frame(copy.pfn).kind).toBe('free');
    if (victim.state === 'page') expect(m.frame(victim.pfn).kind).toBe('free');
    expect(p.read(a.start + PAGE)).toMatchObject({ ok: true, tag: 9 });
    expect(f.stats).toMatchObject({ pages: 2, cached: 2 });
    expectClean(m);
  });
  it('a hole punch (MADV_REMOVE) keeps the private copies of punched pages; truncation drops them (test/probes/probe_punch_cow.c)', async () => {
    for (const arch of ['x86_64', 'arm64'] as const) {
      const m = await machine({ arch });
      const f = m.memfd({ size: 4 * PAGE });
      const p = m.spawn();
      const a = p.mmap({ file: f, shared: true, length: 4 * PAGE, prot: 'rw' }).start;
      const c = p.mmap({ file: f, length: 4 * PAGE, prot: 'rw' }).start;
      p.write(a + PAGE, 0x11);
      const copy = p.write(c + PAGE, 0x22);
      if (!copy.ok) throw new Error('write failed');
      p.madvise(a + PAGE, PAGE, 'remove');
      expect(p.read(a + PAGE)).toMatchObject({ ok: true, tag: 0 });
      expect(p.entry(c + PAGE)).toMatchObject({ kind: 'present', pfn: copy.pfn });
      expect(p.read(c + PAGE)).toMatchObject({ ok: true, tag: 0x22, pfn: copy.pfn });
      expect(m.frame(copy.pfn)).toMatchObject({ anon: true, mapcount: 1 });
      f.truncate(PAGE);
      f.truncate(4 * PAGE);
      expect(m.frame(copy.pfn).kind).toBe('free');
      expect(p.read(c + PAGE)).toMatchObject({ ok: true, tag: 0 });
      expectClean(m);
    }
  });
});

describe('shared anonymous memory', () => {
  it('is shmem: shared with nobody else, a file page in pagemap, freed with the mapping', async () => {
    const m = await machine();
    const p = m.spawn();
    const a = p.mmap({ length: 4 * PAGE, shared: true, prot: 'rw' });
    const w = p.write(a.start, 1);
    if (!w.ok) throw new Error('write failed');
    expect(p.pagemap(a.start)).toMatchObject({ file: true, exclusive: true });
    expect(p.rss).toMatchObject({ shmem: 1, anon: 0 });
    p.munmap(a.start, a.length);
    expect(m.frame(w.pfn).kind).toBe('free');
    expectClean(m);
  });
});

describe('write-notify (->page_mkwrite)', () => {
  it('shared writable mappings of a file with page_mkwrite map read-only and call it once per page on the first write', async () => {
    const m = await machine();
    const f = m.file({ size: 4 * PAGE, pageMkwrite: true });
    const p = m.spawn();
    const a = p.mmap({ file: f, shared: true, length: 4 * PAGE, prot: 'rw' });
    p.read(a.start);
    expect(p.entry(a.start)).toMatchObject({ write: false, dirty: false });
    expect(f.stats.pageMkwrite).toBe(0);
    expect(p.write(a.start, 5)).toMatchObject({ ok: true, faults: 1 });
    expect(f.stats.pageMkwrite).toBe(1);
    expect(p.entry(a.start)).toMatchObject({ write: true, dirty: true });
    expect(p.write(a.start, 6)).toMatchObject({ ok: true, faults: 0 });
    expect(p.write(a.start + PAGE, 7)).toMatchObject({ ok: true, faults: 1 });   // write fault on a none pte: do_shared_fault
    expect(f.stats.pageMkwrite).toBe(2);

    // shmem has no page_mkwrite: a read fault maps a shared writable page writable but clean.
    const s = m.memfd({ size: PAGE });
    const b = p.mmap({ file: s, shared: true, length: PAGE, prot: 'rw' });
    p.read(b.start);
    expect(p.entry(b.start)).toMatchObject({ write: true, dirty: false });
    expect(p.write(b.start, 1)).toMatchObject({ ok: true, faults: 0 });
    expect(p.entry(b.start)).toMatchObject({ write: true, dirty: true });
    expectClean(m);
  });
});
