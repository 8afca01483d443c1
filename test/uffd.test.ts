// userfaultfd (SEMANTICS §7; seed 004): registration, write-protect and
// resolve, faults as messages, markers that keep the protection of shmem
// pages across MADV_DONTNEED, wp-unpopulated, unregister, fork, missing mode,
// async write tracking with PAGEMAP_SCAN.
// Confirmed on the host kernel (Linux 6.18) by test/probes/probe_uffd_wp.c:
// bit 57 on protected pages; after MADV_DONTNEED shmem keeps a marker (not
// present, bits 57 and 62) and a read brings the page back protected, anon
// keeps nothing; wp-unpopulated puts markers on never-touched pages; the
// async PAGEMAP_SCAN rounds give exactly the regions asserted below
// ([0,64); then [1,2) [5,8) [20,21) [63,64); then none; max_pages 2:
// [1,2) [5,6) with walk_end at page 6).
// test/probes/probe_uffd_remove.c: with event-remove, a DONTNEED over two
// registered VMAs is one remove message per VMA, clipped to it; while one is
// unread UFFDIO_WRITEPROTECT fails with EAGAIN; MADV_REMOVE is a message too.
// (There madvise waits until the message is read and zaps after; ptemu zaps
// at once and queues the message.)

import { describe, it, expect } from 'vitest';
import { machine, expectClean, PAGE, MiB } from './helpers.js';
import type { UffdFeature } from '../src/index.js';

/** One process with 2 anonymous pages (tag 1) and 2 shmem pages (tag 2) written, both ranges registered and write-protected. */
async function protectedAnonAndShmem(features: UffdFeature[] = []) {
  const m = await machine();
  const f = m.memfd({ size: 2 * PAGE });
  const p = m.spawn();
  const a = p.mmap({ length: 2 * PAGE, prot: 'rw' });
  const s = p.mmap({ file: f, shared: true, length: 2 * PAGE, prot: 'rw' });
  p.touch(a.start, 2 * PAGE, 'w', 1);
  p.touch(s.start, 2 * PAGE, 'w', 2);
  const u = p.userfaultfd({ features: [...features, 'wp-hugetlbfs-shmem'] });
  for (const r of [a, s]) {
    u.register(r.start, 2 * PAGE);
    u.writeProtect(r.start, 2 * PAGE, true);
  }
  return { m, f, p, a, s, u };
}

describe('userfaultfd write-protect', () => {
  it('protect marks every present page (bit 57), a write becomes one WP message and waits; resolving one page frees only it', async () => {
    const m = await machine({ cpus: 2 });
    const p = m.spawn();
    const a = p.mmap({ length: 8 * PAGE, prot: 'rw' });
    p.touch(a.start, 8 * PAGE, 'w', 5);
    const u = p.userfaultfd();
    u.register(a.start, 8 * PAGE, { wp: true });
    m.clearFlushLog();
    m.clearNotifierLog();
    expect(u.writeProtect(a.start, 8 * PAGE, true)).toBe(8);
    for (let i = 0; i < 8; i++) {
      expect(p.pagemap(a.start + i * PAGE)).toMatchObject({ present: true, uffdWp: true });
      expect(p.entry(a.start + i * PAGE)).toMatchObject({ write: false, uffdWp: true });
    }
    expect(m.flushLog).toHaveLength(1);                                   // one batched flush
    expect(m.notifierLog.map((n) => [n.phase, n.event])).toEqual([['start', 'protection-vma'], ['end', 'protection-vma']]);
    expect(p.read(a.start + 3 * PAGE)).toMatchObject({ ok: true, tag: 5 });   // reads are fine
    const w = p.write(a.start + 3 * PAGE, 9, { cpu: 1 });
    expect(w).toMatchObject({ ok: false, blocked: 'userfaultfd' });
    expect(u.events()).toEqual([{ type: 'pagefault', address: a.start + 3 * PAGE, write: true, wp: true, cpu: 1 }]);
    expect(p.read(a.start + 3 * PAGE)).toMatchObject({ tag: 5 });            // the write did not happen
    expect(u.events()).toEqual([]);
    u.writeProtect(a.start + 3 * PAGE, PAGE, false);
    expect(p.entry(a.start + 3 * PAGE)).toMatchObject({ uffdWp: false, write: true });   // exclusive anon: writable again at once
    expect(p.write(a.start + 3 * PAGE, 9, { cpu: 1 })).toMatchObject({ ok: true, faults: 0 });
    expect([0, 1, 2, 4, 5, 6, 7].every((i) => p.pagemap(a.start + i * PAGE).uffdWp)).toBe(true);
    expect(u.events()).toEqual([]);
    // A write pin takes the same fault: the pin waits (EAGAIN) on the message, and nothing stays pinned.
    expect(() => m.pin(p, a.start + 6 * PAGE, 2, { write: true })).toThrow(expect.objectContaining({ code: 'EAGAIN', message: expect.stringContaining('userfaultfd') }));
    expect(u.events()).toEqual([{ type: 'pagefault', address: a.start + 6 * PAGE, write: true, wp: true, cpu: 0 }]);
    expect(m.frame(p.entry(a.start + 6 * PAGE).pfn!).pincount).toBe(0);
    u.writeProtect(a.start + 6 * PAGE, 2 * PAGE, false);
    m.pin(p, a.start + 6 * PAGE, 2, { write: true }).unpin();
    expectClean(m);
  });

  it('shmem keeps the protection as a marker across MADV_DONTNEED; anonymous memory loses it', async () => {
    const m = await machine();
    const f = m.memfd({ size: 4 * PAGE });
    const p = m.spawn();
    const s = p.mmap({ file: f, shared: true, length: 4 * PAGE, prot: 'rw' });
    const a = p.mmap({ length: 4 * PAGE, prot: 'rw' });
    p.touch(s.start, 4 * PAGE, 'w', 7);
    p.touch(a.start, 4 * PAGE, 'w', 8);
    const u = p.userfaultfd({ features: ['wp-hugetlbfs-shmem'] });
    u.register(s.start, 4 * PAGE);
    u.register(a.start, 4 * PAGE);
    u.writeProtect(s.start, 4 * PAGE, true);
    u.writeProtect(a.start, 4 * PAGE, true);
    p.madvise(s.start, 4 * PAGE, 'dontneed');
    p.madvise(a.start, 4 * PAGE, 'dontneed');
    expect(p.pagemap(s.start + PAGE)).toMatchObject({ present: false, swapped: true, uffdWp: true });
    expect(p.entry(s.start + PAGE)).toMatchObject({ kind: 'marker', markers: ['uffd-wp'] });
    expect(p.pagemap(a.start + PAGE)).toMatchObject({ present: false, swapped: false, uffdWp: false });
    // shmem: a read maps the page back, still protected, content intact; a write is a message.
    expect(p.read(s.start + PAGE)).toMatchObject({ ok: true, tag: 7 });
    expect(p.entry(s.start + PAGE)).toMatchObject({ kind: 'present', uffdWp: true, write: false });
    expect(p.write(s.start + PAGE, 1)).toMatchObject({ ok: false, blocked: 'userfaultfd' });
    expect(u.events()).toEqual([expect.objectContaining({ address: s.start + PAGE, wp: true })]);
    // anon: a fresh page, no protection, no message.
    expect(p.write(a.start + PAGE, 2)).toMatchObject({ ok: true });
    expect(u.events()).toEqual([]);
    // mprotect leaves markers as they are.
    p.mprotect(s.start, 4 * PAGE, 'r');
    expect(p.entry(s.start + 2 * PAGE)).toMatchObject({ kind: 'marker', markers: ['uffd-wp'] });
    expectClean(m);
  });

  it('shmem resolve: a dirty entry is writable at once, a clean one stays read-only and its write faults with no message; markers go (H2, H11)', async () => {
    const m = await machine();
    const f = m.memfd({ size: 4 * PAGE });
    const p = m.spawn();
    const s = p.mmap({ file: f, shared: true, length: 4 * PAGE, prot: 'rw' });
    p.write(s.start, 1);
    p.read(s.start + PAGE);
    const u = p.userfaultfd({ features: ['wp-hugetlbfs-shmem'] });
    u.register(s.start, 4 * PAGE);
    expect(u.writeProtect(s.start, 4 * PAGE, true)).toBe(4);               // 2 present, 2 markers
    expect(u.writeProtect(s.start, 4 * PAGE, false)).toBe(4);
    expect(p.entry(s.start)).toMatchObject({ write: true, dirty: true, uffdWp: false });
    expect(p.entry(s.start + PAGE)).toMatchObject({ write: false, dirty: false, uffdWp: false });
    expect(p.entry(s.start + 2 * PAGE).kind).toBe('none');
    expect(p.write(s.start + PAGE, 5)).toMatchObject({ ok: true, faults: 1 });
    expect(u.events()).toEqual([]);
    expectClean(m);
  });

  it('inside a stepped operation a write can wait on a userfaultfd and its message can be read; UFFDIO calls are EBUSY there', async () => {
    const m = await machine({ cpus: 2 });
    const f = m.memfd({ size: 2 * PAGE });
    const p = m.spawn();
    const s = p.mmap({ file: f, shared: true, length: 2 * PAGE, prot: 'rw' });
    const a = p.mmap({ length: PAGE, prot: 'rw', addr: 0x4000_0000 });   // another PTE table than the walker's
    p.touch(s.start, 2 * PAGE, 'w', 1);
    p.write(a.start, 2);
    const u = p.userfaultfd();
    u.register(a.start, PAGE);
    u.writeProtect(a.start, PAGE, true);
    const seen: unknown[] = [];
    f.writeProtect(0, 2, {
      onStep: (st) => {
        if (st.kind !== 'entry' || seen.length > 0) return;
        expect(p.write(a.start, 3, { cpu: 1 })).toMatchObject({ ok: false, blocked: 'userfaultfd' });
        seen.push(...u.events());
        expect(() => u.writeProtect(a.start, PAGE, false)).toThrow(expect.objectContaining({ code: 'EBUSY', arg: 'onStep' }));
      },
    });
    expect(seen).toEqual([{ type: 'pagefault', address: a.start, write: true, wp: true, cpu: 1 }]);
    expect(u.writeProtect(a.start, PAGE, false)).toBe(1);
    expect(p.write(a.start, 3)).toMatchObject({ ok: true });
    expectClean(m);
  });

  for (const [arch, contpte] of [['x86_64', true], ['arm64', false], ['arm64', true]] as const) {
    it(`${arch}${contpte ? '' : ' without contpte'}: protecting a random mix of entries gives each one the kernel's value, counts every change, flushes what it must`, async () => {
      const m = await machine({ arch, contpte, swap: '16MiB', cpus: 2, tlb: 'tiny' });
      const p = m.spawn();
      const n = 600;
      const a = p.mmap({ length: n * PAGE, prot: 'rw' });
      let x = 99;
      const rand = (): number => { x = (x * 1103515245 + 12345) >>> 0; return x / 2 ** 32; };
      for (let i = 0; i < n; i++) {
        const r = rand();
        if (r < 0.5) p.write(a.start + i * PAGE, i + 1, { cpu: 1 });          // writable, dirty
        else if (r < 0.7) p.read(a.start + i * PAGE);                          // the zero page, read-only
      }
      p.madvise(a.start + 100 * PAGE, 20 * PAGE, 'pageout');                   // some swap entries
      p.mprotect(a.start + 300 * PAGE, 10 * PAGE, 'r');                        // read-only anonymous pages
      p.mprotect(a.start + 300 * PAGE, 10 * PAGE, 'rw');
      const u = p.userfaultfd();
      u.register(a.start, n * PAGE);
      const before = Array.from({ length: n }, (_, i) => p.entry(a.start + i * PAGE));
      m.clearFlushLog();
      const changed = u.writeProtect(a.start, n * PAGE, true);
      let want = 0, lo = Infinity, hi = 0;
      for (let i = 0; i < n; i++) {
        const b = before[i]!, e = p.entry(a.start + i * PAGE);
        if (b.kind === 'present') {
          expect(e, `page ${i}`).toMatchObject({ kind: 'present', pfn: b.pfn, uffdWp: true, write: false, dirty: b.dirty, young: b.young });
          if (!b.uffdWp || b.write) want++;
          if (b.write || arch === 'arm64') { lo = Math.min(lo, i); hi = Math.max(hi, i + 1); }
        } else if (b.kind === 'swap') {
          expect(e, `page ${i}`).toMatchObject({ kind: 'swap', swapOffset: b.swapOffset, swpUffdWp: true });
          want++;
        } else expect(e.raw, `page ${i}`).toBe(b.raw);
      }
      expect(changed).toBe(want);
      // One batched flush, covering every entry whose change needs one (arm64: any change).
      expect(m.flushLog).toHaveLength(1);
      const f = m.flushLog[0]!;
      if (f.kind === 'range') expect(f.start <= a.start + lo * PAGE && f.end >= a.start + hi * PAGE).toBe(true);
      else expect(f.kind).toBe('mm');
      // After it no CPU can write through a cached translation.
      for (let i = 0; i < n; i++) expect(m.cpu(1).tlb.lookup(p, a.start + i * PAGE)?.writable ?? false, `page ${i}`).toBe(false);
      expectClean(m);
    });
  }

  it('reclaim: a protected anonymous page swaps out with the swap uffd-wp bit, a shmem one leaves a marker; both come back protected', async () => {
    const { m, f, p, a, s, u } = await protectedAnonAndShmem();
    p.madvise(a.start, 2 * PAGE, 'pageout');
    p.madvise(s.start, 2 * PAGE, 'pageout');
    expect(p.entry(a.start)).toMatchObject({ kind: 'swap', swpUffdWp: true });
    expect(p.pagemap(a.start)).toMatchObject({ present: false, swapped: true, uffdWp: true });
    expect(p.entry(s.start)).toMatchObject({ kind: 'marker', markers: ['uffd-wp'] });
    expect(f.lookup(0).state).toBe('swapped');
    // Swap-in keeps the protection (do_swap_page: pte_swp_uffd_wp -> pte_mkuffd_wp).
    expect(p.read(a.start)).toMatchObject({ ok: true, tag: 1 });
    expect(p.entry(a.start)).toMatchObject({ kind: 'present', uffdWp: true, write: false });
    expect(p.write(a.start, 5)).toMatchObject({ ok: false, blocked: 'userfaultfd' });
    expect(p.read(s.start)).toMatchObject({ ok: true, tag: 2 });
    expect(p.entry(s.start)).toMatchObject({ kind: 'present', uffdWp: true, write: false });
    expect(p.write(s.start, 6)).toMatchObject({ ok: false, blocked: 'userfaultfd' });
    expect(u.events().map((e) => e.type === 'pagefault' && e.address)).toEqual([a.start, s.start]);
    // Resolving a swap entry clears its bit: after swap-in the write goes through with no message.
    expect(u.writeProtect(a.start + PAGE, PAGE, false)).toBe(1);
    expect(p.entry(a.start + PAGE)).toMatchObject({ kind: 'swap', swpUffdWp: false });
    expect(p.write(a.start + PAGE, 7)).toMatchObject({ ok: true });
    expect(u.events()).toEqual([]);
    expectClean(m);
  });

  it('a huge PMD is protected whole in place; resolving part of it, or an async write, splits it and changes only that part', async () => {
    const m = await machine({ thp: 'always' });
    const p = m.spawn();
    const a = p.mmap({ length: 2 * MiB, prot: 'rw', addr: 0x4000_0000 });
    p.write(a.start, 9);
    expect(p.entry(a.start).level).toBe('pmd');
    const u = p.userfaultfd();
    u.register(a.start, 2 * MiB);
    expect(u.writeProtect(a.start, 2 * MiB, true)).toBe(512);
    expect(p.entry(a.start + 100 * PAGE)).toMatchObject({ level: 'pmd', uffdWp: true, write: false });
    expect(p.pagemap(a.start + 100 * PAGE)).toMatchObject({ present: true, uffdWp: true });
    expect(p.write(a.start + 100 * PAGE, 1)).toMatchObject({ ok: false, blocked: 'userfaultfd' });
    expect(u.events()).toEqual([expect.objectContaining({ address: a.start + 100 * PAGE, wp: true })]);
    u.writeProtect(a.start + 100 * PAGE, 4 * PAGE, false);
    expect(p.entry(a.start + 100 * PAGE)).toMatchObject({ level: 'pte', uffdWp: false });
    expect(p.entry(a.start + 104 * PAGE)).toMatchObject({ level: 'pte', uffdWp: true, write: false });
    expect(p.entry(a.start + 99 * PAGE)).toMatchObject({ level: 'pte', uffdWp: true });
    expect(p.write(a.start + 101 * PAGE, 2)).toMatchObject({ ok: true });
    expect(p.read(a.start + 200 * PAGE)).toMatchObject({ ok: true, tag: 0 });
    expect(u.events()).toEqual([]);
    // Async: a write to a protected huge PMD splits it (wp_huge_pmd) and clears the bit of the written page only.
    const b = p.mmap({ length: 2 * MiB, prot: 'rw', addr: 0x4020_0000 });
    p.write(b.start, 9);
    const t = p.userfaultfd({ features: ['wp-async'] });
    t.register(b.start, 2 * MiB);
    t.writeProtect(b.start, 2 * MiB, true);
    expect(p.write(b.start + 100 * PAGE, 1)).toMatchObject({ ok: true });
    expect(p.entry(b.start + 100 * PAGE)).toMatchObject({ level: 'pte', uffdWp: false, write: true });
    expect(p.entry(b.start + 101 * PAGE)).toMatchObject({ level: 'pte', uffdWp: true });
    expect(p.pagemapScan({ start: b.start, end: b.end, categoryMask: ['written'], returnMask: ['written'] }).regions)
      .toEqual([{ start: b.start + 100 * PAGE, end: b.start + 101 * PAGE, categories: ['written'] }]);
    expect(t.events()).toEqual([]);
    expectClean(m);
  });

  it('wp-unpopulated: never-touched anonymous pages get markers; a read maps the zero page still protected', async () => {
    const m = await machine();
    const p = m.spawn();
    const a = p.mmap({ length: 4 * PAGE, prot: 'rw' });
    p.write(a.start, 1);
    const u = p.userfaultfd({ features: ['wp-unpopulated'] });
    u.register(a.start, 4 * PAGE);
    expect(u.writeProtect(a.start, 4 * PAGE, true)).toBe(4);
    expect(p.pagemap(a.start + 2 * PAGE)).toMatchObject({ present: false, swapped: true, uffdWp: true });
    expect(p.read(a.start + 2 * PAGE)).toMatchObject({ ok: true, tag: 0 });
    expect(p.entry(a.start + 2 * PAGE)).toMatchObject({ kind: 'present', special: true, uffdWp: true });
    expect(p.write(a.start + 2 * PAGE, 3)).toMatchObject({ ok: false, blocked: 'userfaultfd' });
    p.madvise(a.start, PAGE, 'dontneed');                                  // anon: no marker survives
    expect(p.entry(a.start).kind).toBe('none');
    expectClean(m);
  });

  it('unregister resolves bits and markers; munmap + mmap leaves nothing registered (ENOENT)', async () => {
    const m = await machine();
    const f = m.memfd({ size: 4 * PAGE });
    const p = m.spawn();
    const s = p.mmap({ file: f, shared: true, length: 4 * PAGE, prot: 'rw' });
    p.write(s.start, 1);
    const u = p.userfaultfd({ features: ['wp-hugetlbfs-shmem'] });
    u.register(s.start, 4 * PAGE);
    u.writeProtect(s.start, 4 * PAGE, true);
    expect(p.entry(s.start + PAGE).kind).toBe('marker');
    u.unregister(s.start, 4 * PAGE);
    expect(p.entry(s.start)).toMatchObject({ kind: 'present', uffdWp: false });
    expect(p.entry(s.start + PAGE).kind).toBe('none');
    expect(p.write(s.start, 2)).toMatchObject({ ok: true });
    u.register(s.start, 4 * PAGE);
    u.writeProtect(s.start, PAGE, true);
    p.munmap(s.start, 4 * PAGE);
    const again = p.mmap({ file: f, shared: true, length: 4 * PAGE, prot: 'rw', addr: s.start });
    expect(p.pagemap(again.start).uffdWp).toBe(false);
    expect(() => u.writeProtect(again.start, PAGE, true)).toThrow(expect.objectContaining({ code: 'ENOENT' }));
    expect(p.write(again.start, 3)).toMatchObject({ ok: true });
    expect(u.events()).toEqual([]);
    expectClean(m);
  });

  it('fork without event-fork: the child has no protection; the parent keeps its own', async () => {
    const { m, p, a, s, u } = await protectedAnonAndShmem();
    p.madvise(s.start + PAGE, PAGE, 'dontneed');                           // a marker
    const c = p.fork();
    expect(c.pagemap(a.start).uffdWp).toBe(false);
    expect(c.entry(s.start + PAGE).kind).toBe('none');
    expect(c.write(s.start, 5)).toMatchObject({ ok: true });
    expect(p.pagemap(s.start).uffdWp).toBe(true);
    expect(p.read(s.start)).toMatchObject({ tag: 5 });
    expect(u.events()).toEqual([]);
    expectClean(m);
  });

  it('fork with event-fork: the child keeps bits and markers under a context of its own, announced by a fork message', async () => {
    const { m, p, a, s, u } = await protectedAnonAndShmem(['event-fork']);
    p.madvise(s.start + PAGE, PAGE, 'dontneed');                           // a marker
    const c = p.fork();
    expect(c.pagemap(a.start).uffdWp).toBe(true);
    expect(c.entry(s.start + PAGE)).toMatchObject({ kind: 'marker', markers: ['uffd-wp'] });
    expect(() => u.writeProtect(a.start, PAGE, false)).toThrow(expect.objectContaining({ code: 'EAGAIN' }));   // the fork message is unread
    const msgs = u.events();
    expect(msgs).toHaveLength(1);
    const fork = msgs[0]!;
    if (fork.type !== 'fork') throw new Error('expected a fork message');
    expect(fork.uffd.process).toBe(c);
    expect(c.write(a.start, 9)).toMatchObject({ ok: false, blocked: 'userfaultfd' });
    expect(fork.uffd.events()).toEqual([expect.objectContaining({ type: 'pagefault', address: a.start, wp: true })]);
    expect(u.events()).toEqual([]);
    fork.uffd.writeProtect(s.start, PAGE, false);
    expect(c.write(s.start, 5)).toMatchObject({ ok: true });
    expect(p.pagemap(s.start).uffdWp).toBe(true);                            // the parent's entry keeps its bit
    expect(p.read(s.start)).toMatchObject({ tag: 5 });
    expect(u.writeProtect(a.start, PAGE, false)).toBe(1);
    expectClean(m);
  });

  it('event-remove: DONTNEED and hole punch of registered VMAs are messages, one per VMA, and copies wait for them (EAGAIN)', async () => {
    const m = await machine();
    const f = m.memfd({ size: 4 * PAGE });
    const p = m.spawn();
    const a = p.mmap({ length: 4 * PAGE, prot: 'rw' });
    const s = p.mmap({ file: f, shared: true, length: 4 * PAGE, prot: 'rw', addr: a.end });   // adjacent: one DONTNEED spans both
    p.touch(a.start, 4 * PAGE, 'w', 1);
    p.touch(s.start, 4 * PAGE, 'w', 2);
    const u = p.userfaultfd({ features: ['event-remove', 'wp-hugetlbfs-shmem'] });
    u.register(a.start, 4 * PAGE);
    u.register(s.start, 4 * PAGE, { missing: true });
    p.madvise(a.start + 2 * PAGE, 4 * PAGE, 'dontneed');
    expect(p.pagemap(a.start + 2 * PAGE).present).toBe(false);
    expect(() => u.writeProtect(a.start, PAGE, true)).toThrow(expect.objectContaining({ code: 'EAGAIN', arg: 'uffd' }));
    expect(() => u.copy(a.start + 2 * PAGE, PAGE, 7)).toThrow(expect.objectContaining({ code: 'EAGAIN' }));
    expect(u.events()).toEqual([
      { type: 'remove', start: a.start + 2 * PAGE, end: a.end },
      { type: 'remove', start: s.start, end: s.start + 2 * PAGE },
    ]);
    expect(u.writeProtect(a.start, PAGE, true)).toBe(1);                    // read: the context works again
    p.madvise(s.start + 3 * PAGE, PAGE, 'remove');
    expect(u.events()).toEqual([{ type: 'remove', start: s.start + 3 * PAGE, end: s.end }]);
    expect(f.lookup(3)).toEqual({ state: 'empty' });
    // Without the feature nothing is reported.
    const q = m.spawn();
    const b = q.mmap({ length: PAGE, prot: 'rw' });
    const v = q.userfaultfd();
    v.register(b.start, PAGE);
    q.madvise(b.start, PAGE, 'dontneed');
    expect(v.events()).toEqual([]);
    expectClean(m);
  });

  it('missing mode: a fault on a page that does not exist is a message; copy and zeropage provide it', async () => {
    const m = await machine({ cpus: 2 });
    const f = m.memfd({ size: 4 * PAGE });
    const p = m.spawn();
    const a = p.mmap({ length: 4 * PAGE, prot: 'rw' });
    const s = p.mmap({ file: f, shared: true, length: 4 * PAGE, prot: 'rw' });
    p.write(s.start + 3 * PAGE, 33);                                       // already in the page cache
    const u = p.userfaultfd();
    u.register(a.start, 4 * PAGE, { missing: true });
    u.register(s.start, 4 * PAGE, { missing: true });
    expect(p.read(a.start + PAGE, { cpu: 1 })).toMatchObject({ ok: false, blocked: 'userfaultfd' });
    expect(p.write(s.start, 7)).toMatchObject({ ok: false, blocked: 'userfaultfd' });
    expect(p.read(s.start + 3 * PAGE)).toMatchObject({ ok: true, tag: 33 });   // cached pages are not missing
    expect(u.events()).toEqual([
      { type: 'pagefault', address: a.start + PAGE, write: false, wp: false, cpu: 1 },
      { type: 'pagefault', address: s.start, write: true, wp: false, cpu: 0 },
    ]);
    expect(u.copy(a.start + PAGE, PAGE, 0xc0)).toBe(1);
    expect(p.read(a.start + PAGE, { cpu: 1 })).toMatchObject({ ok: true, tag: 0xc0 });
    expect(p.entry(a.start + PAGE)).toMatchObject({ write: true, dirty: true });
    expect(u.zeropage(a.start + 2 * PAGE, PAGE)).toBe(1);
    expect(p.entry(a.start + 2 * PAGE)).toMatchObject({ special: true });
    expect(() => u.copy(a.start + PAGE, PAGE, 1)).toThrow(expect.objectContaining({ code: 'EEXIST' }));
    expect(u.copy(s.start, PAGE, 0x5e)).toBe(1);
    expect(f.lookup(0).state).toBe('page');
    expect(p.write(s.start, 7)).toMatchObject({ ok: true });
    expect(p.read(s.start)).toMatchObject({ tag: 7 });
    expect(u.copy(a.start + 3 * PAGE, PAGE, 3, { wp: true })).toBe(1);
    expect(p.entry(a.start + 3 * PAGE)).toMatchObject({ uffdWp: true, write: false });
    expectClean(m);
  });

  it('missing mode on a MAP_PRIVATE memfd mapping: UFFDIO_COPY makes anonymous memory and leaves the file\'s hole (mm/userfaultfd.c mfill_atomic_pte)', async () => {
    const m = await machine();
    const f = m.memfd({ size: 4 * PAGE });
    const p = m.spawn();
    const pr = p.mmap({ file: f, length: 4 * PAGE, prot: 'rw' }).start;
    const sh = p.mmap({ file: f, shared: true, length: 4 * PAGE, prot: 'rw' }).start;
    const u = p.userfaultfd();
    u.register(pr, 4 * PAGE, { missing: true });
    expect(p.write(pr + PAGE, 5)).toMatchObject({ ok: false, blocked: 'userfaultfd' });
    expect(u.events()).toMatchObject([{ type: 'pagefault', address: pr + PAGE, write: true, wp: false }]);
    expect(u.copy(pr + PAGE, PAGE, 5)).toBe(1);
    const pfn = p.entry(pr + PAGE).pfn!;
    expect(m.frame(pfn)).toMatchObject({ anon: true, mapcount: 1, tag: 5 });
    expect(p.entry(pr + PAGE)).toMatchObject({ write: true, dirty: true });
    expect(f.lookup(1).state).toBe('empty');                               // the file still has a hole there
    expect(p.rss).toMatchObject({ anon: 1 });
    // Dropping the private page leaves the hole: the next access is missing again.
    p.madvise(pr + PAGE, PAGE, 'dontneed');
    expect(p.read(pr + PAGE)).toMatchObject({ ok: false, blocked: 'userfaultfd' });
    expect(u.events()).toHaveLength(1);
    // Once the shared mapping's read fills the hole, the private mapping reads the file page.
    expect(p.read(sh + PAGE)).toMatchObject({ ok: true, tag: 0 });
    expect(p.read(pr + PAGE)).toMatchObject({ ok: true, tag: 0, pfn: f.lookup(1).state === 'page' ? (f.lookup(1) as { pfn: number }).pfn : -1 });
    expectClean(m);
  });

  it('a write to a MAP_PRIVATE memfd page behind a uffd-wp marker copies first (the copy installed protected, set_pte_range), then waits', async () => {
    const m = await machine();
    const f = m.memfd({ size: 4 * PAGE });
    const p = m.spawn(), q = m.spawn();
    const sh = q.mmap({ file: f, shared: true, length: 4 * PAGE, prot: 'rw' }).start;
    q.write(sh, 3);
    const pr = p.mmap({ file: f, length: 4 * PAGE, prot: 'rw' }).start;
    const u = p.userfaultfd({ features: ['wp-hugetlbfs-shmem'] });
    u.register(pr, 4 * PAGE);
    u.writeProtect(pr, 4 * PAGE, true);
    expect(p.entry(pr)).toMatchObject({ kind: 'marker', markers: ['uffd-wp'] });
    expect(p.write(pr, 9)).toMatchObject({ ok: false, blocked: 'userfaultfd' });
    expect(u.events()).toMatchObject([{ type: 'pagefault', address: pr, write: true, wp: true }]);
    const copy = p.entry(pr);
    expect(copy).toMatchObject({ kind: 'present', write: false, uffdWp: true });
    expect(m.frame(copy.pfn!)).toMatchObject({ anon: true, tag: 3 });
    // The file moves on; the private copy does not.
    q.write(sh, 4);
    expect(p.read(pr)).toMatchObject({ ok: true, tag: 3, pfn: copy.pfn });
    u.writeProtect(pr, PAGE, false);
    expect(p.write(pr, 9)).toMatchObject({ ok: true, pfn: copy.pfn });
    expect(q.read(sh)).toMatchObject({ tag: 4 });
    expectClean(m);
  });

  it('hole punch (madvise remove) keeps markers; truncation drops the truncated pages\' markers only; mprotect leaves them', async () => {
    const m = await machine();
    const f = m.memfd({ size: 8 * PAGE });
    const p = m.spawn();
    const s = p.mmap({ file: f, shared: true, length: 8 * PAGE, prot: 'rw' });
    p.touch(s.start, 8 * PAGE, 'w', 6);
    const u = p.userfaultfd({ features: ['wp-hugetlbfs-shmem'] });
    u.register(s.start, 8 * PAGE);
    u.writeProtect(s.start, 8 * PAGE, true);
    p.madvise(s.start, 2 * PAGE, 'remove');
    expect(f.lookup(0)).toEqual({ state: 'empty' });
    expect(p.pagemap(s.start)).toMatchObject({ present: false, swapped: true, uffdWp: true });
    expect(p.read(s.start)).toMatchObject({ ok: true, tag: 0 });              // the hole reads as zeroes, still protected
    expect(p.write(s.start, 1)).toMatchObject({ ok: false, blocked: 'userfaultfd' });
    p.madvise(s.start + 2 * PAGE, 6 * PAGE, 'dontneed');                     // pages stay in the file, markers in the slots
    f.truncate(6 * PAGE);
    expect(p.entry(s.start + 5 * PAGE)).toMatchObject({ kind: 'marker' });
    expect(p.entry(s.start + 6 * PAGE).kind).toBe('none');
    expect(p.entry(s.start + 7 * PAGE).kind).toBe('none');
    expect(p.read(s.start + 7 * PAGE)).toMatchObject({ ok: false, signal: 'SIGBUS' });
    expect(() => p.madvise(s.start, PAGE, 'remove')).not.toThrow();
    const priv = p.mmap({ length: PAGE, prot: 'rw' });
    expect(() => p.madvise(priv.start, PAGE, 'remove')).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    expectClean(m);
  });

  it('a poisoned marker wins over uffd-wp (SIGBUS); a guard marker is SIGSEGV and survives DONTNEED', async () => {
    const m = await machine();
    const f = m.memfd({ size: 4 * PAGE });
    const p = m.spawn();
    const s = p.mmap({ file: f, shared: true, length: 4 * PAGE, prot: 'rw' });
    p.read(s.start + 3 * PAGE);                                              // the PTE table exists
    const u = p.userfaultfd({ features: ['wp-hugetlbfs-shmem'] });
    u.register(s.start, 4 * PAGE);
    m.kernel.setEntry(p, s.start, m.arch.makeMarker(['poisoned', 'uffd-wp']));
    m.kernel.setEntry(p, s.start + PAGE, m.arch.makeMarker('guard'));
    expect(p.read(s.start)).toMatchObject({ ok: false, signal: 'SIGBUS' });
    expect(p.read(s.start + PAGE)).toMatchObject({ ok: false, signal: 'SIGSEGV' });
    p.madvise(s.start, 4 * PAGE, 'dontneed');
    expect(p.entry(s.start + PAGE)).toMatchObject({ kind: 'marker', markers: ['guard'] });
    expect(u.events()).toEqual([]);
    p.munmap(s.start, 4 * PAGE);
    expectClean(m);
  });

  it('what cannot be registered, misuse, and the sigbus feature', async () => {
    const m = await machine();
    const p = m.spawn();
    const f = m.file({ size: 4 * PAGE });
    const r = p.mmap({ file: f, shared: true, length: 4 * PAGE, prot: 'rw' });
    const sh = p.mmap({ length: 4 * PAGE, prot: 'rw', shared: true });
    const a = p.mmap({ length: 4 * PAGE, prot: 'rw' });
    const u = p.userfaultfd();
    expect(() => u.register(r.start, 4 * PAGE)).toThrow(expect.objectContaining({ code: 'EINVAL' }));      // regular file
    expect(() => u.register(sh.start, 4 * PAGE)).toThrow(expect.objectContaining({ code: 'EINVAL' }));     // shmem needs the feature
    expect(() => u.register(a.start + 1, PAGE)).toThrow(expect.objectContaining({ code: 'EINVAL', arg: 'addr' }));
    expect(() => u.register(a.start, 64 * PAGE)).toThrow(expect.objectContaining({ code: 'EINVAL' }));     // runs into a hole
    expect(() => u.writeProtect(a.start, PAGE, true)).toThrow(expect.objectContaining({ code: 'ENOENT' }));
    expect(() => p.userfaultfd({ features: ['bogus' as 'sigbus'] })).toThrow(expect.objectContaining({ arg: 'features' }));
    expect(p.vmas.length).toBe(3);                                       // failed registrations split nothing
    u.register(a.start + PAGE, 2 * PAGE);
    expect(p.vmas.length).toBe(5);
    const other = p.userfaultfd({ features: ['sigbus'] });
    expect(() => other.register(a.start + PAGE, PAGE)).toThrow(expect.objectContaining({ code: 'EBUSY' }));
    u.close();
    expect(p.vmas.length).toBe(3);                                       // closing unregisters, and the VMAs merge back
    other.register(a.start, PAGE);
    p.write(a.start, 1);
    other.writeProtect(a.start, PAGE, true);
    expect(p.write(a.start, 2)).toMatchObject({ ok: false, signal: 'SIGBUS' });
    expect(other.events()).toEqual([]);
    expectClean(m);
  });
});

describe('async write tracking with PAGEMAP_SCAN', () => {
  it('scan + WP_MATCHING finds exactly the pages written since the last scan, in regions; reads do not count', async () => {
    const m = await machine();
    const p = m.spawn();
    const a = p.mmap({ length: 64 * PAGE, prot: 'rw' });
    p.touch(a.start, 64 * PAGE, 'w', 1);
    const u = p.userfaultfd({ features: ['wp-async', 'wp-unpopulated'] });
    u.register(a.start, 64 * PAGE);
    const scan = (extra: Partial<Parameters<typeof p.pagemapScan>[0]> = {}) => p.pagemapScan({
      start: a.start, end: a.end, categoryMask: ['written'], returnMask: ['written'], wpMatching: true, checkWpAsync: true, ...extra,
    });
    const first = scan();
    expect(first.regions).toEqual([{ start: a.start, end: a.end, categories: ['written'] }]);
    expect(first.walkEnd).toBe(a.end);
    expect(p.pagemap(a.start + 30 * PAGE)).toMatchObject({ present: true, uffdWp: true });   // protected by the scan
    for (const i of [1, 5, 6, 7, 20, 63]) expect(p.write(a.start + i * PAGE, 100 + i)).toMatchObject({ ok: true });
    for (const i of [2, 3, 40]) p.read(a.start + i * PAGE);
    expect(u.events()).toEqual([]);                                          // async: no messages
    const limited = scan({ maxPages: 2, wpMatching: false });
    expect(limited.regions.map((r) => [(r.start - a.start) / PAGE, (r.end - a.start) / PAGE])).toEqual([[1, 2], [5, 6]]);
    expect(limited.walkEnd).toBe(a.start + 6 * PAGE);
    const second = scan();
    expect(second.regions.map((r) => [(r.start - a.start) / PAGE, (r.end - a.start) / PAGE])).toEqual([[1, 2], [5, 8], [20, 21], [63, 64]]);
    expect(scan().regions).toEqual([]);
    expect(p.read(a.start + 5 * PAGE)).toMatchObject({ tag: 105 });
    // Categories other than written.
    const all = p.pagemapScan({ start: a.start, end: a.start + 8 * PAGE, returnMask: ['present', 'swapped', 'wp-allowed'] });
    expect(all.regions[0]).toMatchObject({ start: a.start, categories: ['wp-allowed', 'present'] });
    // A range outside any async registration: EPERM with checkWpAsync.
    const b = p.mmap({ length: 4 * PAGE, prot: 'rw' });
    expect(() => p.pagemapScan({ start: b.start, end: b.end, returnMask: ['written'], checkWpAsync: true })).toThrow(expect.objectContaining({ code: 'EPERM' }));
    expect(() => p.pagemapScan({ start: b.start, end: b.end, returnMask: [] })).toThrow(expect.objectContaining({ arg: 'returnMask' }));
    expectClean(m);
  });

  for (const arch of ['x86_64', 'arm64'] as const) {
    it(`${arch}: a scan that requires 'written' (eight protected pages passed over at a time) reports what the page-by-page one does`, async () => {
      const m = await machine({ arch });
      const p = m.spawn();
      const n = 1000;
      const a = p.mmap({ length: n * PAGE, prot: 'rw' });
      const u = p.userfaultfd({ features: ['wp-async', 'wp-unpopulated'] });
      u.register(a.start, n * PAGE);
      u.writeProtect(a.start, n * PAGE, true);                              // markers everywhere
      let x = 12345;
      const rand = (): number => { x = (x * 1103515245 + 12345) >>> 0; return x / 2 ** 32; };
      const writtenPages = new Set<number>();
      for (let i = 0; i < n; i++) {
        const r = rand();
        if (r < 0.3) p.read(a.start + i * PAGE);                             // the zero page, still protected
        else if (r < 0.45) { p.write(a.start + i * PAGE, i + 1); writtenPages.add(i); }
      }
      p.mprotect(a.start + 600 * PAGE, 40 * PAGE, 'none');                   // PROT_NONE entries take the page-by-page path
      const strict = p.pagemapScan({ start: a.start, end: a.end, categoryMask: ['written'], returnMask: ['written'] });
      const loose = p.pagemapScan({ start: a.start, end: a.end, categoryAnyof: ['written'], returnMask: ['written'] });
      expect(strict).toEqual(loose);
      const reported = new Set(strict.regions.flatMap((r) => Array.from({ length: (r.end - r.start) / PAGE }, (_, k) => (r.start - a.start) / PAGE + k)));
      expect(reported).toEqual(writtenPages);
      expectClean(m);
    });
  }
});
