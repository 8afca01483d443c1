import { describe, it, expect } from 'vitest';
import { Machine } from '../src/index.js';

describe('smoke', () => {
  it('maps, faults, reads back', async () => {
    const m = await Machine.create({ memory: '256MiB' });
    const p = m.spawn();
    const a = p.mmap({ length: '64KiB', prot: 'rw' });
    console.log(a.start.toString(16));
    const r0 = p.read(a.start);
    console.log(r0, p.pagemap(a.start), p.entry(a.start));
    const w = p.write(a.start + 4096, 77);
    console.log(w, p.pagemap(a.start + 4096), p.entry(a.start + 4096));
    console.log(p.read(a.start + 4096));
    console.log(p.dump());
    console.log(m.check(), p.rss, p.pageTableBytes);
    p.madvise(a.start, 65536, 'pageout');
    console.log(p.pagemap(a.start + 4096), p.read(a.start + 4096), m.check());
    p.munmap(a.start, a.length);
    console.log(p.rss, p.pageTableBytes, m.check(), m.stats);
  });
});
