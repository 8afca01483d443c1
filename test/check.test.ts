// The invariant checker must pass on every healthy state and catch
// deliberately corrupted ones (each corruption below is one bug class it
// exists to catch).

import { describe, it, expect } from 'vitest';
import { machine, expectClean, PAGE, MiB } from './helpers.js';
import type { Machine, Process } from '../src/index.js';

async function scene(): Promise<{ m: Machine; p: Process; base: number; pfn: number }> {
  const m = await machine();
  const p = m.spawn();
  const a = p.mmap({ length: 16 * PAGE, prot: 'rw' });
  p.touch(a.start, a.length, 'w', 1);
  const w = p.write(a.start, 2);
  if (!w.ok) throw new Error('write failed');
  expectClean(m);
  return { m, p, base: a.start, pfn: w.pfn };
}

describe('m.check() catches corruption', () => {
  it('a wrong refcount', async () => {
    const { m, pfn } = await scene();
    m.debug.corruptFrame(pfn, 'refcount', 2);
    expect(m.check()).toEqual([{ kind: 'refcount', message: expect.stringContaining('refcount 2, accounted 1') }]);
  });

  it('a wrong mapcount', async () => {
    const { m, pfn } = await scene();
    m.debug.corruptFrame(pfn, 'mapcount', 3);
    expect(m.check().map((p) => p.kind)).toContain('mapcount');
  });

  it('a PTE pointing at a free frame', async () => {
    const { m, p, base } = await scene();
    const e = p.entry(base);
    const freePfn = m.stats.frames - 1;
    expect(m.frame(freePfn).kind).toBe('free');
    m.debug.corruptEntry(p, base, (e.raw & ~(0xffffffffffn << 12n)) | (BigInt(freePfn) << 12n));
    const kinds = m.check().map((x) => x.kind);
    expect(kinds).toContain('maps-free-frame');
    expect(kinds).toContain('leaked-frame');           // the page the PTE used to map
  });

  it('an anonymous page writable in two places', async () => {
    const { m, p, base, pfn } = await scene();
    const other = p.entry(base + PAGE);
    m.debug.corruptEntry(p, base + PAGE, (other.raw & ~(0xffffffffffn << 12n)) | (BigInt(pfn) << 12n));
    const kinds = m.check().map((x) => x.kind);
    expect(kinds).toContain('writable-shared-anon');
  });

  it('a swap entry nobody accounted for', async () => {
    const { m, p, base } = await scene();
    p.madvise(base, PAGE, 'pageout');
    expectClean(m);
    const slot = p.pagemap(base).swapOffset!;
    m.debug.corruptEntry(p, base + PAGE, m.arch.makeSwap({ type: 0, offset: slot }));
    const kinds = m.check().map((x) => x.kind);
    expect(kinds).toEqual(expect.arrayContaining(['swap-count', 'rss', 'leaked-frame']));
  });

  it('a table linked twice, and a table nobody links (leak)', async () => {
    const m = await machine();
    const p = m.spawn();
    const a = p.mmap({ length: 4 * MiB, prot: 'rw' });
    p.write(a.start, 1);
    expectClean(m);
    const walk = p.pageWalk(a.start);
    expect(walk.map((e) => e.level)).toEqual(['pgd', 'pud', 'pmd', 'pte']);
    const pmd = walk[2]!;
    expect(pmd.kind).toBe('table');
    // The empty PMD slot of the second 2 MiB now points at the first PTE table as well.
    m.debug.corruptEntry(p, a.start + 2 * MiB, pmd.raw, 'pmd');
    expect(m.check().map((x) => x.kind)).toEqual(expect.arrayContaining(['table-shared', 'table-count']));
    m.debug.corruptEntry(p, a.start + 2 * MiB, 0n, 'pmd');
    expectClean(m);
    // Unlinking the real one leaks the table page and the page it maps.
    m.debug.corruptEntry(p, a.start, 0n, 'pmd');
    expect(m.check().map((x) => x.kind)).toEqual(expect.arrayContaining(['table-leak', 'leaked-frame', 'rss', 'table-count']));
  });
});
