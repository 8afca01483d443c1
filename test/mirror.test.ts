// The seed's device mirrors (SEMANTICS §4.1, §9.E E14, E16, E17): mirror page
// tables filled by device faults, directory counts and pruning, and the mmu
// notifiers keeping them in step with the CPU.

import { describe, it, expect } from 'vitest';
import { machine, expectClean, PAGE, MiB } from './helpers.js';
import { HMM_PFN_REQ_FAULT, decodeHmmPfn } from '../src/index.js';

describe('device mirrors', () => {
  it('E14: a read fault inside a THP fills the whole PMD as 512 entries; the leaf directory counts 512', async () => {
    const m = await machine({ thp: 'always' });
    const p = m.spawn();
    const a = p.mmap({ length: 2 * MiB, prot: 'rw', addr: 0x4000_0000 }).start;
    p.write(a, 5);
    const head = p.entry(a).pfn!;
    const mir = m.device('gpu').mirror(p);
    expect(mir.stats).toMatchObject({ directories: 0, bytes: 0, validEntries: 0, rootBytes: 256 * 8 });   // (TASK_SIZE - 1 >> 39) + 1 entries
    expect(mir.fault(a + 77 * PAGE, 1, 'r')).toEqual({ cpuFaults: 0, retries: 0, backoffs: 0 });
    expect(mir.stats).toMatchObject({ directories: 3, bytes: 3 * PAGE, validEntries: 512 });
    expect(mir.leafDirectoryCount(a)).toBe(512);
    for (const i of [0, 77, 511]) expect(mir.lookup(a + i * PAGE)).toMatchObject({ valid: true, write: true, dirty: false, pfn: head + i });
    expect(mir.lookup(a + 2 * MiB).valid).toBe(false);
    // Faulting again fills nothing new.
    mir.fault(a, 512, 'r');
    expect(mir.stats.validEntries).toBe(512);
    expectClean(m);
  });

  it('E16: a write fault on a read-only PMD makes the CPU write-fault first, then the device fault succeeds on retry', async () => {
    const m = await machine({ thp: 'always' });
    const p = m.spawn();
    const a = p.mmap({ length: 2 * MiB, prot: 'rw', addr: 0x4000_0000 }).start;
    p.read(a);                                                               // the huge zero page, read-only
    const mir = m.device('gpu').mirror(p);
    mir.fault(a, 1, 'r');
    expect(mir.lookup(a)).toMatchObject({ valid: true, write: false });
    expect(m.frame(mir.lookup(a).pfn).zero).toBe(true);
    const r = mir.fault(a + 5 * PAGE, 1, 'w');
    expect(r).toEqual({ cpuFaults: 1, retries: 1, backoffs: 0 });
    const e = p.entry(a);
    expect(e).toMatchObject({ level: 'pmd', write: true });
    expect(mir.lookup(a + 5 * PAGE)).toMatchObject({ valid: true, write: true, pfn: e.pfn! + 5 });
    expect(mir.stats.validEntries).toBe(512);
    expectClean(m);
  });

  it('device faults on none, swapped and PROT_NONE pages: CPU faults and a retry, or EFAULT; a gap is EFAULT, a write to a read-only VMA EACCES', async () => {
    const m = await machine({ swap: '16MiB' });
    const p = m.spawn();
    const a = p.mmap({ length: 4 * PAGE, prot: 'rw' }).start;
    p.write(a + PAGE, 2);
    p.madvise(a + PAGE, PAGE, 'pageout');
    const mir = m.device('gpu').mirror(p);
    expect(mir.fault(a, 4, 'r')).toEqual({ cpuFaults: 4, retries: 1, backoffs: 0 });
    expect(p.read(a + PAGE)).toMatchObject({ tag: 2, faults: 0 });         // swapped in by the CPU fault
    expect(mir.lookup(a + PAGE)).toMatchObject({ valid: true, write: true });
    expect(mir.lookup(a)).toMatchObject({ valid: true, write: false });     // the zero page
    const b = p.mmap({ length: PAGE, prot: 'none' }).start;
    expect(() => mir.fault(b, 1, 'r')).toThrow(expect.objectContaining({ code: 'EFAULT' }));
    const c = p.mmap({ length: 2 * PAGE, prot: 'r' }).start;
    expect(() => mir.fault(c, 1, 'w')).toThrow(expect.objectContaining({ code: 'EACCES' }));
    p.munmap(c + PAGE, PAGE);
    p.read(c);
    expect(() => mir.fault(c, 2, 'r')).toThrow(expect.objectContaining({ code: 'EFAULT' }));
    expect(mir.lookup(c)).toMatchObject({ valid: true, write: false });     // filled before the gap
    expectClean(m);
  });

  it('E17: invalidating every entry of a directory frees it (pruning), up the tree; unmapping the range leaves 0 bytes', async () => {
    const m = await machine();
    const p = m.spawn();
    const a = p.mmap({ length: 3 * PAGE, prot: 'rw' }).start;
    const b = p.mmap({ length: PAGE, prot: 'rw', addr: 0x4000_0000 }).start;
    p.touch(a, 3 * PAGE, 'w', 1);
    p.write(b, 1);
    const mir = m.device('gpu').mirror(p);
    mir.fault(a, 3, 'r');
    mir.fault(b, 1, 'r');
    const dirs = mir.stats.directories;
    expect(mir.stats.validEntries).toBe(4);
    expect(mir.leafDirectoryCount(a)).toBe(3);
    p.madvise(a, 2 * PAGE, 'dontneed');
    expect(mir.stats).toMatchObject({ validEntries: 2, directories: dirs });
    expect(mir.leafDirectoryCount(a)).toBe(1);
    p.munmap(a, 3 * PAGE);
    expect(mir.stats.validEntries).toBe(1);
    expect(mir.leafDirectoryCount(a)).toBe(0);
    expect(mir.leafDirectoryCount(b)).toBe(1);
    expect(mir.stats.directories).toBeLessThan(dirs);                      // a's leaf directory (and what held only it) went
    p.munmap(b, PAGE);
    expect(mir.stats).toMatchObject({ validEntries: 0, directories: 0, bytes: 0 });
    expectClean(m);
  });

  it('CPU write-protection (mprotect, fork, uffd-wp) takes WRITE from the mirror; the mirror DIRTY bit marks the frame dirty first', async () => {
    const m = await machine();
    const p = m.spawn();
    const a = p.mmap({ length: 4 * PAGE, prot: 'rw' }).start;
    p.touch(a, 4 * PAGE, 'w', 1);
    const mir = m.device('gpu').mirror(p);
    mir.fault(a, 4, 'w');
    mir.deviceWrite(a + PAGE, 0xd0);
    expect(mir.lookup(a + PAGE)).toMatchObject({ valid: true, write: true, dirty: true });
    expect(p.read(a + PAGE)).toMatchObject({ tag: 0xd0 });
    const pfn1 = mir.lookup(a + PAGE).pfn;
    expect(m.frame(pfn1).dirty).toBe(false);
    // fork write-protects the parent's private pages: the mirror keeps its entries, read-only.
    const c = p.fork();
    expect(mir.lookup(a)).toMatchObject({ valid: true, write: false });
    expect(mir.lookup(a + PAGE)).toMatchObject({ valid: true, write: false, dirty: false });
    expect(m.frame(pfn1).dirty).toBe(true);
    expect(() => mir.deviceWrite(a, 1)).toThrow(expect.objectContaining({ code: 'EFAULT' }));
    c.exit();
    // A device write fault breaks nothing now (exclusive again after the child left): WRITE comes back.
    mir.fault(a, 4, 'w');
    expect(mir.lookup(a + 2 * PAGE)).toMatchObject({ valid: true, write: true });
    // mprotect read-only: the entries go (the device must fault again, and gets read-only ones).
    p.mprotect(a, 4 * PAGE, 'r');
    expect(mir.lookup(a + 2 * PAGE).valid).toBe(false);
    mir.fault(a, 4, 'r');
    expect(mir.lookup(a + 2 * PAGE)).toMatchObject({ valid: true, write: false });
    p.mprotect(a, 4 * PAGE, 'rw');
    // uffd-wp protect.
    mir.fault(a, 4, 'w');
    const u = p.userfaultfd();
    u.register(a, 4 * PAGE);
    u.writeProtect(a, 4 * PAGE, true);
    for (let i = 0; i < 4; i++) expect(mir.lookup(a + i * PAGE).write).toBe(false);
    expect(mir.stats.invalidations).toBeGreaterThanOrEqual(3);
    // clear_refs invalidates the whole address space (0 .. ULONG_MAX) as a soft-dirty write-protection.
    u.unregister(a, 4 * PAGE);
    mir.fault(a, 4, 'w');
    p.clearRefs('soft-dirty');
    expect(mir.lookup(a)).toMatchObject({ valid: true, write: false });
    expectClean(m);
  });

  it('a device fault needing a CPU fault that a sync userfaultfd would handle is EFAULT with no message (hmm faults cannot wait); async and resolved ones go through', async () => {
    const m = await machine();
    const p = m.spawn();
    const a = p.mmap({ length: 4 * PAGE, prot: 'rw' }).start;
    p.touch(a, 2 * PAGE, 'w', 1);
    const u = p.userfaultfd({ features: ['wp-unpopulated'] });
    u.register(a, 4 * PAGE);
    u.writeProtect(a, 4 * PAGE, true);
    const mir = m.device('gpu').mirror(p);
    // A present write-protected page, and a never-touched one (a uffd-wp marker).
    for (const at of [a, a + 3 * PAGE]) {
      expect(() => mir.fault(at, 1, 'w')).toThrow(expect.objectContaining({ code: 'EFAULT' }));
      expect(u.events()).toEqual([]);
      expect(mir.lookup(at).valid).toBe(false);
    }
    expect(p.entry(a)).toMatchObject({ kind: 'present', write: false, uffdWp: true });
    // Reads need no write fault: the device gets read-only entries.
    mir.fault(a, 2, 'r');
    expect(mir.lookup(a)).toMatchObject({ valid: true, write: false });
    // The CPU write waits on the context (a message); once resolved the device write fault succeeds.
    expect(p.write(a, 2)).toMatchObject({ ok: false, blocked: 'userfaultfd' });
    expect(u.events()).toMatchObject([{ type: 'pagefault', address: a, write: true, wp: true }]);
    u.writeProtect(a, PAGE, false);
    mir.fault(a, 1, 'w');
    expect(mir.lookup(a)).toMatchObject({ valid: true, write: true });
    // wp-async: the fault resolves in place; on a never-touched page (a marker) it takes two CPU rounds
    // (the marker becomes a read-only page, then the write fault clears uffd-wp).
    const q = m.spawn();
    const b = q.mmap({ length: 2 * PAGE, prot: 'rw' }).start;
    q.write(b, 3);
    const ua = q.userfaultfd({ features: ['wp-async', 'wp-unpopulated'] });
    ua.register(b, 2 * PAGE);
    ua.writeProtect(b, 2 * PAGE, true);
    expect(q.entry(b + PAGE)).toMatchObject({ kind: 'marker', markers: ['uffd-wp'] });
    const mq = m.device('gpu').mirror(q);
    expect(mq.fault(b, 2, 'w')).toMatchObject({ cpuFaults: 3 });
    for (const at of [b, b + PAGE]) {
      expect(mq.lookup(at)).toMatchObject({ valid: true, write: true });
      expect(q.entry(at)).toMatchObject({ kind: 'present', write: true, uffdWp: false });
    }
    expect(ua.events()).toEqual([]);
    expectClean(m);
  });

  it('a CPU access that invalidates the range during a device fault makes it back off and retry; the result matches the CPU', async () => {
    const m = await machine({ cpus: 2 });
    const p = m.spawn();
    const a = p.mmap({ length: 4 * MiB, prot: 'rw', addr: 0x4000_0000 }).start;
    p.touch(a, 4 * MiB, 'w', 1);
    const c = p.fork();                                                      // every page COW-shared
    const mir = m.device('gpu').mirror(p);
    let raced = false;
    const r = mir.fault(a, 1024, 'r', {
      onStep: () => {
        if (raced) return;
        raced = true;
        // The parent writes a page of the first 2 MiB the device already has: COW breaks it.
        expect(p.write(a + 3 * PAGE, 9, { cpu: 1 })).toMatchObject({ ok: true, faults: 1 });
      },
    });
    expect(r.backoffs).toBe(1);
    expect(r.retries).toBe(1);
    expect(mir.lookup(a + 3 * PAGE)).toMatchObject({ valid: true, pfn: p.entry(a + 3 * PAGE).pfn });
    expect(mir.lookup(a + 3 * PAGE).pfn).not.toBe(c.entry(a + 3 * PAGE).pfn);
    expect(mir.stats.validEntries).toBe(1024);
    expectClean(m);
  });

  it('the process exits: the mirror is dead (ENODEV) and its tables are gone; misuse is refused', async () => {
    const m = await machine();
    const p = m.spawn();
    const a = p.mmap({ length: PAGE, prot: 'rw' }).start;
    p.write(a, 1);
    const mir = m.device('gpu').mirror(p);
    mir.fault(a, 1, 'r');
    expect(() => mir.fault(a, 0, 'r')).toThrow(expect.objectContaining({ code: 'EINVAL', arg: 'npages' }));
    expect(() => mir.fault(a, 1, 'x' as 'r')).toThrow(expect.objectContaining({ arg: 'mode' }));
    expect(() => m.device('')).toThrow(expect.objectContaining({ arg: 'name' }));
    // Addresses beyond the mirror's span read as invalid; nothing can be written there.
    expect(mir.lookup(2n ** 47n).raw).toBe(0n);
    expect(mir.lookup(2n ** 63n).raw).toBe(0n);
    expect(() => mir.deviceWrite(2n ** 60n, 1)).toThrow(expect.objectContaining({ code: 'EFAULT' }));
    p.exit();
    expect(mir.stats).toMatchObject({ live: false, directories: 0, validEntries: 0 });
    expect(() => mir.fault(a, 1, 'r')).toThrow(expect.objectContaining({ code: 'ENODEV' }));
    mir.release();
    expectClean(m);
  });

  it('the README example', async () => {
    const m = await machine();
    const p = m.spawn();
    const a = p.mmap({ length: 2 * MiB, prot: 'rw' });
    p.touch(a.start, 2 * PAGE, 'w', 1);
    const gpu = m.device('gpu');
    const mirror = gpu.mirror(p);
    expect(mirror.fault(a.start, 512, 'r')).toMatchObject({ retries: 1 });
    expect(mirror.lookup(a.start)).toMatchObject({ valid: true, write: true, dirty: false, pfn: p.entry(a.start).pfn });
    p.mprotect(a.start, 4096, 'r');
    expect(mirror.lookup(a.start).valid).toBe(false);
    const n = m.hmm.intervalNotifier(p, a.start, 2 * 4096);
    const { pfns } = m.hmm.rangeFault({ notifier: n, start: a.start, end: a.start + 2 * 4096, defaultFlags: HMM_PFN_REQ_FAULT });
    expect(decodeHmmPfn(pfns[0]!)).toEqual({ valid: true, write: false, error: false, order: 0, pfn: p.entry(a.start).pfn });
    expectClean(m);
  });
});
