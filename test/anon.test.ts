// Private anonymous memory: zero page, write faults, DONTNEED, mprotect, and
// the page-table accounting at scale. Expectations match the host kernel
// (test/probes/probe_anon_basic.c, Linux 6.18 x86-64): a read maps the shared
// zero page (present, not exclusive, same pfn everywhere); a write maps a new
// exclusive page; DONTNEED empties the slot; PROT_NONE keeps pfn and
// exclusivity visible in pagemap.

import { describe, it, expect } from 'vitest';
import { machine, expectClean, spans, PAGE, GiB } from './helpers.js';

describe('1 GiB of anonymous memory touched for write', () => {
  it('maps 262,144 exclusive pages with exact RSS and page-table bytes', async () => {
    const m = await machine({ memory: '2GiB' });
    const p = m.spawn();
    const a = p.mmap({ length: GiB, prot: 'rw' });
    expect(a.start % (2 << 20)).toBe(0);            // THP-friendly placement of PMD-multiple lengths
    const t = p.touch(a.start, a.length, 'w', 7);
    expect(t).toEqual({ ok: true, pages: 262144 });

    const pm = p.pagemapRange(a.start, a.length);
    expect(pm.length).toBe(262144);
    let present = 0, exclusive = 0, file = 0;
    const pfns = new Set<bigint>();
    for (const v of pm) {
      if (v >> 63n) present++;
      if ((v >> 56n) & 1n) exclusive++;
      if ((v >> 61n) & 1n) file++;
      pfns.add(v & ((1n << 55n) - 1n));
    }
    expect(present).toBe(262144);
    expect(exclusive).toBe(262144);
    expect(file).toBe(0);
    expect(pfns.size).toBe(262144);                  // every page its own frame

    expect(p.rss).toEqual({ anon: 262144, file: 0, shmem: 0, swap: 0 });
    // 4-level: the PGD, one table per 512 GiB (PUD tables), per 1 GiB (PMD tables), per 2 MiB (PTE tables).
    const tables = 1 + spans(a.start, a.end, 39) + spans(a.start, a.end, 30) + spans(a.start, a.end, 21);
    expect(p.pageTableBytes).toBe(tables * PAGE);
    expect(p.scan(a.start, a.length).present).toBe(262144);
    expect(p.read(a.start + 12345 * PAGE)).toMatchObject({ ok: true, tag: 7, faults: 0 });
    expectClean(m);

    p.munmap(a.start, a.length);
    expect(p.rss.anon).toBe(0);
    expect(p.pageTableBytes).toBe(PAGE);              // only the PGD remains
    expectClean(m);
  });
});

describe('zero page, write fault, DONTNEED', () => {
  it('reads map the shared zero page; a write maps a new frame; DONTNEED empties the slot', async () => {
    const m = await machine();
    const p = m.spawn();
    const a = p.mmap({ length: 16 * PAGE, prot: 'rw' });
    const zero = m.frame(p.read(a.start).ok ? p.pagemap(a.start).pfn! : -1);
    expect(zero.zero).toBe(true);
    expect(p.read(a.start + 2 * PAGE)).toMatchObject({ ok: true, tag: 0, pfn: zero.pfn });
    const e0 = p.entry(a.start);
    expect(e0).toMatchObject({ kind: 'present', level: 'pte', pfn: zero.pfn, special: true, write: false, dirty: false });
    expect(p.pagemap(a.start)).toMatchObject({ present: true, exclusive: false, file: false, pfn: zero.pfn });
    expect(p.rss.anon).toBe(0);

    const w = p.write(a.start, 0xabc);
    expect(w.ok).toBe(true);
    if (!w.ok) return;
    expect(w.pfn).not.toBe(zero.pfn);
    expect(w.faults).toBe(1);                         // one COW-from-zero-page fault
    expect(p.entry(a.start)).toMatchObject({ kind: 'present', pfn: w.pfn, write: true, dirty: true, young: true, special: false });
    expect(m.frame(w.pfn)).toMatchObject({ refcount: 1, mapcount: 1, anon: true, exclusive: true, tag: 0xabc });
    expect(p.pagemap(a.start)).toMatchObject({ present: true, exclusive: true, pfn: w.pfn });
    expect(p.rss.anon).toBe(1);

    p.madvise(a.start, PAGE, 'dontneed');
    expect(p.entry(a.start).kind).toBe('none');
    expect(p.pagemap(a.start)).toMatchObject({ present: false, swapped: false });
    expect(m.frame(w.pfn).kind).toBe('free');
    expect(p.read(a.start)).toMatchObject({ ok: true, tag: 0, pfn: zero.pfn });
    expect(p.rss.anon).toBe(0);
    expectClean(m);
  });

  it('x86 entries: write fault sets RW, D, A and soft-dirty; the zero page entry is special and read-only', async () => {
    const m = await machine();
    const p = m.spawn();
    const a = p.mmap({ length: 2 * PAGE, prot: 'rw' });
    p.read(a.start);
    const w = p.write(a.start + PAGE, 1);
    if (!w.ok) throw new Error('write failed');
    // P|US|A|SPECIAL|NX with the zero pfn; P|RW|US|A|D|SOFT_DIRTY|NX with the new pfn.
    const zeroPfn = BigInt(p.pagemap(a.start).pfn!);
    expect(p.entry(a.start).raw).toBe((1n << 63n) | (zeroPfn << 12n) | 0x225n);
    expect(p.entry(a.start + PAGE).raw).toBe((1n << 63n) | (BigInt(w.pfn) << 12n) | 0x867n);
    expectClean(m);
  });
});

describe('mprotect keeps frames', () => {
  it('RO, NONE and back to RW keep the pfn; writes to RO or NONE fail and change nothing', async () => {
    const m = await machine();
    const p = m.spawn();
    const a = p.mmap({ length: 4 * PAGE, prot: 'rw' });
    const w = p.write(a.start, 5);
    if (!w.ok) throw new Error('write failed');
    const before = p.entry(a.start);

    p.mprotect(a.start, PAGE, 'r');
    expect(p.vmas.map((v) => v.prot)).toEqual(['r--', 'rw-']);
    expect(p.entry(a.start)).toMatchObject({ pfn: w.pfn, write: false, dirty: true, young: true });
    const denied = p.write(a.start, 6);
    expect(denied).toMatchObject({ ok: false, signal: 'SIGSEGV', code: 'SEGV_ACCERR' });
    expect(p.read(a.start)).toMatchObject({ ok: true, tag: 5, pfn: w.pfn });

    p.mprotect(a.start, PAGE, 'none');
    const none = p.entry(a.start);
    expect(none).toMatchObject({ kind: 'present', protnone: true, pfn: w.pfn });
    // x86 stores PROT_NONE pfns inverted (L1TF): the raw pfn field is not the pfn.
    expect((none.raw >> 12n) & 0xffffffffffn).not.toBe(BigInt(w.pfn));
    expect(p.pagemap(a.start)).toMatchObject({ present: true, exclusive: true, pfn: w.pfn });
    expect(p.read(a.start)).toMatchObject({ ok: false, signal: 'SIGSEGV', code: 'SEGV_ACCERR' });
    expect(p.write(a.start, 7)).toMatchObject({ ok: false, signal: 'SIGSEGV' });
    expect(m.frame(w.pfn).tag).toBe(5);

    p.mprotect(a.start, PAGE, 'rw');
    expect(p.vmas).toHaveLength(1);                  // merged again
    // The page is exclusive anon and soft-dirty: mprotect makes it writable at once (no fault).
    expect(p.entry(a.start)).toMatchObject({ pfn: w.pfn, write: true, protnone: false });
    const again = p.write(a.start, 8);
    expect(again).toMatchObject({ ok: true, pfn: w.pfn, faults: 0 });
    expect(p.entry(a.start).raw & ~(1n << 5n)).toBe(before.raw & ~(1n << 5n));
    expectClean(m);
  });

  it('arm64: mprotect RO moves hardware dirtiness into the software DIRTY bit', async () => {
    const m = await machine({ arch: 'arm64' });
    const p = m.spawn();
    const a = p.mmap({ length: PAGE, prot: 'rw' });
    p.write(a.start, 1);
    const rw = p.entry(a.start);
    expect(rw).toMatchObject({ write: true, dirty: true });
    expect((rw.raw >> 7n) & 1n).toBe(0n);            // RDONLY clear: hardware dirty
    p.mprotect(a.start, PAGE, 'r');
    const ro = p.entry(a.start);
    expect(ro).toMatchObject({ write: false, dirty: true });
    expect((ro.raw >> 55n) & 1n).toBe(1n);            // PTE_DIRTY
    expect((ro.raw >> 7n) & 1n).toBe(1n);             // PTE_RDONLY
    expectClean(m);
  });

  it('a read of a write-only or PROT_NONE mapping, and accesses outside any VMA', async () => {
    const m = await machine();
    const p = m.spawn();
    const a = p.mmap({ length: PAGE, prot: 'none' });
    expect(p.read(a.start)).toMatchObject({ ok: false, code: 'SEGV_ACCERR' });
    expect(p.read(a.end)).toMatchObject({ ok: false, code: 'SEGV_MAPERR' });
    expect(p.entry(a.start).kind).toBe('none');
    expectClean(m);
  });
});

describe('exit', () => {
  it('frees every frame and table', async () => {
    const m = await machine();
    const free0 = m.stats.freeFrames;
    const p = m.spawn();
    const a = p.mmap({ length: '8MiB', prot: 'rw' });
    p.touch(a.start, a.length, 'w', 1);
    p.madvise(a.start, '1MiB', 'pageout');
    expect(p.rss.swap).toBe(256);
    p.exit();
    expect(m.stats.freeFrames).toBe(free0);
    expect(m.stats.swapSlotsUsed).toBe(0);
    expect(() => p.read(a.start)).toThrow(/exited/);
    expectClean(m);
  });
});

describe('address-space layout', () => {
  it('places mappings top-down below mmap_base; a seed randomises mmap_base deterministically', async () => {
    const fixed = (await machine()).spawn();
    const a = fixed.mmap({ length: PAGE });
    expect(a.start).toBe(0x7ffff7fff000 - PAGE);                    // TASK_SIZE - 128 MiB, no randomisation
    expect(fixed.mmap({ length: PAGE }).start).toBe(a.start - PAGE);
    const s1 = (await machine({ seed: 42 })).spawn().mmap({ length: PAGE }).start;
    const s2 = (await machine({ seed: 42 })).spawn().mmap({ length: PAGE }).start;
    const s3 = (await machine({ seed: 43 })).spawn().mmap({ length: PAGE }).start;
    expect(s1).toBe(s2);
    expect(s1).not.toBe(s3);
    expect(s1).toBeLessThan(a.start);
    expect(a.start - s1).toBeLessThan(2 ** 40);                        // 28 random bits of pages
  });
});

describe('kernels without CONFIG_MEM_SOFT_DIRTY', () => {
  it('match the host kernel\'s pagemap values bit for bit (probe_anon_basic.c scenarios 2-4)', async () => {
    // Host (Linux 6.18, no soft-dirty): zero page 0x8000000000003b34 (present|pfn),
    // written page 0x81000000001226b3 (present|exclusive|pfn), after DONTNEED 0.
    const m = await machine({ softDirty: false });
    const p = m.spawn();
    const a = p.mmap({ length: 4 * PAGE, prot: 'rw' });
    p.read(a.start);
    const zero = p.pagemap(a.start).pfn!;
    expect(p.pagemap(a.start).raw).toBe((1n << 63n) | BigInt(zero));
    const w = p.write(a.start + PAGE, 1);
    if (!w.ok) throw new Error('write failed');
    expect(p.pagemap(a.start + PAGE).raw).toBe((1n << 63n) | (1n << 56n) | BigInt(w.pfn));
    expect(p.entry(a.start + PAGE).raw & (1n << 11n)).toBe(0n);
    p.madvise(a.start + PAGE, PAGE, 'dontneed');
    expect(p.pagemap(a.start + PAGE).raw).toBe(0n);
    p.madvise(a.start, PAGE, 'pageout');
    expect(p.pagemap(a.start).raw).toBe((1n << 63n) | BigInt(zero));       // the zero page is never swapped
    p.write(a.start + 2 * PAGE, 2);
    p.madvise(a.start + 2 * PAGE, PAGE, 'pageout');
    // Host: 0x4000000000000020 = swapped, type 0, offset 1.
    expect(p.pagemap(a.start + 2 * PAGE).raw).toBe(0x4000000000000020n);
    expectClean(m);
  });
});
