// Resource exhaustion: every operation that allocates, run with the frame
// allocator failing after n successful allocations, for every n until the
// operation completes. Each failure must be the kernel's: an access gets the
// fault's OOM outcome, a call throws ENOMEM; what the process holds reads
// back unchanged, m.check() finds nothing, and once memory is back the same
// operation completes. Where the kernel falls back instead of failing (a THP
// or mTHP fault uses a smaller folio), that is what must happen.
//
// A second kind of exhaustion is the core's own heap (page tables, VMA
// arrays, cache nodes) when linear memory cannot grow: ENOMEM, never a trap.

import { describe, it, expect } from 'vitest';
import { Machine, EmuError, HMM_PFN_REQ_FAULT, HMM_PFN_REQ_WRITE, type MachineOptions, type Process, type AccessResult } from '../src/index.js';
import { PAGE, MiB } from './helpers.js';

const A = 0x4000_0000;

interface Ctx { m: Machine; p: Process; [k: string]: unknown }

interface OomCase {
  name: string;
  machine?: MachineOptions;
  /** Builds the state before the operation (allocations succeed). */
  setup: (m: Machine) => Ctx;
  /** The operation: an access result, or a call that may throw ENOMEM. */
  run: (c: Ctx) => AccessResult | unknown;
  /** Pages that must read back with these tags after a failure: [process, addr, tag]. */
  contents: (c: Ctx) => [Process, number, number][];
  /** After the successful run (maybe under pressure): what the kernel's fallback must look like. */
  after?: (c: Ctx) => void;
  /** The error a failed call throws (default ENOMEM). */
  code?: 'ENOMEM' | 'EFAULT';
  /** What must hold after a failure besides the contents (e.g. no child after a failed fork). */
  failed?: (c: Ctx) => void;
}

const isOom = (r: unknown): boolean => typeof r === 'object' && r !== null && 'ok' in r && (r as AccessResult).ok === false && (r as { code?: string }).code === 'OOM';

function anon(m: Machine, len = 16 * PAGE, tag = 0): Ctx {
  const p = m.spawn();
  p.mmap({ addr: A, length: len, prot: 'rw' });
  if (tag) p.touch(A, len, 'w', tag);
  return { m, p };
}

const CASES: OomCase[] = [
  {
    name: 'anonymous write fault (PTE table, page)',
    setup: (m) => { const c = anon(m); c.p.write(A + PAGE, 7); return c; },
    run: (c) => c.p.write(A + 8 * PAGE, 9),
    contents: (c) => [[c.p, A + PAGE, 7]],
  },
  {
    name: 'page tables for a far address (PUD, PMD, PTE)',
    setup: (m) => { const c = anon(m, PAGE, 3); c.p.mmap({ addr: 0x7f00_0000_0000, length: PAGE, prot: 'rw' }); return c; },
    run: (c) => c.p.write(0x7f00_0000_0000, 4),
    contents: (c) => [[c.p, A, 3]],
  },
  {
    name: 'shmem read fault (page cache)',
    setup: (m) => {
      const p = m.spawn();
      const f = m.memfd({ size: 16 * PAGE });
      p.mmap({ addr: A, length: 16 * PAGE, prot: 'rw', shared: true, file: f });
      p.write(A, 5);
      return { m, p, f };
    },
    run: (c) => c.p.read(A + 9 * PAGE),
    contents: (c) => [[c.p, A, 5]],
  },
  {
    name: 'THP fault: falls back to a small page when no huge page can be had',
    machine: { thp: 'always' },
    setup: (m) => anon(m, 2 * MiB),
    run: (c) => c.p.write(A + 3 * PAGE, 6),
    contents: () => [],
    after: (c) => {
      const e = c.p.entry(A + 3 * PAGE);
      if (e.level === 'pte') expect(c.m.stats.thpFaultFallback).toBeGreaterThan(0);
      expect(c.p.read(A + 3 * PAGE)).toMatchObject({ ok: true, tag: 6 });
    },
  },
  {
    name: 'mTHP fault: falls back to smaller orders, then a small page',
    machine: { thp: 'never', mthp: { '64K': 'always', '16K': 'always' } },
    setup: (m) => anon(m, 64 * PAGE),
    run: (c) => c.p.write(A + 17 * PAGE, 8),
    contents: () => [],
    after: (c) => {
      const pfn = c.p.entry(A + 17 * PAGE).pfn!;
      expect([0, 2, 4]).toContain(c.m.frame(pfn).order);
      expect(c.p.read(A + 17 * PAGE)).toMatchObject({ ok: true, tag: 8 });
    },
  },
  {
    name: 'fork (page tables, prealloc of a pinned page): ENOMEM, no child',
    setup: (m) => { const c = anon(m, 64 * PAGE, 3); c.pin = m.pin(c.p, A + 40 * PAGE, 1, { write: true }); c.procs = m.procs.length; return c; },
    run: (c) => c.p.fork(),
    contents: (c) => [[c.p, A, 3], [c.p, A + 40 * PAGE, 3], [c.p, A + 63 * PAGE, 3]],
    failed: (c) => expect(c.m.procs.length).toBe(c.procs),
    after: (c) => expect(c.m.procs.length).toBe((c.procs as number) + 1),
  },
  {
    name: 'COW break after fork: the copy cannot be allocated',
    setup: (m) => { const c = anon(m, 8 * PAGE, 3); c.child = c.p.fork(); return c; },
    run: (c) => c.p.write(A + 2 * PAGE, 9),
    contents: (c) => [[c.p, A + 2 * PAGE, 3], [c.child as Process, A + 2 * PAGE, 3]],
    after: (c) => expect((c.child as Process).read(A + 2 * PAGE)).toMatchObject({ ok: true, tag: 3 }),
  },
  {
    name: 'swap-in of a paged-out page',
    machine: { swap: '1MiB' },
    setup: (m) => { const c = anon(m, 4 * PAGE, 4); c.p.madvise(A, 4 * PAGE, 'pageout'); return c; },
    run: (c) => c.p.read(A + 2 * PAGE),
    contents: (c) => [[c.p, A, 4], [c.p, A + 3 * PAGE, 4]],
    after: (c) => expect(c.p.read(A + 2 * PAGE)).toMatchObject({ ok: true, tag: 4 }),
  },
  {
    name: 'write pin (GUP breaks COW, faults in)',
    setup: (m) => { const c = anon(m, 8 * PAGE, 2); c.child = c.p.fork(); return c; },
    run: (c) => c.m.pin(c.p, A, 4, { write: true }),
    contents: (c) => [[c.p, A, 2], [c.child as Process, A, 2]],
  },
  {
    name: 'userfaultfd write-protect of unpopulated memory (markers need PTE tables)',
    setup: (m) => {
      const c = anon(m, 4 * MiB);
      c.p.write(A, 1);
      const u = c.p.userfaultfd({ features: ['wp-unpopulated'] });
      u.register(A, 4 * MiB);
      c.u = u;
      return c;
    },
    run: (c) => (c.u as ReturnType<Process['userfaultfd']>).writeProtect(A, 4 * MiB, true),
    contents: (c) => [[c.p, A, 1]],
    after: (c) => expect(c.p.entry(A + 3 * MiB)).toMatchObject({ kind: 'marker', markers: ['uffd-wp'] }),
  },
  {
    name: 'device mirror fault (directories, CPU faults)',
    setup: (m) => { const c = anon(m, 32 * PAGE); c.p.touch(A, 8 * PAGE, 'w', 5); c.mir = m.device('gpu').mirror(c.p); return c; },
    run: (c) => (c.mir as ReturnType<ReturnType<Machine['device']>['mirror']>).fault(A, 32, 'w'),
    contents: (c) => [[c.p, A, 5], [c.p, A + 7 * PAGE, 5]],
  },
  {
    name: 'hmm_range_fault with faults requested',
    setup: (m) => { const c = anon(m, 32 * PAGE); c.p.write(A, 5); c.n = m.hmm.intervalNotifier(c.p, A, 32 * PAGE); return c; },
    run: (c) => c.m.hmm.rangeFault({ notifier: c.n as ReturnType<Machine['hmm']['intervalNotifier']>, start: A, end: A + 32 * PAGE, defaultFlags: HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE }),
    contents: (c) => [[c.p, A, 5]],
    // hmm_vma_fault: any VM_FAULT_ERROR from handle_mm_fault, VM_FAULT_OOM included, is -EFAULT.
    code: 'EFAULT',
  },
  {
    name: 'migration to device memory and back (migrate_to_ram needs a frame)',
    setup: (m) => {
      const c = anon(m, 8 * PAGE, 6);
      m.device('gpu').addMemory(8);
      const mir = m.device('gpu').mirror(c.p);
      mir.migrateToDevice(A, 8);
      return c;
    },
    run: (c) => c.p.read(A + 3 * PAGE),
    contents: () => [],
    after: (c) => expect(c.p.read(A + 3 * PAGE)).toMatchObject({ ok: true, tag: 6 }),
  },
];

async function runCase(k: OomCase): Promise<{ failures: number }> {
  let failures = 0;
  for (let n = 0; n < 400; n++) {
    const m = await Machine.create({ memory: '16MiB', ...k.machine });
    const c = k.setup(m);
    m.debug.failAllocationsAfter(n);
    let r: unknown, err: unknown;
    try { r = k.run(c); } catch (e) { err = e; }
    m.debug.failAllocationsAfter(-1);
    const where = `${k.name}, allocations failing after ${n}`;
    if (err !== undefined) {
      expect(err, where).toBeInstanceOf(EmuError);
      expect((err as EmuError).code, where).toBe(k.code ?? 'ENOMEM');
      expect((err as EmuError).arg, where).toBeTruthy();
    }
    const failed = err !== undefined || isOom(r);
    expect(m.check(), where).toEqual([]);
    if (failed) {
      failures++;
      for (const [p, addr, tag] of k.contents(c)) expect(p.read(addr), `${where}: 0x${addr.toString(16)}`).toMatchObject({ ok: true, tag });
      k.failed?.(c);
      // Memory is back: the same operation completes.
      const again = k.run(c);
      expect(isOom(again), `${where}: the retry`).toBe(false);
      k.after?.(c);
      expect(m.check(), `${where}: after the retry`).toEqual([]);
      continue;
    }
    k.after?.(c);
    return { failures };
  }
  throw new Error(`${k.name}: never completed`);
}

describe('out of memory', () => {
  for (const k of CASES) {
    it(`${k.name}: ENOMEM or OOM at every point, contents kept, check clean, completes once memory is back`, async () => {
      const r = await runCase(k);
      expect(r.failures).toBeGreaterThan(0);
    });
  }

  it('linear memory that cannot grow: the core\'s own allocations fail with ENOMEM, never a trap; it recovers once growth is allowed', async () => {
    for (const arch of ['x86_64', 'arm64'] as const) {
      const m = await Machine.create({ arch, memory: '64MiB' });
      const p = m.spawn();
      m.debug.failMemoryGrowth(true);
      let enomem = 0, oom = 0, done = 0;
      // Page tables, VMA arrays and page-cache nodes come from the core's heap: spread out until it runs dry.
      for (let i = 0; i < 4096 && enomem + oom < 8; i++) {
        const addr = 0x1000_0000_0000 + i * 2 * MiB * 512;
        try {
          p.mmap({ addr, length: PAGE, prot: i % 2 ? 'r' : 'rw' });
          const r = p.write(addr, i + 1);
          if (r.ok) done++;
          else if (r.code === 'OOM') oom++;
          else if (!(r.signal === 'SIGSEGV')) throw new Error(`unexpected ${JSON.stringify(r)}`);
        } catch (e) {
          expect(e).toBeInstanceOf(EmuError);
          expect((e as EmuError).code).toBe('ENOMEM');
          enomem++;
        }
        expect(m.check()).toEqual([]);
      }
      expect(enomem + oom).toBeGreaterThan(0);
      expect(done).toBeGreaterThan(0);
      m.debug.failMemoryGrowth(false);
      const far = 0x2000_0000_0000;
      p.mmap({ addr: far, length: PAGE, prot: 'rw' });
      expect(p.write(far, 77)).toMatchObject({ ok: true });
      expect(m.check()).toEqual([]);
    }
  });
});
