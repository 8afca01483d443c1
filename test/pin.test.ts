// GUP: pin_user_pages (FOLL_PIN) and get_user_pages (FOLL_GET). Pin
// accounting follows mm/gup.c: a pin adds GUP_PIN_COUNTING_BIAS (1024)
// references to a small folio, or one reference and one _pincount to a large
// one; FOLL_PIN marks the mm has-pinned for good; the zero page is never
// pinned; a read-only long-term pin in a private mapping unshares first.
// Host-kernel expectations: test/probes/probe_pin.c (io_uring fixed buffers).

import { describe, it, expect } from 'vitest';
import { machine, expectClean, PAGE, MiB } from './helpers.js';
import { EmuError } from '../src/index.js';

describe('pin_user_pages', () => {
  it('a write pin faults the page in, adds 1024 references, marks the mm has-pinned; unpin drops them, has-pinned stays', async () => {
    const m = await machine();
    const p = m.spawn();
    const a = p.mmap({ length: 8 * PAGE, prot: 'rw' });
    expect(p.hasPinned).toBe(false);
    const pin = m.pin(p, a.start + PAGE, 2, { write: true });
    expect(pin.kind).toBe('pin');
    expect(p.entry(a.start + PAGE)).toMatchObject({ kind: 'present', write: true, dirty: true, pfn: pin.frames[0] });
    expect(p.entry(a.start)).toMatchObject({ kind: 'none' });
    expect(m.frame(pin.frames[0]!)).toMatchObject({ refcount: 1025, mapcount: 1, exclusive: true, maybePinned: true, pincount: 0 });
    expect(p.hasPinned).toBe(true);
    expectClean(m);

    pin.dmaWrite(1, 77);
    expect(p.read(a.start + 2 * PAGE)).toMatchObject({ ok: true, tag: 77, pfn: pin.frames[1] });
    p.write(a.start + PAGE, 5);
    expect(pin.dmaRead(0)).toBe(5);

    pin.unpin();
    expect(pin.released).toBe(true);
    expect(m.frame(pin.frames[0]!)).toMatchObject({ refcount: 1, maybePinned: false });
    expect(p.hasPinned).toBe(true);
    expect(() => pin.unpin()).toThrow(EmuError);
    expect(() => pin.dmaRead(0)).toThrow(/released/);
    expectClean(m);
  });

  it('a long-term write pin (io_uring fixed buffers) breaks COW on the zero page, faults holes in, and keeps pages from reclaim until unpinned', async () => {
    // test/probes/probe_pin.c on Linux 6.18 x86-64: after IORING_REGISTER_BUFFERS over
    // [zero page, written page, untouched, untouched] all four are present and
    // exclusive, page 0 on a new frame, page 1 on its old one; MADV_PAGEOUT leaves
    // them present while registered and swaps all four out after unregistering.
    const m = await machine({ swap: '1MiB' });
    const p = m.spawn();
    const a = p.mmap({ length: 4 * PAGE, prot: 'rw' });
    p.read(a.start);
    p.write(a.start + PAGE, 1);
    const zeroPfn = p.pagemap(a.start).pfn;
    const page1 = p.pagemap(a.start + PAGE).pfn;
    const pin = m.pin(p, a.start, 4, { write: true, longterm: true });
    for (let i = 0; i < 4; i++) expect(p.pagemap(a.start + i * PAGE), `page ${i}`).toMatchObject({ present: true, exclusive: true, pfn: pin.frames[i] });
    expect(pin.frames[0]).not.toBe(zeroPfn);
    expect(pin.frames[1]).toBe(page1);
    p.madvise(a.start, a.length, 'pageout');
    for (let i = 0; i < 4; i++) expect(p.pagemap(a.start + i * PAGE), `page ${i}`).toMatchObject({ present: true, pfn: pin.frames[i] });
    expectClean(m);
    pin.unpin();
    p.madvise(a.start, a.length, 'pageout');
    for (let i = 0; i < 4; i++) expect(p.pagemap(a.start + i * PAGE), `page ${i}`).toMatchObject({ present: false, swapped: true });
    expectClean(m);
  });

  it('FOLL_GET takes one plain reference and leaves has-pinned clear', async () => {
    const m = await machine();
    const p = m.spawn();
    const a = p.mmap({ length: PAGE, prot: 'rw' });
    p.write(a.start, 3);
    const ref = m.get(p, a.start, 1);
    expect(ref.kind).toBe('get');
    expect(m.frame(ref.frames[0]!)).toMatchObject({ refcount: 2, maybePinned: false });
    expect(p.hasPinned).toBe(false);
    expectClean(m);
    ref.unpin();
    expect(m.frame(ref.frames[0]!).refcount).toBe(1);
    expectClean(m);
  });

  it('1024 plain references look pinned (the documented false positive of page_maybe_dma_pinned)', async () => {
    const m = await machine();
    const p = m.spawn();
    const a = p.mmap({ length: PAGE, prot: 'rw' });
    p.write(a.start, 3);
    const refs = [];
    for (let i = 0; i < 1023; i++) refs.push(m.get(p, a.start, 1));
    const pfn = refs[0]!.frames[0]!;
    expect(m.frame(pfn)).toMatchObject({ refcount: 1024, maybePinned: true });
    expect(p.hasPinned).toBe(false);
    refs.pop()!.unpin();
    expect(m.frame(pfn)).toMatchObject({ refcount: 1023, maybePinned: false });
    for (const r of refs) r.unpin();
    expectClean(m);
  });

  it('a pinned page unmapped by munmap stays allocated until unpin frees it', async () => {
    const m = await machine();
    const p = m.spawn();
    const a = p.mmap({ length: 2 * PAGE, prot: 'rw' });
    const pin = m.pin(p, a.start, 2, { write: true });
    pin.dmaWrite(0, 41);
    p.munmap(a.start, a.length);
    const free0 = m.stats.freeFrames;               // the page tables went back; the pinned pages did not
    expect(m.frame(pin.frames[0]!)).toMatchObject({ kind: 'page', refcount: 1024, mapcount: 0, maybePinned: true });
    expect(pin.dmaRead(0)).toBe(41);
    expectClean(m);
    pin.unpin();
    expect(m.frame(pin.frames[0]!).kind).toBe('free');
    expect(m.stats.freeFrames).toBe(free0 + 2);
    expectClean(m);
  });

  it('read pins: the zero page is listed but never pinned; a long-term read pin in a private mapping unshares it', async () => {
    const m = await machine();
    const p = m.spawn();
    const a = p.mmap({ length: 2 * PAGE, prot: 'rw' });
    const short = m.pin(p, a.start, 1);
    const zero = m.frame(short.frames[0]!);
    expect(zero.zero).toBe(true);
    expect(p.entry(a.start)).toMatchObject({ kind: 'present', write: false, pfn: short.frames[0] });
    expectClean(m);
    short.unpin();

    const long = m.pin(p, a.start + PAGE, 1, { longterm: true });
    const f = m.frame(long.frames[0]!);
    expect(f).toMatchObject({ zero: false, anon: true, exclusive: true, refcount: 1025, maybePinned: true, tag: 0 });
    // FAULT_FLAG_UNSHARE leaves the new page mapped read-only.
    expect(p.entry(a.start + PAGE)).toMatchObject({ kind: 'present', write: false, pfn: long.frames[0] });
    expectClean(m);
    long.unpin();
    expectClean(m);
  });

  it('a THP pin counts in the folio pincount: one reference and one pincount per pinned subpage', async () => {
    const m = await machine();
    const p = m.spawn();
    const a = p.mmap({ length: 4 * MiB, prot: 'rw' });
    p.madvise(a.start, a.length, 'hugepage');
    p.write(a.start, 1);
    const head = p.entry(a.start).pfn!;
    const pin = m.pin(p, a.start + 3 * PAGE, 2, { write: true });
    expect(pin.frames).toEqual([head + 3, head + 4]);
    expect(p.entry(a.start)).toMatchObject({ level: 'pmd' });
    expect(m.frame(head + 4)).toMatchObject({ head, refcount: 3, pincount: 2, maybePinned: true });
    expectClean(m);
    m.debug.corruptFrame(head + 1, 'refcount', 5);    // the first tail's refcount word is the pincount
    expect(m.check().map((x) => x.kind)).toEqual(['pincount']);
    m.debug.corruptFrame(head + 1, 'refcount', 2);
    pin.unpin();
    expect(m.frame(head)).toMatchObject({ refcount: 1, pincount: 0, maybePinned: false });
    expectClean(m);
  });

  it('fast: GUP-fast takes what is mapped with the needed access, the slow path faults the rest', async () => {
    const m = await machine();
    const p = m.spawn();
    const a = p.mmap({ length: 8 * PAGE, prot: 'rw' });
    p.touch(a.start, 3 * PAGE, 'w', 1);
    p.read(a.start + 3 * PAGE);                       // zero page: special, GUP-fast refuses it
    const pin = m.pin(p, a.start, 6, { write: true, fast: true });
    expect(pin.fastPages).toBe(3);
    expect(p.entry(a.start + 3 * PAGE)).toMatchObject({ write: true, pfn: pin.frames[3] });
    expect(new Set(pin.frames).size).toBe(6);
    expect(m.pin(p, a.start, 8, { fast: false }).fastPages).toBe(0);
    expectClean(m);
  });

  it('bad requests throw naming the argument and leave the machine unchanged', async () => {
    const m = await machine();
    const p = m.spawn();
    const a = p.mmap({ length: 4 * PAGE, prot: 'r' });
    const b = p.mmap({ length: 4 * PAGE, prot: 'rw' });
    const state = (): string => JSON.stringify([m.stats, p.rss, [...p.pagemapRange(b.start, b.length)]], (_k, v: unknown) => typeof v === 'bigint' ? v.toString() : v);
    const before = state();
    const fails: [() => unknown, string, string][] = [
      [() => m.pin(p, a.start, 1, { write: true }), 'EFAULT', 'addr'],
      [() => m.pin(p, b.start + 3 * PAGE, 2, { write: true }), 'EFAULT', 'addr'],
      [() => m.pin(p, b.start + 1, 1), 'EINVAL', 'addr'],
      [() => m.pin(p, b.start, 0), 'EINVAL', 'npages'],
      [() => m.pin(p, b.start, 1.5), 'EINVAL', 'npages'],
      [() => m.pin(p, b.start, 1, { wrte: true } as never), 'EINVAL', 'wrte'],
      [() => m.pin(p, b.start, 1, { write: 1 } as never), 'EINVAL', 'write'],
    ];
    for (const [f, code, arg] of fails) {
      let err: unknown;
      try { f(); } catch (e) { err = e; }
      expect(err).toBeInstanceOf(EmuError);
      expect(err).toMatchObject({ code, arg });
    }
    expect(state()).toBe(before);
    expect(p.hasPinned).toBe(false);
    expectClean(m);
  });
});
