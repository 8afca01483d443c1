// MADV_PAGEOUT and swap-in. The host kernel (test/probes/probe_swap.c,
// Linux 6.18) shows a paged-out anon page as swapped (bit 62) with type 0 and
// offset counting from 1, not exclusive in pagemap; a swap-in maps it
// writable and exclusive, and the slot stays held by the swap cache. A
// paged-out shmem page leaves a none PTE (its swap entry lives in the file).
// Here reclaim is synchronous: the frame is freed at once.

import { describe, it, expect } from 'vitest';
import { machine, expectClean, PAGE } from './helpers.js';

describe('anonymous pageout and swap-in', () => {
  it('swaps out exclusive pages, frees their frames, and restores the same tags on access', async () => {
    const m = await machine();
    const p = m.spawn();
    const a = p.mmap({ length: 8 * PAGE, prot: 'rw' });
    const pfns: number[] = [];
    for (let i = 0; i < 4; i++) {
      const w = p.write(a.start + i * PAGE, 1000 + i);
      if (!w.ok) throw new Error('write failed');
      pfns.push(w.pfn);
    }
    const free0 = m.stats.freeFrames;
    p.madvise(a.start, 8 * PAGE, 'pageout');
    expect(m.stats.freeFrames).toBe(free0 + 4);
    for (const pfn of pfns) expect(m.frame(pfn).kind).toBe('free');
    expect(p.rss).toEqual({ anon: 0, file: 0, shmem: 0, swap: 4 });

    const pm = p.pagemap(a.start + PAGE);
    expect(pm).toMatchObject({ present: false, swapped: true, exclusive: false, swapType: 0 });
    const slot = pm.swapOffset!;
    expect(slot).toBeGreaterThan(0);                   // slot 0 is the swap header
    expect(m.swapSlot(slot)).toEqual({ count: 1, cachedPfn: 0, tag: 1001 });
    expect(p.entry(a.start + PAGE)).toMatchObject({ kind: 'swap', swapType: 0, swapOffset: slot, swpExclusive: true });
    expect(p.pagemap(a.start + 5 * PAGE).swapped).toBe(false);   // never touched: nothing to swap
    expectClean(m);

    // A read swaps in through the swap cache: a major fault, mapped writable (exclusive), slot kept by the cache.
    const r = p.read(a.start + PAGE);
    expect(r).toMatchObject({ ok: true, tag: 1001, faults: 1 });
    if (!r.ok) return;
    expect(p.faults.major).toBe(1);
    expect(p.entry(a.start + PAGE)).toMatchObject({ kind: 'present', write: true, dirty: false });
    expect(p.pagemap(a.start + PAGE)).toMatchObject({ present: true, exclusive: true });
    expect(m.frame(r.pfn)).toMatchObject({ swapcache: true, index: slot, refcount: 2, exclusive: true });
    expect(m.swapSlot(slot)).toEqual({ count: 0, cachedPfn: r.pfn, tag: 1001 });
    expect(p.write(a.start + PAGE, 5)).toMatchObject({ ok: true, faults: 0 });
    expect(p.rss).toEqual({ anon: 1, file: 0, shmem: 0, swap: 3 });
    expectClean(m);

    // A write swap-in of the only user lets the swap copy go (should_try_to_free_swap).
    const w2 = p.write(a.start + 2 * PAGE, 77);
    if (!w2.ok) throw new Error('write failed');
    expect(m.frame(w2.pfn)).toMatchObject({ swapcache: false, refcount: 1 });
    expect(p.read(a.start)).toMatchObject({ tag: 1000 });
    expect(p.read(a.start + 3 * PAGE)).toMatchObject({ tag: 1003 });
    expectClean(m);

    // Paging out a swap-cache page reuses its slot; unmapping frees everything.
    p.madvise(a.start + PAGE, PAGE, 'pageout');
    expect(p.pagemap(a.start + PAGE).swapOffset).toBe(slot);
    expect(m.swapSlot(slot)).toEqual({ count: 1, cachedPfn: 0, tag: 5 });
    p.munmap(a.start, a.length);
    expect(m.stats.swapSlotsUsed).toBe(0);
    expectClean(m);
  });

  it('skips pages it must not reclaim: the zero page, pages mapped twice, and no swap at all', async () => {
    const m = await machine({ swap: 0 });
    const p = m.spawn();
    const a = p.mmap({ length: 2 * PAGE, prot: 'rw' });
    p.read(a.start);
    p.write(a.start + PAGE, 3);
    p.madvise(a.start, 2 * PAGE, 'pageout');
    expect(p.pagemap(a.start).present).toBe(true);
    expect(p.pagemap(a.start + PAGE).present).toBe(true);
    expect(p.rss.swap).toBe(0);
    expectClean(m);
  });

  it('arm64 swap entries carry the exclusive bit; x86 ones soft-dirty too', async () => {
    for (const arch of ['x86_64', 'arm64'] as const) {
      const m = await machine({ arch });
      const p = m.spawn();
      const a = p.mmap({ length: PAGE, prot: 'rw' });
      p.write(a.start, 1);
      p.madvise(a.start, PAGE, 'pageout');
      expect(p.entry(a.start)).toMatchObject({ kind: 'swap', swpExclusive: true, swpSoftDirty: arch === 'x86_64' });
      expect(p.read(a.start)).toMatchObject({ ok: true, tag: 1 });
      expect(p.entry(a.start)).toMatchObject({ softDirty: arch === 'x86_64' });
      expectClean(m);
    }
  });
});

describe('shmem pageout', () => {
  it('moves the page to swap inside the file, leaves a none PTE, and swaps back in with the same tag', async () => {
    const m = await machine();
    const f = m.memfd({ size: 4 * PAGE });
    const p = m.spawn();
    const a = p.mmap({ file: f, shared: true, length: 4 * PAGE, prot: 'rw' });
    const w = p.write(a.start, 4242);
    if (!w.ok) throw new Error('write failed');
    p.madvise(a.start, PAGE, 'pageout');
    expect(m.frame(w.pfn).kind).toBe('free');
    expect(p.pagemap(a.start)).toMatchObject({ present: false, swapped: false });
    const s = f.lookup(0);
    expect(s.state).toBe('swapped');
    if (s.state !== 'swapped') return;
    expect(m.swapSlot(s.slot)).toMatchObject({ count: 1, tag: 4242 });
    expect(f.stats).toMatchObject({ cached: 0, swapped: 1 });
    expect(p.rss.shmem).toBe(0);

    const q = m.spawn();
    const b = q.mmap({ file: f, shared: true, length: 4 * PAGE, prot: 'r' });
    expect(q.read(b.start)).toMatchObject({ ok: true, tag: 4242 });
    expect(q.faults.major).toBe(1);
    expect(f.stats).toMatchObject({ cached: 1, swapped: 0 });
    expect(m.stats.swapSlotsUsed).toBe(0);
    expect(p.read(a.start)).toMatchObject({ ok: true, tag: 4242 });
    expectClean(m);
  });
});
