// hmm_range_fault and mmu interval notifiers (SEMANTICS §4.2, §9.E).
// Not confirmed on the host: its kernel has CONFIG_DEVICE_PRIVATE off and no
// test_hmm driver, and neither interface is reachable from user space; the
// expectations follow mm/hmm.c (hmm_vma_handle_pte, hmm_vma_fault, the
// hmm_range_fault loop) and SEMANTICS, and say where they follow the code
// over the spec's shorthand (E13).

import { describe, it, expect } from 'vitest';
import { machine, expectClean, PAGE, MiB } from './helpers.js';
import { HMM_PFN_VALID, HMM_PFN_WRITE, HMM_PFN_ERROR, HMM_PFN_REQ_FAULT, HMM_PFN_REQ_WRITE, decodeHmmPfn, type Machine, type Process } from '../src/index.js';

const V = HMM_PFN_VALID, W = HMM_PFN_WRITE;

/** [present RW, present RO (shared with a child after fork), none, swapped] at a. */
async function fourPages(): Promise<{ m: Machine; p: Process; a: number }> {
  const m = await machine({ swap: '16MiB' });
  const p = m.spawn();
  const a = p.mmap({ length: 4 * PAGE, prot: 'rw' }).start;
  p.write(a, 1);
  p.write(a + PAGE, 2);
  p.write(a + 3 * PAGE, 4);
  p.madvise(a + 3 * PAGE, PAGE, 'pageout');
  p.mprotect(a + PAGE, PAGE, 'r');
  return { m, p, a };
}

describe('hmm_range_fault', () => {
  it('E1: a snapshot without faulting: pfn|VALID|WRITE, pfn|VALID, 0, 0 and no CPU fault', async () => {
    const { m, p, a } = await fourPages();
    const n = m.hmm.intervalNotifier(p, a, 4 * PAGE);
    const faults = p.faults.minor + p.faults.major;
    const r = m.hmm.rangeFault({ notifier: n, start: a, end: a + 4 * PAGE });
    const pfn = (i: number): bigint => BigInt(p.entry(a + i * PAGE).pfn!);
    expect([...r.pfns]).toEqual([pfn(0) | V | W, pfn(1) | V, 0n, 0n]);
    expect(r.cpuFaults).toBe(0);
    expect(p.faults.minor + p.faults.major).toBe(faults);
    expect(p.entry(a + 3 * PAGE).kind).toBe('swap');
    expectClean(m);
  });

  it('E2: with REQ_FAULT the none page is faulted in and the swapped one swapped in; every output VALID, the read-only one not WRITE', async () => {
    const { m, p, a } = await fourPages();
    const n = m.hmm.intervalNotifier(p, a, 4 * PAGE);
    const r = m.hmm.rangeFault({ notifier: n, start: a, end: a + 4 * PAGE, defaultFlags: HMM_PFN_REQ_FAULT });
    const out = [...r.pfns].map(decodeHmmPfn);
    expect(out.map((o) => o.valid)).toEqual([true, true, true, true]);
    expect(out.map((o) => o.write)).toEqual([true, false, false, true]);   // the none page: the zero page, read-only
    for (let i = 0; i < 4; i++) expect(out[i]!.pfn).toBe(p.entry(a + i * PAGE).pfn);
    expect(p.entry(a + 2 * PAGE).pfn).toBe(m.frame(out[2]!.pfn).zero ? out[2]!.pfn : -1);
    expect(p.read(a + 3 * PAGE)).toMatchObject({ tag: 4, faults: 0 });
    expect(r.cpuFaults).toBe(2);
    expectClean(m);
  });

  it('E13: pfnFlagsMask selects which inputs count: the fault starts at page 2, the pages before are only read', async () => {
    const { m, p, a } = await fourPages();
    const n = m.hmm.intervalNotifier(p, a, 4 * PAGE);
    const pfns = new BigUint64Array([0n, 0n, HMM_PFN_REQ_FAULT, 0n]);
    const r = m.hmm.rangeFault({ notifier: n, start: a, end: a + 3 * PAGE, pfns: pfns.subarray(0, 3), pfnFlagsMask: HMM_PFN_REQ_FAULT });
    expect(decodeHmmPfn(pfns[2]!).valid).toBe(true);
    expect(decodeHmmPfn(pfns[0]!)).toMatchObject({ valid: true, write: true });
    expect(p.entry(a + 3 * PAGE).kind).toBe('swap');                        // outside the range: untouched
    expect(r.cpuFaults).toBe(1);
    // hmm_vma_fault faults every page from the first that needs it to the end of the walked range:
    // over all four pages, the swapped page 3 comes in too although nothing asked for it.
    const all = new BigUint64Array([0n, 0n, HMM_PFN_REQ_FAULT, 0n]);
    p.madvise(a + 2 * PAGE, PAGE, 'dontneed');
    const r2 = m.hmm.rangeFault({ notifier: n, start: a, end: a + 4 * PAGE, pfns: all, pfnFlagsMask: HMM_PFN_REQ_FAULT });
    expect(r2.cpuFaults).toBe(2);
    expect(decodeHmmPfn(all[3]!)).toMatchObject({ valid: true, pfn: p.entry(a + 3 * PAGE).pfn });
    expectClean(m);
  });

  it('REQ_WRITE on a COW-shared page breaks COW: the new frame with WRITE, the child keeps the old one; EPERM without VM_WRITE', async () => {
    const m = await machine();
    const p = m.spawn();
    const a = p.mmap({ length: 2 * PAGE, prot: 'rw' }).start;
    p.touch(a, 2 * PAGE, 'w', 7);
    const c = p.fork();
    const old = p.entry(a).pfn!;
    const n = m.hmm.intervalNotifier(p, a, 2 * PAGE);
    const r = m.hmm.rangeFault({ notifier: n, start: a, end: a + PAGE, defaultFlags: HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE });
    const out = decodeHmmPfn(r.pfns[0]!);
    expect(out).toMatchObject({ valid: true, write: true });
    expect(out.pfn).not.toBe(old);
    expect(out.pfn).toBe(p.entry(a).pfn);
    expect(c.entry(a).pfn).toBe(old);
    expect(p.read(a)).toMatchObject({ tag: 7 });
    // The COW break invalidated the range: the driver's first attempt saw EBUSY and went again.
    expect(r.retries).toBe(1);
    expect(r.cpuFaults).toBe(1);
    // E4: a write request where the VMA has no VM_WRITE.
    p.mprotect(a + PAGE, PAGE, 'r');
    const pfns = new BigUint64Array(2);
    expect(() => m.hmm.rangeFault({ notifier: n, start: a, end: a + 2 * PAGE, pfns, defaultFlags: HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE }))
      .toThrow(expect.objectContaining({ code: 'EPERM' }));
    expect(decodeHmmPfn(pfns[0]!)).toMatchObject({ valid: true, write: true });  // the entry before the failing one holds its output
    expectClean(m);
  });

  it('E5, E10: PROT_NONE is never VALID (a VMA without VM_READ is ERROR); THP: 512 entries pfn+i with order 9; the zero page VALID not WRITE', async () => {
    const m = await machine({ thp: 'always' });
    const p = m.spawn();
    const a = p.mmap({ length: 4 * MiB, prot: 'rw', addr: 0x4000_0000 }).start;
    p.write(a, 1);                                                           // a THP
    p.read(a + 2 * MiB);                                                     // the huge zero page
    const b = p.mmap({ length: 2 * PAGE, prot: 'rw' }).start;
    p.write(b, 1);
    p.mprotect(b, 2 * PAGE, 'none');
    const n = m.hmm.intervalNotifier(p, a, 4 * MiB);
    const r = m.hmm.rangeFault({ notifier: n, start: a, end: a + 4 * MiB });
    const head = p.entry(a).pfn!;
    for (const i of [0, 1, 300, 511]) expect(decodeHmmPfn(r.pfns[i]!)).toMatchObject({ valid: true, write: true, order: 9, pfn: head + i });
    const z = decodeHmmPfn(r.pfns[512 + 5]!);
    expect(z).toMatchObject({ valid: true, write: false, order: 9 });
    expect(m.frame(z.pfn).zero).toBe(true);
    const nb = m.hmm.intervalNotifier(p, b, 2 * PAGE);
    expect([...m.hmm.rangeFault({ notifier: nb, start: b, end: b + 2 * PAGE }).pfns]).toEqual([HMM_PFN_ERROR, HMM_PFN_ERROR]);
    // Asking for a fault there: -EFAULT.
    expect(() => m.hmm.rangeFault({ notifier: nb, start: b, end: b + PAGE, defaultFlags: HMM_PFN_REQ_FAULT })).toThrow(expect.objectContaining({ code: 'EFAULT' }));
    expectClean(m);
  });

  it('a hole outside any VMA is ERROR without a fault request, EFAULT with one', async () => {
    const m = await machine();
    const p = m.spawn();
    const a = p.mmap({ length: 3 * PAGE, prot: 'rw' }).start;
    p.munmap(a + PAGE, PAGE);
    p.write(a, 1);
    const n = m.hmm.intervalNotifier(p, a, 3 * PAGE);
    const r = m.hmm.rangeFault({ notifier: n, start: a, end: a + 3 * PAGE });
    expect(r.pfns[1]).toBe(HMM_PFN_ERROR);
    expect(r.pfns[2]).toBe(0n);
    expect(() => m.hmm.rangeFault({ notifier: n, start: a, end: a + 3 * PAGE, defaultFlags: HMM_PFN_REQ_FAULT })).toThrow(expect.objectContaining({ code: 'EFAULT' }));
    expectClean(m);
  });

  it('an invalidation between read_begin and the walk: EBUSY with that sequence; a new sequence succeeds', async () => {
    const m = await machine();
    const p = m.spawn();
    const a = p.mmap({ length: 2 * PAGE, prot: 'rw' }).start;
    p.touch(a, 2 * PAGE, 'w', 1);
    const n = m.hmm.intervalNotifier(p, a, 2 * PAGE);
    const seq = n.readBegin();
    expect(n.checkRetry(seq)).toBe(false);
    p.madvise(a + PAGE, PAGE, 'dontneed');
    expect(n.checkRetry(seq)).toBe(true);
    expect(n.invalidations).toBe(1);
    expect(() => m.hmm.rangeFault({ notifier: n, start: a, end: a + 2 * PAGE, notifierSeq: seq })).toThrow(expect.objectContaining({ code: 'EBUSY' }));
    const again = n.readBegin();
    const r = m.hmm.rangeFault({ notifier: n, start: a, end: a + 2 * PAGE, notifierSeq: again });
    expect(decodeHmmPfn(r.pfns[0]!).valid).toBe(true);
    expect(r.pfns[1]).toBe(0n);
    // A change outside the notifier's range does not disturb it.
    const b = p.mmap({ length: PAGE, prot: 'rw' }).start;
    p.write(b, 1);
    p.madvise(b, PAGE, 'dontneed');
    expect(n.checkRetry(again)).toBe(false);
    expectClean(m);
  });

  it('E8, E10: a special PTE (not the zero page) is ERROR, EFAULT when a fault is asked; a VM_PFNMAP VMA is all ERROR and the walk goes on', async () => {
    const m = await machine();
    const p = m.spawn();
    const a = p.mmap({ length: 2 * PAGE, prot: 'rw' }).start;
    const pfnmap = p.mmap({ length: 2 * PAGE, prot: 'r', addr: a + 2 * PAGE }).start;   // its own VMA (no merge)
    const after = p.mmap({ length: PAGE, prot: 'rw', addr: a + 4 * PAGE }).start;
    p.write(after, 1);
    // A pfnmap-like special entry inside a normal VMA (the frame is not ptemu's to count).
    m.kernel.setPtes(p, a, m.arch.makePte({ pfn: 0x3000, special: true, write: true }));
    m.debug.setVmaFlags(p, pfnmap, { set: 0x400 });                        // VM_PFNMAP
    const n = m.hmm.intervalNotifier(p, a, 5 * PAGE);
    const r = m.hmm.rangeFault({ notifier: n, start: a, end: a + 5 * PAGE });
    expect([...r.pfns].slice(0, 4)).toEqual([HMM_PFN_ERROR, 0n, HMM_PFN_ERROR, HMM_PFN_ERROR]);
    expect(decodeHmmPfn(r.pfns[4]!)).toMatchObject({ valid: true, write: true });
    expect(() => m.hmm.rangeFault({ notifier: n, start: a, end: a + PAGE, defaultFlags: HMM_PFN_REQ_FAULT })).toThrow(expect.objectContaining({ code: 'EFAULT' }));
    expect(() => m.hmm.rangeFault({ notifier: n, start: pfnmap, end: pfnmap + PAGE, defaultFlags: HMM_PFN_REQ_FAULT })).toThrow(expect.objectContaining({ code: 'EFAULT' }));
    m.kernel.setPtes(p, a, 0n);
    m.debug.setVmaFlags(p, pfnmap, { clear: 0x400 });
    expectClean(m);
  });

  it('bad arguments are refused with the argument named', async () => {
    const m = await machine();
    const p = m.spawn();
    const a = p.mmap({ length: 2 * PAGE, prot: 'rw' }).start;
    const n = m.hmm.intervalNotifier(p, a, 2 * PAGE);
    expect(() => m.hmm.rangeFault({ notifier: n, start: a + 1, end: a + PAGE })).toThrow(expect.objectContaining({ arg: 'start' }));
    expect(() => m.hmm.rangeFault({ notifier: n, start: a, end: a + 4 * PAGE })).toThrow(expect.objectContaining({ arg: 'start' }));
    expect(() => m.hmm.rangeFault({ notifier: n, start: a, end: a + PAGE, pfns: new BigUint64Array(3) })).toThrow(expect.objectContaining({ arg: 'pfns' }));
    expect(() => m.hmm.rangeFault({ notifier: n, start: a, end: a + PAGE, defaultFlags: 1n })).toThrow(expect.objectContaining({ arg: 'defaultFlags' }));
    expect(() => m.hmm.rangeFault({ notifier: {} as typeof n, start: a, end: a + PAGE })).toThrow(expect.objectContaining({ arg: 'notifier' }));
    expect(() => n.checkRetry(-1)).toThrow(expect.objectContaining({ arg: 'seq' }));
    expect(() => m.hmm.intervalNotifier(p, a, 0)).toThrow(expect.objectContaining({ arg: 'length' }));
    n.remove();
    expect(() => n.readBegin()).toThrow(expect.objectContaining({ arg: 'notifier' }));
    expectClean(m);
  });
});
