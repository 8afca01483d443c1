// Random operation sequences over the core, with the invariant checker after
// every operation and a reference model of what each page must contain (the
// last tag written to it, or 0). A seeded generator makes failures
// reproducible: the failing seed and step are in the assertion message.

import { describe, it, expect } from 'vitest';
import { Machine, EmuError, type Process, type File, type Mapping, type Pin, type Userfaultfd, type Mirror } from '../src/index.js';

const PAGE = 4096;

function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => { x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0; return x / 0x1_0000_0000; };
}

interface Region { m: Mapping; shared: boolean; file?: File; pgoff: number; prot: string }

async function run(seed: number, arch: 'x86_64' | 'arm64', steps: number): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  let lastOp = '';
  const count = (k: string): void => { counts[k] = (counts[k] ?? 0) + 1; lastOp = k; };
  const r = rng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const m = await Machine.create({ arch, memory: '32MiB', swap: '8MiB', cpus: 2, thp: 'always', mthp: { '16K': 'always', '64K': 'inherit' }, tlb: 'tiny' });
  const file = m.memfd({ size: 64 * PAGE });
  const hugeFile = m.memfd({ size: 512 * PAGE, huge: true });   // tmpfs huge=always: PMD-mapped where it lines up
  const fileTags = new Map<File, Map<number, number>>([[file, new Map()], [hugeFile, new Map()]]);   // pgoff -> tag (shared view)
  const tagsOf = (f: File): Map<number, number> => fileTags.get(f)!;
  const procs: { p: Process; regions: Region[]; tags: Map<number, number> }[] = [];
  const spawn = (): void => { procs.push({ p: m.spawn(), regions: [], tags: new Map() }); };
  // One userfaultfd per process, made on first use: sync or async write-protect.
  const uffds = new Map<Process, Userfaultfd>();
  const uffdOf = (q: Process): Userfaultfd => {
    let u = uffds.get(q);
    if (!u) { u = q.userfaultfd({ features: r() < 0.5 ? ['wp-hugetlbfs-shmem'] : ['wp-hugetlbfs-shmem', 'wp-async', 'wp-unpopulated'] }); uffds.set(q, u); }
    return u;
  };
  const pins: Pin[] = [];
  const gpu = m.device('gpu');
  gpu.addMemory(64);
  const mirrors = new Map<Process, Mirror>();
  const mirrorOf = (q: Process): Mirror => { let x = mirrors.get(q); if (!x) { x = gpu.mirror(q); mirrors.set(q, x); } return x; };
  spawn();
  const base = 0x40000000;
  const expected = (st: (typeof procs)[number], reg: Region, addr: number): number => {
    const off = (addr - reg.m.start) / PAGE;
    if (reg.shared) return tagsOf(reg.file!).get(reg.pgoff + off) ?? 0;
    if (st.tags.has(addr)) return st.tags.get(addr)!;
    return reg.file ? (tagsOf(reg.file).get(reg.pgoff + off) ?? 0) : 0;
  };
  for (let step = 0; step < steps; step++) {
    const st = pick(procs);
    const { p } = st;
    const op = r();
    const where = `seed ${seed} ${arch} step ${step}`;
    try {
      if (op < 0.12 && st.regions.length < 6) {
        const slot = Math.floor(r() * 8);
        const addr = base + slot * 2 * 1024 * 1024;
        if (st.regions.some((g) => g.m.start < addr + 2 * 1024 * 1024 && addr < g.m.end)) continue;
        const kind = r();
        const pages = 1 + Math.floor(r() * 512);            // a region stays inside its 2 MiB slot
        const f = kind < 0.7 ? file : hugeFile;
        const flen = f === file ? Math.min(pages, 64) : r() < 0.5 ? 512 : pages;
        const shared = kind < 0.55 || (kind >= 0.7 && kind < 0.9);
        const reg: Region = kind < 0.4 ? { m: p.mmap({ addr, length: pages * PAGE, prot: 'rw' }), shared: false, pgoff: 0, prot: 'rw' }
          : { m: p.mmap({ addr, length: flen * PAGE, prot: 'rw', shared, file: f }), shared, file: f, pgoff: 0, prot: 'rw' };
        st.regions.push(reg);
        count('mmap');
      } else if (st.regions.length === 0) {
        continue;
      } else {
        const reg = pick(st.regions);
        const pages = (reg.m.end - reg.m.start) / PAGE;
        const addr = reg.m.start + Math.floor(r() * pages) * PAGE;
        const cpu = r() < 0.5 ? 0 : 1;
        if (op < 0.45) {
          const tag = 1 + Math.floor(r() * 1e6);
          const w = p.write(addr, tag, { cpu });
          count('write');
          if (w.blocked === 'userfaultfd') {
            // A write-protected page in a sync userfaultfd: the write waits, nothing changed.
            expect(uffds.get(p)?.events().length, `${where}: uffd message`).toBe(1);
            count('uffd-blocked');
          } else if (reg.prot.includes('w')) {
            expect(w.ok, `${where}: write`).toBe(true);
            if (reg.shared) tagsOf(reg.file!).set(reg.pgoff + (addr - reg.m.start) / PAGE, tag); else st.tags.set(addr, tag);
          } else expect(w.ok, `${where}: write to ${reg.prot}`).toBe(false);
        } else if (op < 0.65) {
          const rd = p.read(addr, { cpu });
          count('read');
          if (reg.prot !== 'none') expect(rd, `${where}: read`).toMatchObject({ ok: true, tag: expected(st, reg, addr) });
        } else if (op < 0.73) {
          const n = 1 + Math.floor(r() * Math.min(64, pages));
          const a = reg.m.start + Math.floor(r() * (pages - n + 1)) * PAGE;
          const prot = pick(['r', 'rw', 'none'] as const);
          p.mprotect(a, n * PAGE, prot);
          count('mprotect');
          if (a === reg.m.start && n === pages) reg.prot = prot;
          else { p.mprotect(reg.m.start, reg.m.end - reg.m.start, reg.prot === 'none' ? 'none' : reg.prot); }
        } else if (op < 0.8) {
          const n = 1 + Math.floor(r() * Math.min(600, pages));
          const a = reg.m.start + Math.floor(r() * (pages - n + 1)) * PAGE;
          p.madvise(a, n * PAGE, 'dontneed');
          count('dontneed');
          if (!reg.shared) for (let i = 0; i < n; i++) st.tags.delete(a + i * PAGE);
        } else if (op < 0.86) {
          p.madvise(reg.m.start, reg.m.end - reg.m.start, 'pageout');
          count('pageout');
        } else if (op < 0.9) {
          p.madvise(reg.m.start, reg.m.end - reg.m.start, pick(['hugepage', 'nohugepage'] as const));
        } else if (op < 0.91) {
          p.touch(reg.m.start, Math.min(reg.m.end - reg.m.start, 64 * PAGE), 'r', 0, { cpu });
        } else if (op < 0.93) {
          // The dirty helpers over a random range of a file, a writer racing them at random yield points.
          const f = r() < 0.5 ? file : hugeFile;
          const size = f === file ? 64 : 512;
          const first = Math.floor(r() * size), nr = 1 + Math.floor(r() * (size - first));
          const racers = procs.flatMap((o) => o.regions.filter((g) => g.shared && g.file === f && g.prot === 'rw').map((g) => ({ o, g })));
          const onStep = (): void => {
            if (racers.length === 0 || r() < 0.5) return;
            const { o, g } = pick(racers);
            const a = g.m.start + Math.floor(r() * ((g.m.end - g.m.start) / PAGE)) * PAGE;
            const tag = 1 + Math.floor(r() * 1e6);
            const w = o.p.write(a, tag, { cpu: r() < 0.5 ? 0 : 1 });
            if (w.ok) tagsOf(f).set(g.pgoff + (a - g.m.start) / PAGE, tag);
            else if (w.blocked === 'userfaultfd') expect(uffds.get(o.p)?.events().length, `${where}: racing write's uffd message`).toBe(1);
            else expect(w, `${where}: racing write`).toMatchObject({ blocked: 'page-table-lock' });
          };
          if (r() < 0.5) f.writeProtect(first, nr, { onStep });
          else f.cleanRecord(first, nr, { onStep, bitmapOffset: first, walkOnSkip: r() < 0.5 });
          count('dirty-helper');
        } else if (op < 0.935) {
          p.clearRefs(pick(['soft-dirty', 'all', 'anon', 'mapped'] as const));
          count('clear-refs');
        } else if (op < 0.95) {
          // userfaultfd: register, protect, resolve, scan or unregister a region.
          const u = uffdOf(p);
          const len = reg.m.end - reg.m.start;
          const k = r();
          try {
            if (k < 0.3) u.register(reg.m.start, len);
            else if (k < 0.55) u.writeProtect(reg.m.start, len, true);
            else if (k < 0.75) u.writeProtect(reg.m.start, len, false);
            else if (k < 0.9) p.pagemapScan({ start: reg.m.start, end: reg.m.end, categoryMask: ['written'], returnMask: ['written'], wpMatching: true });
            else u.unregister(reg.m.start, len);
            count('uffd');
          } catch (e) {
            if (!(e instanceof EmuError) || !['ENOENT', 'EINVAL', 'EBUSY'].includes(e.code)) throw e;
          }
        } else if (op < 0.95 + 0.015) {
          // A pin outlives whatever happens to the mapping; a DMA write through a fresh write pin is the page's content.
          if (pins.length > 0 && r() < 0.4) {
            pins.splice(Math.floor(r() * pins.length), 1)[0]!.unpin();
            count('unpin');
          } else {
            const n = 1 + Math.floor(r() * Math.min(16, pages));
            const a = reg.m.start + Math.floor(r() * (pages - n + 1)) * PAGE;
            const write = reg.prot.includes('w') && r() < 0.7;
            const allowed = write || reg.prot !== 'none';
            try {
              const pin = m.pin(p, a, n, { write, fast: r() < 0.5, longterm: write && r() < 0.5 });
              expect(allowed, `${where}: pin of ${reg.prot}`).toBe(true);
              pins.push(pin);
              count('pin');
              if (write) {
                // A write pin breaks COW on every page: a private file page becomes a private copy of what it held.
                if (!reg.shared && reg.file) for (let i = 0; i < n; i++) st.tags.set(a + i * PAGE, expected(st, reg, a + i * PAGE));
                const tag = 1 + Math.floor(r() * 1e6);
                pin.dmaWrite(0, tag);
                if (reg.shared) tagsOf(reg.file!).set(reg.pgoff + (a - reg.m.start) / PAGE, tag); else st.tags.set(a, tag);
              }
            } catch (e) {
              if (e instanceof EmuError && e.code === 'EAGAIN' && uffds.has(p)) {
                // The pin's write fault waits on a protected page: one message, nothing pinned.
                expect(uffds.get(p)!.events().length, `${where}: pin's uffd message`).toBe(1);
                count('pin-uffd');
              } else if (!(e instanceof EmuError) || e.code !== 'EFAULT' || allowed) throw e;
            }
          }
        } else if (op < 0.972) {
          // A device mirrors the process: a device fault over part of the region, or its pages
          // migrated to device memory (a later CPU access brings them back, content kept).
          const mir = mirrorOf(p);
          const n = 1 + Math.floor(r() * Math.min(64, pages));
          const a = reg.m.start + Math.floor(r() * (pages - n + 1)) * PAGE;
          try {
            if (r() < 0.6) { mir.fault(a, n, r() < 0.5 ? 'r' : 'w'); count('device-fault'); }
            else { mir.migrateToDevice(a, n); count('migrate'); }
          } catch (e) {
            if (!(e instanceof EmuError) || !['EFAULT', 'EACCES', 'EAGAIN', 'EINVAL'].includes(e.code)) throw e;
            // A device fault whose CPU fault waits on a userfaultfd leaves a message behind.
            if (e.code === 'EAGAIN') uffds.get(p)?.events();
          }
          // A device write fault breaks COW like a CPU write: a private file page becomes a private copy of what it held.
          if (reg.file && !reg.shared) {
            for (let i = 0; i < n; i++) {
              const x = a + i * PAGE;
              if (!st.tags.has(x)) { const pm = p.pagemap(x); if (pm.present && !pm.file) st.tags.set(x, expected(st, reg, x)); }
            }
          }
        } else if (op < 0.98) {
          p.munmap(reg.m.start, reg.m.end - reg.m.start);
          count('munmap');
          for (let a = reg.m.start; a < reg.m.end; a += PAGE) st.tags.delete(a);
          st.regions.splice(st.regions.indexOf(reg), 1);
        } else if (procs.length < 3) {
          if (r() < 0.5) spawn();
          else {
            // The child starts with the parent's VMAs and contents; from here on each side writes its own pages.
            procs.push({ p: p.fork(), regions: st.regions.map((g) => ({ ...g })), tags: new Map(st.tags) });
            count('fork');
          }
        } else {
          p.exit();
          count('exit');
          procs.splice(procs.indexOf(st), 1);
          if (procs.length === 0) spawn();
        }
      }
    } catch (e) {
      throw new Error(`${where}: ${(e as Error).message}`);
    }
    const problems = m.check();
    expect(problems, `${where} (after ${lastOp})`).toEqual([]);
  }
  for (const pin of pins) pin.unpin();
  for (const st of procs) st.p.exit();
  expect(m.check(), `seed ${seed} ${arch} after teardown`).toEqual([]);
  counts.swapped = m.stats.swapSlotsUsed;
  counts.thpFileMapped = m.stats.thpFileMapped;
  counts.contpteConverts = m.stats.contpte.folds + m.stats.contpte.unfolds;
  return counts;
}

describe('random operation sequences keep every invariant and every page\'s content', () => {
  for (const arch of ['x86_64', 'arm64'] as const) {
    const totals: Record<string, number> = {};
    for (const seed of (process.env.PTEMU_SEEDS ?? '1,2,3').split(',').map(Number)) {
      it(`${arch} seed ${seed}`, async () => {
        const c = await run(seed, arch, Number(process.env.PTEMU_STEPS ?? 400));
        if (process.env.PTEMU_SHOW_COUNTS) console.log(arch, seed, c);
        for (const [k, v] of Object.entries(c)) totals[k] = (totals[k] ?? 0) + v;
      }, 60_000);
    }
    // The generator must really exercise the operations it claims to (over the seeds together).
    it(`${arch}: every kind of operation ran`, () => {
      for (const k of ['mmap', 'write', 'read', 'mprotect', 'dontneed', 'pageout', 'pin', 'fork', 'dirty-helper', 'clear-refs', 'uffd', 'device-fault', 'migrate']) expect(totals[k] ?? 0, k).toBeGreaterThan(0);
    });
  }
});
