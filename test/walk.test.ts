// m.kernel.walkPageRange: mm/pagewalk.c semantics (SEMANTICS §2, §9.C).

import { describe, it, expect } from 'vitest';
import { EmuError } from '../src/index.js';
import { machine, expectClean, PAGE, MiB } from './helpers.js';

describe('walkPageRange', () => {
  it('C1: start >= end is EINVAL and calls nothing', async () => {
    const m = await machine();
    const p = m.spawn();
    let calls = 0;
    expect(() => m.kernel.walkPageRange(p, 0x10000, 0x10000, { pteEntry: () => { calls++; return 0; } })).toThrow(EmuError);
    expect(calls).toBe(0);
  });

  it('C2: pte_entry runs for every slot, none ones included', async () => {
    const m = await machine();
    const p = m.spawn();
    const a = p.mmap({ addr: 0x40000000, length: 4 * PAGE, prot: 'rw' });
    p.write(a.start, 1);
    p.write(a.start + 2 * PAGE, 1);
    const seen: [number, string][] = [];
    expect(m.kernel.walkPageRange(p, a.start, a.end, {
      pteEntry: (e, addr) => { seen.push([addr - a.start, e.kind]); return 0; },
    })).toBe(0);
    expect(seen).toEqual([[0, 'present'], [PAGE, 'none'], [2 * PAGE, 'present'], [3 * PAGE, 'none']]);
  });

  it('holes: depth -1 between VMAs, the kernel depth of the first none entry inside one', async () => {
    const m = await machine();
    const p = m.spawn();
    const a = p.mmap({ addr: 0x40000000, length: 2 * PAGE, prot: 'rw' });
    const b = p.mmap({ addr: 0x40000000 + 4 * MiB, length: 2 * PAGE, prot: 'rw' });
    p.write(a.start, 1);
    const holes: [number, number, number][] = [];
    m.kernel.walkPageRange(p, a.start, b.end, {
      pteHole: (s, e, depth) => { holes.push([s, e, depth]); return 0; },
      pteEntry: () => 0,
    });
    expect(holes).toEqual([
      [a.end, b.start, -1],          // between the VMAs
      [b.start, b.end, 3],           // pmd none inside b (same PUD table as a)
    ]);
    // On an empty mm the top-level hole reports the p4d depth (the folded level), as on 4-level x86.
    const q = m.spawn();
    const c = q.mmap({ addr: 0x40000000, length: PAGE, prot: 'rw' });
    const d: number[] = [];
    m.kernel.walkPageRange(q, c.start, c.end, { pteHole: (_s, _e, depth) => { d.push(depth); return 0; } });
    expect(d).toEqual([1]);
  });

  it('C4/C5: CONTINUE on a huge PMD skips it; SUBTREE with a pte callback splits it into 512 PTEs', async () => {
    const m = await machine();
    const p = m.spawn();
    const a = p.mmap({ length: 2 * MiB, prot: 'rw' });
    p.madvise(a.start, a.length, 'hugepage');
    p.write(a.start, 1);
    let ptes = 0;
    m.kernel.walkPageRange(p, a.start, a.end, {
      pmdEntry: (e, _a, _n, walk) => { expect(e).toMatchObject({ kind: 'present', level: 'pmd' }); walk.setAction('continue'); return 0; },
      pteEntry: () => { ptes++; return 0; },
    });
    expect(ptes).toBe(0);
    expect(p.entry(a.start).level).toBe('pmd');
    const pfns: number[] = [];
    m.kernel.walkPageRange(p, a.start, a.end, { pteEntry: (e) => { pfns.push(e.pfn!); return 0; } });
    expect(pfns).toHaveLength(512);
    expect(pfns.every((pfn, i) => pfn === pfns[0]! + i)).toBe(true);
    expect(p.entry(a.start).level).toBe('pte');
    expectClean(m);
  });

  it('return values stop the walk; test_walk skips VMAs; post_vma runs after an error but not when pre_vma failed (C7)', async () => {
    const m = await machine();
    const p = m.spawn();
    const a = p.mmap({ addr: 0x40000000, length: 4 * PAGE, prot: 'rw' });
    const b = p.mmap({ addr: 0x40000000 + 8 * PAGE, length: 4 * PAGE, prot: 'r' });
    p.write(a.start, 1);        // one PTE table under both VMAs: PTE slots exist to visit
    let visits = 0;
    expect(m.kernel.walkPageRange(p, a.start, b.end, { pteEntry: () => (++visits === 3 ? 42 : 0) })).toBe(42);
    expect(visits).toBe(3);
    const log: string[] = [];
    const r = m.kernel.walkPageRange(p, a.start, b.end, {
      testWalk: (v) => (v.start === a.start ? 1 : 0),
      preVma: (v) => { log.push(`pre ${v.start === b.start}`); return 0; },
      pteEntry: () => -5,
      postVma: () => { log.push('post'); },
    });
    expect(r).toBe(-5);
    expect(log).toEqual(['pre true', 'post']);
    log.length = 0;
    expect(m.kernel.walkPageRange(p, a.start, a.end, { preVma: () => -1, postVma: () => { log.push('post'); } })).toBe(-1);
    expect(log).toEqual([]);
  });

  it('upper-level callbacks see tables; setEntry rewrites an entry; exceptions propagate', async () => {
    const m = await machine();
    const p = m.spawn();
    const a = p.mmap({ addr: 0x40000000, length: PAGE, prot: 'rw' });
    p.write(a.start, 7);
    const levels: string[] = [];
    m.kernel.walkPageRange(p, a.start, a.end, {
      pgdEntry: (e) => { levels.push(`${e.level}:${e.kind}`); return 0; },
      pudEntry: (e) => { levels.push(`${e.level}:${e.kind}`); return 0; },
      pmdEntry: (e) => { levels.push(`${e.level}:${e.kind}`); return 0; },
      pteEntry: (e, _a, _n, walk) => { walk.setEntry(m.arch.makePte({ pfn: e.pfn!, write: false, dirty: true })); return 0; },
    });
    expect(levels).toEqual(['pgd:table', 'pud:table', 'pmd:table']);
    expect(p.entry(a.start)).toMatchObject({ write: false, dirty: true });
    // Without a flush the CPU still holds the writable, dirty translation: the write completes.
    expect(p.write(a.start, 8)).toMatchObject({ ok: true, faults: 0 });
    expect(p.entry(a.start).write).toBe(false);
    m.kernel.flushTlbPage(p, a.start);
    expect(p.write(a.start, 9)).toMatchObject({ ok: true, faults: 1 });     // exclusive anon: reuse on the write fault
    expect(() => m.kernel.walkPageRange(p, a.start, a.end, { pteEntry: () => { throw new Error('boom'); } })).toThrow('boom');
    expectClean(m);
  });
});
