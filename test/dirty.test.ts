// Dirty tracking of shared mappings (mm/mapping_dirty_helpers.c), the race
// in its thread (a CPU keeps writing through a dirty+writable TLB entry
// after the PTE was cleaned, until the flush), and soft-dirty.
// Numbering follows SEMANTICS §9.D.

import { describe, it, expect } from 'vitest';
import { machine, expectClean, PAGE, MiB } from './helpers.js';
import type { Machine, Process, File, Step } from '../src/index.js';

interface Setup { m: Machine; p: Process; f: File; base: number; at: (pgoff: number) => number }

/** A write-notified file mapped shared and writable, pgoffs 0..n-1 read in; `written` pgoffs then written. */
async function sharedFile(written: number[], opts: { arch?: 'x86_64' | 'arm64'; hwDirty?: boolean; pages?: number; cpus?: number } = {}): Promise<Setup> {
  const pages = opts.pages ?? 8;
  const m = await machine({ arch: opts.arch ?? 'x86_64', cpus: opts.cpus ?? 2, ...(opts.hwDirty === undefined ? {} : { hwDirty: opts.hwDirty }) });
  const f = m.file({ size: pages * PAGE, pageMkwrite: true });
  const p = m.spawn();
  const map = p.mmap({ file: f, shared: true, length: pages * PAGE, prot: 'rw' });
  const at = (pgoff: number): number => map.start + pgoff * PAGE;
  expect(p.touch(map.start, pages * PAGE, 'r').ok).toBe(true);
  for (const g of written) expect(p.write(at(g), 0x100 + g).ok).toBe(true);
  return { m, p, f, base: map.start, at };
}

const bits = (b: Uint8Array): number[] => [...b].flatMap((byte, i) => [0, 1, 2, 3, 4, 5, 6, 7].filter((k) => byte & (1 << k)).map((k) => i * 8 + k));

describe('wp_shared_mapping_range (D1, D2)', () => {
  it('write-protects exactly the writable PTEs, keeps A/D, one notifier pair, one tight flush; again: 0 and no flush', async () => {
    const { m, p, f, at } = await sharedFile([1, 3, 4]);
    for (let g = 0; g < 8; g++) expect(p.entry(at(g))).toMatchObject({ kind: 'present', write: [1, 3, 4].includes(g), dirty: [1, 3, 4].includes(g) });
    const before = [0, 1, 2, 3, 4, 5, 6, 7].map((g) => p.entry(at(g)));
    m.clearFlushLog();
    m.clearNotifierLog();
    const cacheFlushes = m.stats.cacheFlushes;

    expect(f.writeProtect(0, 8)).toBe(3);
    for (let g = 0; g < 8; g++) {
      const e = p.entry(at(g));
      expect(e).toMatchObject({ write: false, dirty: before[g]!.dirty, young: before[g]!.young, pfn: before[g]!.pfn });
    }
    const notes = m.notifierLog;
    expect(notes).toEqual([
      { seq: expect.any(Number), phase: 'start', event: 'protection-page', pid: p.pid, start: at(0), end: at(8) },
      { seq: expect.any(Number), phase: 'end', event: 'protection-page', pid: p.pid, start: at(0), end: at(8) },
    ]);
    const flushes = m.flushLog;
    expect(flushes).toEqual([expect.objectContaining({ kind: 'range', pid: p.pid, start: at(1), end: at(4) + PAGE, strideShift: 12 })]);
    // Staging order: notifier start, the flush, notifier end.
    expect(notes[0]!.seq).toBeLessThan(flushes[0]!.seq);
    expect(flushes[0]!.seq).toBeLessThan(notes[1]!.seq);
    expect(m.stats.cacheFlushes).toBe(cacheFlushes + 1);

    m.clearFlushLog();
    m.clearNotifierLog();
    expect(f.writeProtect(0, 8)).toBe(0);
    expect(m.flushLog).toEqual([]);
    expect(m.notifierLog.map((n) => n.phase)).toEqual(['start', 'end']);   // D2: the notifier pair and cache flush still happen
    expect(m.stats.cacheFlushes).toBe(cacheFlushes + 2);

    // The next write to a write-protected page goes through ->page_mkwrite again.
    const mk = f.stats.pageMkwrite;
    expect(p.write(at(3), 7)).toMatchObject({ ok: true, faults: 1 });
    expect(f.stats.pageMkwrite).toBe(mk + 1);
    expect(p.entry(at(3))).toMatchObject({ write: true, dirty: true });
    expectClean(m);
  });

  it('a sub-range clips the walk to its pages', async () => {
    const { m, p, f, at } = await sharedFile([1, 3, 4, 6]);
    m.clearNotifierLog();
    expect(f.writeProtect(3, 2)).toBe(2);
    expect([1, 3, 4, 6].map((g) => p.entry(at(g)).write)).toEqual([true, false, false, true]);
    expect(m.notifierLog[0]).toMatchObject({ start: at(3), end: at(5) });
  });
});

describe('clean_record_shared_mapping_range (D3-D5, D11)', () => {
  for (const arch of ['x86_64', 'arm64'] as const) {
    it(`${arch}: cleans dirty PTEs, records their bits, keeps write permission; the next write re-dirties without page_mkwrite`, async () => {
      const { m, p, f, at } = await sharedFile([2, 5], { arch });
      m.clearFlushLog();
      const r = f.cleanRecord(0, 8);
      expect(r).toMatchObject({ cleaned: 2, start: 2, end: 6 });
      expect(bits(r.bitmap as Uint8Array)).toEqual([2, 5]);
      for (const g of [2, 5]) {
        const e = p.entry(at(g));
        expect(e).toMatchObject({ write: true, dirty: false });
        // arm64: pte_mkclean sets RDONLY (bit 7) and keeps DBM/WRITE (bit 51); x86: D (bit 6) cleared, RW (bit 1) kept.
        if (arch === 'arm64') expect([(e.raw >> 7n) & 1n, (e.raw >> 51n) & 1n]).toEqual([1n, 1n]);
        else expect([(e.raw >> 6n) & 1n, (e.raw >> 1n) & 1n]).toEqual([0n, 1n]);
      }
      expect(m.flushLog).toEqual([expect.objectContaining({ kind: 'range', start: at(2), end: at(5) + PAGE })]);
      const mk = f.stats.pageMkwrite;
      // The flush dropped CPU 0's entry: the write walks, and hardware sets dirty (x86 D, arm64 DBM clears RDONLY).
      expect(p.write(at(2), 0x222)).toMatchObject({ ok: true, faults: 0 });
      expect(p.entry(at(2))).toMatchObject({ write: true, dirty: true });
      expect(f.stats.pageMkwrite).toBe(mk);
      expectClean(m);
    });
  }

  it('arm64 without hardware dirty: the write faults once, the handler sets dirty, still no page_mkwrite', async () => {
    const { p, f, at } = await sharedFile([2], { arch: 'arm64', hwDirty: false });
    expect(f.cleanRecord(0, 8).cleaned).toBe(1);
    const mk = f.stats.pageMkwrite;
    expect(p.write(at(2), 9)).toMatchObject({ ok: true, faults: 1 });
    expect(p.entry(at(2))).toMatchObject({ write: true, dirty: true });
    expect(f.stats.pageMkwrite).toBe(mk);
  });

  it('none set: start = nr, end = 0, bitmap untouched (D4); accumulation and bitmapOffset (D5)', async () => {
    const { p, f, at } = await sharedFile([]);
    const empty = f.cleanRecord(0, 8);
    expect(empty).toMatchObject({ cleaned: 0, start: 8, end: 0 });
    expect(bits(empty.bitmap as Uint8Array)).toEqual([]);

    p.write(at(7), 1);
    const bitmap = new BigUint64Array(1);
    bitmap[0] = 1n << 3n;                         // bit 3 recorded by an earlier call
    const r = f.cleanRecord(0, 8, { bitmap, start: 3, end: 4 });
    expect(r).toMatchObject({ cleaned: 1, start: 3, end: 8 });
    expect(r.bitmap).toBe(bitmap);
    expect(bitmap[0]).toBe((1n << 3n) | (1n << 7n));

    // bitmapOffset: bit i stands for pgoff 4 + i.
    p.write(at(5), 2);
    const off = f.cleanRecord(4, 4, { bitmapOffset: 4 });
    expect(off).toMatchObject({ cleaned: 1, start: 1, end: 2 });
    expect(bits(off.bitmap as Uint8Array)).toEqual([1]);
  });

  it('bad arguments name themselves and change nothing', async () => {
    const { m, p, f, at } = await sharedFile([2]);
    const raw = p.entry(at(2)).raw;
    expect(() => f.cleanRecord(0, 8, { bitmapOffset: 1 })).toThrow(expect.objectContaining({ code: 'EINVAL', arg: 'bitmapOffset' }));
    // A bitmap past 1 GiB is refused, not allocated (a high firstIndex with the default bitmapOffset 0, or a huge nr).
    expect(() => f.cleanRecord(2 ** 47, 17)).toThrow(expect.objectContaining({ code: 'EINVAL', arg: 'bitmapOffset' }));
    expect(() => f.cleanRecord(0, 2 ** 40)).toThrow(expect.objectContaining({ code: 'EINVAL', arg: 'nr' }));
    expect(f.cleanRecord(2 ** 47, 17, { bitmapOffset: 2 ** 47 })).toMatchObject({ cleaned: 0 });
    expect(() => f.cleanRecord(0, 64, { bitmap: new Uint8Array(2) })).toThrow(expect.objectContaining({ code: 'EINVAL', arg: 'bitmap' }));
    expect(() => f.cleanRecord(-1, 8)).toThrow(expect.objectContaining({ arg: 'firstIndex' }));
    expect(() => f.cleanRecord(0, 1.5)).toThrow(expect.objectContaining({ arg: 'nr' }));
    expect(() => f.writeProtect(0, 8, { walkOnSkip: 1 as unknown as boolean })).toThrow(expect.objectContaining({ arg: 'walkOnSkip' }));
    expect(() => f.writeProtect(0, 8, { bogus: 1 } as object)).toThrow(expect.objectContaining({ arg: 'bogus' }));
    expect(() => f.writeProtect(0, 8, { onStep: 3 as unknown as () => void })).toThrow(expect.objectContaining({ arg: 'onStep' }));
    expect(p.entry(at(2)).raw).toBe(raw);
    expect(m.notifierLog).toEqual([]);
  });
});

describe('which mappings are walked (D7, D8, walk_page_mapping)', () => {
  it('private and read-only-shared mappings are skipped without notifier calls; two shared mappings: one flush each, both counted', async () => {
    const m = await machine({ cpus: 1 });
    const f = m.file({ size: 8 * PAGE, pageMkwrite: true });
    const p = m.spawn(), q = m.spawn();
    const a = p.mmap({ file: f, shared: true, length: 8 * PAGE, prot: 'rw' });
    const b = q.mmap({ file: f, shared: true, length: 8 * PAGE, prot: 'rw' });
    p.write(a.start + 2 * PAGE, 1);
    q.write(b.start + 2 * PAGE, 2);           // same page, second PTE
    m.clearFlushLog();
    m.clearNotifierLog();
    expect(f.writeProtect(0, 8)).toBe(2);
    expect(m.flushLog.map((l) => [l.pid, l.start, l.end])).toEqual([[p.pid, a.start + 2 * PAGE, a.start + 3 * PAGE], [q.pid, b.start + 2 * PAGE, b.start + 3 * PAGE]]);
    expect(m.notifierLog.map((n) => [n.pid, n.phase])).toEqual([[p.pid, 'start'], [p.pid, 'end'], [q.pid, 'start'], [q.pid, 'end']]);

    // A private writable mapping with a dirty COW copy, and a shared mapping of a read-only descriptor.
    const r = m.spawn();
    const priv = r.mmap({ file: f, length: 8 * PAGE, prot: 'rw' });
    r.write(priv.start + 5 * PAGE, 3);
    const ro = r.mmap({ file: f, shared: true, openMode: 'rdonly', length: 8 * PAGE, prot: 'r' });
    r.read(ro.start + 2 * PAGE);
    expect(r.vmas.map((v) => v.flags & 0x28)).toEqual([0, 0x20]);   // read-only shared (placed lower): neither VM_SHARED nor VM_MAYWRITE; private: VM_MAYWRITE
    const privRaw = r.entry(priv.start + 5 * PAGE).raw;
    expect(r.entry(priv.start + 5 * PAGE)).toMatchObject({ write: true, dirty: true });
    m.clearNotifierLog();
    // Both of r's mappings fail test_walk; walkOnSkip so that the walk reaches each of them.
    p.write(a.start + 6 * PAGE, 4);
    const rec = f.cleanRecord(0, 8, { walkOnSkip: true });
    expect(rec.cleaned).toBe(3);                     // p's pgoffs 2 and 6, q's pgoff 2 (write-protect kept them dirty)
    expect(bits(rec.bitmap as Uint8Array)).toEqual([2, 6]);
    expect(r.entry(priv.start + 5 * PAGE).raw).toBe(privRaw);
    expect(m.notifierLog.every((n) => n.pid !== r.pid)).toBe(true);
    expect(() => r.mmap({ file: f, shared: true, openMode: 'rdonly', length: PAGE, prot: 'rw' })).toThrow(expect.objectContaining({ code: 'EACCES' }));
    expect(() => r.mprotect(ro.start, PAGE, 'rw')).toThrow(expect.objectContaining({ code: 'EACCES' }));
    expectClean(m);
  });

  it('a hugetlb VMA is skipped (its flag set by the debug hook: ptemu has no hugetlbfs)', async () => {
    const m = await machine({ cpus: 1 });
    const f = m.file({ size: 4 * PAGE, pageMkwrite: true });
    const p = m.spawn();
    const a = p.mmap({ file: f, shared: true, length: 4 * PAGE, prot: 'rw' });
    p.write(a.start, 1);
    m.debug.setVmaFlags(p, a.start, { set: 0x400000 });               // VM_HUGETLB
    m.clearNotifierLog();
    expect(f.writeProtect(0, 4)).toBe(0);
    expect(f.cleanRecord(0, 4).cleaned).toBe(0);
    expect(p.entry(a.start)).toMatchObject({ write: true, dirty: true });
    expect(m.notifierLog).toEqual([]);
    m.debug.setVmaFlags(p, a.start, { clear: 0x400000 });
    expect(f.writeProtect(0, 4)).toBe(1);
  });

  it('a skipped VMA stops the whole mapping walk (the kernel quirk) unless walkOnSkip', async () => {
    const m = await machine({ cpus: 1 });
    const f = m.file({ size: 8 * PAGE, pageMkwrite: true });
    const p = m.spawn();
    // i_mmap order is by pgoff: the private mapping of pgoffs 0..3 comes before the shared one of 4..7.
    p.mmap({ file: f, length: 4 * PAGE, prot: 'rw' });
    const s = p.mmap({ file: f, shared: true, offset: 4 * PAGE, length: 4 * PAGE, prot: 'rw' });
    p.write(s.start, 1);
    expect(f.writeProtect(0, 8)).toBe(0);
    expect(p.entry(s.start).write).toBe(true);
    expect(m.notifierLog).toEqual([]);
    expect(f.writeProtect(0, 8, { walkOnSkip: true })).toBe(1);
    expect(p.entry(s.start).write).toBe(false);
    // A range that does not reach the private mapping is walked normally.
    p.write(s.start, 2);
    expect(f.writeProtect(4, 4)).toBe(1);
  });
});

describe('non-present entries (D19)', () => {
  it('a migration entry with swp soft-dirty (bit 1 on x86, the RW position) is left alone and not counted', async () => {
    const { m, p, f, at } = await sharedFile([1, 2]);
    const pfn = p.entry(at(1)).pfn!;
    const mig = m.arch.makeMigration(pfn, 'write', { softDirty: true });
    expect(mig & 2n).toBe(2n);                                       // reads as "writable" to a bare pte_write()
    const saved = p.entry(at(1)).raw;
    m.kernel.setEntry(p, at(1), mig);
    expect(f.writeProtect(0, 8)).toBe(1);                            // only pgoff 2
    expect(m.kernel.ptepGet(p, at(1))).toBe(mig);
    expect(f.cleanRecord(0, 8)).toMatchObject({ cleaned: 1, start: 2, end: 3 });
    expect(m.kernel.ptepGet(p, at(1))).toBe(mig);
    m.kernel.setEntry(p, at(1), saved);
  });
});

describe('the stale-TLB race (D13, D14, D16)', () => {
  it('(a) a CPU holding a dirty writable TLB entry writes between the clean and the flush: recorded, PTE clean after, data in the page', async () => {
    const { m, p, f, at } = await sharedFile([6]);
    expect(p.write(at(6), 0x600, { cpu: 1 })).toMatchObject({ ok: true });        // C1 caches W=1 D=1
    expect(m.cpu(1).tlb.lookup(p, at(6))).toMatchObject({ writable: true, writeNeedsDirtyUpdate: false });
    const steps: Step['kind'][] = [];
    let racing: ReturnType<Process['write']> | undefined;
    const r = f.cleanRecord(0, 8, {
      onStep: (s) => {
        steps.push(s.kind);
        if (s.kind === 'entry' && s.start === at(6)) {
          expect(p.entry(at(6)).dirty).toBe(false);                                // cleaned...
          racing = p.write(at(6), 0xbeef, { cpu: 1 });                             // ...and C1 writes through its stale entry
          expect(p.entry(at(6)).dirty).toBe(false);                                // without re-dirtying the PTE
        }
      },
    });
    expect(racing).toMatchObject({ ok: true, faults: 0, hit: 'l1' });
    expect(steps).toEqual(['vma-start', 'entry', 'flush', 'vma-end']);
    expect(r).toMatchObject({ cleaned: 1, start: 6, end: 7 });
    expect(bits(r.bitmap as Uint8Array)).toEqual([6]);
    expect(p.entry(at(6))).toMatchObject({ dirty: false, write: true });
    const page = f.lookup(6);
    expect(page.state).toBe('page');
    if (page.state === 'page') expect(m.frame(page.pfn).tag).toBe(0xbeef);
    expect(m.flushLog.at(-1)).toMatchObject({ start: at(6), end: at(7), cpus: [0, 1] });
    expect(m.cpu(1).tlb.lookup(p, at(6))).toBeNull();
    expectClean(m);
  });

  it('(b) a write after the walker passed a clean PTE leaves it dirty and unrecorded; the next call records it', async () => {
    const { p, f, at } = await sharedFile([7]);
    f.cleanRecord(0, 8);                                 // pgoff 7: writable and clean now
    p.write(at(2), 1);                                   // something for the walk to clean (so there is a flush step)
    const r = f.cleanRecord(0, 8, {
      onStep: (s) => { if (s.kind === 'flush') expect(p.write(at(7), 0x777, { cpu: 1 })).toMatchObject({ ok: true, faults: 0 }); },
    });
    expect(bits(r.bitmap as Uint8Array)).toEqual([2]);
    expect(p.entry(at(7)).dirty).toBe(true);
    expect(bits(f.cleanRecord(0, 8).bitmap as Uint8Array)).toEqual([7]);
  });

  it('an access that needs a fault on the PTE table the operation holds waits for the lock; after the table it goes through', async () => {
    const { p, f, at } = await sharedFile([1]);
    const seen: string[] = [];
    f.writeProtect(0, 8, {
      onStep: (s) => {
        if (s.kind === 'entry') {
          expect(p.write(at(5), 5, { cpu: 1 })).toMatchObject({ ok: false, blocked: 'page-table-lock' });
          expect(p.entry(at(5)).write).toBe(false);
          seen.push('blocked');
        }
        if (s.kind === 'vma-end') {
          expect(p.write(at(5), 5, { cpu: 1 })).toMatchObject({ ok: true, faults: 1 });
          seen.push('written');
        }
      },
    });
    expect(seen).toEqual(['blocked', 'written']);
    expect(p.entry(at(5))).toMatchObject({ write: true, dirty: true });
  });

  it('inside onStep only accesses and inspection run; a throwing onStep lets the operation finish, then throws', async () => {
    const { m, p, f, at } = await sharedFile([1, 2]);
    expect(() => f.writeProtect(0, 8, { onStep: () => { p.munmap(at(0), PAGE); } })).toThrow(expect.objectContaining({ code: 'EBUSY', arg: 'onStep' }));
    expect(p.entry(at(1)).write).toBe(false);            // finished: both PTEs write-protected, flush and notifier end done
    expect(p.entry(at(2)).write).toBe(false);
    expect(m.notifierLog.map((n) => n.phase)).toEqual(['start', 'end']);
    expect(() => f.writeProtect(0, 8, { onStep: () => { f.cleanRecord(0, 8); } })).toThrow(expect.objectContaining({ code: 'EBUSY' }));
    expectClean(m);
  });

  it('D17: with another flush pending on the mm, post_vma flushes the whole notifier range', async () => {
    const { m, p, f, at } = await sharedFile([3]);
    m.kernel.incTlbFlushPending(p);
    m.clearFlushLog();
    expect(f.writeProtect(0, 8)).toBe(1);
    expect(m.flushLog).toEqual([expect.objectContaining({ kind: 'range', start: at(0), end: at(8) })]);
    m.kernel.decTlbFlushPending(p);
  });

  it('D16 property: over random interleavings no page written during the call, or dirty before it, ends clean and unrecorded', async () => {
    const seeds = Number(process.env.PTEMU_SEEDS ?? 40);
    for (let seed = 1; seed <= seeds; seed++) {
      let s = seed * 0x9e3779b1;
      const rnd = (n: number): number => { s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x6b43a9b5) | 0; return ((s >>> 0) % n); };
      const m = await machine({ cpus: 3 });
      const pages = 48;
      const f = m.file({ size: pages * PAGE, pageMkwrite: true });
      const procs = [m.spawn(), m.spawn()];
      // The first mapping straddles a PMD boundary, so the walk crosses two PTE tables.
      const maps = [procs[0]!.mmap({ file: f, shared: true, length: pages * PAGE, prot: 'rw', addr: 0x4000_0000 - 20 * PAGE }),
        procs[1]!.mmap({ file: f, shared: true, length: pages * PAGE, prot: 'rw' })];
      const addr = (i: number, g: number): number => maps[i]!.start + g * PAGE;
      for (let k = 0; k < 40; k++) procs[rnd(2)]!.write(addr(rnd(2), rnd(pages)), k + 1, { cpu: rnd(3) });
      if (rnd(2)) f.cleanRecord(0, pages);                            // some writable-clean PTEs
      for (let k = 0; k < 20; k++) { const i = rnd(2); procs[i]!.write(addr(i, rnd(pages)), 100 + k, { cpu: rnd(3) }); }
      const dirtyBefore = new Set<number>();
      for (const i of [0, 1]) for (let g = 0; g < pages; g++) if (procs[i]!.entry(addr(i, g)).dirty) dirtyBefore.add(g);
      const written = new Set<number>();
      const first = rnd(8), nr = pages - first - rnd(8);
      const r = f.cleanRecord(first, nr, {
        bitmapOffset: first,
        onStep: () => {
          for (let k = rnd(3); k > 0; k--) {
            const i = rnd(2), g = rnd(pages);
            const w = procs[i]!.write(addr(i, g), 1000 + g, { cpu: rnd(3) });
            if (w.ok) written.add(g);
          }
        },
      });
      const recorded = new Set(bits(r.bitmap as Uint8Array).map((b) => b + first));
      for (const g of new Set([...dirtyBefore, ...written])) {
        if (g < first || g >= first + nr) continue;
        const dirtyNow = [0, 1].some((i) => procs[i]!.entry(addr(i, g)).dirty);
        if (!recorded.has(g) && !dirtyNow) throw new Error(`seed ${seed}: pgoff ${g} was dirty during the call but is neither recorded nor dirty`);
      }
      // Everything recorded was dirty before or written during the call.
      for (const g of recorded) expect(dirtyBefore.has(g) || written.has(g)).toBe(true);
      expectClean(m);
    }
  });
});

describe('exact capture protocol (D20): write-protect, block writers in page_mkwrite, clean', () => {
  it('the recorded set is exactly the pages written before the write-protect flush; afterwards nothing is dirty or writable', async () => {
    const m = await machine({ cpus: 2 });
    let blocking = false;
    const calls: number[] = [];
    const f = m.file({ size: 8 * PAGE, pageMkwrite: (ev) => { calls.push(ev.pgoff); return blocking ? 'block' : undefined; } });
    const p = m.spawn();
    const a = p.mmap({ file: f, shared: true, length: 8 * PAGE, prot: 'rw' });
    for (const g of [0, 3, 6]) p.write(a.start + g * PAGE, g, { cpu: 1 });
    expect(calls).toEqual([0, 3, 6]);
    expect(f.writeProtect(0, 8, { onStep: (s) => { if (s.kind === 'entry') p.write(a.start + 3 * PAGE, 33, { cpu: 1 }); } })).toBe(3);
    blocking = true;
    const w = p.write(a.start + 4 * PAGE, 44, { cpu: 1 });
    expect(w).toMatchObject({ ok: false, blocked: 'page-mkwrite' });
    expect(p.entry(a.start + 4 * PAGE).kind).toBe('none');        // nothing mapped while the writer waits
    const r = f.cleanRecord(0, 8);
    expect(bits(r.bitmap as Uint8Array)).toEqual([0, 3, 6]);
    for (let g = 0; g < 8; g++) expect(p.entry(a.start + g * PAGE)).toMatchObject({ write: false, dirty: false });
    blocking = false;
    expect(p.write(a.start + 4 * PAGE, 44, { cpu: 1 })).toMatchObject({ ok: true });
    expect(p.read(a.start + 3 * PAGE)).toMatchObject({ tag: 33 });
    expectClean(m);
  });

  it('page_mkwrite can fail the write (SIGBUS); an exception in it fails the write and is thrown', async () => {
    const m = await machine();
    let mode: 'sigbus' | 'throw' = 'sigbus';
    const f = m.file({ size: 4 * PAGE, pageMkwrite: () => { if (mode === 'throw') throw new Error('fs bug'); return 'sigbus'; } });
    const p = m.spawn();
    const a = p.mmap({ file: f, shared: true, length: 4 * PAGE, prot: 'rw' });
    expect(p.write(a.start, 1)).toMatchObject({ ok: false, signal: 'SIGBUS' });
    mode = 'throw';
    expect(() => p.write(a.start, 1)).toThrow('fs bug');
    expect(p.entry(a.start).kind).toBe('none');
    expect(() => m.file({ size: PAGE, pageMkwrite: 'yes' as unknown as boolean })).toThrow(expect.objectContaining({ arg: 'pageMkwrite' }));
    expectClean(m);
  });
});

describe('huge leaves are never split (D10)', () => {
  it('a writable dirty PMD-mapped THP in a shared mapping is skipped with a warning and left as it is', async () => {
    const m = await machine({ cpus: 1 });
    const f = m.memfd({ size: 4 * MiB, huge: true });
    const p = m.spawn();
    const s = p.mmap({ file: f, shared: true, length: 4 * MiB, prot: 'rw' });
    p.write(s.start, 1);                                  // a huge folio, mapped by one writable dirty PMD
    const huge = p.entry(s.start);
    expect(huge).toMatchObject({ level: 'pmd', write: true, dirty: true });
    p.mprotect(s.start + 2 * MiB, PAGE, 'r');             // the second half: PTEs (a VMA boundary inside it)
    p.write(s.start + 2 * MiB + 7 * PAGE, 2);
    expect(p.entry(s.start + 2 * MiB + 7 * PAGE)).toMatchObject({ level: 'pte', write: true, dirty: true });
    const splits = m.stats.thpSplitPmd;
    m.clearWarnings();
    m.clearFlushLog();
    expect(f.writeProtect(0, 1024)).toBe(1);             // only the 4K PTE in the second half
    expect(p.entry(s.start).raw).toBe(huge.raw);
    expect(m.flushLog.map((l) => [l.start, l.end])).toEqual([[s.start + 2 * MiB + 7 * PAGE, s.start + 2 * MiB + 8 * PAGE]]);
    const r = f.cleanRecord(0, 1024);
    expect(r.cleaned).toBe(1);
    expect(bits(r.bitmap as Uint8Array)).toEqual([519]);  // the huge page's 512 dirty pages are not recorded
    expect(p.entry(s.start).raw).toBe(huge.raw);
    expect(m.stats.thpSplitPmd).toBe(splits);
    expect(m.warnings).toEqual([
      { seq: expect.any(Number), where: 'wp_clean_pmd_entry', message: expect.any(String), pid: p.pid, addr: s.start, entry: huge.raw },
      { seq: expect.any(Number), where: 'wp_clean_pmd_entry', message: expect.any(String), pid: p.pid, addr: s.start, entry: huge.raw },
    ]);
    // A clean, read-only huge PMD gives no warning.
    const q = m.spawn();
    const t = q.mmap({ file: f, shared: true, length: 2 * MiB, prot: 'r' });
    q.read(t.start);
    expect(q.entry(t.start)).toMatchObject({ level: 'pmd', write: false, dirty: false });
    p.munmap(s.start, 4 * MiB);
    m.clearWarnings();
    expect(f.writeProtect(0, 512)).toBe(0);
    expect(m.warnings).toEqual([]);
    expectClean(m);
  });
});

describe('soft-dirty (clear_refs 4, pagemap bit 55)', () => {
  it('round trip: written pages are soft-dirty; clear_refs clears and write-protects; the next write faults and marks again', async () => {
    const m = await machine({ cpus: 2 });
    const p = m.spawn();
    const a = p.mmap({ length: 4 * PAGE, prot: 'rw' });
    p.write(a.start, 1);
    p.read(a.start + PAGE);
    expect(p.pagemap(a.start).softDirty).toBe(true);
    expect(p.pagemap(a.start + 2 * PAGE).softDirty).toBe(true);      // VM_SOFTDIRTY: the whole new VMA counts as written
    m.clearFlushLog();
    m.clearNotifierLog();
    p.clearRefs('soft-dirty');
    expect(p.vmas[0]!.flags & 0x8000000).toBe(0);
    expect([0, 1, 2].map((i) => p.pagemap(a.start + i * PAGE).softDirty)).toEqual([false, false, false]);
    expect(p.entry(a.start)).toMatchObject({ write: false, dirty: true, softDirty: false });
    expect(m.flushLog).toEqual([expect.objectContaining({ kind: 'mm', pid: p.pid })]);
    expect(m.notifierLog.map((n) => [n.phase, n.event, n.start, n.end])).toEqual([['start', 'soft-dirty', 0, Infinity], ['end', 'soft-dirty', 0, Infinity]]);
    expect(p.write(a.start, 2)).toMatchObject({ ok: true, faults: 1 });
    expect(p.pagemap(a.start).softDirty).toBe(true);
    expect(p.entry(a.start)).toMatchObject({ write: true, softDirty: true });
    expect(p.pagemap(a.start + PAGE).softDirty).toBe(false);
    // A fresh page faulted in after the clear is soft-dirty (do_anonymous_page maps it dirty).
    p.write(a.start + 3 * PAGE, 3);
    expect(p.pagemap(a.start + 3 * PAGE).softDirty).toBe(true);
    expectClean(m);
  });

  it('stepped: clear_refs yields after each entry and before its flush; a write through a stale TLB entry there is not seen as soft-dirty', async () => {
    const m = await machine({ cpus: 2 });
    const p = m.spawn();
    const a = p.mmap({ length: 2 * PAGE, prot: 'rw' });
    p.write(a.start, 1, { cpu: 1 });                                        // C1 caches a writable, dirty translation
    p.write(a.start + PAGE, 1);
    const kinds: string[] = [];
    p.clearRefs('soft-dirty', {
      onStep: (st) => {
        kinds.push(st.kind);
        if (st.kind === 'flush') expect(p.write(a.start, 2, { cpu: 1 })).toMatchObject({ ok: true, faults: 0, hit: 'l1' });
      },
    });
    expect(kinds).toEqual(['entry', 'entry', 'flush']);
    // The write went through the stale entry: the PTE stayed write-protected and clean of soft-dirty.
    expect(p.entry(a.start)).toMatchObject({ write: false, softDirty: false });
    expect(p.read(a.start)).toMatchObject({ tag: 2 });
    expectClean(m);
  });

  it('shared mappings become write-notified after the clear, so their writes are seen too', async () => {
    const m = await machine();
    const f = m.memfd({ size: 4 * PAGE });
    const p = m.spawn();
    const a = p.mmap({ file: f, shared: true, length: 4 * PAGE, prot: 'rw' });
    p.write(a.start, 1);
    p.clearRefs('soft-dirty');
    expect(p.pagemap(a.start).softDirty).toBe(false);
    p.read(a.start + PAGE);
    expect(p.entry(a.start + PAGE).write).toBe(false);     // newly mapped read-only: write-notify
    expect(p.write(a.start + PAGE, 2)).toMatchObject({ ok: true, faults: 1 });
    expect(p.pagemap(a.start + PAGE).softDirty).toBe(true);
    expectClean(m);
  });

  it('a DMA-pinned page of a private mapping keeps its soft-dirty state; clear_refs "all" only clears young', async () => {
    const m = await machine();
    const p = m.spawn();
    const a = p.mmap({ length: 2 * PAGE, prot: 'rw' });
    p.write(a.start, 1);
    p.write(a.start + PAGE, 2);
    const pin = m.pin(p, a.start, 1, { write: true });
    p.clearRefs('soft-dirty');
    expect(p.entry(a.start)).toMatchObject({ write: true, softDirty: true });
    expect(p.entry(a.start + PAGE)).toMatchObject({ write: false, softDirty: false });
    pin.unpin();
    expect(p.entry(a.start + PAGE).young).toBe(true);
    p.clearRefs('all');
    expect(p.entry(a.start + PAGE)).toMatchObject({ young: false, write: false });
    expect(() => p.clearRefs('everything' as 'all')).toThrow(expect.objectContaining({ arg: 'what' }));
    expectClean(m);
  });
});

describe('four entries at a time (SIMD) equals one by one', () => {
  for (const arch of ['x86_64', 'arm64'] as const) {
    it(`${arch}: on arbitrary entry bits, both paths leave the same entries, counts, bits and flushes`, async () => {
      let s = 12345;
      const rnd32 = (): bigint => { s = (Math.imul(s ^ (s >>> 13), 0x5bd1e995) + 0x3c6ef372) | 0; return BigInt(s >>> 0); };
      // Entries biased towards the bits the helpers look at: present, write, dirty, RDONLY, DBM.
      const interesting = arch === 'arm64' ? [1n, 1n << 7n, 1n << 51n, 1n << 55n, 1n << 11n, 3n] : [1n, 2n, 1n << 6n, 1n << 8n, 1n << 58n];
      const pages = 300;
      const values: bigint[] = [];
      for (let i = 0; i < pages; i++) {
        let v = (rnd32() << 32n) | rnd32();
        for (const b of interesting) if (rnd32() & 1n) v ^= b;
        values.push(rnd32() % 7n === 0n ? 0n : v);
      }
      const run = async (stepping: boolean, op: 'wp' | 'clean') => {
        // contpte off: with it, arm64 user mms always take the one-by-one path (every commit may fold).
        const m = await machine({ arch, cpus: 1, contpte: false });
        const f = m.memfd({ size: 2 * MiB });
        const p = m.spawn();
        // Starts 3 pages into a PTE table, so groups of four straddle the table's alignment.
        const a = p.mmap({ file: f, shared: true, length: 2 * MiB, prot: 'rw', addr: 0x4000_0000 - 3 * PAGE });
        p.read(a.start);
        p.read(a.start + 3 * PAGE);                                   // the second PTE table
        // Raw entries must name what the core can survive: present ones get the file page's frame, others become markers.
        const frame = BigInt(f.lookup(0).state === 'page' ? (f.lookup(0) as { pfn: number }).pfn : 0);
        for (let i = 0; i < pages; i++) {
          const v = values[i]!;
          const d = m.arch.decode(v, 'pte');
          // XOR in the difference: x86 stores PROT_NONE frame numbers inverted (L1TF).
          const safe = d.kind === 'present' ? v ^ ((BigInt(d.pfn!) ^ frame) << 12n) : d.kind === 'none' ? 0n : m.arch.makeMarker('uffd-wp');
          m.kernel.setEntry(p, a.start + i * PAGE, safe);
        }
        m.clearFlushLog();
        const opts = stepping ? { onStep: () => {} } : {};
        const r = op === 'wp' ? { cleaned: f.writeProtect(5, pages, opts) } : f.cleanRecord(5, pages, { ...opts, bitmapOffset: 3 });
        const entries = Array.from({ length: pages }, (_, i) => m.kernel.ptepGetRaw(p, a.start + i * PAGE));
        return { r, entries, flushes: m.flushLog.map((l) => [l.start, l.end]) };
      };
      for (const op of ['wp', 'clean'] as const) {
        const fast = await run(false, op), slow = await run(true, op);
        expect(fast.entries).toEqual(slow.entries);
        expect(fast.r).toEqual(slow.r);
        expect(fast.flushes).toEqual(slow.flushes);
        expect(fast.r.cleaned).toBeGreaterThan(10);
      }
    });
  }
});
