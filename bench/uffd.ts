/**
 * `npm run bench:uffd [-- --quick]`: userfaultfd write-protect tracking over
 * 1 GiB of written anonymous memory (262,144 PTEs), in ns per page:
 *
 * - protect: UFFDIO_WRITEPROTECT of the whole registered range, every page
 *   present and writable (each gets uffd-wp and loses write permission), one
 *   batched flush at the end;
 * - scan: PAGEMAP_SCAN with WP_MATCHING, category and return mask WRITTEN,
 *   over the range in async mode with 1% of the pages written since the last
 *   round (every 100th): those pages are reported as regions and protected
 *   again.
 *
 * The WASM core (through the public API: u.writeProtect, p.pagemapScan with
 * its region objects) and the naive TypeScript peer run interleaved in one
 * process; the C peer (bench/peers/native.c, the same ops ported) runs after,
 * in its own process. Setup between the timed calls is untimed and every
 * timed call's count is checked. The host kernel takes ~75 ns/page for the
 * protect and ~3 ns/page for the scan (measured with the C probes' calls).
 */
import { Machine, type Process, type Userfaultfd } from '../src/index.js';
import { NaivePageTables, RANGE_START, PAGE_SIZE } from './peers/naive.js';
import { runNativePeer } from './peers/native.js';
import { formatTable, num, ratio } from './table.js';
import { interleave, single, type Subject } from './interleave.js';

const quick = process.argv.includes('--quick');
const pages = quick ? 65536 : 262144;
const rounds = quick ? 5 : 9;
const STRIDE = 100;                                    // 1% written: every 100th page
const written = Math.ceil(pages / STRIDE);

type Op = 'protect' | 'scan';
const OPS: Op[] = ['protect', 'scan'];

function check(what: string, got: number, want: number): void {
  if (got !== want) throw new Error(`verification failed: ${what}: got ${got}, expected ${want}`);
}

function timed(fn: () => number, want: number, what: string): number {
  (globalThis as { gc?: () => void }).gc?.();           // the setup's garbage is not collected on the clock
  const t = performance.now();
  const n = fn();
  const ns = ((performance.now() - t) * 1e6) / pages;
  check(what, n, want);
  return ns;
}

async function wasmSubject(): Promise<Subject<Op>> {
  const m = await Machine.create({ memory: pages * PAGE_SIZE * 3, tlb: 'none' });
  const p: Process = m.spawn();
  const a = p.mmap({ length: pages * PAGE_SIZE, prot: 'rw' });
  check('touch', p.touch(a.start, a.length, 'w', 1).ok ? 1 : 0, 1);
  const sync: Userfaultfd = p.userfaultfd();
  sync.register(a.start, a.length);
  // The scan runs on a second mapping tracked by an async context, as a process tracking its own writes does.
  const b = p.mmap({ length: pages * PAGE_SIZE, prot: 'rw' });
  check('touch', p.touch(b.start, b.length, 'w', 1).ok ? 1 : 0, 1);
  const tracker = p.userfaultfd({ features: ['wp-async', 'wp-unpopulated'] });
  tracker.register(b.start, b.length);
  tracker.writeProtect(b.start, b.length, true);
  const scanOpts = { start: b.start, end: b.end, wpMatching: true, categoryMask: ['written' as const], returnMask: ['written' as const], maxRegions: written };
  return {
    label: 'WASM',
    run: {
      protect: () => {
        sync.writeProtect(a.start, a.length, false);                 // untimed: every page writable again
        return timed(() => sync.writeProtect(a.start, a.length, true), pages, 'writeProtect');
      },
      scan: () => {
        for (let i = 0; i < pages; i += STRIDE) p.write(b.start + i * PAGE_SIZE, i);   // async: the bit goes, no message
        return timed(() => p.pagemapScan(scanOpts).regions.length, written, 'pagemapScan regions');
      },
    },
  };
}

function naiveSubject(): Subject<Op> {
  const t = new NaivePageTables(pages * 3);
  t.faultIn(RANGE_START, pages);
  return {
    label: 'naive TS',
    run: {
      protect: () => {
        t.uffdWriteProtect(RANGE_START, pages, false);
        return timed(() => t.uffdWriteProtect(RANGE_START, pages, true), pages, 'naive writeProtect');
      },
      scan: () => {
        t.uffdWriteProtect(RANGE_START, pages, true);
        t.writeEvery(RANGE_START, pages, STRIDE);
        return timed(() => t.scanWritten(RANGE_START, pages, true).length, written, 'naive scan regions');
      },
    },
  };
}

// Three warm-up rounds: V8 tiers up both the WASM and the JavaScript that builds the scan's regions.
const results = interleave([await wasmSubject(), naiveSubject()], OPS, rounds, 3);
const native = await runNativePeer(pages, rounds);
if (native.result) results.set('C', single({ protect: native.result.uffdProtect, scan: native.result.scanWritten1 }));

const wasm = results.get('WASM')!;
const rows = [...results].map(([label, r]) => [label, ...OPS.map((op) => `${num(r[op].best)} (${num(r[op].median)})`), ...OPS.map((op) => ratio(r[op].median, wasm[op].median))]);
console.log(`userfaultfd write-protect tracking over ${pages} pages (${(pages * PAGE_SIZE) / 2 ** 20} MiB), ns per page, best (median) of ${rounds}`);
console.log(formatTable(['subject', 'writeProtect', 'scan WP_MATCHING 1%', 'protect vs WASM', 'scan vs WASM'], rows));
const c = results.get('C');
console.log(`targets: writeProtect ≤ 10 ns/page: ${num(wasm.protect.median)}; scan ≤ 3 ns/page: ${num(wasm.scan.median)}; C time / WASM time (medians): ${c ? OPS.map((op) => `${op} ${num(c[op].median / wasm[op].median)}`).join(', ') : '—'}`);
console.log(native.result ? `C peer: ${native.note}; median of ${rounds}` : `C peer unavailable: ${native.note}`);
