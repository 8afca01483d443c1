// fork(): copy_page_range with copy-on-write and the early copy of pages that
// may be DMA-pinned (SEMANTICS §6). Exclusivity after fork and the COW fault
// sequence match the host kernel (test/probes/probe_fork.c, Linux 6.18);
// pinned pages and pinned THP at fork match test/probes/probe_fork_pin.c
// (io_uring fixed buffers, Linux 6.18): the pinned page is copied into the
// child (exclusive there), its neighbours stay shared, the parent keeps its
// pfn and writes it with no fault; a THP with one pinned subpage ends up
// PTE-mapped in the parent (AnonHugePages 0) and as 512 small pages in the child.

import { describe, it, expect } from 'vitest';
import { machine, expectClean, PAGE, MiB } from './helpers.js';
import { EmuError } from '../src/index.js';

describe('fork', () => {
  it('COW basics: both sides share read-only frames; a child write copies; the parent then reuses its frame', async () => {
    const m = await machine();
    const free0 = m.stats.freeFrames;
    const parent = m.spawn();
    const a = parent.mmap({ length: 4 * PAGE, prot: 'rw' });
    parent.touch(a.start, a.length, 'w', 5);
    const frames = [0, 1, 2, 3].map((i) => parent.pagemap(a.start + i * PAGE).pfn!);
    const child = parent.fork();
    for (let i = 0; i < 4; i++) {
      for (const p of [parent, child]) {
        expect(p.pagemap(a.start + i * PAGE)).toMatchObject({ present: true, exclusive: false, pfn: frames[i] });
        expect(p.entry(a.start + i * PAGE)).toMatchObject({ write: false, dirty: true });
      }
      expect(m.frame(frames[i]!)).toMatchObject({ refcount: 2, mapcount: 2, exclusive: false });
    }
    expect(child.entry(a.start)).toMatchObject({ young: false });
    expect(child.rss).toEqual(parent.rss);
    expectClean(m);

    const cw = child.write(a.start, 9);
    expect(cw).toMatchObject({ ok: true, faults: 1 });
    expect(cw.ok && cw.pfn).not.toBe(frames[0]);
    const pw = parent.write(a.start, 8);
    expect(pw).toMatchObject({ ok: true, pfn: frames[0], faults: 1 });   // reuse: refcount proves it is ours alone
    expect(parent.pagemap(a.start).exclusive).toBe(true);
    const pw2 = parent.write(a.start + PAGE, 7);
    expect(pw2.ok && pw2.pfn).not.toBe(frames[1]);                        // still shared: copy
    expect(child.read(a.start + PAGE)).toMatchObject({ tag: 5, pfn: frames[1] });
    expect(child.pagemap(a.start + PAGE).exclusive).toBe(true);            // probe 12b: the only mapping left

    expect(child.read(a.start)).toMatchObject({ tag: 9 });
    expectClean(m);
    child.exit();
    expect(parent.pagemap(a.start + 2 * PAGE)).toMatchObject({ exclusive: true, pfn: frames[2] });   // probe 12c
    expect(parent.write(a.start + 2 * PAGE, 1)).toMatchObject({ ok: true, pfn: frames[2], faults: 1 });
    parent.exit();
    expect(m.stats.freeFrames).toBe(free0);                                // every page and table back
    expectClean(m);
  });

  it('pinned pages are copied into the child at fork; the parent keeps them writable and sees DMA, the child never does', async () => {
    const m = await machine();
    const parent = m.spawn();
    const a = parent.mmap({ length: 4 * PAGE, prot: 'rw' });
    parent.touch(a.start, a.length, 'w', 5);
    const pin = m.pin(parent, a.start + PAGE, 1, { write: true });
    const child = parent.fork();
    expect(parent.lastFork).toEqual({ retries: 1, earlyCopies: 1 });
    const c = child.pagemap(a.start + PAGE);
    expect(c).toMatchObject({ present: true, exclusive: true });
    expect(c.pfn).not.toBe(pin.frames[0]);
    expect(m.frame(c.pfn!)).toMatchObject({ tag: 5, refcount: 1, mapcount: 1 });
    expect(parent.entry(a.start + PAGE)).toMatchObject({ write: true, pfn: pin.frames[0] });
    expect(parent.pagemap(a.start).exclusive).toBe(false);               // unpinned neighbour shared
    expect(child.pagemap(a.start).pfn).toBe(parent.pagemap(a.start).pfn);
    expect(parent.write(a.start + PAGE, 6)).toMatchObject({ ok: true, faults: 0 });
    pin.dmaWrite(0, 42);
    expect(parent.read(a.start + PAGE)).toMatchObject({ tag: 42 });
    expect(child.read(a.start + PAGE)).toMatchObject({ tag: 5 });
    expectClean(m);
    pin.unpin();
    child.exit();
    parent.exit();
    expectClean(m);
  });

  it('a FOLL_GET reference is shared at fork, and the parent\'s next write moves the parent away from it (the bug the seed fixed)', async () => {
    const m = await machine();
    const parent = m.spawn();
    const a = parent.mmap({ length: PAGE, prot: 'rw' });
    parent.write(a.start, 5);
    const ref = m.get(parent, a.start, 1);
    const child = parent.fork();
    expect(parent.lastFork.earlyCopies).toBe(0);
    expect(child.pagemap(a.start).pfn).toBe(ref.frames[0]);
    const w = parent.write(a.start, 6);
    expect(w.ok && w.pfn).not.toBe(ref.frames[0]);
    ref.dmaWrite(0, 99);
    expect(parent.read(a.start)).toMatchObject({ tag: 6 });
    expect(child.read(a.start)).toMatchObject({ tag: 99 });                             // the reference now follows the child's page
    ref.unpin();
    expectClean(m);
  });

  it('has-pinned gates the copy: 1024 plain references alone are shared; with has-pinned set they are copied (false positive)', async () => {
    const m = await machine();
    const p = m.spawn();
    const a = p.mmap({ length: 2 * PAGE, prot: 'rw' });
    p.touch(a.start, a.length, 'w', 1);
    const refs = Array.from({ length: 1023 }, () => m.get(p, a.start, 1));
    expect(m.frame(refs[0]!.frames[0]!).maybePinned).toBe(true);
    const c1 = p.fork();
    expect(p.lastFork.earlyCopies).toBe(0);
    expect(c1.pagemap(a.start).pfn).toBe(refs[0]!.frames[0]);
    c1.exit();
    // The 1023 references still hold the old page, so the parent's write copies.
    const w = p.write(a.start, 2);
    expect(w.ok && w.pfn).not.toBe(refs[0]!.frames[0]);
    for (const r of refs) r.unpin();
    expectClean(m);

    const q = m.spawn();
    const b = q.mmap({ length: 2 * PAGE, prot: 'rw' });
    q.touch(b.start, b.length, 'w', 3);
    const plain = Array.from({ length: 1024 }, () => m.get(q, b.start, 1));
    const pin = m.pin(q, b.start + PAGE, 1, { write: true });           // sets has-pinned
    const c2 = q.fork();
    expect(q.lastFork).toEqual({ retries: 2, earlyCopies: 2 });
    expect(c2.pagemap(b.start).pfn).not.toBe(plain[0]!.frames[0]);
    expect(c2.pagemap(b.start + PAGE).pfn).not.toBe(pin.frames[0]);
    expectClean(m);
    for (const r of plain) r.unpin();
    pin.unpin();
    expectClean(m);
  });

  it("era 'seed' and 'modern' differ exactly on a pinned page that is not exclusive", async () => {
    for (const era of ['modern', 'seed'] as const) {
      const m = await machine({ era });
      const p = m.spawn();
      const a = p.mmap({ length: 2 * PAGE, prot: 'rw' });
      p.touch(a.start, a.length, 'w', 4);
      const first = p.fork();                                             // page 0 is now shared: not exclusive
      const refs = Array.from({ length: 1024 }, () => m.get(p, a.start, 1));   // maybe-pinned without unsharing
      const pin = m.pin(p, a.start + PAGE, 1, { write: true });           // breaks COW on page 1, sets has-pinned
      expect(p.pagemap(a.start).exclusive).toBe(false);
      expect(p.pagemap(a.start + PAGE).exclusive).toBe(true);
      const second = p.fork();
      const shared0 = second.pagemap(a.start).pfn === refs[0]!.frames[0];
      expect(second.pagemap(a.start + PAGE).pfn).not.toBe(pin.frames[0]);
      if (era === 'modern') {
        expect(p.lastFork.earlyCopies).toBe(1);
        expect(shared0).toBe(true);
      } else {
        expect(p.lastFork.earlyCopies).toBe(2);
        expect(shared0).toBe(false);
      }
      expectClean(m);
      for (const r of refs) r.unpin();
      pin.unpin();
      first.exit();
      second.exit();
      p.exit();
      expectClean(m);
    }
  });

  it('prealloc failure: fork fails with ENOMEM, no child, the parent\'s frames and contents intact, check clean', async () => {
    const m = await machine();
    const p = m.spawn();
    const a = p.mmap({ length: 64 * PAGE, prot: 'rw' });
    p.touch(a.start, a.length, 'w', 3);
    const pin = m.pin(p, a.start + 40 * PAGE, 1, { write: true });
    const before = [...p.pagemapRange(a.start, a.length)].map((v) => v & ((1n << 55n) - 1n));
    const procs = m.procs.length;
    let failures = 0;
    for (let n = 0; n < 64; n++) {
      m.debug.failAllocationsAfter(n);
      let err: unknown;
      try { p.fork(); } catch (e) { err = e; }
      m.debug.failAllocationsAfter(-1);
      if (err === undefined) break;                                       // enough allocations to finish
      failures++;
      expect(err).toBeInstanceOf(EmuError);
      expect(err).toMatchObject({ code: 'ENOMEM' });
      expect(m.procs.length).toBe(procs);
      expect([...p.pagemapRange(a.start, a.length)].map((v) => v & ((1n << 55n) - 1n))).toEqual(before);
      for (let i = 0; i < 64; i += 7) expect(p.read(a.start + i * PAGE)).toMatchObject({ ok: true, tag: 3 });
      expectClean(m);
    }
    expect(failures).toBeGreaterThan(3);                                   // tables, and the prealloc page, each failed once
    pin.unpin();
    expectClean(m);
  });

  it('a pinned PMD-mapped THP is split in the parent and copied per 4 KiB page; an unpinned THP is shared at PMD level', async () => {
    const m = await machine();
    const p = m.spawn();
    const a = p.mmap({ length: 4 * MiB, prot: 'rw' });
    p.madvise(a.start, a.length, 'hugepage');
    p.write(a.start, 1);
    p.write(a.start + 2 * MiB, 2);
    const head0 = p.entry(a.start).pfn!;
    const head1 = p.entry(a.start + 2 * MiB).pfn!;
    const pin = m.pin(p, a.start + 5 * PAGE, 1, { write: true });
    const child = p.fork();
    expect(p.lastFork.earlyCopies).toBe(512);
    expect(p.entry(a.start)).toMatchObject({ level: 'pte', pfn: head0 });
    expect(p.entry(a.start + 5 * PAGE)).toMatchObject({ level: 'pte', write: true, pfn: head0 + 5 });
    const c5 = child.entry(a.start + 5 * PAGE);
    expect(c5.level).toBe('pte');
    expect(m.frame(c5.pfn!)).toMatchObject({ order: 0, anon: true, exclusive: true });
    expect(child.read(a.start)).toMatchObject({ tag: 1 });
    expect(child.entry(a.start + 2 * MiB)).toMatchObject({ level: 'pmd', write: false, pfn: head1 });
    expect(p.entry(a.start + 2 * MiB)).toMatchObject({ level: 'pmd', write: false });
    expect(m.frame(head1)).toMatchObject({ refcount: 2, entireMapcount: 2 });
    expect(child.rss.anon).toBe(1024);
    expectClean(m);
    pin.unpin();
    child.exit();
    p.exit();
    expectClean(m);
  });

  it('MADV_DONTFORK ranges are absent in the child; swap entries are shared with their counts', async () => {
    const m = await machine({ swap: '1MiB' });
    const free0 = m.stats.freeFrames;
    const p = m.spawn();
    const a = p.mmap({ length: 8 * PAGE, prot: 'rw' });
    p.touch(a.start, a.length, 'w', 6);
    p.madvise(a.start + 4 * PAGE, 4 * PAGE, 'dontfork');
    p.madvise(a.start, PAGE, 'pageout');
    const slot = p.pagemap(a.start).swapOffset!;
    expect(m.swapSlot(slot).count).toBe(1);
    const child = p.fork();
    expect(child.vmas.map((v) => [v.start, v.end])).toEqual([[a.start, a.start + 4 * PAGE]]);
    expect(child.pagemap(a.start)).toMatchObject({ swapped: true, swapOffset: slot, exclusive: false });
    expect(m.swapSlot(slot).count).toBe(2);
    expect(child.rss.swap).toBe(1);
    expect(child.read(a.start + 5 * PAGE)).toMatchObject({ ok: false });
    expect(child.read(a.start)).toMatchObject({ ok: true, tag: 6 });
    expect(p.read(a.start)).toMatchObject({ ok: true, tag: 6 });
    expectClean(m);
    child.exit();
    p.exit();
    expect(m.stats.freeFrames).toBe(free0);
    expect(m.stats.swapSlotsUsed).toBe(0);
    expectClean(m);
  });
});

describe('m.debug.injectBug (a wrong kernel for the fuzzers to find)', () => {
  it("'skip-cow-copy': the child's write lands in the parent's page; the checker sees it; switching it off restores COW", async () => {
    const m = await machine();
    const p = m.spawn();
    const a = p.mmap({ length: 2 * PAGE, prot: 'rw' });
    p.touch(a.start, 2 * PAGE, 'w', 1);
    const c = p.fork();
    m.debug.injectBug('skip-cow-copy');
    c.write(a.start, 2);
    expect(p.read(a.start)).toMatchObject({ tag: 2 });                     // the bug: no copy
    expect(m.check().map((x) => x.kind)).toContain('writable-shared-anon');
    m.debug.injectBug('skip-cow-copy', false);
    c.write(a.start + PAGE, 3);
    expect(p.read(a.start + PAGE)).toMatchObject({ tag: 1 });
    expect(() => m.debug.injectBug('x' as 'skip-cow-copy')).toThrow(expect.objectContaining({ arg: 'bug' }));
  });
});
