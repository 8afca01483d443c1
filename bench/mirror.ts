/**
 * `npm run bench:mirror [-- --quick]`: the seed's device mirror over 1 GiB of
 * written anonymous memory (262,144 pages), in ns per page:
 *
 * - fault: a device read fault of the whole range into an empty mirror
 *   (mirror.fault: walk of the CPU tables, mirror directories allocated and
 *   filled), with 4 KiB pages and with THP (each PMD filled as 512 entries);
 * - invalidate: an mmu notifier invalidation of the whole range
 *   (m.kernel.invalidateRange, event 'clear'): every entry cleared, every
 *   directory pruned.
 *
 * Also the mirror's page-table memory per GiB mirrored. The WASM core and the
 * naive TypeScript peer run interleaved in one process; the C peer
 * (bench/peers/native.c, the same mirror and walk ported) runs after, in its
 * own process. Every timed call's result is checked.
 */
import { Machine, type Process, type Mirror } from '../src/index.js';
import { NaivePageTables, RANGE_START, PAGE_SIZE } from './peers/naive.js';
import { runNativePeer } from './peers/native.js';
import { formatTable, num, ratio } from './table.js';
import { interleave, single, type Subject } from './interleave.js';

const quick = process.argv.includes('--quick');
const pages = quick ? 65536 : 262144;
const rounds = quick ? 5 : 9;
const GiB = 2 ** 30;

type Op = 'fault4k' | 'invalidate4k' | 'faultThp' | 'invalidateThp';
const OPS: Op[] = ['fault4k', 'invalidate4k', 'faultThp', 'invalidateThp'];

function check(what: string, got: number, want: number): void {
  if (got !== want) throw new Error(`verification failed: ${what}: got ${got}, expected ${want}`);
}

function timed(fn: () => void): number {
  (globalThis as { gc?: () => void }).gc?.();
  const t = performance.now();
  fn();
  return ((performance.now() - t) * 1e6) / pages;
}

/** Directory bytes per GiB mirrored, for the table (taken from the WASM mirror once filled). */
const memoryPerGiB: Record<string, number> = {};

async function wasmSubject(): Promise<Subject<Op>> {
  const setup = async (thp: boolean): Promise<{ m: Machine; p: Process; mir: Mirror; start: number }> => {
    const m = await Machine.create({ memory: pages * PAGE_SIZE * 3, tlb: 'none', thp: thp ? 'always' : 'never' });
    const p = m.spawn();
    const a = p.mmap({ length: pages * PAGE_SIZE, prot: 'rw', addr: 0x4000_0000 });
    check('touch', p.touch(a.start, a.length, 'w', 1).ok ? 1 : 0, 1);
    return { m, p, mir: m.device('gpu').mirror(p), start: a.start };
  };
  const small = await setup(false), huge = await setup(true);
  const ops = (s: typeof small, label: string): [() => number, () => number] => [
    () => {
      const ns = timed(() => s.mir.fault(s.start, pages, 'r'));
      const st = s.mir.stats;
      check(`${label} mirror entries`, st.validEntries, pages);
      memoryPerGiB[label] = (st.bytes * GiB) / (pages * PAGE_SIZE);
      return ns;
    },
    () => {
      const ns = timed(() => s.m.kernel.invalidateRange(s.p, s.start, s.start + pages * PAGE_SIZE, 'clear'));
      check(`${label} entries after invalidation`, s.mir.stats.validEntries, 0);
      check(`${label} directories after invalidation`, s.mir.stats.directories, 0);
      return ns;
    },
  ];
  const [fault4k, invalidate4k] = ops(small, '4K'), [faultThp, invalidateThp] = ops(huge, 'THP');
  return { label: 'WASM', run: { fault4k, invalidate4k, faultThp, invalidateThp } };
}

function naiveSubject(): Subject<Op> {
  const small = new NaivePageTables(pages * 3);
  small.faultIn(RANGE_START, pages);
  const huge = new NaivePageTables(pages * 3);
  huge.faultIn(RANGE_START, pages, { thp: true });
  const ops = (t: NaivePageTables, label: string): [() => number, () => number] => [
    () => { let n = 0; const ns = timed(() => { n = t.mirrorFault(RANGE_START, pages); }); check(`naive ${label} filled`, n, pages); return ns; },
    () => { let n = 0; const ns = timed(() => { n = t.mirrorInvalidate(RANGE_START, pages); }); check(`naive ${label} cleared`, n, pages); return ns; },
  ];
  const [fault4k, invalidate4k] = ops(small, '4K'), [faultThp, invalidateThp] = ops(huge, 'THP');
  return { label: 'naive TS', run: { fault4k, invalidate4k, faultThp, invalidateThp } };
}

// Two warm-up rounds: V8 tiers up the WASM and the JavaScript.
const results = interleave([await wasmSubject(), naiveSubject()], OPS, rounds, 2);
const native = await runNativePeer(pages, rounds);
if (native.result) {
  const n = native.result;
  results.set('C', single({ fault4k: n.mirrorFault, invalidate4k: n.mirrorInvalidate, faultThp: n.mirrorFaultThp, invalidateThp: n.mirrorInvalidateThp }));
}

const wasm = results.get('WASM')!;
const rows = [...results].map(([label, r]) => [label, ...OPS.map((op) => `${num(r[op].best)} (${num(r[op].median)})`), ...OPS.map((op) => ratio(r[op].median, wasm[op].median))]);
console.log(`device mirror over ${pages} pages (${(pages * PAGE_SIZE) / 2 ** 20} MiB), ns per page, best (median) of ${rounds}`);
console.log(formatTable(['subject', 'fault 4K', 'invalidate 4K', 'fault THP', 'invalidate THP', 'fault 4K vs WASM', 'inval 4K vs WASM', 'fault THP vs WASM', 'inval THP vs WASM'], rows));
console.log(`mirror page tables per GiB mirrored: 4K ${num(memoryPerGiB['4K']! / 2 ** 20)} MiB, THP ${num(memoryPerGiB['THP']! / 2 ** 20)} MiB (the seed: about 2 MiB of leaf directories per GiB)`);
const c = results.get('C');
console.log(`C time / WASM time (medians): ${c ? OPS.map((op) => `${op} ${num(c[op].median / wasm[op].median)}`).join(', ') : '—'}`);
console.log(native.result ? `C peer: ${native.note}; median of ${rounds}` : `C peer unavailable: ${native.note}`);
