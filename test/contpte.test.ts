// arm64 contiguous PTEs (arch/arm64/mm/contpte.c; SEMANTICS §5, §9.F):
// transparent folding and unfolding behind the PTE API, A/D gathering, the
// lockless getter, the kernel mm, and what the core's own paths (mTHP faults,
// mprotect, DONTNEED, fork, COW, THP split) do with folded blocks.

import { describe, it, expect } from 'vitest';
import { machine, expectClean, PAGE, MiB } from './helpers.js';
import { Trace, type Machine, type Process } from '../src/index.js';

const CONT = 1n << 52n;
const K64 = 0x10000;
const hasCont = (v: bigint): boolean => (v & CONT) !== 0n;

async function arm(opts: Parameters<typeof machine>[0] = {}): Promise<Machine> {
  return machine({ arch: 'arm64', cpus: 2, mthp: { '64K': 'always', '128K': 'always' }, ...opts });
}

/** A 64 KiB folio (faulted in by mTHP at `at`, folded there) and PTE values for its frames. */
function folio64(m: Machine, p: Process, at: number): { pfn: number; pte: (i: number, f?: { write?: boolean; young?: boolean; dirty?: boolean }) => bigint } {
  const s = p.mmap({ length: K64, prot: 'rw', addr: at });
  p.write(s.start, 1);
  const pfn = p.entry(s.start).pfn!;
  expect(pfn % 16).toBe(0);
  return { pfn, pte: (i, f = {}) => m.arch.makePte({ pfn: pfn + i, write: f.write ?? true, young: f.young ?? true, dirty: f.dirty ?? false }) };
}

const V = 0x5000_0000;
const slots = (m: Machine, p: Process, at = V): bigint[] => Array.from({ length: 16 }, (_, i) => m.kernel.ptepGetRaw(p, at + i * PAGE));

describe('folding (F1-F8)', () => {
  it('F1: writing the last slot of a qualifying block folds it: one flush of the 64 KiB, CONT on all, A/D ORed everywhere', async () => {
    const m = await arm();
    const p = m.spawn();
    const f = folio64(m, p, 0x4000_0000);
    p.mmap({ length: K64, prot: 'rw', addr: V });                   // a VMA for the census below; its PTEs are set by hand
    m.clearFlushLog();
    for (let i = 0; i < 16; i++) {
      m.kernel.setPtes(p, V + i * PAGE, f.pte(i, { young: i === 3, dirty: i === 9 }));
      if (i < 15) expect(hasCont(m.kernel.ptepGetRaw(p, V + i * PAGE))).toBe(false);
    }
    const after = slots(m, p);
    after.forEach((v, i) => {
      expect(hasCont(v)).toBe(true);
      expect(m.arch.decode(v, 'pte')).toMatchObject({ pfn: f.pfn + i, young: true, dirty: true, cont: true, size: K64 });
    });
    expect(m.flushLog.map((l) => [l.start, l.end])).toEqual([[V, V + K64]]);
    expect(m.stats.contpte.folds).toBe(1);
    expect(m.kernel.contScan(p, V, K64)).toMatchObject({ folded: 1, foldable: 0, broken: 0 });
  });

  it('F2, F4, F5: no fold out of order, with an attribute mismatch, or for a folio smaller than the block', async () => {
    const m = await arm({ mthp: { '64K': 'always', '32K': 'always' } });
    const p = m.spawn();
    // Out of order: slot 15 first.
    const a = folio64ish(m, p);
    m.kernel.setPtes(p, V + 15 * PAGE, a(15));
    for (let i = 0; i < 15; i++) m.kernel.setPtes(p, V + i * PAGE, a(i));
    expect(slots(m, p).some(hasCont)).toBe(false);
    // Slot 7 read-only: no fold (A/D differences alone would not stop it: F1).
    const W = V + 0x100000;
    for (let i = 0; i < 16; i++) m.kernel.setPtes(p, W + i * PAGE, a(i, { write: i !== 7 }));
    expect(slots(m, p, W).some(hasCont)).toBe(false);
    expect(m.stats.contpte.folds).toBe(0);

    // A 32 KiB folio at a 16-aligned frame followed by another: 16 consecutive frames, but no one folio covers the block.
    const q = m.spawn();
    const heads = new Set<number>();
    for (let k = 0; k < 8; k++) {
      const s = q.mmap({ length: 0x8000, prot: 'rw', addr: 0x6000_0000 + k * 0x10000 });
      q.write(s.start, 1);
      const got = q.entry(s.start).pfn!;
      expect(m.frame(got).order).toBe(3);
      heads.add(got);
    }
    const pfn = [...heads].find((h) => h % 16 === 0 && heads.has(h + 8)) ?? -1;
    expect(pfn).toBeGreaterThan(0);
    const X = V + 0x200000;
    for (let i = 0; i < 16; i++) m.kernel.setPtes(q, X + i * PAGE, m.arch.makePte({ pfn: pfn + i, write: true }));
    expect(slots(m, q, X).some(hasCont)).toBe(false);
    expect(m.stats.contpte.folds).toBe(0);
  });

  it('F5b: special entries (the zero page) never fold', async () => {
    const m = await arm();
    const p = m.spawn();
    const a = p.mmap({ length: K64, prot: 'r', addr: 0x4000_0000 });
    p.touch(a.start, K64, 'r');
    expect(slots(m, p, a.start).some(hasCont)).toBe(false);
    expect(p.entry(a.start)).toMatchObject({ special: true });
  });

  it('F8: set_ptes of 32 entries over two aligned blocks writes CONT directly with no flush; a misaligned frame gets none', async () => {
    const m = await arm();
    const p = m.spawn();
    const s = p.mmap({ length: 2 * K64, prot: 'rw', addr: 0x4000_0000 });
    p.write(s.start, 1);
    const pfn = p.entry(s.start).pfn!;
    expect(m.frame(pfn).order).toBe(5);
    m.clearFlushLog();
    m.kernel.setPtes(p, V, m.arch.makePte({ pfn, write: true }), 32);
    expect([...slots(m, p), ...slots(m, p, V + K64)].every(hasCont)).toBe(true);
    expect(m.flushLog).toEqual([]);
    m.kernel.setPtes(p, V + 0x100000, m.arch.makePte({ pfn: pfn + 8, write: true }), 16);
    expect(slots(m, p, V + 0x100000).some(hasCont)).toBe(false);
    expect(m.stats.contpte.folds).toBe(0);
  });
});

/** PTE values for 16 consecutive frames of a 64 KiB folio. */
function folio64ish(m: Machine, p: Process): (i: number, f?: { write?: boolean }) => bigint {
  const f = folio64(m, p, 0x4000_0000);
  return (i, o = {}) => f.pte(i, o);
}

describe('getters (F10, F11)', () => {
  it('ptep_get leaks CONT and gathers A/D; setting that value back stores it without CONT', async () => {
    const m = await arm({ tlb: 'neoverse-n1' });
    const p = m.spawn();
    const a = p.mmap({ length: K64, prot: 'rw', addr: 0x4000_0000 });
    p.write(a.start, 1);                                            // folded at fault time
    m.kernel.clearYoungDirtyPtes(p, a.start, 16, { young: true, dirty: true });
    m.kernel.flushTlbMm(p);
    expect(slots(m, p, a.start).every((v) => hasCont(v) && !m.arch.decode(v, 'pte').young && !m.arch.decode(v, 'pte').dirty)).toBe(true);
    p.read(a.start + 3 * PAGE);                                     // hardware sets AF in slot 3
    m.kernel.flushTlbMm(p);
    p.write(a.start + 9 * PAGE, 2, { cpu: 1 });                      // and dirty (DBM) in slot 9
    expect(m.arch.decode(m.kernel.ptepGetRaw(p, a.start), 'pte')).toMatchObject({ young: false, dirty: false });
    const g = m.kernel.ptepGet(p, a.start);
    expect(m.arch.decode(g, 'pte')).toMatchObject({ young: true, dirty: true, cont: true, size: K64 });
    m.kernel.setPtes(p, a.start, g);                                 // unfolds, writes without CONT
    expect(hasCont(m.kernel.ptepGetRaw(p, a.start))).toBe(false);
    expect(slots(m, p, a.start).some(hasCont)).toBe(false);
    expect(m.stats.contpte.unfolds).toBe(1);
  });
});

describe('changes to folded blocks (F13-F23)', () => {
  async function folded(): Promise<{ m: Machine; p: Process; a: number }> {
    const m = await arm();
    const p = m.spawn();
    const a = p.mmap({ length: K64, prot: 'rw', addr: 0x4000_0000 }).start;
    p.write(a, 1);
    expect(slots(m, p, a).every(hasCont)).toBe(true);
    m.clearFlushLog();
    return { m, p, a };
  }

  it('F13: rewriting the last slot unfolds (flush 1), writes, and refolds (flush 2)', async () => {
    const { m, p, a } = await folded();
    const v = m.kernel.ptepGetRaw(p, a + 15 * PAGE) & ~CONT & ~(1n << 10n);   // made old
    m.kernel.setPtes(p, a + 15 * PAGE, v);
    expect(slots(m, p, a).every(hasCont)).toBe(true);
    expect(m.flushLog.map((l) => [l.start, l.end])).toEqual([[a, a + K64], [a, a + K64]]);
    expect(m.stats.contpte).toEqual({ folds: 1, unfolds: 1 });
  });

  it("F14: get_and_clear on slot 4 unfolds; the others keep the block's ORed A/D without CONT", async () => {
    const { m, p, a } = await folded();
    const v = m.kernel.ptepGetAndClear(p, a + 4 * PAGE);
    expect(m.arch.decode(v, 'pte')).toMatchObject({ young: true, dirty: true, cont: false });
    const after = slots(m, p, a);
    expect(after[4]).toBe(0n);
    after.forEach((s, i) => { if (i !== 4) expect(m.arch.decode(s, 'pte')).toMatchObject({ cont: false, young: true, dirty: true }); });
  });

  it('F16, F17 and whole blocks: partial wrprotect unfolds, a whole-block one keeps CONT with no flush', async () => {
    const { m, p, a } = await folded();
    m.kernel.wrprotectPtes(p, a, 16);
    expect(slots(m, p, a).every((s) => hasCont(s) && !m.arch.decode(s, 'pte').write)).toBe(true);
    expect(m.flushLog).toEqual([]);
    const b = await folded();
    b.m.kernel.wrprotectPtes(b.p, b.a + 4 * PAGE, 8);
    const s = slots(b.m, b.p, b.a);
    expect(s.some(hasCont)).toBe(false);
    s.forEach((v, i) => expect(b.m.arch.decode(v, 'pte').write).toBe(i < 4 || i >= 12));
    const c = await folded();
    c.m.kernel.wrprotectPtes(c.p, c.a + 5 * PAGE);
    expect(slots(c.m, c.p, c.a).map((v) => c.m.arch.decode(v, 'pte').write)).toEqual(Array.from({ length: 16 }, (_, i) => i !== 5));
    expect(c.m.flushLog).toHaveLength(1);
  });

  it('F19: clear_flush_young flushes the block once only if something was young', async () => {
    const { m, p, a } = await folded();
    expect(m.kernel.ptepClearFlushYoung(p, a + 2 * PAGE)).toBe(true);
    expect(slots(m, p, a).every((s) => hasCont(s) && !m.arch.decode(s, 'pte').young)).toBe(true);
    expect(m.flushLog.map((l) => [l.start, l.end])).toEqual([[a, a + K64]]);
    expect(m.kernel.ptepClearFlushYoung(p, a + 2 * PAGE)).toBe(false);
    expect(m.flushLog).toHaveLength(1);
  });

  it('F20, F22: set_access_flags is a no-op for the gathered value, unfolds only when the write permission changes', async () => {
    const { m, p, a } = await folded();
    const g = m.kernel.ptepGet(p, a + PAGE) & ~CONT;
    expect(m.kernel.ptepSetAccessFlags(p, a + PAGE, g, false)).toBe(false);
    m.kernel.wrprotectPtes(p, a, 16);                                  // read-only, still folded
    const ro = m.kernel.ptepGet(p, a + PAGE) & ~CONT;
    const rw = m.arch.makePte({ pfn: m.arch.decode(ro, 'pte').pfn!, write: true, dirty: true });
    expect(m.kernel.ptepSetAccessFlags(p, a + PAGE, rw, true)).toBe(true);
    const s = slots(m, p, a);
    expect(s.some(hasCont)).toBe(false);
    expect(s.map((v) => m.arch.decode(v, 'pte').write)).toEqual(Array.from({ length: 16 }, (_, i) => i === 1));
  });

  it('F23: clear_young_dirty_ptes of one folded slot widens to the whole block, no unfold', async () => {
    const { m, p, a } = await folded();
    m.kernel.clearYoungDirtyPtes(p, a + 6 * PAGE, 1, { young: true, dirty: true });
    expect(slots(m, p, a).every((s) => hasCont(s) && !m.arch.decode(s, 'pte').young && !m.arch.decode(s, 'pte').dirty)).toBe(true);
    expect(m.stats.contpte.unfolds).toBe(0);
  });
});

describe('lockless reads and the invalid window (F25, F26)', () => {
  it('a lockless read during an unfold returns the old gathered value, the new one, or asks to retry; never a mix', async () => {
    const m = await arm({ tlb: 'neoverse-n1' });
    const p = m.spawn();
    const a = p.mmap({ length: K64, prot: 'rw', addr: 0x4000_0000 }).start;
    p.write(a, 1);
    m.kernel.clearYoungDirtyPtes(p, a, 16, { young: true });
    m.kernel.flushTlbMm(p);
    p.read(a + 9 * PAGE);                                             // young only in slot 9
    const before = m.kernel.ptepGet(p, a + 6 * PAGE);
    const seen: (bigint | null)[] = [];
    const kinds: string[] = [];
    let blocked = 0;
    m.kernel.ptepGetAndClear(p, a + 4 * PAGE, {
      onStep: (s) => {
        kinds.push(s.kind);
        seen.push(m.kernel.ptepGetLockless(p, a + 6 * PAGE));
        // A CPU that has no translation cached faults into the invalid block and waits for the lock.
        if (s.kind === 'flush') {
          const r = p.read(a + 12 * PAGE, { cpu: 1 });
          expect(r).toMatchObject({ ok: false, blocked: 'page-table-lock' });
          blocked++;
        }
      },
    });
    const after = m.kernel.ptepGetRaw(p, a + 6 * PAGE);
    expect(kinds).toEqual([...Array(16).fill('entry'), 'flush', ...Array(16).fill('entry')]);
    expect(seen.filter((v) => v === null).length).toBeGreaterThan(0);
    for (const v of seen) if (v !== null) expect([before, after, 0n]).toContain(v);
    expect(seen.at(-1)).toBe(after);
    expect(m.arch.decode(after, 'pte')).toMatchObject({ cont: false, young: true });
    expect(blocked).toBe(1);
    expect(p.read(a + 12 * PAGE, { cpu: 1 })).toMatchObject({ ok: true, tag: 0 });
  });

  it('a fault run inside onStep that folds a block does not yield itself, and the stepped operation keeps its lock', async () => {
    const m = await arm({ thp: 'always' });
    const p = m.spawn();
    const a = p.mmap({ length: K64, prot: 'rw', addr: 0x4000_0000 }).start;
    p.write(a, 1);
    // q maps a huge tmpfs folio with PTEs (after its PMD was zapped), slots 0..14 of a block one write fault each.
    const q = m.spawn();
    const f = m.memfd({ size: 2 * MiB, huge: true });
    const b = q.mmap({ length: 2 * MiB, prot: 'rw', addr: 0x4000_0000, shared: true, file: f }).start;
    q.write(b, 2);
    q.madvise(b, 2 * MiB, 'nohugepage');
    q.mprotect(b + 511 * PAGE, PAGE, 'r');
    for (let i = 0; i < 15; i++) q.write(b + i * PAGE, 2);
    expect(m.frame(q.entry(b).pfn!).order).toBe(9);
    expect(hasCont(m.kernel.ptepGetRaw(q, b))).toBe(false);
    const steps: string[] = [];
    const old = m.kernel.ptepGetAndClear(p, a + 4 * PAGE, {
      onStep: (s) => {
        steps.push(`${s.kind} ${s.pid}`);
        if (s.kind !== 'flush') return;                               // p's block is all invalid here
        expect(q.write(b + 15 * PAGE, 3, { cpu: 1 })).toMatchObject({ ok: true, faults: 1 });
        expect(hasCont(m.kernel.ptepGetRaw(q, b))).toBe(true);
        // The lock of p's table is still held after q's fold went through its own invalid window.
        expect(p.read(a + 12 * PAGE, { cpu: 1 })).toMatchObject({ ok: false, blocked: 'page-table-lock' });
      },
    });
    expect(steps).toEqual([...Array(16).fill(`entry ${p.pid}`), `flush ${p.pid}`, ...Array(16).fill(`entry ${p.pid}`)]);
    m.kernel.setPtes(p, a + 4 * PAGE, old);                          // what the caller of get_and_clear puts back
    expectClean(m);
  });
});

describe('where folding must not happen (acceptance 8)', () => {
  it('the kernel mm never folds; x86-64 has no contiguous bit at all', async () => {
    const m = await arm();
    const p = m.spawn();
    const f = folio64(m, p, 0x4000_0000);
    const k = m.kernel.initMm;
    m.kernel.setPtes(k, V, f.pte(0), 16);
    expect(slots(m, k).some(hasCont)).toBe(false);
    for (let i = 0; i < 16; i++) m.kernel.setPtes(k, V + 0x100000 + i * PAGE, f.pte(i));
    expect(slots(m, k, V + 0x100000).some(hasCont)).toBe(false);
    expect(m.stats.contpte.folds).toBe(0);

    const x = await machine({ arch: 'x86_64', mthp: { '64K': 'always' } });
    const q = x.spawn();
    const b = q.mmap({ length: K64, prot: 'rw', addr: 0x4000_0000 });
    q.write(b.start, 1);
    expect(x.frame(q.entry(b.start).pfn!).order).toBe(4);
    expect(q.entry(b.start)).toMatchObject({ cont: false, size: PAGE });
    expect(x.stats.contpte).toEqual({ folds: 0, unfolds: 0 });
  });

  it('contpte: false on arm64 maps mTHP without folding', async () => {
    const m = await arm({ contpte: false });
    const p = m.spawn();
    const a = p.mmap({ length: K64, prot: 'rw', addr: 0x4000_0000 });
    p.write(a.start, 1);
    expect(slots(m, p, a.start).some(hasCont)).toBe(false);
  });
});

describe('the core\'s paths on folded blocks', () => {
  it('mprotect of a whole block unfolds and refolds; of part, leaves it unfolded; DONTNEED of part unfolds', async () => {
    const m = await arm();
    const p = m.spawn();
    const a = p.mmap({ length: 4 * K64, prot: 'rw', addr: 0x4000_0000 });
    p.touch(a.start, a.length, 'w', 7);
    expect(m.kernel.contScan(p, a.start, a.length)).toMatchObject({ folded: 4, foldable: 0 });   // two 128K folios: 4 blocks
    p.mprotect(a.start, K64, 'r');
    expect(slots(m, p, a.start).every((v) => hasCont(v) && !m.arch.decode(v, 'pte').write)).toBe(true);
    expect(m.stats.contpte).toEqual({ folds: 1, unfolds: 1 });
    p.mprotect(a.start + K64, 4 * PAGE, 'r');
    expect(slots(m, p, a.start + K64).some(hasCont)).toBe(false);
    p.madvise(a.start + 2 * K64 + 8 * PAGE, 8 * PAGE, 'dontneed');
    expect(slots(m, p, a.start + 2 * K64).some(hasCont)).toBe(false);
    expect(m.kernel.contScan(p, a.start, a.length)).toMatchObject({ folded: 2, broken: 0 });
    expect(p.read(a.start + 3 * PAGE)).toMatchObject({ ok: true, tag: 7 });
    expectClean(m);
  });

  it('F28: fork keeps the parent folded (read-only, no unfold) and folds the child; a COW write unfolds only the writer', async () => {
    const m = await arm();
    const p = m.spawn();
    const a = p.mmap({ length: 2 * K64, prot: 'rw', addr: 0x4000_0000 });
    p.touch(a.start, a.length, 'w', 9);
    m.clearFlushLog();
    const c = p.fork();
    for (const [who, q] of [['parent', p], ['child', c]] as const) {
      const s = slots(m, q, a.start);
      expect(s.every((v) => hasCont(v) && !m.arch.decode(v, 'pte').write), who).toBe(true);
    }
    expect(slots(m, c, a.start).every((v) => !m.arch.decode(v, 'pte').young)).toBe(true);
    expect(m.stats.contpte).toEqual({ folds: 0, unfolds: 0 });
    expect(c.write(a.start + 3 * PAGE, 10)).toMatchObject({ ok: true });
    expect(slots(m, c, a.start).some(hasCont)).toBe(false);
    expect(slots(m, p, a.start).every(hasCont)).toBe(true);
    expect(p.read(a.start + 3 * PAGE)).toMatchObject({ tag: 9 });
    expectClean(m);
  });

  it('fork with a DMA pin on a folded folio: its pages are copied into the child early, the parent block stays folded and writable', async () => {
    const m = await arm();
    const p = m.spawn();
    const a = p.mmap({ length: K64, prot: 'rw', addr: 0x4000_0000 });
    p.touch(a.start, K64, 'w', 4);
    const pin = m.pin(p, a.start + 2 * PAGE, 1, { write: true });
    const c = p.fork();
    expect(p.lastFork.earlyCopies).toBe(16);
    expect(slots(m, p, a.start).every((v) => hasCont(v) && m.arch.decode(v, 'pte').write)).toBe(true);
    expect(slots(m, c, a.start).some(hasCont)).toBe(false);
    expect(c.read(a.start + 5 * PAGE)).toMatchObject({ ok: true, tag: 4 });
    pin.unpin();
    expectClean(m);
  });

  it('a THP split writes its 512 PTEs as 32 folded blocks', async () => {
    const m = await arm({ thp: 'always' });
    const p = m.spawn();
    const a = p.mmap({ length: 2 * MiB, prot: 'rw' });
    p.write(a.start, 1);
    expect(p.entry(a.start).level).toBe('pmd');
    p.mprotect(a.start + 2 * K64 + PAGE, PAGE, 'r');                   // one page: splits the PMD
    expect(m.kernel.contScan(p, a.start, 2 * MiB)).toMatchObject({ folded: 31, foldable: 0, broken: 0 });
    expectClean(m);
  });

  it('replay: the same random trace over 8 MiB walks far less with folded 64 KiB mTHP than with 4 KiB pages', async () => {
    const trace = Trace.random({ start: 0x4000_0000, length: 8 * MiB, count: 20000, seed: 3 });
    const walks = async (mthp: boolean): Promise<number> => {
      const m = await arm({ tlb: 'neoverse-n1', thp: 'never', mthp: mthp ? { '64K': 'always' } : {} });
      const p = m.spawn();
      const a = p.mmap({ length: 8 * MiB, prot: 'rw', addr: 0x4000_0000 });
      p.touch(a.start, a.length, 'w', 1);
      expect(m.kernel.contScan(p, a.start, a.length).folded).toBe(mthp ? 128 : 0);
      m.replay(p, trace);
      return m.replay(p, trace).tlb!.walks;
    };
    const [small, folded] = [await walks(false), await walks(true)];
    expect(folded * 4).toBeLessThan(small);
  });

  it('TLB reach: a folded block is one 64K TLB entry on neoverse-n1', async () => {
    const run = async (contpte: boolean): Promise<{ walks: number; size: string | undefined }> => {
      const m = await arm({ tlb: 'neoverse-n1', contpte });
      const p = m.spawn();
      const a = p.mmap({ length: K64, prot: 'rw', addr: 0x4000_0000 });
      p.write(a.start, 1);
      const before = m.cpu(1).tlb.stats.walks;
      for (let i = 0; i < 16; i++) p.read(a.start + i * PAGE, { cpu: 1 });
      return { walks: m.cpu(1).tlb.stats.walks - before, size: m.cpu(1).tlb.lookup(p, a.start + 7 * PAGE)?.size };
    };
    expect(await run(true)).toEqual({ walks: 1, size: '64K' });
    expect(await run(false)).toEqual({ walks: 16, size: '4K' });
  });
});
