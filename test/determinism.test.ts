// m.digest(): the whole memory-management state in one value. The same
// operations give the same digest (run twice here; any machine: nothing in it
// depends on the host), a different history a different one, and reading
// state does not change it.

import { describe, it, expect } from 'vitest';
import { Machine, Trace } from '../src/index.js';

/** A long mixed history: mappings, accesses, fork, swap, THP, a memfd, uffd, a device mirror, a trace replay. */
async function history(arch: 'x86_64' | 'arm64', seed: number): Promise<{ m: Machine; digests: string[] }> {
  const m = await Machine.create({ arch, memory: '128MiB', swap: '32MiB', cpus: 2, thp: 'always', mthp: { '64K': 'always' }, tlb: 'tiny' });
  const digests: string[] = [];
  let x = seed;
  const r = (): number => { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; return x / 2 ** 32; };
  const p = m.spawn();
  const a = p.mmap({ length: 8 * 1024 * 1024, prot: 'rw', addr: 0x4000_0000 });
  const f = m.memfd({ size: 64 * 4096 });
  const s = p.mmap({ length: 64 * 4096, prot: 'rw', shared: true, file: f });
  for (let i = 0; i < 3000; i++) {
    const addr = a.start + Math.floor(r() * 2000) * 4096;
    const k = r();
    if (k < 0.5) p.write(addr, i, { cpu: i & 1 });
    else if (k < 0.8) p.read(addr, { cpu: i & 1 });
    else if (k < 0.85) p.write(s.start + Math.floor(r() * 64) * 4096, i);
    else if (k < 0.88) p.madvise(addr, 16 * 4096, 'dontneed');
    else if (k < 0.9) p.madvise(addr, 32 * 4096, 'pageout');
    else if (k < 0.91) p.mprotect(addr, 4096, r() < 0.5 ? 'r' : 'rw');
    if (i % 500 === 0) digests.push(m.digest());
  }
  const c = p.fork();
  c.write(a.start, 1);
  const u = p.userfaultfd({ features: ['wp-async', 'wp-unpopulated', 'wp-hugetlbfs-shmem'] });
  u.register(s.start, 64 * 4096);
  u.writeProtect(s.start, 64 * 4096, true);
  p.pagemapScan({ start: s.start, end: s.end, categoryMask: ['written'], returnMask: ['written'], wpMatching: true });
  m.device('gpu').mirror(p).fault(a.start, 512, 'r');
  m.replay(p, Trace.random({ start: a.start, length: 8 * 1024 * 1024, count: 20_000, seed }), { cpu: 1 });
  digests.push(m.digest());
  return { m, digests };
}

describe('m.digest()', () => {
  for (const arch of ['x86_64', 'arm64'] as const) {
    it(`${arch}: the same long history gives byte-identical digests at every checkpoint; another seed differs`, async () => {
      const one = await history(arch, 11);
      const two = await history(arch, 11);
      expect(two.digests).toEqual(one.digests);
      expect(new Set(one.digests).size).toBe(one.digests.length);        // the state moved between checkpoints
      const other = await history(arch, 12);
      expect(other.digests.at(-1)).not.toBe(one.digests.at(-1));
      // Inspection changes nothing.
      const d = one.m.digest();
      one.m.check();
      void one.m.stats;
      expect(one.m.digest()).toBe(d);
    }, 60_000);
  }

  it('a frame, an entry or a VMA flag of difference changes it', async () => {
    const m = await Machine.create({ memory: '64MiB' });
    const p = m.spawn();
    const a = p.mmap({ length: 4 * 4096, prot: 'rw' });
    p.write(a.start, 1);
    const d0 = m.digest();
    p.write(a.start, 2);                                                   // only a tag changes
    const d1 = m.digest();
    expect(d1).not.toBe(d0);
    p.mprotect(a.start + 3 * 4096, 4096, 'r');                             // only VMAs change
    expect(m.digest()).not.toBe(d1);
  });
});
