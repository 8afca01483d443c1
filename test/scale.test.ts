// Scale: the largest machine the core supports, with a large THP-mapped range.
// Frames carry metadata only (16 bytes each), so 256 GiB of emulated memory
// needs 1 GiB of WebAssembly memory for descriptors.

import { it, expect } from 'vitest';
import { Machine } from '../src/index.js';

it('a 256 GiB machine maps and touches 64 GiB of THP, then frees it all', async () => {
  const m = await Machine.create({ memory: '256GiB', swap: 0, thp: 'always' });
  expect(m.stats.frames).toBe(64 * 2 ** 20);
  const p = m.spawn();
  const a = p.mmap({ length: '64GiB', prot: 'rw' });
  expect(p.touch(a.start, a.length, 'w', 3)).toEqual({ ok: true, pages: 16 * 2 ** 20 });
  expect(p.rss.anon).toBe(16 * 2 ** 20);
  expect(p.scan(a.start, a.length).pmdLeaves).toBe(32768);
  expect(p.read(a.end - 4096)).toMatchObject({ ok: true, tag: 3 });
  expect(m.check()).toEqual([]);
  p.exit();
  expect(m.stats.freeFrames).toBe(m.stats.frames - 2);
}, 120_000);
