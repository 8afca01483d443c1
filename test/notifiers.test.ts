// mmu notifiers around CPU page-table changes (include/linux/mmu_notifier.h):
// every operation that changes or removes present entries brackets the
// change with invalidate_range_start (before any entry changes) and
// invalidate_range_end (here: after the TLB flush that covers the change),
// with the event and range the kernel uses. Fault paths that only upgrade an
// entry (wp_page_reuse, access flags) call nothing.

import { describe, it, expect } from 'vitest';
import { machine, expectClean, PAGE, MiB } from './helpers.js';
import type { Machine, NotifierRecord, NotifierEvent, FlushRecord } from '../src/index.js';

type Phase = 'start' | 'end';
const note = (phase: Phase, event: NotifierEvent, pid: number, start: number, end: number): NotifierRecord =>
  ({ seq: expect.any(Number) as unknown as number, phase, event, pid, start, end });
const pair = (event: NotifierEvent, pid: number, start: number, end: number): NotifierRecord[] =>
  [note('start', event, pid, start, end), note('end', event, pid, start, end)];

/** Every flush lies strictly between the start and the end record. */
function inside(start: NotifierRecord, end: NotifierRecord, flushes: FlushRecord[]): void {
  expect(start.phase).toBe('start');
  expect(end.phase).toBe('end');
  expect(flushes.length).toBeGreaterThan(0);
  for (const f of flushes) {
    expect(f.seq).toBeGreaterThan(start.seq);
    expect(f.seq).toBeLessThan(end.seq);
  }
}

/** A process with `pages` written private pages on a 2-CPU machine. */
async function written(pages: number, opts: Parameters<typeof machine>[0] = {}) {
  const m = await machine({ cpus: 2, ...opts });
  const p = m.spawn();
  const a = p.mmap({ length: pages * PAGE, prot: 'rw' });
  p.touch(a.start, a.length, 'w', 1);
  return { m, p, a };
}

function clearLogs(m: Machine): void {
  m.clearNotifierLog();
  m.clearFlushLog();
}

describe('unmapping', () => {
  it('munmap: one MMU_NOTIFY_UNMAP over the range, ended after the flush; a range with no VMA notifies nothing', async () => {
    const { m, p, a } = await written(4);
    clearLogs(m);
    p.munmap(a.start + PAGE, 2 * PAGE);
    const n = m.notifierLog;
    expect(n).toEqual(pair('unmap', p.pid, a.start + PAGE, a.start + 3 * PAGE));
    expect(m.flushLog).toEqual([expect.objectContaining({ kind: 'range', pid: p.pid, start: a.start + PAGE, end: a.start + 3 * PAGE })]);
    inside(n[0]!, n[1]!, m.flushLog);

    clearLogs(m);
    p.munmap(a.start + PAGE, 2 * PAGE);           // nothing mapped there any more
    expect(m.notifierLog).toEqual([]);
    expectClean(m);
  });

  it('arm64 munmap across two VMAs: the per-VMA flushes (tlb_end_vma) all fall inside the one UNMAP range', async () => {
    const { m, p, a } = await written(4, { arch: 'arm64' });
    p.mprotect(a.start + 2 * PAGE, 2 * PAGE, 'r');
    clearLogs(m);
    p.munmap(a.start, 4 * PAGE);
    const n = m.notifierLog;
    expect(n).toEqual(pair('unmap', p.pid, a.start, a.start + 4 * PAGE));
    // One flush per VMA, then the one for the freed tables.
    expect(m.flushLog.slice(0, 2).map((r) => [r.start, r.end])).toEqual([[a.start, a.start + 2 * PAGE], [a.start + 2 * PAGE, a.start + 4 * PAGE]]);
    inside(n[0]!, n[1]!, m.flushLog);
    expectClean(m);
  });

  it('exit: one UNMAP over [0, TASK_SIZE) around the whole-mm flush, nothing before it; an mm without VMAs notifies nothing', async () => {
    const { m, p, a } = await written(4);
    clearLogs(m);
    p.exit();
    const n = m.notifierLog;
    expect(n).toEqual(pair('unmap', p.pid, 0, Number(m.geometry.taskSize)));
    expect(m.flushLog).toEqual([expect.objectContaining({ kind: 'mm', pid: p.pid })]);
    inside(n[0]!, n[1]!, m.flushLog);

    const q = m.spawn();
    clearLogs(m);
    q.exit();
    expect(m.notifierLog).toEqual([]);
    expectClean(m);
  });

  it('MADV_DONTNEED: one MMU_NOTIFY_CLEAR per VMA, clipped to the advice range, each around its own flush', async () => {
    const { m, p, a } = await written(4);
    p.mprotect(a.start + 2 * PAGE, 2 * PAGE, 'r');
    clearLogs(m);
    p.madvise(a.start + PAGE, 3 * PAGE, 'dontneed');
    const n = m.notifierLog, f = m.flushLog;
    expect(n).toEqual([...pair('clear', p.pid, a.start + PAGE, a.start + 2 * PAGE), ...pair('clear', p.pid, a.start + 2 * PAGE, a.start + 4 * PAGE)]);
    expect(f.map((r) => [r.start, r.end])).toEqual([[a.start + PAGE, a.start + 2 * PAGE], [a.start + 2 * PAGE, a.start + 4 * PAGE]]);
    inside(n[0]!, n[1]!, [f[0]!]);
    inside(n[2]!, n[3]!, [f[1]!]);
    expectClean(m);
  });
});

describe('mprotect', () => {
  it('MMU_NOTIFY_PROTECTION_VMA per VMA part: both started before any change, ended after the one batched flush', async () => {
    const { m, p, a } = await written(4);
    p.mprotect(a.start + 2 * PAGE, 2 * PAGE, 'r');
    clearLogs(m);
    p.mprotect(a.start + PAGE, 3 * PAGE, 'r');
    const n = m.notifierLog;
    expect(n).toEqual([
      note('start', 'protection-vma', p.pid, a.start + PAGE, a.start + 2 * PAGE),
      note('start', 'protection-vma', p.pid, a.start + 2 * PAGE, a.start + 4 * PAGE),
      note('end', 'protection-vma', p.pid, a.start + PAGE, a.start + 2 * PAGE),
      note('end', 'protection-vma', p.pid, a.start + 2 * PAGE, a.start + 4 * PAGE),
    ]);
    // Only page 1 lost write permission: one flush, after both starts, before both ends.
    expect(m.flushLog).toEqual([expect.objectContaining({ start: a.start + PAGE, end: a.start + 2 * PAGE })]);
    inside(n[1]!, n[2]!, m.flushLog);
    expect(p.entry(a.start + PAGE).write).toBe(false);
    expectClean(m);
  });

  it('a split at the new VMA edge brackets the PMD with its own CLEAR first (vma_adjust_trans_huge)', async () => {
    const m = await machine({ cpus: 2 });
    const p = m.spawn();
    const a = p.mmap({ length: 4 * MiB, prot: 'rw' });
    p.madvise(a.start, a.length, 'hugepage');
    p.write(a.start, 1);
    expect(p.entry(a.start).level).toBe('pmd');
    clearLogs(m);
    const at = a.start + 256 * PAGE;
    p.mprotect(at, PAGE, 'r');
    const n = m.notifierLog, f = m.flushLog;
    expect(n).toEqual([...pair('clear', p.pid, a.start, a.start + 2 * MiB), ...pair('protection-vma', p.pid, at, at + PAGE)]);
    expect(f).toEqual([
      expect.objectContaining({ start: a.start, end: a.start + 2 * MiB, strideShift: 21 }),
      expect.objectContaining({ start: at, end: at + PAGE }),
    ]);
    inside(n[0]!, n[1]!, [f[0]!]);
    inside(n[2]!, n[3]!, [f[1]!]);
    expectClean(m);
  });
});

describe('faults that replace a frame', () => {
  it('COW break (wp_page_copy): CLEAR over the page around the clear-and-flush; the reuse that follows notifies nothing', async () => {
    const m = await machine({ cpus: 2 });
    const parent = m.spawn();
    const a = parent.mmap({ length: 2 * PAGE, prot: 'rw' });
    parent.touch(a.start, a.length, 'w', 5);
    const child = parent.fork();
    clearLogs(m);
    const at = a.start + PAGE + 123;               // an unaligned fault address
    expect(child.write(at, 9)).toMatchObject({ ok: true, faults: 1 });
    const n = m.notifierLog;
    expect(n).toEqual(pair('clear', child.pid, a.start + PAGE, a.start + 2 * PAGE));
    expect(m.flushLog).toEqual([expect.objectContaining({ kind: 'page', pid: child.pid, start: a.start + PAGE })]);
    inside(n[0]!, n[1]!, m.flushLog);

    // wp_page_reuse: a permission upgrade, no notifier.
    clearLogs(m);
    expect(parent.write(at, 8)).toMatchObject({ ok: true, faults: 1 });
    expect(m.notifierLog).toEqual([]);
    // Access-flag and write-through-a-writable-entry faults neither.
    expect(parent.read(a.start)).toMatchObject({ ok: true });
    expect(m.notifierLog).toEqual([]);
    expectClean(m);
  });

  it('a write on the zero page copies too (wp_page_copy of a special entry)', async () => {
    const m = await machine();
    const p = m.spawn();
    const a = p.mmap({ length: PAGE, prot: 'rw' });
    expect(p.read(a.start)).toMatchObject({ ok: true });
    clearLogs(m);
    expect(p.write(a.start, 3)).toMatchObject({ ok: true });
    const n = m.notifierLog;
    expect(n).toEqual(pair('clear', p.pid, a.start, a.start + PAGE));
    inside(n[0]!, n[1]!, m.flushLog);
    expectClean(m);
  });

  it('do_huge_zero_wp_pmd: the huge zero PMD replaced by a THP under one CLEAR over the PMD', async () => {
    const m = await machine({ cpus: 2 });
    const p = m.spawn();
    const a = p.mmap({ length: 2 * MiB, prot: 'rw' });
    p.madvise(a.start, a.length, 'hugepage');
    expect(p.read(a.start + PAGE)).toMatchObject({ ok: true });
    expect(p.entry(a.start)).toMatchObject({ level: 'pmd' });
    clearLogs(m);
    expect(p.write(a.start + PAGE, 4)).toMatchObject({ ok: true });
    expect(p.entry(a.start)).toMatchObject({ level: 'pmd', write: true });
    const n = m.notifierLog;
    expect(n).toEqual(pair('clear', p.pid, a.start, a.start + 2 * MiB));
    expect(m.flushLog).toEqual([expect.objectContaining({ start: a.start, end: a.start + 2 * MiB, strideShift: 21 })]);
    inside(n[0]!, n[1]!, m.flushLog);
    expectClean(m);
  });

  it('a COW write on a shared THP: the PMD split (__split_huge_pmd), then wp_page_copy of the page, each bracketed', async () => {
    const m = await machine({ cpus: 2 });
    const parent = m.spawn();
    const a = parent.mmap({ length: 2 * MiB, prot: 'rw' });
    parent.madvise(a.start, a.length, 'hugepage');
    parent.write(a.start, 1);
    const child = parent.fork();
    clearLogs(m);
    const at = a.start + 7 * PAGE;
    expect(child.write(at, 2)).toMatchObject({ ok: true });
    const n = m.notifierLog, f = m.flushLog;
    expect(n).toEqual([...pair('clear', child.pid, a.start, a.start + 2 * MiB), ...pair('clear', child.pid, at, at + PAGE)]);
    expect(f).toEqual([
      expect.objectContaining({ pid: child.pid, start: a.start, end: a.start + 2 * MiB, strideShift: 21 }),
      expect.objectContaining({ pid: child.pid, start: at, end: at + PAGE }),
    ]);
    inside(n[0]!, n[1]!, [f[0]!]);
    inside(n[2]!, n[3]!, [f[1]!]);
    expectClean(m);
  });
});

describe('fork', () => {
  it('copy_page_range: PROTECTION_PAGE over each COW source VMA with an anon_vma, on the parent, ended after the parent flush', async () => {
    const m = await machine({ cpus: 2 });
    const parent = m.spawn();
    const f = m.file({ size: 2 * PAGE });
    const a = parent.mmap({ length: 2 * PAGE, prot: 'rw' });
    const b = parent.mmap({ length: 2 * PAGE, prot: 'r' });    // not merged with a
    const s = parent.mmap({ file: f, shared: true, length: 2 * PAGE, prot: 'rw' });
    const dont = parent.mmap({ length: PAGE, prot: 'rw' });
    parent.touch(a.start, a.length, 'w', 1);
    parent.touch(s.start, s.length, 'w', 2);
    parent.write(dont.start, 3);
    parent.madvise(dont.start, PAGE, 'dontfork');
    // b gets an anon_vma from a write before it became read-only.
    parent.mprotect(b.start, b.length, 'rw');
    parent.write(b.start + PAGE, 4);
    parent.mprotect(b.start, b.length, 'r');
    const order = [a, b].sort((x, y) => x.start - y.start);
    expect(parent.vmas).toHaveLength(4);
    clearLogs(m);
    const child = parent.fork();
    const n = m.notifierLog;
    expect(n).toEqual([
      ...order.map((v) => note('start', 'protection-page', parent.pid, v.start, v.start + 2 * PAGE)),
      ...order.map((v) => note('end', 'protection-page', parent.pid, v.start, v.start + 2 * PAGE)),
    ]);
    expect(m.flushLog).toEqual([expect.objectContaining({ kind: 'mm', pid: parent.pid })]);
    inside(n[1]!, n[2]!, m.flushLog);
    expect(parent.entry(a.start).write).toBe(false);
    expect(child.read(a.start + PAGE)).toMatchObject({ ok: true, tag: 1 });
    expectClean(m);
  });

  it('VMAs the kernel does not copy (no anon_vma: untouched, or only the zero page) notify nothing', async () => {
    const m = await machine();
    const parent = m.spawn();
    const a = parent.mmap({ length: 2 * PAGE, prot: 'rw' });
    parent.read(a.start);
    clearLogs(m);
    const child = parent.fork();
    expect(m.notifierLog).toEqual([]);
    expect(child.read(a.start)).toMatchObject({ ok: true });
    expectClean(m);
  });
});

describe('reclaim', () => {
  it('MADV_PAGEOUT: CLEAR over each reclaimed page (try_to_unmap_one), all ended after the batched flush; kept pages notify nothing', async () => {
    const m = await machine({ cpus: 2 });
    const p = m.spawn();
    const a = p.mmap({ length: 4 * PAGE, prot: 'rw' });
    p.write(a.start, 1);                                          // page 1 stays untouched
    p.write(a.start + 2 * PAGE, 2);
    p.write(a.start + 3 * PAGE, 3);
    const pin = m.pin(p, a.start + 3 * PAGE, 1, { write: true, longterm: true });   // pinned: kept
    clearLogs(m);
    p.madvise(a.start, 4 * PAGE, 'pageout');
    const n = m.notifierLog;
    const reclaimed = [0, 2].filter((i) => p.pagemap(a.start + i * PAGE).swapped);
    expect(reclaimed).toEqual([0, 2]);
    expect(p.pagemap(a.start + 3 * PAGE).present).toBe(true);
    expect(n).toEqual([
      ...reclaimed.map((i) => note('start', 'clear', p.pid, a.start + i * PAGE, a.start + (i + 1) * PAGE)),
      ...reclaimed.map((i) => note('end', 'clear', p.pid, a.start + i * PAGE, a.start + (i + 1) * PAGE)),
    ]);
    expect(m.flushLog).toEqual([expect.objectContaining({ kind: 'mm', pid: p.pid })]);
    inside(n[1]!, n[2]!, m.flushLog);
    pin.unpin();
    expectClean(m);
  });

  it('a full gather batch flushes mid-pass: the ranges it covers end right after that flush', async () => {
    const m = await machine({ cpus: 2 });
    const p = m.spawn();
    const pages = 12000;                                          // more than one batch (GATHER_BATCH, 10000)
    const a = p.mmap({ length: pages * PAGE, prot: 'rw' });
    p.touch(a.start, a.length, 'w', 1);
    clearLogs(m);
    p.madvise(a.start, a.length, 'pageout');
    const n = m.notifierLog, f = m.flushLog;
    expect(f.map((r) => r.kind)).toEqual(['mm', 'mm']);
    const seqs = n.map((r) => r.seq);
    const before = (seq: number): number => seqs.filter((x) => x < seq).length;
    expect(before(f[0]!.seq)).toBe(10000);                        // 10000 starts, then the batch flush
    expect(before(f[1]!.seq)).toBe(20000 + 2000);                 // their ends, 2000 more starts, then the final flush
    expect(n).toHaveLength(2 * pages);
    const range = (i: number): [number, number] => [a.start + i * PAGE, a.start + (i + 1) * PAGE];
    expect(n.slice(0, 10000).every((r, i) => r.phase === 'start' && r.start === range(i)[0] && r.end === range(i)[1])).toBe(true);
    expect(n.slice(10000, 20000).every((r, i) => r.phase === 'end' && r.start === range(i)[0])).toBe(true);
    expect(n.slice(20000, 22000).every((r, i) => r.phase === 'start' && r.start === range(10000 + i)[0])).toBe(true);
    expect(n.slice(22000).every((r, i) => r.phase === 'end' && r.start === range(10000 + i)[0] && r.event === 'clear')).toBe(true);
    expectClean(m);
  });

  it('shmem pageout: the PTE goes, under CLEAR over the page', async () => {
    const m = await machine();
    const f = m.memfd({ size: 2 * PAGE });
    const p = m.spawn();
    const a = p.mmap({ file: f, shared: true, length: 2 * PAGE, prot: 'rw' });
    p.write(a.start + PAGE, 7);
    clearLogs(m);
    p.madvise(a.start, 2 * PAGE, 'pageout');
    expect(p.entry(a.start + PAGE).kind).toBe('none');
    const n = m.notifierLog;
    expect(n).toEqual(pair('clear', p.pid, a.start + PAGE, a.start + 2 * PAGE));
    inside(n[0]!, n[1]!, m.flushLog);
    expectClean(m);
  });

  it('a PMD-mapped THP: the split brackets the PMD, then each page is reclaimed under its own range', async () => {
    const m = await machine({ cpus: 2 });
    const p = m.spawn();
    const a = p.mmap({ length: 2 * MiB, prot: 'rw' });
    p.madvise(a.start, a.length, 'hugepage');
    p.write(a.start, 1);
    clearLogs(m);
    p.madvise(a.start, 2 * MiB, 'pageout');
    const n = m.notifierLog, f = m.flushLog;
    expect(n.slice(0, 2)).toEqual(pair('clear', p.pid, a.start, a.start + 2 * MiB));
    expect(f).toEqual([
      expect.objectContaining({ kind: 'range', start: a.start, end: a.start + 2 * MiB, strideShift: 21 }),
      expect.objectContaining({ kind: 'mm', pid: p.pid }),
    ]);
    inside(n[0]!, n[1]!, [f[0]!]);
    const pages = n.slice(2);
    expect(pages).toHaveLength(2 * 512);
    for (let i = 0; i < 512; i++) {
      expect(pages[i]).toEqual(note('start', 'clear', p.pid, a.start + i * PAGE, a.start + (i + 1) * PAGE));
      expect(pages[512 + i]).toEqual(note('end', 'clear', p.pid, a.start + i * PAGE, a.start + (i + 1) * PAGE));
    }
    inside(pages[511]!, pages[512]!, [f[1]!]);
    expectClean(m);
  });
});

describe('file mappings', () => {
  it('truncate: CLEAR over each mapping past the new end (unmap_mapping_range), each around its own flush', async () => {
    const m = await machine({ cpus: 2 });
    const f = m.file({ size: 8 * PAGE });
    const p = m.spawn(), q = m.spawn();
    const a = p.mmap({ file: f, shared: true, length: 8 * PAGE, prot: 'rw' });
    const b = q.mmap({ file: f, length: 8 * PAGE, prot: 'rw' });
    p.touch(a.start, a.length, 'w', 1);
    q.write(b.start + 6 * PAGE, 2);                               // a private copy: truncation zaps it too
    clearLogs(m);
    f.truncate(3 * PAGE);
    const n = m.notifierLog, fl = m.flushLog;
    const byPid = (pid: number): NotifierRecord[] => n.filter((r) => r.pid === pid);
    expect(byPid(p.pid)).toEqual(pair('clear', p.pid, a.start + 3 * PAGE, a.start + 8 * PAGE));
    expect(byPid(q.pid)).toEqual(pair('clear', q.pid, b.start + 3 * PAGE, b.start + 8 * PAGE));
    expect(n).toHaveLength(4);
    expect(n[0]!.pid).toBe(n[1]!.pid);                            // one mapping after the other
    for (const pid of [p.pid, q.pid]) {
      const [s, e] = byPid(pid);
      inside(s!, e!, fl.filter((r) => r.pid === pid));
    }
    expect(q.entry(b.start + 6 * PAGE).kind).toBe('none');
    expectClean(m);
  });

  it('hole punch (MADV_REMOVE): CLEAR over the punched range in every mapping of the file', async () => {
    const m = await machine({ cpus: 2 });
    const f = m.memfd({ size: 8 * PAGE });
    const p = m.spawn(), q = m.spawn();
    const a = p.mmap({ file: f, shared: true, length: 8 * PAGE, prot: 'rw' });
    const b = q.mmap({ file: f, shared: true, length: 8 * PAGE, prot: 'rw' });
    p.touch(a.start, a.length, 'w', 1);
    q.touch(b.start, b.length, 'r');
    clearLogs(m);
    p.madvise(a.start + 2 * PAGE, 2 * PAGE, 'remove');
    const n = m.notifierLog, fl = m.flushLog;
    const byPid = (pid: number): NotifierRecord[] => n.filter((r) => r.pid === pid);
    expect(byPid(p.pid)).toEqual(pair('clear', p.pid, a.start + 2 * PAGE, a.start + 4 * PAGE));
    expect(byPid(q.pid)).toEqual(pair('clear', q.pid, b.start + 2 * PAGE, b.start + 4 * PAGE));
    expect(n).toHaveLength(4);
    for (const pid of [p.pid, q.pid]) {
      const [s, e] = byPid(pid);
      inside(s!, e!, fl.filter((r) => r.pid === pid));
    }
    expectClean(m);
  });

  it('a partial zap of a file PMD: the zap-on-split brackets the PMD inside the zap range, as zap_pmd_range nests __split_huge_pmd', async () => {
    const m = await machine({ cpus: 2 });
    const f = m.memfd({ size: 2 * MiB, huge: true });
    const p = m.spawn();
    const a = p.mmap({ file: f, shared: true, length: 2 * MiB, prot: 'rw' });
    p.write(a.start, 1);
    expect(p.entry(a.start).level).toBe('pmd');
    clearLogs(m);
    const at = a.start + 5 * PAGE;
    p.madvise(at, PAGE, 'dontneed');
    expect(p.entry(a.start)).toMatchObject({ level: 'pmd', kind: 'none' });
    const n = m.notifierLog;
    expect(n).toEqual([
      note('start', 'clear', p.pid, at, at + PAGE),
      ...pair('clear', p.pid, a.start, a.start + 2 * MiB),
      note('end', 'clear', p.pid, at, at + PAGE),
    ]);
    expect(m.flushLog).toEqual([expect.objectContaining({ start: a.start, end: a.start + 2 * MiB, strideShift: 21 })]);
    inside(n[1]!, n[2]!, m.flushLog);
    expectClean(m);
  });
});
