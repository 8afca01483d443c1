// The TLB model (SEMANTICS §1.6, §9.B): cached permissions that outlive PTE
// changes until a flush reaches the CPU, shootdowns only to CPUs that ran the
// mm, mmu_gather range tracking and the nested rule, ASIDs, geometry and
// replacement, and replay statistics.

import { describe, it, expect } from 'vitest';
import { Machine, Trace } from '../src/index.js';
import { expectClean, PAGE, MiB, GiB } from './helpers.js';

async function machine(opts: Parameters<typeof Machine.create>[0] = {}): Promise<Machine> {
  return Machine.create({ memory: '256MiB', cpus: 2, ...opts });
}

describe('stale translations', () => {
  for (const arch of ['x86_64', 'arm64'] as const) {
    it(`${arch}: a cached writable-dirty entry keeps accepting writes after the PTE is write-protected, until a flush reaches the CPU`, async () => {
      const m = await machine({ arch });
      const p = m.spawn();
      const a = p.mmap({ length: 4 * PAGE, prot: 'rw' });
      expect(p.write(a.start, 1, { cpu: 1 })).toMatchObject({ ok: true });
      expect(m.cpu(1).tlb.lookup(p, a.start)).toMatchObject({ writable: true });
      // C0 write-protects the PTE without a flush (the seed's race window).
      const before = p.entry(a.start);
      m.kernel.setEntry(p, a.start, m.arch.makePte({ pfn: before.pfn!, write: false, dirty: true }));
      const wp = p.entry(a.start).raw;
      expect(m.cpu(1).write(p, a.start, 2)).toMatchObject({ ok: true, faults: 0, hit: 'l1' });
      expect(p.entry(a.start).raw).toBe(wp);                          // the PTE was not touched
      expect(m.frame(before.pfn!).tag).toBe(2);                        // yet the data landed
      m.kernel.flushTlbRange(p, a.start, a.start + 2 * PAGE);
      expect(m.cpu(1).tlb.lookup(p, a.start)).toBeNull();
      const kinds = m.cpu(1).tlb.stats.faultKinds;
      const w = m.cpu(1).write(p, a.start, 3);
      expect(w.faults).toBeGreaterThan(0);                             // now it faults (and the kernel reuses the page)
      expect(m.cpu(1).tlb.stats.faultKinds.writeProtect).toBe(kinds.writeProtect + 1);
      expect(w).toMatchObject({ ok: true, pfn: before.pfn });
      expectClean(m);
    });
  }

  it('x86: a write through a cached clean-writable entry re-walks to set D, and faults when the PTE is gone', async () => {
    const m = await machine({ faultAround: PAGE });
    const f = m.memfd({ size: 2 * PAGE });
    const p = m.spawn();
    const a = p.mmap({ file: f, shared: true, length: 2 * PAGE, prot: 'rw' });
    p.read(a.start, { cpu: 1 });
    expect(m.cpu(1).tlb.lookup(p, a.start)).toMatchObject({ writable: false, writeNeedsDirtyUpdate: true });
    // With the PTE intact, the write re-walks and sets D: no fault.
    const t = m.cpu(1).tlb.stats.dirtyRewalks;
    expect(m.cpu(1).write(p, a.start, 1)).toMatchObject({ ok: true, faults: 0 });
    expect(m.cpu(1).tlb.stats.dirtyRewalks).toBe(t + 1);
    expect(p.entry(a.start).dirty).toBe(true);
    expect(m.cpu(1).tlb.lookup(p, a.start)).toMatchObject({ writable: true });
    // Cache a clean-writable entry for the second page (never written: its folio is clean)
    // and clear the PTE behind it (get_and_clear, no flush).
    const b = a.start + PAGE;
    p.read(b, { cpu: 1 });
    expect(m.cpu(1).tlb.lookup(p, b)).toMatchObject({ writeNeedsDirtyUpdate: true });
    const old = p.entry(b);
    m.kernel.setEntry(p, b, 0n);
    const w = m.cpu(1).write(p, b, 2);
    expect(w.faults).toBe(1);                                          // the D-setting walk found P=0
    expect(w).toMatchObject({ ok: true, pfn: old.pfn });               // and the fault mapped the cache page again
    // The raw clear bypassed rmap and rss bookkeeping: the checker sees the extra mapping and count.
    expect(m.check().map((x) => x.kind).sort()).toEqual(['mapcount', 'refcount', 'rss']);
  });
});

describe('flushes and shootdowns', () => {
  it('range flushes above the ceiling become whole-mm flushes; only CPUs that ran the mm are reached; IPIs are counted', async () => {
    const m = await machine({ cpus: 3 });
    const p = m.spawn();
    const q = m.spawn();
    const a = p.mmap({ length: 64 * PAGE, prot: 'rw' });
    const b = q.mmap({ length: PAGE, prot: 'rw' });
    p.touch(a.start, a.length, 'w', 1, { cpu: 1 });
    p.read(a.start, { cpu: 0 });                                       // p ran on 0 and 1, last on 0
    q.write(b.start, 1, { cpu: 2 });
    m.clearFlushLog();
    const ipis = m.cpu(1).tlb.stats.ipis;
    p.mprotect(a.start, 8 * PAGE, 'r');
    expect(m.flushLog).toEqual([{ seq: expect.any(Number), kind: 'range', pid: p.pid, start: a.start, end: a.start + 8 * PAGE, strideShift: 12, initiator: 0, cpus: [0, 1] }]);
    p.mprotect(a.start + 8 * PAGE, 56 * PAGE, 'r');                   // 56 pages > 33
    expect(m.flushLog[1]).toMatchObject({ kind: 'mm', pid: p.pid, cpus: [0, 1] });
    expect(m.cpu(1).tlb.stats.ipis).toBe(ipis + 2);
    expect(m.cpu(2).tlb.stats.flushes).toBe(0);
    expect(m.cpu(1).tlb.lookup(p, a.start + 40 * PAGE)).toBeNull();
    expect(m.cpu(2).tlb.lookup(q, b.start)).not.toBeNull();
    expectClean(m);
  });

  it('the kernel flushes what it must: COW copy, munmap, DONTNEED, THP split, exit; upgrades need none', async () => {
    const m = await machine();
    const p = m.spawn();
    const a = p.mmap({ length: 4 * MiB, prot: 'rw' });
    p.read(a.start);                                                   // zero page
    m.clearFlushLog();
    p.write(a.start, 1);                                               // COW from the zero page: ptep_clear_flush
    expect(m.flushLog).toEqual([expect.objectContaining({ kind: 'page', start: a.start, end: a.start + PAGE })]);
    m.clearFlushLog();
    p.write(a.start + PAGE, 1);                                        // none -> present: no flush
    p.mprotect(a.start, 2 * PAGE, 'r');
    m.clearFlushLog();
    p.mprotect(a.start, 2 * PAGE, 'rw');                              // an upgrade: x86 needs no flush
    expect(m.flushLog).toEqual([]);
    p.madvise(a.start, 2 * PAGE, 'dontneed');
    expect(m.flushLog).toEqual([expect.objectContaining({ kind: 'range', start: a.start, end: a.start + 2 * PAGE })]);
    p.madvise(a.start + 2 * MiB, 2 * MiB, 'hugepage');
    p.write(a.start + 2 * MiB, 1);
    m.clearFlushLog();
    p.mprotect(a.start + 2 * MiB + PAGE, PAGE, 'r');                  // splits the PMD first (pmdp_invalidate)
    expect(m.flushLog[0]).toMatchObject({ kind: 'range', start: a.start + 2 * MiB, end: a.start + 4 * MiB, strideShift: 21 });
    m.clearFlushLog();
    p.munmap(a.start + 2 * MiB, 2 * MiB);
    expect(m.flushLog).toHaveLength(1);
    m.clearFlushLog();
    p.exit();
    expect(m.flushLog).toEqual([expect.objectContaining({ kind: 'mm', pid: p.pid })]);
    expectClean(m);
  });

  it('arm64 flushes at every VMA boundary (no MMU_GATHER_MERGE_VMAS); x86 merges them into one', async () => {
    // arm64: one flush per VMA, then one for the freed page table; x86: everything in the final flush.
    for (const [arch, n] of [['x86_64', 1], ['arm64', 3]] as const) {
      const m = await machine({ arch });
      const p = m.spawn();
      const a = p.mmap({ addr: 0x40000000, length: 2 * PAGE, prot: 'rw' });
      p.mmap({ addr: 0x40000000 + 2 * PAGE, length: 2 * PAGE, prot: 'r' });   // a second VMA right after
      p.write(a.start, 1);
      p.read(a.start + 2 * PAGE);
      m.clearFlushLog();
      p.munmap(a.start, 4 * PAGE);
      expect(m.flushLog.length).toBe(n);
      expectClean(m);
    }
  });
});

describe('mmu_gather', () => {
  it('collects 0x5000, 0x3000, 0x9000 into one flush of [0x3000, 0xA000); no entries, no flush; nested pending flushes the whole mm', async () => {
    const m = await machine();
    const p = m.spawn();
    const base = 0x40000000;
    p.mmap({ addr: base, length: 16 * PAGE, prot: 'rw' });
    p.read(base);
    m.clearFlushLog();
    const g = m.kernel.tlbGather(p);
    for (const off of [0x5000, 0x3000, 0x9000]) g.removeTlbEntry(base + off);
    expect(g.finish()).toBe(1);
    expect(m.flushLog).toEqual([{ seq: expect.any(Number), kind: 'range', pid: p.pid, start: base + 0x3000, end: base + 0xa000, strideShift: 12, initiator: 0, cpus: [0] }]);
    m.clearFlushLog();
    expect(m.kernel.tlbGather(p).finish()).toBe(0);
    expect(m.flushLog).toEqual([]);
    const t1 = m.kernel.tlbGather(p);
    const t2 = m.kernel.tlbGather(p);                                  // another thread batching concurrently
    t1.removeTlbEntry(base + 0x1000);
    t1.finish();
    expect(m.flushLog).toEqual([expect.objectContaining({ kind: 'mm', pid: p.pid })]);
    t2.finish();
    expect(() => t2.finish()).toThrow(/finished/);
    expectClean(m);
  });

  it('frees zapped pages only after the flush, and forces a flush when its batch is full', async () => {
    const m = await machine({ memory: '1GiB' });
    const p = m.spawn();
    const a = p.mmap({ length: 64 * MiB, prot: 'rw' });
    p.touch(a.start, a.length, 'w', 1);
    m.clearFlushLog();
    p.madvise(a.start, a.length, 'dontneed');                         // 16384 pages: one forced flush + the final one
    expect(m.flushLog.map((f) => f.kind)).toEqual(['mm', 'mm']);
    expectClean(m);
  });
});

describe('huge pages in TLB arrays', () => {
  it('a 2 MiB translation fills the array that holds 2 MiB pages, not the 4 KiB one listed before it', async () => {
    const m = await machine({ tlb: 'skylake', thp: 'always' });
    const p = m.spawn();
    const a = p.mmap({ length: 2 * MiB, prot: 'rw' });
    p.write(a.start, 1);
    p.read(a.start + 5 * PAGE);
    expect(m.cpu(0).tlb.lookup(p, a.start + 5 * PAGE)).toMatchObject({ where: 'l1', size: '2M' });
    expect(m.cpu(0).tlb.stats.l1Hits).toMatchObject({ '2M': 1, '4K': 0 });
  });

  it('an array without 2 MiB pages holds pieces of one; a 2 MiB-stride flush (INVLPG of the huge page) drops them all', async () => {
    const m = await machine({
      thp: 'always',
      tlb: { arrays: [{ name: 'L1 4K only', level: 1, kind: 'data', sizes: ['4K'], entries: 64, ways: 4 }] },
    });
    const p = m.spawn();
    const a = p.mmap({ length: 2 * MiB, prot: 'rw' });
    p.write(a.start, 1);
    p.read(a.start + 5 * PAGE);
    p.read(a.start + 300 * PAGE);
    for (const off of [0, 5, 300]) expect(m.cpu(0).tlb.lookup(p, a.start + off * PAGE)).toMatchObject({ size: '4K', pfn: p.entry(a.start).pfn! + off });
    m.kernel.flushTlbRange(p, a.start, a.start + 2 * MiB, { stride: '2M' });
    for (const off of [0, 5, 300]) expect(m.cpu(0).tlb.lookup(p, a.start + off * PAGE)).toBeNull();
  });
});

describe('ASIDs', () => {
  it('two processes on one CPU keep separate entries; flushing one mm leaves the other\'s', async () => {
    const m = await machine();
    const p = m.spawn();
    const q = m.spawn();
    const a = p.mmap({ addr: 0x40000000, length: PAGE, prot: 'rw' });
    const b = q.mmap({ addr: 0x40000000, length: PAGE, prot: 'rw' });
    const wp = p.write(a.start, 1);
    const wq = q.write(b.start, 2);
    expect(m.cpu(0).tlb.lookup(p, a.start)).toMatchObject({ pfn: wp.ok ? wp.pfn : -1 });
    expect(m.cpu(0).tlb.lookup(q, b.start)).toMatchObject({ pfn: wq.ok ? wq.pfn : -1 });
    expect(p.read(a.start)).toMatchObject({ tag: 1, hit: 'l1' });
    expect(q.read(b.start)).toMatchObject({ tag: 2, hit: 'l1' });
    m.kernel.flushTlbMm(p);
    expect(m.cpu(0).tlb.lookup(p, a.start)).toBeNull();
    expect(m.cpu(0).tlb.lookup(q, b.start)).not.toBeNull();
    expectClean(m);
  });
});

describe('geometry and replacement', () => {
  // Pages A..E all land in one 4-way set; the trace is A B C D A E B C D A.
  async function run(policy: 'lru' | 'plru'): Promise<{ hits: number; walks: number }> {
    const m = await Machine.create({
      memory: '64MiB', cpus: 2,
      tlb: { arrays: [{ level: 1, kind: 'data', sizes: ['4K'], sets: 1, ways: 4, policy }] },
    });
    const p = m.spawn();
    const a = p.mmap({ length: 8 * PAGE, prot: 'rw' });
    p.touch(a.start, a.length, 'w', 1, { cpu: 1 });                  // fault in on the other CPU
    const t = new Trace();
    for (const i of [0, 1, 2, 3, 0, 4, 1, 2, 3, 0]) t.push(a.start + i * PAGE);
    const s = m.replay(p, t, { cpu: 0 });
    return { hits: s.tlb!.l1Hits['4K'], walks: s.tlb!.walks };
  }

  it('LRU: 1 hit, 9 walks; tree-PLRU: 2 hits, 8 walks (computed by hand)', async () => {
    expect(await run('lru')).toEqual({ hits: 1, walks: 9 });
    expect(await run('plru')).toEqual({ hits: 2, walks: 8 });
  });

  it('the 1536-entry 12-way STLB holds 1536 pages; 1664 (13 per set) thrash it under LRU', async () => {
    const m = await machine({ memory: '64MiB', tlb: 'skylake' });
    const p = m.spawn();
    const a = p.mmap({ length: 1664 * PAGE, prot: 'rw' });
    p.touch(a.start, a.length, 'w', 1, { cpu: 1 });
    const fit = Trace.sequential(a.start, 1536 * PAGE);
    m.replay(p, fit);
    const again = m.replay(p, fit).tlb!;
    expect(again).toMatchObject({ walks: 0, l2Hits: { '4K': 1536 } });
    expect(again.l1Hits['4K']).toBe(0);                               // the 64-entry L1 only holds the last pages
    const over = Trace.sequential(a.start, 1664 * PAGE);
    m.replay(p, over);
    expect(m.replay(p, over).tlb!.walks).toBe(1664);
  });

  it('rejects impossible geometries', async () => {
    await expect(Machine.create({ tlb: { arrays: [{ level: 1, kind: 'data', sizes: ['4K'], entries: 10, ways: 4 }] } })).rejects.toMatchObject({ code: 'EINVAL', arg: 'tlb' });
    await expect(Machine.create({ tlb: { arrays: [{ level: 1, kind: 'data', sizes: ['4K'], sets: 2, ways: 12, policy: 'plru' }] } })).rejects.toMatchObject({ code: 'EINVAL' });
    await expect(Machine.create({ tlb: { arrays: [{ level: 1, kind: 'data', sizes: ['64K'], sets: 2, ways: 2 }] } })).rejects.toMatchObject({ code: 'EINVAL' });
    await expect(Machine.create({ tlb: 'haswell' as never })).rejects.toMatchObject({ code: 'EINVAL', arg: 'tlb' });
  });
});

describe('replay', () => {
  it('a random 1 GiB trace walks far less with THP; functional mode gives the same translations as model', async () => {
    const results: Record<string, { walks: number; pfns: Uint32Array }> = {};
    for (const thp of ['never', 'always'] as const) {
      const m = await Machine.create({ memory: '2GiB', thp });
      const p = m.spawn();
      const a = p.mmap({ length: GiB, prot: 'rw' });
      p.touch(a.start, a.length, 'w', 1);
      const t = Trace.random({ start: a.start, length: GiB, count: 200_000, seed: 7, writeRatio: 0.3 });
      const model = m.replay(p, t, { collectPfns: true });
      const functional = m.replay(p, t, { mode: 'functional', collectPfns: true });
      expect(functional.tlb).toBeUndefined();                          // no modelled statistics from the fast cache
      expect(functional.pfns).toEqual(model.pfns);
      expect(model.completed).toBe(200_000);
      results[thp] = { walks: model.tlb!.walks, pfns: model.pfns! };
      expectClean(m);
    }
    expect(results.never!.walks).toBeGreaterThan(150_000);              // 1536 entries cover 0.6% of 1 GiB
    expect(results.always!.walks).toBeLessThan(results.never!.walks / 50);   // 512 PMDs fit the STLB
  });
});

describe('instruction fetches', () => {
  it('execute needs an executable mapping and fills the instruction TLB, not the data one', async () => {
    for (const arch of ['x86_64', 'arm64'] as const) {
      const m = await machine({ arch });
      const p = m.spawn();
      const code = p.mmap({ length: PAGE, prot: 'rx' });
      const data = p.mmap({ length: PAGE, prot: 'rw' });
      p.read(code.start, { cpu: 1 });                                 // populate (zero page), data TLB on CPU 1
      expect(m.cpu(0).access(p, code.start, 'x')).toMatchObject({ ok: true, hit: 'walk' });
      expect(m.cpu(0).access(p, code.start, 'x')).toMatchObject({ ok: true, hit: 'l1' });
      expect(m.cpu(0).tlb.lookup(p, code.start)).toMatchObject({ executable: true });
      expect(m.cpu(0).access(p, data.start, 'x')).toMatchObject({ ok: false, signal: 'SIGSEGV', code: 'SEGV_ACCERR' });
      expectClean(m);
    }
  });
});

describe('Trace.fromWords', () => {
  it('a trace over existing records replays exactly as the trace they came from; bad arguments are refused', async () => {
    const run = async (make: (t: Trace) => Trace) => {
      const m = await Machine.create({ memory: '64MiB', tlb: 'tiny' });
      const p = m.spawn();
      const a = p.mmap({ length: 4 * MiB, prot: 'rw' });
      const t = Trace.random({ start: a.start, length: 4 * MiB, count: 5000, seed: 7, writeRatio: 0.3 });
      const s = m.replay(p, make(t));
      return { tlb: s.tlb, faults: s.faults, accesses: s.accesses };
    };
    const direct = await run((t) => t);
    const viewed = await run((t) => Trace.fromWords(t.view(0, t.length)));
    expect(viewed).toEqual(direct);
    expect(Trace.fromWords(new Uint32Array(10), 3).length).toBe(3);
    expect(() => Trace.fromWords(new Uint32Array(10), 6)).toThrow(expect.objectContaining({ arg: 'count' }));
    expect(() => Trace.fromWords([] as unknown as Uint32Array)).toThrow(expect.objectContaining({ arg: 'words' }));
  });
});
