/**
 * `npm run bench:sweep [-- --quick]`: the wall time of one `ptemu sweep` grid
 * (2 traces × 2 TLB presets × 3 page-size policies = 12 replays) on one
 * worker thread and on two, in one run, with the speed-up. The traces are
 * written first (raw format, random accesses over 64 MiB, a quarter stores),
 * untimed. Both runs must give the same numbers in every cell.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeTrace } from '../src/cli/traceformats.js';
import { runSweep, type SweepConfig } from '../src/cli/sweep.js';

const quick = process.argv.includes('--quick');
const accesses = quick ? 200_000 : 1_000_000;
const dir = mkdtempSync(join(tmpdir(), 'ptemu-bench-sweep-'));

function* randomAccesses(seed: number): Generator<{ addr: number; kind: 'r' | 'w' }> {
  let x = seed;
  for (let i = 0; i < accesses; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    yield { addr: 0x4000_0000 + (x % (64 << 20)), kind: (x & 3) === 0 ? 'w' : 'r' };
  }
}

try {
  const traces = [];
  for (const seed of [1, 2]) {
    const path = join(dir, `t${seed}.ptr`);
    await writeTrace(path, 'raw', randomAccesses(seed));
    traces.push({ path });
  }
  const config: SweepConfig = { traces, tlb: ['skylake', 'tiny'], pages: ['4k', 'thp', 'mthp-64k'] };
  const time = async (workers: number): Promise<{ s: number; cells: string }> => {
    const t = performance.now();
    const r = await runSweep(config, { workers });
    return { s: (performance.now() - t) / 1000, cells: JSON.stringify(r.cells.map((c) => [c.summary.walks, c.summary.walkRefs, c.summary.faults])) };
  };
  await time(2);                                     // warm-up: worker start-up, file cache
  const one = await time(1), two = await time(2);
  if (one.cells !== two.cells) throw new Error('verification failed: 1 and 2 workers disagree on some cell');
  console.log(`sweep of 12 replays × ${accesses} accesses: 1 worker ${one.s.toFixed(2)} s, 2 workers ${two.s.toFixed(2)} s: ${(one.s / two.s).toFixed(2)}× faster (same numbers in every cell)`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
