// Device-private memory (SEMANTICS §4.2 E7, §6.3): migrate_vma to a device,
// device-private entries, migrate_to_ram on a CPU access, hmm_range_fault's
// owner rule, fork and zap of device-private entries.

import { describe, it, expect } from 'vitest';
import { machine, expectClean, PAGE } from './helpers.js';
import { HMM_PFN_REQ_FAULT, decodeHmmPfn } from '../src/index.js';

/** Swap types of device-private entries (include/linux/swap.h, newest kernels). */
const SWP_DEVICE_WRITE = 28, SWP_DEVICE_READ = 29;

describe('device-private memory', () => {
  it('round trip: migrate to the device, a CPU access faults it back (migrate_to_ram) with the same content', async () => {
    const m = await machine();
    const p = m.spawn();
    const a = p.mmap({ length: 4 * PAGE, prot: 'rw' }).start;
    for (let i = 0; i < 4; i++) p.write(a + i * PAGE, 0x100 + i);
    const gpu = m.device('gpu');
    gpu.addMemory(16);
    const mir = gpu.mirror(p);
    const before = m.stats.freeFrames;
    expect(mir.migrateToDevice(a, 4)).toBe(4);
    expect(m.stats.freeFrames).toBe(before + 4);                             // the system pages went back
    const e = p.entry(a + PAGE);
    expect(e).toMatchObject({ kind: 'device-private', swapType: SWP_DEVICE_WRITE });
    expect(gpu.memory).toMatchObject({ pages: 16, free: 12, migratedToDevice: 4, migratedToRam: 0 });
    expect(p.pagemap(a + PAGE)).toMatchObject({ present: false, swapped: true });
    expect(p.rss.anon).toBe(4);
    expectClean(m);
    // The CPU reads page 1: it comes back to a system page with its content, writable again.
    expect(p.read(a + PAGE)).toMatchObject({ ok: true, tag: 0x101 });
    expect(p.entry(a + PAGE)).toMatchObject({ kind: 'present', write: true });
    expect(gpu.memory).toMatchObject({ free: 13, migratedToRam: 1 });
    expect(p.write(a + 2 * PAGE, 7)).toMatchObject({ ok: true });
    expect(p.read(a + 2 * PAGE)).toMatchObject({ tag: 7 });
    expectClean(m);
    // mprotect makes a writable device-private entry readable, whatever the new protection (change_pte_range).
    p.mprotect(a + 3 * PAGE, PAGE, 'rw');
    expect(p.entry(a + 3 * PAGE)).toMatchObject({ kind: 'device-private', swapType: SWP_DEVICE_READ });
    expect(p.write(a + 3 * PAGE, 8)).toMatchObject({ ok: true });           // back in RAM, then a write fault
    expect(p.read(a + 3 * PAGE)).toMatchObject({ tag: 8 });
    expectClean(m);
    // munmap drops the rest: the device pages are free again.
    p.munmap(a, 4 * PAGE);
    expect(gpu.memory.free).toBe(16);
    expectClean(m);
  });

  it("E7: hmm_range_fault reports the owner's device pages as they are, never faulted; another owner faults them back", async () => {
    const m = await machine();
    const p = m.spawn();
    const a = p.mmap({ length: 2 * PAGE, prot: 'rw' }).start;
    p.touch(a, 2 * PAGE, 'w', 3);
    const gpu = m.device('gpu');
    gpu.addMemory(4);
    gpu.mirror(p).migrateToDevice(a, 2);
    const dev = p.entry(a);
    const n = m.hmm.intervalNotifier(p, a, 2 * PAGE);
    const own = m.hmm.rangeFault({ notifier: n, start: a, end: a + 2 * PAGE, defaultFlags: HMM_PFN_REQ_FAULT, devPrivateOwner: gpu });
    expect(decodeHmmPfn(own.pfns[0]!)).toMatchObject({ valid: true, write: true, pfn: dev.swapOffset });
    expect(own.cpuFaults).toBe(0);
    expect(p.entry(a).kind).toBe('device-private');
    // Without the owner (or another device): the page is faulted back to system memory.
    const other = m.hmm.rangeFault({ notifier: n, start: a, end: a + PAGE, defaultFlags: HMM_PFN_REQ_FAULT, devPrivateOwner: m.device('nic') });
    expect(other.cpuFaults).toBe(1);
    expect(p.entry(a).kind).toBe('present');
    expect(decodeHmmPfn(other.pfns[0]!)).toMatchObject({ valid: true, pfn: p.entry(a).pfn });
    expect(p.read(a)).toMatchObject({ tag: 3 });
    // Without a fault request another owner's device page reads as 0.
    const snap = m.hmm.rangeFault({ notifier: n, start: a + PAGE, end: a + 2 * PAGE });
    expect(snap.pfns[0]).toBe(0n);
    expectClean(m);
  });

  it('fork shares a device page: the writable entry becomes readable in both; each side faults its own copy back', async () => {
    const m = await machine();
    const p = m.spawn();
    const a = p.mmap({ length: PAGE, prot: 'rw' }).start;
    p.write(a, 0xab);
    const gpu = m.device('gpu');
    gpu.addMemory(4);
    gpu.mirror(p).migrateToDevice(a, 1);
    const c = p.fork();
    expect(p.entry(a)).toMatchObject({ kind: 'device-private', swapType: SWP_DEVICE_READ });
    expect(c.entry(a)).toMatchObject({ kind: 'device-private', swapType: SWP_DEVICE_READ, swapOffset: p.entry(a).swapOffset });
    expect(m.frame(p.entry(a).swapOffset!)).toMatchObject({ mapcount: 2, refcount: 3 });   // two mappings + the pool
    expectClean(m);
    expect(c.read(a)).toMatchObject({ ok: true, tag: 0xab });
    expect(c.write(a, 1)).toMatchObject({ ok: true });
    expect(p.read(a)).toMatchObject({ ok: true, tag: 0xab });
    expect(gpu.memory.free).toBe(4);
    expectClean(m);
    c.exit();
    p.exit();
    expectClean(m);
  });

  it('what cannot move stays: shared, pinned and zero pages; a shared or file VMA is EINVAL; no device memory is ENOMEM', async () => {
    const m = await machine();
    const p = m.spawn();
    const a = p.mmap({ length: 4 * PAGE, prot: 'rw' }).start;
    p.write(a, 1);
    p.write(a + PAGE, 2);
    p.read(a + 2 * PAGE);                                                    // the zero page
    const gpu = m.device('gpu');
    expect(() => gpu.mirror(p).migrateToDevice(a, 1)).toThrow(expect.objectContaining({ code: 'ENOMEM', arg: 'device' }));
    gpu.addMemory(8);
    expect(() => gpu.addMemory(8)).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    expect(() => m.device('x').addMemory(3)).toThrow(expect.objectContaining({ arg: 'pages' }));
    const pin = m.pin(p, a + PAGE, 1, { write: true });
    const mir = gpu.mirror(p);
    expect(mir.migrateToDevice(a, 4)).toBe(1);                               // page 0 only
    expect(p.entry(a + PAGE).kind).toBe('present');
    pin.unpin();
    const f = m.memfd({ size: PAGE });
    const s = p.mmap({ file: f, shared: true, length: PAGE, prot: 'rw' }).start;
    expect(() => mir.migrateToDevice(s, 1)).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    expectClean(m);
  });
});
