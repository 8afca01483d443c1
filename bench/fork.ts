/**
 * `npm run bench:fork [-- --quick]`: fork of a process with 1 GiB of written
 * private anonymous memory, as 4 KiB pages and as THP, in ns per 4 KiB page:
 * fork alone (the child exits untimed) and fork + child exit. The WASM core
 * and the naive TypeScript peer run interleaved in one process, so their
 * ratio holds on a noisy machine; best and median of the rounds are printed.
 * The C peer (bench/peers/native.c) runs right after, in its own process.
 * Each round checks the work was done: the child maps every page.
 */
import { Machine, type Process } from '../src/index.js';
import { NaivePageTables, RANGE_START, PAGE_SIZE } from './peers/naive.js';
import { runNativePeer } from './peers/native.js';
import { formatTable, num, ratio } from './table.js';

const quick = process.argv.includes('--quick');
const pages = quick ? 65536 : 262144;
const rounds = quick ? 5 : 9;

/** A subject: fork + child exit; `fork` (fork alone, returning what exits the child) where the two can be split. */
interface Case { label: string; fork?: () => () => void; forkExit: () => void }

function check(what: string, got: number, want: number): void {
  if (got !== want) throw new Error(`verification failed: ${what}: got ${got}, expected ${want}`);
}

async function wasmCase(thp: boolean): Promise<Case> {
  const m = await Machine.create({ memory: pages * PAGE_SIZE * 4, thp: thp ? 'always' : 'never', tlb: 'none' });
  const p = m.spawn();
  const a = p.mmap({ length: pages * PAGE_SIZE, prot: 'rw' });
  p.touch(a.start, a.length, 'w', 1);
  const fork = (): Process => {
    const c = p.fork();
    check('child rss', c.rss.anon, pages);
    return c;
  };
  return {
    label: `WASM ${thp ? 'THP' : '4K'}`,
    fork: () => { const c = fork(); return () => c.exit(); },
    forkExit: () => { fork().exit(); },
  };
}

function naiveCase(): Case {
  const t = new NaivePageTables(pages * 3);
  t.faultIn(RANGE_START, pages);
  return {
    label: 'naive TS 4K',
    forkExit: () => {
      const child = t.fork(RANGE_START, pages);
      check('naive: frames shared', t.frame(t.walkFirstPfn(RANGE_START))!.refcount, 2);
      t.forkExit(child, RANGE_START, pages);
    },
  };
}

interface Stat { best: number; median: number }

/** ns per page of each round's timed part; `after` (untimed) runs what the timed part left to do. */
function sample(timed: () => (() => void) | void): Stat {
  const xs: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const t = performance.now();
    const after = timed();
    xs.push(((performance.now() - t) * 1e6) / pages);
    if (after) after();
  }
  xs.sort((x, y) => x - y);
  return { best: xs[0]!, median: xs[Math.floor(xs.length / 2)]! };
}

const cases = [await wasmCase(false), await wasmCase(true), naiveCase()];
const results = new Map<string, { fork: Stat | null; forkExit: Stat | null }>();
for (const c of cases) c.forkExit();                     // warm-up and verification, untimed
// Interleave the subjects round by round so that drift hits them all alike.
const acc = cases.map(() => ({ fork: [] as Stat[], forkExit: [] as Stat[] }));
for (let r = 0; r < 3; r++) {
  cases.forEach((c, i) => {
    if (c.fork) acc[i]!.fork.push(sample(c.fork));
    acc[i]!.forkExit.push(sample(c.forkExit));
  });
}
const best = (xs: Stat[]): Stat => ({ best: Math.min(...xs.map((x) => x.best)), median: xs.map((x) => x.median).sort((a, b) => a - b)[1]! });
cases.forEach((c, i) => results.set(c.label, { fork: c.fork ? best(acc[i]!.fork) : null, forkExit: best(acc[i]!.forkExit) }));

// The C peer (a port of CopyOp's common path) times fork alone; it has no exit_mmap, so no fork + exit.
const native = await runNativePeer(pages, 3 * rounds);
if (native.result) results.set('C 4K', { fork: { best: native.result.fork, median: native.result.fork }, forkExit: null });

const base = results.get('WASM 4K')!;
const cell = (x: Stat | null): string => (x ? `${num(x.best)} (${num(x.median)})` : '—');
const rows = [...results].map(([label, r]) => [
  label, cell(r.fork), cell(r.forkExit), ratio(r.fork?.median, base.fork?.median), ratio(r.forkExit?.median, base.forkExit?.median),
]);
console.log(`fork of ${pages} written 4 KiB pages (${(pages * PAGE_SIZE) / 2 ** 20} MiB), ns per page, best (median) of ${3 * rounds}`);
console.log(formatTable(['subject', 'fork', 'fork + child exit', 'fork vs WASM 4K (medians)', 'fork+exit vs WASM 4K (medians)'], rows));
console.log(native.result ? `C peer: ${native.note}; its figure is the median of ${3 * rounds} forks` : `C peer unavailable: ${native.note}`);
