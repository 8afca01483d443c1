/**
 * `npm run bench:scale`: one Machine holding a 64 GiB range mapped with 4 KiB
 * pages (every page written, so 16M frames) and a 1 TiB range mapped with
 * PMD leaves (read-faulted: the huge zero page, as the kernel maps it on a
 * read, each PMD with its deposited PTE table), then random-access replays
 * over each in model mode, printing throughput, TLB behaviour and the memory
 * the emulation uses (page tables at 8 bytes per entry, 16 bytes per frame).
 */
import { Machine, Trace } from '../src/index.js';

const GiB = 2 ** 30;
const TiB = 2 ** 40;

function mib(bytes: number): string { return `${(bytes / 2 ** 20).toFixed(0)} MiB`; }

const t0 = performance.now();
const m = await Machine.create({ memory: '128GiB', swap: 0, thp: 'madvise', tlb: 'skylake' });
const p = m.spawn();
const small = p.mmap({ length: 64 * GiB, prot: 'rw' });
const huge = p.mmap({ length: TiB, prot: 'rw' });
p.madvise(huge.start, huge.length, 'hugepage');
console.log(`machine: 128 GiB of frames (${m.stats.frames} descriptors), created in ${(performance.now() - t0).toFixed(0)} ms`);

let t = performance.now();
const w = p.touch(small.start, small.length, 'w', 1);
console.log(`64 GiB 4K: ${w.pages} pages written in ${((performance.now() - t) / 1000).toFixed(1)} s`);
t = performance.now();
// One read per 2 MiB faults in every PMD leaf.
const perPmd = new Trace(huge.length / (2 * 2 ** 20));
for (let a = huge.start; a < huge.end; a += 2 * 2 ** 20) perPmd.push(a, 'r');
m.replay(p, perPmd);
console.log(`1 TiB THP: ${perPmd.length} PMDs read-faulted (huge zero page) in ${((performance.now() - t) / 1000).toFixed(1)} s; PMD leaves ${p.scan(huge.start, huge.length).pmdLeaves}`);

const s = m.stats;
console.log(`page tables: ${mib(p.pageTableBytes)} (${p.pageTableBytes / 4096} tables); frames in use: ${((s.frames - s.freeFrames) * 4096 / GiB).toFixed(1)} GiB; WebAssembly memory: ${mib(s.wasmMemoryBytes)} (core heap ${mib(s.heapBytes)})`);

for (const [name, range] of [['64 GiB 4K', small], ['1 TiB THP', huge]] as const) {
  const trace = Trace.random({ start: range.start, length: range.length, count: 4_000_000, seed: 11 });
  m.replay(p, trace);                       // warm-up: V8 tiers the replay loop up between calls
  t = performance.now();
  const st = m.replay(p, trace);
  const ms = performance.now() - t;
  const tlb = st.tlb!;
  const hits = Object.values(tlb.l1Hits).reduce((a, b) => a + b, 0) + Object.values(tlb.l2Hits).reduce((a, b) => a + b, 0);
  console.log(`${name}: ${(st.accesses / ms / 1000).toFixed(1)} M accesses/s; TLB hit rate ${(100 * hits / st.accesses).toFixed(2)}%; walks ${tlb.walks}; walk memory references per access ${(tlb.walkRefs / st.accesses).toFixed(2)}`);
}
