// Counting dirty PTEs with m.kernel.walkPageRange, skipping huge PMDs the way
// mm/mapping_dirty_helpers.c does: `node dist/examples/walk-dirty.js`.

import { Machine } from '../src/index.js';

export async function countDirty(): Promise<{ dirty: number; skippedHuge: number }> {
  const m = await Machine.create({ memory: '256MiB' });
  const p = m.spawn();
  const a = p.mmap({ length: '4MiB', prot: 'rw' });
  p.madvise(a.start, 2 << 20, 'hugepage');
  p.touch(a.start, a.length, 'r');                        // the huge zero page, then zero-page PTEs
  for (let i = 0; i < 10; i++) p.write(a.start + (2 << 20) + i * 8192, i);
  let dirty = 0, skippedHuge = 0;
  m.kernel.walkPageRange(p, a.start, a.end, {
    pmdEntry: (e, _addr, _next, walk) => {
      if (e.kind === 'present') { skippedHuge++; walk.setAction('continue'); }
      return 0;
    },
    pteEntry: (e) => { if (e.dirty) dirty++; return 0; },
  });
  return { dirty, skippedHuge };
}

if (import.meta.url === `file://${process.argv[1]}`) console.log(await countDirty());
