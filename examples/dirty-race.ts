// The race in mapping_dirty_helpers' thread, as a scenario: a CPU holding a
// dirty, writable TLB entry writes between the clean and the TLB flush.
// Run: `node dist/examples/dirty-race.js` after `npm run build` (or import raceOnClean).

import { Machine } from '../src/index.js';

export async function raceOnClean(): Promise<{ cleaned: number; bits: number[]; start: number; end: number; page6Dirty: boolean; page6Tag: number }> {
  const m = await Machine.create({ cpus: 2 });
  const f = m.file({ size: '32KiB', pageMkwrite: true });
  const p = m.spawn();
  const a = p.mmap({ file: f, shared: true, length: '32KiB', prot: 'rw' });
  p.write(a.start + 2 * 4096, 1);
  p.write(a.start + 6 * 4096, 2, { cpu: 1 });      // C1 now caches page 6 writable and dirty
  const r = f.cleanRecord(0, 8, {
    onStep: (s) => {                               // the operation stops here after each entry it changes
      if (s.kind === 'entry' && s.start === a.start + 6 * 4096) {
        p.write(a.start + 6 * 4096, 0xbeef, { cpu: 1 });   // through the stale TLB entry: the PTE stays clean
      }
    },
  });
  const bytes = r.bitmap as Uint8Array;
  const bits = [...bytes].flatMap((b, i) => [0, 1, 2, 3, 4, 5, 6, 7].filter((k) => b & (1 << k)).map((k) => i * 8 + k));
  const six = f.lookup(6);
  return {
    cleaned: r.cleaned, bits, start: r.start, end: r.end,
    page6Dirty: p.entry(a.start + 6 * 4096).dirty,
    page6Tag: six.state === 'page' ? m.frame(six.pfn).tag : -1,
  };
}

if (import.meta.url === `file://${process.argv[1]}`) console.log(await raceOnClean());
