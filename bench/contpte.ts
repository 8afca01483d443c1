/**
 * `npm run bench:contpte [-- --quick]`: arm64 contiguous PTEs.
 *
 * 1. The contiguous-block census (m.kernel.contScan: folded / foldable /
 *    broken per 16-PTE block, 128 bits at a time) and the unfold of every
 *    block (m.kernel.unfoldRange: contpte_convert, flush included) over 1 GiB
 *    of folded 64 KiB mTHP, in ns per PTE: the WASM core and the naive
 *    TypeScript peer interleaved, the C peer (bench/peers/native.c, the same
 *    scan and convert on its own tables) after. Counts are checked each round.
 * 2. TLB reach: the same random trace replayed on neoverse-n1 over 1 GiB
 *    mapped with 4 KiB pages, with 64 KiB mTHP unfolded (contpte off), and
 *    with 64 KiB mTHP folded: walks per 1000 accesses and hit rates.
 */
import { Machine, Trace, type Process } from '../src/index.js';
import { NaivePageTables, RANGE_START, PAGE_SIZE } from './peers/naive.js';
import { runNativePeer } from './peers/native.js';
import { formatTable, num, ratio } from './table.js';
import { interleave, single, type Subject } from './interleave.js';

const quick = process.argv.includes('--quick');
const pages = quick ? 65536 : 262144;
const rounds = quick ? 5 : 9;
const blocks = pages / 16;

function check(what: string, got: number, want: number): void {
  if (got !== want) throw new Error(`verification failed: ${what}: got ${got}, expected ${want}`);
}

function time(fn: () => void): number {
  const t = performance.now();
  fn();
  return ((performance.now() - t) * 1e6) / pages;
}

type Op = 'scan' | 'unfold';

async function wasmSubject(): Promise<Subject<Op>> {
  const m = await Machine.create({ arch: 'arm64', memory: pages * PAGE_SIZE * 3, tlb: 'none', mthp: { '64K': 'always' } });
  const p: Process = m.spawn();
  const a = p.mmap({ length: pages * PAGE_SIZE, prot: 'rw', addr: 0x4000_0000 });
  p.touch(a.start, a.length, 'w', 1);
  return {
    label: 'WASM',
    run: {
      scan: () => {
        let r = { folded: 0 };
        const ns = time(() => { r = m.kernel.contScan(p, a.start, a.length); });
        check('folded blocks', r.folded, blocks);
        return ns;
      },
      unfold: () => {
        const before = m.stats.contpte.unfolds;
        const ns = time(() => m.kernel.unfoldRange(p, a.start, a.length));
        check('unfolds', m.stats.contpte.unfolds - before, blocks);
        // Untimed: mprotect commits every PTE again, and each block refolds at its last slot.
        p.mprotect(a.start, a.length, 'r');
        p.mprotect(a.start, a.length, 'rw');
        return ns;
      },
    },
  };
}

function naiveSubject(): Subject<Op> {
  const t = new NaivePageTables(pages * 3);
  t.faultIn(RANGE_START, pages);
  t.foldAll(RANGE_START, pages);
  return {
    label: 'naive TS',
    run: {
      scan: () => {
        let r = { folded: 0, foldable: 0, broken: 0 };
        const ns = time(() => { r = t.contScan(RANGE_START, pages); });
        check('naive folded blocks', r.folded, blocks);
        return ns;
      },
      unfold: () => {
        let n = 0;
        const ns = time(() => { n = t.unfoldAll(RANGE_START, pages); });
        check('naive unfolds', n, blocks);
        t.foldAll(RANGE_START, pages);
        return ns;
      },
    },
  };
}

// Four warm-up rounds: V8 optimises a WASM function in the background after it has run a while.
const results = interleave([await wasmSubject(), naiveSubject()], ['scan', 'unfold'], rounds, 4);
const native = await runNativePeer(pages, rounds);
if (native.result) results.set('C', single({ scan: native.result.contScan, unfold: native.result.contUnfold }));

const w = results.get('WASM')!;
console.log(`contiguous blocks over ${pages} PTEs (${(pages * PAGE_SIZE) / 2 ** 20} MiB, ${blocks} blocks), ns per PTE, best (median) of ${rounds}`);
console.log(formatTable(['subject', 'census (contScan)', 'unfold every block', 'census vs WASM', 'unfold vs WASM'],
  [...results].map(([label, r]) => [label, `${num(r.scan.best)} (${num(r.scan.median)})`, `${num(r.unfold.best)} (${num(r.unfold.median)})`, ratio(r.scan.median, w.scan.median), ratio(r.unfold.median, w.unfold.median)])));
const c = results.get('C');
console.log(`target ≥ 1.0× the C peer's speed (C time / WASM time, medians): ${c ? `census ${num(c.scan.median / w.scan.median)}, unfold ${num(c.unfold.median / w.unfold.median)}` : '—'}`);
console.log(native.result ? `C peer: ${native.note}; median of ${rounds}` : `C peer unavailable: ${native.note}`);

// ---- TLB reach ----------------------------------------------------------------------------

const accesses = quick ? 500_000 : 2_000_000;
const reachRows: string[][] = [];
for (const span of [pages * PAGE_SIZE, 64 * 2 ** 20]) {
  const trace = Trace.random({ start: 0x4000_0000, length: span, count: accesses, seed: 7 });
  const row = async (label: string, mthp: boolean, contpte: boolean): Promise<{ label: string; walks: number; l1: number; l2: number }> => {
    const m = await Machine.create({ arch: 'arm64', memory: pages * PAGE_SIZE * 3, tlb: 'neoverse-n1', contpte, ...(mthp ? { mthp: { '64K': 'always' } } : {}) });
    const p = m.spawn();
    const a = p.mmap({ length: pages * PAGE_SIZE, prot: 'rw', addr: 0x4000_0000 });
    p.touch(a.start, a.length, 'w', 1);
    m.replay(p, trace);                                        // warm the TLBs
    const s = m.replay(p, trace);
    const t = s.tlb!;
    const sum = (o: Record<string, number>): number => Object.values(o).reduce((x, y) => x + y, 0);
    return { label, walks: (t.walks / s.accesses) * 1000, l1: sum(t.l1Hits) / s.accesses, l2: sum(t.l2Hits) / s.accesses };
  };
  const base = await row('4 KiB pages', false, false);
  for (const r of [base, await row('64 KiB mTHP, contpte off', true, false), await row('64 KiB mTHP, contpte on', true, true)]) {
    reachRows.push([`${(span / 2 ** 20).toFixed(0)} MiB`, r.label, num(r.walks, 1), `${num(r.l1 * 100, 1)}%`, `${num(r.l2 * 100, 1)}%`, r.walks === 0 ? 'no walks left' : ratio(base.walks, r.walks)]);
  }
}
console.log(`\nTLB reach on neoverse-n1 (48-entry L1 dTLB, 1280-entry L2), ${accesses} random reads over the span, after one warm-up pass`);
console.log(formatTable(['span', 'mapping', 'walks / 1k accesses', 'L1 hits', 'L2 hits', 'fewer walks than 4K'], reachRows));
