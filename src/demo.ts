// The guided tour printed by `ptemu demo` (and `npm start`): one short
// scenario per mechanism, each told in kernel terms, with the entries,
// frames and counters a kernel engineer would look at.

import { Machine } from './machine.js';
import { decodeHmmPfn } from './hmm.js';
import type { Process } from './process.js';
import { describeEntry } from './dump.js';

type Out = (line: string) => void;

const hex = (n: number | bigint): string => `0x${n.toString(16)}`;

function entryLine(p: Process, addr: number): string {
  const e = p.entry(addr);
  const pm = p.pagemap(addr);
  const bits = [pm.present && 'present', pm.swapped && 'swapped', pm.file && 'file', pm.exclusive && 'exclusive', pm.softDirty && 'soft-dirty', pm.uffdWp && 'uffd-wp']
    .filter(Boolean).join(',');
  const where = e.kind === 'present' ? ` pfn ${hex(e.pfn!)}` : e.kind === 'swap' ? ` slot ${e.swapOffset}` : e.kind === 'marker' ? ` ${e.markers!.join(',')}` : '';
  return `${hex(addr)}  ${e.level} ${hex(e.raw).padEnd(18)} ${e.kind === 'present' ? describeEntry(e) : e.kind}${where}   pagemap: ${bits || '-'}`;
}

export async function runDemo(out: Out = (l) => console.log(l)): Promise<void> {
  const h = (title: string): void => { out(''); out(`== ${title}`); };
  const m = await Machine.create({ arch: 'x86_64', memory: '1GiB', thp: 'madvise' });
  out(`ptemu: x86-64, 4-level page tables, ${m.stats.frames} frames of 4 KiB, swap ${m.stats.swapSlots} slots, THP ${m.options.thp}`);
  const p = m.spawn();

  h('1. mmap + faults: the zero page on read, a new frame on write');
  const a = p.mmap({ length: '64KiB', prot: 'rw' });
  out(`mmap(64 KiB, rw, private anon) = ${hex(a.start)}  (placed top-down below mmap_base)`);
  p.read(a.start);
  p.write(a.start + 4096, 0xc0ffee);
  out(entryLine(p, a.start) + '   <- read fault: shared zero page, special, read-only');
  out(entryLine(p, a.start + 4096) + '   <- write fault: new exclusive anon page');
  out(`rss ${JSON.stringify(p.rss)}, page tables ${p.pageTableBytes} bytes, faults ${JSON.stringify(p.faults)}`);

  h('2. mprotect keeps the frame: RO, PROT_NONE (x86 stores its pfn inverted), back to RW');
  p.mprotect(a.start + 4096, 4096, 'r');
  out(entryLine(p, a.start + 4096) + '   <- mprotect(r)');
  const denied = p.write(a.start + 4096, 1);
  out(`write -> ${denied.ok ? 'ok' : `${denied.signal} (${denied.code})`}`);
  p.mprotect(a.start + 4096, 4096, 'none');
  out(entryLine(p, a.start + 4096) + '   <- mprotect(none): still "present" in pagemap');
  p.mprotect(a.start + 4096, 4096, 'rw');
  out(entryLine(p, a.start + 4096) + '   <- mprotect(rw): writable at once (exclusive anon, no fault needed)');

  h('3. MADV_PAGEOUT, then swap-in through the swap cache');
  const before = p.entry(a.start + 4096).pfn!;
  p.madvise(a.start, a.length, 'pageout');
  out(entryLine(p, a.start + 4096) + `   <- frame ${hex(before)} freed: ${m.frame(before).kind}`);
  const back = p.read(a.start + 4096);
  out(`read -> tag ${back.ok ? hex(back.tag) : back.signal} (major faults: ${p.faults.major})`);
  out(entryLine(p, a.start + 4096) + '   <- mapped writable, kept in the swap cache');

  h('4. A memfd shared by two processes, and a private copy-on-write view of it');
  const f = m.memfd({ size: '16KiB' });
  const q = m.spawn();
  const s1 = p.mmap({ file: f, shared: true, length: '16KiB', prot: 'rw' });
  const s2 = q.mmap({ file: f, shared: true, length: '16KiB', prot: 'rw' });
  const pr = q.mmap({ file: f, length: '16KiB', prot: 'rw' });
  p.write(s1.start, 111);
  out(`p writes 111; q reads ${(q.read(s2.start) as { tag: number }).tag} through its shared mapping`);
  q.write(pr.start, 222);
  p.write(s1.start, 333);
  out(`q's private mapping after its own write reads ${(q.read(pr.start) as { tag: number }).tag}; the shared page now holds ${(q.read(s2.start) as { tag: number }).tag}`);
  out(entryLine(q, s2.start) + '   <- shared page-cache page');
  out(entryLine(q, pr.start) + '   <- private copy');

  h('5. THP: one PMD leaf, split when mprotect touches a single 4 KiB page');
  const t = p.mmap({ length: '2MiB', prot: 'rw' });
  p.madvise(t.start, t.length, 'hugepage');
  p.write(t.start, 1);
  out(entryLine(p, t.start) + '   <- 2 MiB folio mapped by one PMD');
  p.mprotect(t.start + 4096, 4096, 'r');
  out(entryLine(p, t.start) + '   <- after mprotect of one page: 512 PTEs, same frames');

  h('6. TLBs: a stale writable entry outlives a write-protect until the flush reaches the CPU');
  const m2 = await Machine.create({ arch: 'x86_64', memory: '256MiB', cpus: 2, tlb: 'skylake' });
  const r = m2.spawn();
  const ra = r.mmap({ length: '4KiB', prot: 'rw' });
  r.write(ra.start, 1, { cpu: 1 });
  const pte = r.entry(ra.start);
  out(`C1 wrote the page: C1's TLB holds ${JSON.stringify(m2.cpu(1).tlb.lookup(r, ra.start))}`);
  m2.kernel.setEntry(r, ra.start, m2.arch.makePte({ pfn: pte.pfn!, write: false, dirty: true }));
  const stale = m2.cpu(1).write(r, ra.start, 2);
  out(`C0 write-protects the PTE without a flush; C1 writes again: ${stale.ok ? `completes from ${stale.hit}, no fault` : 'faults'}; PTE still ${describeEntry(r.entry(ra.start))}`);
  m2.kernel.flushTlbPage(r, ra.start);
  const after = m2.cpu(1).write(r, ra.start, 3);
  out(`after flush_tlb_page reaches C1: the write takes ${after.faults} fault(s); flush log: ${JSON.stringify(m2.flushLog.at(-1))}`);

  h('7. fork with a DMA pin: the pinned page is copied into the child at fork, the rest is shared copy-on-write');
  const par = m.spawn();
  const d = par.mmap({ length: '16KiB', prot: 'rw' });
  par.touch(d.start, d.length, 'w', 0xd0);
  const pin = m.pin(par, d.start + 4096, 1, { write: true });
  const child = par.fork();
  out(`parent ${entryLine(par, d.start + 4096)}   <- pinned: stays writable, same frame`);
  out(`child  ${entryLine(child, d.start + 4096)}   <- copied at fork (${par.lastFork.earlyCopies} early copy, ${par.lastFork.retries} prealloc retry)`);
  out(`child  ${entryLine(child, d.start)}   <- unpinned: shared read-only`);
  pin.dmaWrite(0, 0xd11a);
  const pr1 = par.read(d.start + 4096), cr1 = child.read(d.start + 4096);
  out(`device writes 0xd11a through the pin: parent reads ${pr1.ok ? hex(pr1.tag) : '?'}, child reads ${cr1.ok ? hex(cr1.tag) : '?'}`);
  pin.unpin();
  child.exit();
  par.exit();

  h('8. Dirty tracking of a shared buffer: clean-and-record, and the stale-TLB race in its thread');
  const m3 = await Machine.create({ arch: 'x86_64', memory: '256MiB', cpus: 2, tlb: 'skylake' });
  const buf = m3.file({ size: '32KiB', pageMkwrite: true });
  const gpu = m3.spawn();
  const g = gpu.mmap({ file: buf, shared: true, length: '32KiB', prot: 'rw' });
  for (const i of [2, 5]) gpu.write(g.start + i * 4096, 0x200 + i);
  gpu.write(g.start + 6 * 4096, 0x206, { cpu: 1 });
  out(`pages 2, 5 written on C0 and 6 on C1 (C1 now caches page 6 writable and dirty); page_mkwrite calls: ${buf.stats.pageMkwrite}`);
  const rec = buf.cleanRecord(0, 8, {
    onStep: (st) => {
      if (st.kind === 'entry' && st.start === g.start + 6 * 4096) {
        const w = m3.cpu(1).write(gpu, g.start + 6 * 4096, 0xbeef);
        const e6 = gpu.entry(g.start + 6 * 4096);
        out(`  step: PTE 6 cleaned, not yet flushed; C1 writes 0xbeef: ${w.ok ? `completes from ${w.hit}` : 'faults'}, PTE 6 stays ${e6.dirty ? 'dirty' : 'clean'} (${describeEntry(e6)})`);
      }
      if (st.kind === 'flush') out(`  step: flush_tlb_range ${hex(st.start)}-${hex(st.end)} (only the PTEs that changed)`);
    },
  });
  const bitsSet = [...(rec.bitmap as Uint8Array)].flatMap((b, i) => [0, 1, 2, 3, 4, 5, 6, 7].filter((k) => b & (1 << k)).map((k) => i * 8 + k));
  out(`clean_record_shared_mapping_range -> ${rec.cleaned} cleaned, bits ${bitsSet.join(',')}, [start, end) = [${rec.start}, ${rec.end})`);
  const six = buf.lookup(6);
  out(`page 6 reads clean afterwards, yet holds ${six.state === 'page' ? hex(m3.frame(six.pfn).tag) : '?'}: recorded, so a caller that copies after return has it`);
  out(`notifier calls: ${m3.notifierLog.map((n) => `${n.event} ${n.phase}`).join(', ')}`);

  h('9. arm64 contiguous PTEs: a 64 KiB mTHP folio folded into one block, one TLB entry, unfolded by a partial change');
  const m4 = await Machine.create({ arch: 'arm64', memory: '256MiB', cpus: 2, tlb: 'neoverse-n1', mthp: { '64K': 'always' } });
  const r4 = m4.spawn();
  const c4 = r4.mmap({ length: '64KiB', prot: 'rw', addr: 0x4000_0000 });
  r4.write(c4.start + 0x5000, 1);
  const e4 = r4.entry(c4.start);
  out(`one write fault maps the whole 64 KiB folio with set_ptes(16): ${hex(c4.start)}  pte ${hex(e4.raw)} ${describeEntry(e4)} (${e4.size! / 1024} KiB leaf)`);
  const w0 = m4.cpu(1).tlb.stats.walks;
  for (let i = 0; i < 16; i++) r4.read(c4.start + i * 4096, { cpu: 1 });
  out(`C1 reads all 16 pages: ${m4.cpu(1).tlb.stats.walks - w0} page walk, then hits on one ${m4.cpu(1).tlb.lookup(r4, c4.start)?.size} TLB entry`);
  r4.mprotect(c4.start + 0x3000, 4096, 'r');
  const census = m4.kernel.contScan(r4, c4.start, 0x10000);
  out(`mprotect of one page unfolds the block (contpte_convert: clear 16, flush, rewrite): ${census.folded} folded now, ${JSON.stringify(m4.stats.contpte)}`);

  h('10. userfaultfd write-protect: a marker keeps a shmem page protected across MADV_DONTNEED; async tracking with PAGEMAP_SCAN');
  const m5 = await Machine.create({ memory: '256MiB', cpus: 2 });
  const u5 = m5.spawn();
  const shm = m5.memfd({ size: '16KiB' });
  const s5 = u5.mmap({ file: shm, shared: true, length: '16KiB', prot: 'rw' });
  u5.touch(s5.start, 0x4000, 'w', 0x50);
  const uf = u5.userfaultfd({ features: ['wp-hugetlbfs-shmem'] });
  uf.register(s5.start, 0x4000);
  uf.writeProtect(s5.start, 0x4000, true);
  u5.madvise(s5.start, 0x4000, 'dontneed');
  out(`protected, then MADV_DONTNEED: ${entryLine(u5, s5.start)}`);
  const blocked = u5.write(s5.start, 0x51, { cpu: 1 });
  const msg = uf.events()[0];
  out(`C1 writes: ${blocked.ok ? 'completes' : `waits (${blocked.blocked})`}; message ${JSON.stringify(msg)}`);
  out(`the fault brought the page back read-only, the bit kept: ${entryLine(u5, s5.start)}`);
  uf.writeProtect(s5.start, 0x1000, false);
  out(`resolved; C1 writes again: ${u5.write(s5.start, 0x51, { cpu: 1 }).ok ? 'completes' : 'waits'}`);
  const anon5 = u5.mmap({ length: '256KiB', prot: 'rw' });
  const tracker = u5.userfaultfd({ features: ['wp-async', 'wp-unpopulated'] });
  tracker.register(anon5.start, anon5.length);
  const scan5 = () => u5.pagemapScan({ start: anon5.start, end: anon5.end, categoryMask: ['written'], returnMask: ['written'], wpMatching: true }).regions;
  scan5();
  for (const i of [3, 4, 5, 40]) u5.write(anon5.start + i * 4096, i);
  out(`async tracking: writes to pages 3, 4, 5, 40 (no messages); the scan reports ${scan5().map((g) => `[${(g.start - anon5.start) / 4096}, ${(g.end - anon5.start) / 4096})`).join(' ')}, and the next one ${scan5().length} regions`);

  h('11. A device mirrors a process (HMM): device faults, mmu notifiers, hmm_range_fault, device-private memory');
  const m6 = await Machine.create({ memory: '256MiB', cpus: 2, thp: 'always' });
  const u6 = m6.spawn();
  const d6 = u6.mmap({ length: '4MiB', prot: 'rw', addr: 0x4000_0000 });
  u6.write(d6.start, 0x61);
  const dev6 = m6.device('gpu');
  const mir = dev6.mirror(u6);
  mir.fault(d6.start + 0x3000, 1, 'r');
  out(`device read fault inside a THP: ${mir.stats.validEntries} mirror entries (the whole PMD), ${mir.stats.directories} directories, first ${JSON.stringify(mir.lookup(d6.start), (k, v) => typeof v === 'bigint' ? hex(v) : v)}`);
  const wf = mir.fault(d6.start + 2 * 1024 * 1024, 4, 'w');
  out(`device write fault on untouched memory: the CPU faults first (${wf.cpuFaults} CPU faults, ${wf.retries} retry), then ${mir.stats.validEntries} entries`);
  u6.mprotect(d6.start, 0x200000, 'r');
  out(`mprotect read-only of the first 2 MiB (a protection-vma invalidation): ${mir.stats.validEntries} entries left, ${mir.stats.directories} directories`);
  const n6 = m6.hmm.intervalNotifier(u6, d6.start, 0x400000);
  const seq = n6.readBegin();
  u6.madvise(d6.start + 0x200000, 0x1000, 'dontneed');
  out(`hmm_range_fault with a sequence taken before a DONTNEED: ${(() => { try { m6.hmm.rangeFault({ notifier: n6, start: d6.start, end: d6.start + 0x2000, notifierSeq: seq }); return 'ok'; } catch (e) { return (e as Error).message.split(':')[0]; } })()}; the driver's loop then reads ${decodeHmmPfn(m6.hmm.rangeFault({ notifier: n6, start: d6.start, end: d6.start + 0x2000 }).pfns[0]!).order === 9 ? 'a PMD (order 9)' : 'a page'}`);
  dev6.addMemory(64);
  const e6 = u6.mmap({ length: '16KiB', prot: 'rw' });
  u6.touch(e6.start, 0x4000, 'w', 0x77);
  out(`migrate 4 pages to device memory: ${mir.migrateToDevice(e6.start, 4)} moved; ${entryLine(u6, e6.start)}`);
  out(`the CPU reads one: tag ${(() => { const r6 = u6.read(e6.start + 0x1000); return r6.ok ? hex(r6.tag) : '-'; })()} after migrate_to_ram; device memory ${JSON.stringify(dev6.memory)}`);
  out(`m6.check(): ${m6.check().length === 0 ? 'clean' : 'problems'}`);

  h('12. ptdump of process p');
  out(p.dump());

  h('13. Invariants and counters');
  const problems = m.check();
  out(`m.check(): ${problems.length === 0 ? 'clean' : problems.map((x) => x.message).join('; ')}`);
  out(`machine: ${JSON.stringify(m.stats)}`);
}
