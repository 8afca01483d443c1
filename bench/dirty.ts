/**
 * `npm run bench:dirty [-- --quick]`: the dirty-tracking helpers over 1 GiB
 * of shared mapping (262,144 PTEs), in ns per PTE: writeProtect
 * (wp_shared_mapping_range) with 1% and 100% of the PTEs writable, and
 * cleanRecord (clean_record_shared_mapping_range) with 1% and 100% dirty.
 * The WASM core (through the public File API, bitmap round trip included)
 * and the naive TypeScript peer run interleaved in one process; the C peer
 * (bench/peers/native.c, the same op and staging ported) runs after, in its
 * own process. Setup between the timed calls (re-dirtying, re-enabling
 * writes) is untimed and every timed call's count is checked.
 */
import { Machine, type Process, type File } from '../src/index.js';
import { NaivePageTables, RANGE_START, PAGE_SIZE } from './peers/naive.js';
import { runNativePeer } from './peers/native.js';
import { formatTable, num, ratio } from './table.js';
import { interleave, single, type Subject } from './interleave.js';

const quick = process.argv.includes('--quick');
const pages = quick ? 65536 : 262144;
const rounds = quick ? 5 : 9;
const STRIDE = 100;                                    // 1%: every 100th page
const sparse = Math.ceil(pages / STRIDE);

type Op = 'wp1' | 'wp100' | 'clean1' | 'clean100';
const OPS: Op[] = ['wp1', 'wp100', 'clean1', 'clean100'];


function check(what: string, got: number, want: number): void {
  if (got !== want) throw new Error(`verification failed: ${what}: got ${got}, expected ${want}`);
}

function timed(fn: () => number, want: number, what: string): number {
  const t = performance.now();
  const n = fn();
  const ns = ((performance.now() - t) * 1e6) / pages;
  check(what, n, want);
  return ns;
}

async function wasmSubject(): Promise<Subject<Op>> {
  const m = await Machine.create({ memory: pages * PAGE_SIZE * 3, tlb: 'none' });
  const f: File = m.memfd({ size: pages * PAGE_SIZE });
  const p: Process = m.spawn();
  const a = p.mmap({ file: f, shared: true, length: pages * PAGE_SIZE, prot: 'rw' });
  const everyHundredth = (): void => { for (let i = 0; i < pages; i += STRIDE) p.write(a.start + i * PAGE_SIZE, i); };
  const all = (): void => { check('touch', p.touch(a.start, a.length, 'w', 1).ok ? 1 : 0, 1); };
  const clean = (want: number): number => timed(() => {
    const r = f.cleanRecord(0, pages);
    check('bit 0', (r.bitmap as Uint8Array)[0]! & 1, 1);
    return r.cleaned;
  }, want, 'cleanRecord');
  return {
    label: 'WASM',
    run: {
      // Each setup makes exactly the state its call needs; a write to a write-protected page refaults it writable.
      wp100: () => { all(); return timed(() => f.writeProtect(0, pages), pages, 'writeProtect'); },
      wp1: () => { all(); f.writeProtect(0, pages); everyHundredth(); return timed(() => f.writeProtect(0, pages), sparse, 'writeProtect'); },
      clean100: () => { all(); return clean(pages); },
      clean1: () => { all(); f.cleanRecord(0, pages); everyHundredth(); return clean(sparse); },
    },
  };
}

function naiveSubject(): Subject<Op> {
  const t = new NaivePageTables(pages * 3);
  t.faultIn(RANGE_START, pages);
  const bitmap = new Uint8Array(Math.ceil(pages / 8));
  const clean = (stride: number, want: number): number => {
    t.setBits(RANGE_START, pages, stride, { write: false, dirty: true });
    bitmap.fill(0);
    return timed(() => { const r = t.cleanRecord(RANGE_START, pages, bitmap); check('naive bit 0', bitmap[0]! & 1, 1); return r.total; }, want, 'naive cleanRecord');
  };
  const wp = (stride: number, want: number): number => {
    t.setBits(RANGE_START, pages, stride, { write: true, dirty: false });
    return timed(() => t.writeProtect(RANGE_START, pages).total, want, 'naive writeProtect');
  };
  return {
    label: 'naive TS',
    run: { wp1: () => wp(STRIDE, sparse), wp100: () => wp(1, pages), clean1: () => clean(STRIDE, sparse), clean100: () => clean(1, pages) },
  };
}

const results = interleave([await wasmSubject(), naiveSubject()], OPS, rounds);
const native = await runNativePeer(pages, rounds);
if (native.result) {
  const n = native.result;
  results.set('C', single({ wp1: n.wp1, wp100: n.wp100, clean1: n.clean1, clean100: n.clean100 }));
}

const wasm = results.get('WASM')!;
const rows = [...results].map(([label, r]) => [label, ...OPS.map((op) => `${num(r[op].best)} (${num(r[op].median)})`), ...OPS.map((op) => ratio(r[op].median, wasm[op].median))]);
console.log(`dirty tracking over ${pages} PTEs (${(pages * PAGE_SIZE) / 2 ** 20} MiB shared mapping), ns per PTE, best (median) of ${rounds}`);
console.log(formatTable(['subject', 'wp 1%', 'wp 100%', 'clean 1%', 'clean 100%', 'wp 1% vs WASM', 'wp 100% vs WASM', 'clean 1% vs WASM', 'clean 100% vs WASM'], rows));
const c = results.get('C');
console.log(`targets: cleanRecord at 1% dirty ≤ 3 ns/PTE: ${num(wasm.clean1.median)}; speed ≥ 0.8× the C peer (C time / WASM time, medians): ${c ? OPS.map((op) => `${op} ${num(c[op].median / wasm[op].median)}`).join(', ') : '—'}`);
console.log(native.result ? `C peer: ${native.note}; median of ${rounds}` : `C peer unavailable: ${native.note}`);
