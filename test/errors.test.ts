// Bad arguments: an EmuError with the kernel's errno and the argument named,
// and the machine exactly as before.

import { describe, it, expect } from 'vitest';
import { Machine, EmuError, Trace, type Process } from '../src/index.js';
import { machine, expectClean, PAGE, MiB } from './helpers.js';

/** Everything a scenario can observe (the core's own heap usage aside: buffers are cached). */
function snapshot(m: Machine, p: Process): unknown {
  const { heapBytes: _h, wasmMemoryBytes: _w, ...stats } = m.stats;
  return {
    vmas: p.vmas, rss: p.rss, tables: p.pageTableBytes, stats, faults: p.faults,
    dump: p.dump(), pagemap: Array.from(p.pagemapRange(0x7fff00000000, 64 * MiB)),
  };
}

function expectError(fn: () => unknown, code: string, arg?: string): void {
  let err: unknown;
  try { fn(); } catch (e) { err = e; }
  expect(err).toBeInstanceOf(EmuError);
  expect((err as EmuError).code).toBe(code);
  if (arg !== undefined) expect((err as EmuError).arg).toBe(arg);
}

describe('bad arguments leave the machine unchanged', () => {
  it('mmap, munmap, mprotect, madvise, read/write/touch', async () => {
    const m = await machine();
    const p = m.spawn();
    const a = p.mmap({ addr: 0x7fff00000000, length: 8 * PAGE, prot: 'rw' });
    p.write(a.start, 1);
    const before = snapshot(m, p);
    const cases: [() => unknown, string, string?][] = [
      [() => p.mmap({ length: 0 }), 'EINVAL', 'length'],
      [() => p.mmap({ length: -4096 }), 'EINVAL', 'length'],
      [() => p.mmap({ length: NaN }), 'EINVAL', 'length'],
      [() => p.mmap({ length: '12 parsecs' }), 'EINVAL', 'length'],
      [() => p.mmap({ length: PAGE, addr: 0x7fff00000123 }), 'EINVAL', 'addr'],
      [() => p.mmap({ length: PAGE, addr: a.start }), 'EEXIST', 'addr'],
      [() => p.mmap({ length: PAGE, addr: 0x800000000000 }), 'ENOMEM', 'addr'],          // non-canonical on 48-bit
      [() => p.mmap({ length: PAGE, addr: 0xffff800000000000n }), 'ENOMEM', 'addr'],     // kernel half
      [() => p.mmap({ length: 2 * PAGE, addr: 0x7fffffffe000 }), 'ENOMEM', 'addr'],      // crosses TASK_SIZE
      [() => p.mmap({ length: PAGE, prot: 'rwz' }), 'EINVAL', 'prot'],
      [() => p.mmap({ length: PAGE, prot: 7 as unknown as string }), 'EINVAL', 'prot'],
      [() => p.mmap({ length: PAGE, offset: 4096 }), 'EINVAL', 'offset'],
      [() => p.mmap({ length: PAGE, colour: 'red' } as never), 'EINVAL', 'colour'],
      [() => p.mmap({ length: PAGE, addr: 4096 }), 'EPERM', 'addr'],
      [() => p.munmap(a.start + 1, PAGE), 'EINVAL', 'addr'],
      [() => p.munmap(a.start, 0), 'EINVAL', 'length'],
      [() => p.munmap(0x800000000000, PAGE), 'EINVAL', 'addr'],
      [() => p.munmap(1.5, PAGE), 'EINVAL', 'addr'],
      [() => p.mprotect(a.start, 16 * PAGE, 'r'), 'ENOMEM', 'addr'],                     // runs past the mapping
      [() => p.mprotect(a.start, PAGE, 'q'), 'EINVAL', 'prot'],
      [() => p.mprotect(a.start + 7, PAGE, 'r'), 'EINVAL', 'addr'],
      [() => p.madvise(a.start, PAGE, 'freeze' as never), 'EINVAL', 'advice'],
      [() => p.madvise(a.start, 16 * PAGE, 'dontneed'), 'ENOMEM', 'addr'],
      [() => p.madvise(a.start, 0, 'dontneed'), 'EINVAL', 'length'],
      [() => p.write(a.start, -1), 'EINVAL', 'tag'],
      [() => p.write(a.start, 2 ** 32), 'EINVAL', 'tag'],
      [() => p.write(-4096, 1), 'EINVAL', 'addr'],
      [() => p.touch(a.start, PAGE, 'x' as never), 'EINVAL', 'kind'],
      [() => p.pagemap('0x1000' as never), 'EINVAL', 'addr'],
      [() => p.pagemapRange(0, 2 ** 46), 'EINVAL', 'length'],
    ];
    for (const [fn, code, arg] of cases) expectError(fn, code, arg);
    expect(snapshot(m, p)).toEqual(before);
    expectClean(m);
  });

  it('mprotect beyond VM_MAY* is EACCES; files and machine options are validated', async () => {
    const m = await machine();
    const f = m.memfd({ size: PAGE });
    const p = m.spawn();
    p.mmap({ file: f, length: PAGE, shared: true, prot: 'r' });
    expectError(() => m.memfd({ size: 100 }), 'EINVAL', 'size');
    expectError(() => f.truncate(-1), 'EINVAL', 'size');
    expectError(() => f.lookup(-1), 'EINVAL', 'pgoff');
    expectError(() => m.frame(-1), 'EINVAL', 'pfn');
    expectError(() => m.frame(1e12), 'EINVAL', 'pfn');
    f.close();
    expectError(() => p.mmap({ file: f, length: PAGE }), 'EINVAL', 'file');
    const other = await machine();
    const g = other.memfd({ size: PAGE });
    expectError(() => p.mmap({ file: g, length: PAGE }), 'EINVAL', 'file');
    await expect(Machine.create({ arch: 'mips' as never })).rejects.toMatchObject({ code: 'EINVAL', arg: 'arch' });
    await expect(Machine.create({ memory: '1TiB' })).rejects.toMatchObject({ code: 'EINVAL', arg: 'memory' });
    await expect(Machine.create({ levels: 5, arch: 'arm64' })).rejects.toMatchObject({ code: 'EINVAL', arg: 'levels' });
    await expect(Machine.create({ thp: 'sometimes' as never })).rejects.toMatchObject({ code: 'EINVAL', arg: 'thp' });
    await expect(Machine.create({ bogus: 1 } as never)).rejects.toMatchObject({ code: 'EINVAL', arg: 'bogus' });
    expectClean(m);
  });

  it('CPUs, traces and kernel primitives validate their arguments too', async () => {
    const m = await machine({ cpus: 2 });
    const other = await machine();
    const p = m.spawn();
    const q = other.spawn();
    const a = p.mmap({ addr: 0x40000000, length: 4 * PAGE, prot: 'rw' });
    p.write(a.start, 1);
    const before = snapshot(m, p);
    const cases: [() => unknown, string, string?][] = [
      [() => p.read(a.start, { cpu: 2 }), 'EINVAL', 'cpu'],
      [() => p.write(a.start, 1, { cpu: -1 }), 'EINVAL', 'cpu'],
      [() => m.cpu(7), 'EINVAL', 'cpu'],
      [() => m.cpu(0).access(q, a.start, 'r'), 'EINVAL', 'p'],
      [() => m.cpu(0).access(p, a.start, 'z' as never), 'EINVAL', 'kind'],
      [() => m.cpu(0).tlb.lookup(p, 1.5), 'EINVAL', 'addr'],
      [() => m.replay(p, [] as never), 'EINVAL', 'trace'],
      [() => m.replay(q, new Trace()), 'EINVAL', 'p'],
      [() => new Trace().push(-1), 'EINVAL', 'addr'],
      [() => new Trace().push(a.start, 'q' as never), 'EINVAL', 'kind'],
      [() => new Trace(0), 'EINVAL', 'capacity'],
      [() => Trace.random({ start: a.start, length: PAGE, count: 0 }), 'EINVAL', 'count'],
      [() => Trace.random({ start: a.start, length: PAGE, count: 5, writeRatio: 2 }), 'EINVAL', 'writeRatio'],
      [() => Trace.random({ start: a.start, length: 10, count: 5 }), 'EINVAL', 'length'],
      [() => m.kernel.flushTlbRange(p, a.end, a.start), 'EINVAL', 'end'],
      [() => m.kernel.flushTlbPage(q, a.start), 'EINVAL', 'p'],
      [() => m.kernel.setEntry(p, 0x7000_0000_0000, 0n), 'EINVAL', 'addr'],
      [() => m.kernel.setEntry(p, a.start, -1n), 'EINVAL', 'raw'],
      [() => m.kernel.decTlbFlushPending(p), 'EINVAL', 'p'],
      [() => m.kernel.walkPageRange(p, a.start, a.end, { pteEntry: 5 } as never), 'EINVAL', 'pteEntry'],
    ];
    for (const [fn, code, arg] of cases) expectError(fn, code, arg);
    expect(snapshot(m, p)).toEqual(before);
    expectClean(m);
  });

  it('out of emulated memory is ENOMEM-style, never a trap: faults fail with SIGBUS(OOM) and change nothing', async () => {
    const m = await machine({ memory: '1MiB', swap: 0 });
    const p = m.spawn();
    const a = p.mmap({ length: 4 * MiB, prot: 'rw' });
    const t = p.touch(a.start, a.length, 'w', 1);
    expect(t).toMatchObject({ ok: false, signal: 'SIGBUS', code: 'OOM' });
    expect(t.pages).toBeGreaterThan(200);
    expect(p.rss.anon).toBe(t.pages);
    expectClean(m);
    p.munmap(a.start, a.length);
    expectClean(m);
  });

  it('5-level machines accept 57-bit addresses as bigints and reject what is beyond', async () => {
    const m = await machine({ levels: 5 });
    const p = m.spawn();
    const hi = 0x00ff_ffff_0000_0000n;
    const a = p.mmap({ addr: hi, length: 2 * PAGE, prot: 'rw' });
    expect(a.startBig).toBe(hi);
    expect(p.write(hi + 4096n, 5)).toMatchObject({ ok: true });
    expect(p.read(hi + 4096n)).toMatchObject({ ok: true, tag: 5 });
    expect(p.pageWalk(hi).map((e) => e.level)).toEqual(['pgd', 'p4d', 'pud', 'pmd', 'pte']);
    expectError(() => p.mmap({ addr: 0x0100_0000_0000_0000n, length: PAGE }), 'ENOMEM', 'addr');
    expectClean(m);
  });
});
