// Hostile input: every public function called with wrong types, NaN,
// negative, huge, non-canonical, unaligned, overlapping and out-of-range
// values, mixed with valid ones so that calls get past their first check.
// Each call either succeeds or throws an EmuError with a code and the
// argument named, never anything else (a WebAssembly trap, a TypeError); a
// call that throws leaves the machine byte-identical (m.digest()) unless it
// failed part-way through faulting a range in, as the kernel would; the
// invariant checker stays clean throughout.

import { describe, it, expect } from 'vitest';
import { appendFileSync } from 'node:fs';
import fc from 'fast-check';
import {
  Machine, EmuError, Trace, decodePagemap, parseSize, formatSize, HMM_PFN_REQ_FAULT,
  type Process, type File, type Pin, type Userfaultfd, type Mirror, type Device, type IntervalNotifier, type ArchName,
} from '../src/index.js';

const PAGE = 4096;
const CODES = new Set(['EINVAL', 'ENOMEM', 'EFAULT', 'EAGAIN', 'ENOENT', 'EPERM', 'EEXIST', 'EACCES', 'EBUSY', 'EBADF', 'ENODEV', 'ENOSPC']);
const SEED = Number(process.env.PTEMU_FUZZ_SEED ?? 20261122);
/** A file to log every call to before it runs (to find a call that never returns). */
const TRACE_CALLS = process.env.PTEMU_HOSTILE_LOG;
const RUNS = Number(process.env.PTEMU_HOSTILE_RUNS ?? 10000);

/** A machine with one of everything to call methods on. */
interface World {
  m: Machine;
  other: Machine;
  p: Process;
  q: Process;
  dead: Process;
  foreign: Process;
  f: File;
  reg: File;
  closed: File;
  pin: Pin;
  unpinned: Pin;
  u: Userfaultfd;
  dev: Device;
  mir: Mirror;
  notifier: IntervalNotifier;
  trace: Trace;
  /** Addresses worth aiming at: mapping starts, ends, middles, a THP, a hole. */
  addrs: number[];
}

const BASE = 0x4000_0000;

async function world(arch: ArchName): Promise<World> {
  const m = await Machine.create({ arch, memory: '32MiB', swap: '4MiB', cpus: 2, thp: 'always', mthp: { '64K': 'always' }, tlb: 'tiny' });
  const other = await Machine.create({ arch, memory: '4MiB' });
  const p = m.spawn();
  const f = m.memfd({ size: 64 * PAGE });
  const reg = m.file({ size: 16 * PAGE, pageMkwrite: true });
  const closed = m.memfd({ size: PAGE });
  closed.close();
  p.mmap({ addr: BASE, length: 16 * PAGE, prot: 'rw' });
  p.mmap({ addr: BASE + 0x20_0000, length: 0x20_0000, prot: 'rw' });                       // a THP
  p.mmap({ addr: BASE + 0x40_0000, length: 64 * PAGE, prot: 'rw', shared: true, file: f });
  p.mmap({ addr: BASE + 0x60_0000, length: 16 * PAGE, prot: 'r', file: reg });
  p.touch(BASE, 16 * PAGE, 'w', 7);
  p.write(BASE + 0x20_0000, 8);
  p.touch(BASE + 0x40_0000, 8 * PAGE, 'w', 9);
  const q = p.fork();
  const dead = m.spawn();
  dead.exit();
  const foreign = other.spawn();
  const pin = m.pin(p, BASE, 2, { write: true });
  const unpinned = m.get(p, BASE + 2 * PAGE, 1);
  unpinned.unpin();
  const u = p.userfaultfd({ features: ['wp-unpopulated'] });
  u.register(BASE + 8 * PAGE, 8 * PAGE);
  const dev = m.device('gpu');
  dev.addMemory(8);
  const mir = dev.mirror(p);
  const notifier = m.hmm.intervalNotifier(p, BASE, 0x80_0000);
  const trace = Trace.sequential(BASE, 8 * PAGE, 'w');
  const addrs = [BASE, BASE + PAGE, BASE + 8 * PAGE, BASE + 15 * PAGE, BASE + 16 * PAGE, BASE + 0x20_0000, BASE + 0x20_0000 + 77 * PAGE,
    BASE + 0x40_0000, BASE + 0x40_0000 + 63 * PAGE, BASE + 0x60_0000, BASE + 0x10_0000];
  return { m, other, p, q, dead, foreign, f, reg, closed, pin, unpinned, u, dev, mir, notifier, trace, addrs };
}

// ---- hostile values -------------------------------------------------------------------

/** What no argument should choke on. */
const JUNK: readonly unknown[] = [
  undefined, null, NaN, Infinity, -Infinity, -1, -4096, 0.5, 1.5, -0, 2 ** 53, 2 ** 64, 1e300, -(2 ** 63),
  -1n, 2n ** 64n, 2n ** 63n, 0xffff_8000_0000_0000n, 0x8000_0000_0000, 0x7fff_ffff_f000, 0x7fff_ffff_ffff,
  '', 'x', '12 parsecs', '4KiB', '-4KiB', '1e3', 'rw', 'NaN', '0x1000', {}, [], [1, 2], true, false,
  Symbol('s'), () => 1, new Uint8Array(3), new Date(0), Object.create(null), { valueOf: () => 4096 }, { toString: () => 'rw' },
];

const junk = fc.constantFrom(...JUNK);

/** Numbers and bigints around the interesting boundaries. */
const numberish = fc.oneof(
  fc.integer({ min: -5, max: 5 }),
  fc.constantFrom(PAGE, 2 * PAGE, 16 * PAGE, 512 * PAGE, 0x20_0000, 2 ** 31, 2 ** 32, 2 ** 32 - 1, 2 ** 47, 2 ** 48),
  fc.double({ noNaN: false }),
  fc.bigInt({ min: -(2n ** 65n), max: 2n ** 65n }),
);

/** An address: mostly the world's (possibly off by a little), else hostile. */
function addrArb(w: World): fc.Arbitrary<unknown> {
  return fc.oneof(
    { weight: 6, arbitrary: fc.constantFrom(...w.addrs) },
    { weight: 3, arbitrary: fc.tuple(fc.constantFrom(...w.addrs), fc.integer({ min: -3, max: 3 }), fc.constantFrom(1, PAGE)).map(([a, k, s]) => a + k * s) },
    { weight: 1, arbitrary: fc.constantFrom(...w.addrs).map((a) => BigInt(a)) },
    { weight: 2, arbitrary: junk },
    { weight: 2, arbitrary: numberish },
  );
}

const sizeArb: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(PAGE, 2 * PAGE, 8 * PAGE, 16 * PAGE, 64 * PAGE, 0x20_0000, '8KiB', '2MiB') },
  { weight: 2, arbitrary: junk },
  { weight: 2, arbitrary: numberish },
);
const countArb: fc.Arbitrary<unknown> = fc.oneof({ weight: 6, arbitrary: fc.integer({ min: 0, max: 20 }) }, { weight: 2, arbitrary: junk }, { weight: 2, arbitrary: numberish });
const tagArb: fc.Arbitrary<unknown> = fc.oneof({ weight: 6, arbitrary: fc.nat() }, { weight: 2, arbitrary: junk }, { weight: 1, arbitrary: numberish });
const boolArb: fc.Arbitrary<unknown> = fc.oneof({ weight: 6, arbitrary: fc.boolean() }, { weight: 1, arbitrary: junk });
function enumArb(...values: unknown[]): fc.Arbitrary<unknown> {
  return fc.oneof({ weight: 6, arbitrary: fc.constantFrom(...values) }, { weight: 2, arbitrary: junk }, { weight: 1, arbitrary: fc.string({ maxLength: 6 }) });
}
/** An options object: known keys with their arbitraries, sometimes missing, sometimes an unknown key; or junk. */
function optsArb(fields: Record<string, fc.Arbitrary<unknown>>): fc.Arbitrary<unknown> {
  const rec = fc.record(fields, { requiredKeys: [] });
  return fc.oneof(
    { weight: 8, arbitrary: rec },
    { weight: 1, arbitrary: rec.map((o) => ({ ...o, bogus: 1 })) },
    { weight: 1, arbitrary: junk },
  );
}
function oneOf<T>(w: World, ...pick: ((w: World) => T)[]): fc.Arbitrary<unknown> {
  return fc.oneof({ weight: 6, arbitrary: fc.constantFrom(...pick.map((f) => f(w))) }, { weight: 1, arbitrary: junk });
}

// ---- the public surface ----------------------------------------------------------------

interface Call { name: string; args: fc.Arbitrary<unknown[]>; run: (args: unknown[]) => unknown }

/* eslint-disable @typescript-eslint/no-explicit-any -- the point is to call with what the types forbid */
function calls(w: World): Call[] {
  const A = addrArb(w);
  const proc = oneOf(w, (x) => x.p, (x) => x.q, (x) => x.dead, (x) => x.foreign);
  /** A receiver: methods are called on real objects (calling one on junk is JavaScript's error, not the API's). */
  const self = <T>(...xs: T[]): fc.Arbitrary<unknown> => fc.constantFrom(...xs);
  const procSelf = self(w.p, w.q, w.dead, w.foreign);
  const fileSelf = self(w.f, w.reg, w.closed);
  const pinSelf = self(w.pin, w.unpinned);
  const prot = enumArb('r', 'rw', 'none', 'rx', 'rwx', 'w', '');
  const step = optsArb({ onStep: fc.constantFrom(undefined, () => undefined, 5) });
  const cpuOpts = optsArb({ cpu: fc.oneof(fc.integer({ min: -1, max: 3 }), junk) });
  const pinOpts = optsArb({ write: boolArb, longterm: boolArb, fast: boolArb });
  const kernelLevel = enumArb('pte', 'pmd', 'pud', 3);
  const raw = fc.oneof(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), fc.constantFrom(0n, 0x8000_0000_0000_0067n, 0x67n, 0x1000_0067n), junk);
  const a = (...xs: fc.Arbitrary<unknown>[]) => fc.tuple(...xs) as unknown as fc.Arbitrary<unknown[]>;
  const P = (x: unknown) => x as Process;
  const k = w.m.kernel;
  const list: Call[] = [
    // Machine
    { name: 'm.spawn', args: a(), run: () => w.m.spawn() },
    { name: 'm.memfd', args: a(optsArb({ size: sizeArb, huge: boolArb })), run: ([o]) => w.m.memfd(o as any) },
    { name: 'm.file', args: a(optsArb({ size: sizeArb, pageMkwrite: fc.oneof(boolArb, fc.constant(() => 'ok')) })), run: ([o]) => w.m.file(o as any) },
    { name: 'm.pin', args: a(proc, A, countArb, pinOpts), run: ([p, x, n, o]) => w.m.pin(P(p), x as any, n as any, o as any) },
    { name: 'm.get', args: a(proc, A, countArb, pinOpts), run: ([p, x, n, o]) => w.m.get(P(p), x as any, n as any, o as any) },
    { name: 'm.frame', args: a(countArb), run: ([n]) => w.m.frame(n as any) },
    { name: 'm.swapSlot', args: a(countArb), run: ([n]) => w.m.swapSlot(n as any) },
    { name: 'm.cpu', args: a(countArb), run: ([n]) => w.m.cpu(n as any) },
    { name: 'm.device', args: a(enumArb('gpu', 'nic', '')), run: ([n]) => w.m.device(n as any) },
    { name: 'm.adopt', args: a(countArb), run: ([n]) => w.m.adopt(n as any) },
    { name: 'm.replay', args: a(proc, fc.oneof(fc.constant(w.trace), junk), optsArb({ cpu: countArb, mode: enumArb('model', 'functional'), collectPfns: boolArb })), run: ([p, t, o]) => w.m.replay(P(p), t as any, o as any) },
    // Process
    { name: 'p.mmap', args: a(procSelf, optsArb({ addr: A, length: sizeArb, prot, shared: boolArb, file: oneOf(w, (x) => x.f, (x) => x.reg, (x) => x.closed), offset: sizeArb, fixed: boolArb, openMode: enumArb('rdwr', 'rdonly') })), run: ([p, o]) => P(p).mmap(o as any) },
    { name: 'p.munmap', args: a(procSelf, A, sizeArb), run: ([p, x, l]) => P(p).munmap(x as any, l as any) },
    { name: 'p.mprotect', args: a(procSelf, A, sizeArb, prot), run: ([p, x, l, pr]) => P(p).mprotect(x as any, l as any, pr as any) },
    { name: 'p.madvise', args: a(procSelf, A, sizeArb, enumArb('dontneed', 'remove', 'pageout', 'dontfork', 'dofork', 'hugepage', 'nohugepage', 'free')), run: ([p, x, l, ad]) => P(p).madvise(x as any, l as any, ad as any) },
    { name: 'p.clearRefs', args: a(procSelf, enumArb('soft-dirty', 'all', 'anon', 'mapped', 5), step), run: ([p, what, o]) => P(p).clearRefs(what as any, o as any) },
    { name: 'p.pagemapScan', args: a(procSelf, optsArb({ start: A, end: A, categoryMask: fc.oneof(fc.constant(['written']), junk), returnMask: fc.oneof(fc.constant(['present', 'written']), fc.constant(['bogus']), junk), wpMatching: boolArb, checkWpAsync: boolArb, maxPages: countArb, maxRegions: countArb })), run: ([p, o]) => P(p).pagemapScan(o as any) },
    { name: 'p.userfaultfd', args: a(procSelf, optsArb({ features: fc.oneof(fc.constant(['wp-async']), fc.constant(['nope']), junk) })), run: ([p, o]) => P(p).userfaultfd(o as any) },
    { name: 'p.read', args: a(procSelf, A, cpuOpts), run: ([p, x, o]) => P(p).read(x as any, o as any) },
    { name: 'p.write', args: a(procSelf, A, tagArb, cpuOpts), run: ([p, x, t, o]) => P(p).write(x as any, t as any, o as any) },
    { name: 'p.touch', args: a(procSelf, A, sizeArb, enumArb('r', 'w', 'x'), tagArb, cpuOpts), run: ([p, x, l, kd, t, o]) => P(p).touch(x as any, l as any, kd as any, t as any, o as any) },
    { name: 'p.pagemap', args: a(procSelf, A), run: ([p, x]) => P(p).pagemap(x as any) },
    { name: 'p.pagemapRange', args: a(procSelf, A, sizeArb), run: ([p, x, l]) => P(p).pagemapRange(x as any, l as any) },
    { name: 'p.entry', args: a(procSelf, A), run: ([p, x]) => P(p).entry(x as any) },
    { name: 'p.pageWalk', args: a(procSelf, A), run: ([p, x]) => P(p).pageWalk(x as any) },
    { name: 'p.dump', args: a(procSelf, A, sizeArb), run: ([p, x, l]) => P(p).dump(x as any, l as any) },
    { name: 'p.scan', args: a(procSelf, A, sizeArb), run: ([p, x, l]) => P(p).scan(x as any, l as any) },
    // File
    { name: 'f.truncate', args: a(fileSelf, sizeArb), run: ([f, s]) => (f as File).truncate(s as any) },
    { name: 'f.lookup', args: a(fileSelf, countArb), run: ([f, n]) => (f as File).lookup(n as any) },
    { name: 'f.writeProtect', args: a(fileSelf, countArb, countArb, optsArb({ walkOnSkip: boolArb, onStep: fc.constantFrom(undefined, 3) })), run: ([f, s, n, o]) => (f as File).writeProtect(s as any, n as any, o as any) },
    { name: 'f.cleanRecord', args: a(fileSelf, countArb, countArb, optsArb({ bitmapOffset: countArb, bitmap: fc.oneof(fc.constant(new Uint8Array(2)), fc.constant(new BigUint64Array(1)), fc.constant(new Int8Array(4)), junk), start: countArb, end: countArb })), run: ([f, s, n, o]) => (f as File).cleanRecord(s as any, n as any, o as any) },
    // Pin
    { name: 'pin.dmaWrite', args: a(pinSelf, countArb, tagArb), run: ([pn, i, t]) => (pn as Pin).dmaWrite(i as any, t as any) },
    { name: 'pin.dmaRead', args: a(pinSelf, countArb), run: ([pn, i]) => (pn as Pin).dmaRead(i as any) },
    // Userfaultfd
    { name: 'u.register', args: a(A, sizeArb, optsArb({ missing: boolArb, wp: boolArb })), run: ([x, l, o]) => w.u.register(x as any, l as any, o as any) },
    { name: 'u.unregister', args: a(A, sizeArb), run: ([x, l]) => w.u.unregister(x as any, l as any) },
    { name: 'u.writeProtect', args: a(A, sizeArb, boolArb), run: ([x, l, e]) => w.u.writeProtect(x as any, l as any, e as any) },
    { name: 'u.copy', args: a(A, sizeArb, tagArb, optsArb({ wp: boolArb })), run: ([x, l, t, o]) => w.u.copy(x as any, l as any, t as any, o as any) },
    { name: 'u.zeropage', args: a(A, sizeArb, optsArb({ wp: boolArb })), run: ([x, l, o]) => w.u.zeropage(x as any, l as any, o as any) },
    // Device, mirror, hmm
    { name: 'dev.addMemory', args: a(countArb), run: ([n]) => w.dev.addMemory(n as any) },
    { name: 'dev.mirror', args: a(proc), run: ([p]) => w.dev.mirror(P(p)) },
    { name: 'mir.fault', args: a(A, countArb, enumArb('r', 'w'), step), run: ([x, n, md, o]) => w.mir.fault(x as any, n as any, md as any, o as any) },
    { name: 'mir.lookup', args: a(A), run: ([x]) => w.mir.lookup(x as any) },
    { name: 'mir.leafDirectoryCount', args: a(A), run: ([x]) => w.mir.leafDirectoryCount(x as any) },
    { name: 'mir.deviceWrite', args: a(A, tagArb), run: ([x, t]) => w.mir.deviceWrite(x as any, t as any) },
    { name: 'mir.migrateToDevice', args: a(A, countArb), run: ([x, n]) => w.mir.migrateToDevice(x as any, n as any) },
    { name: 'hmm.intervalNotifier', args: a(proc, A, sizeArb), run: ([p, x, l]) => w.m.hmm.intervalNotifier(P(p), x as any, l as any) },
    { name: 'hmm.rangeFault', args: a(optsArb({ notifier: oneOf(w, (x) => x.notifier), start: A, end: A, defaultFlags: fc.oneof(fc.constant(HMM_PFN_REQ_FAULT), junk), pfnFlagsMask: fc.oneof(fc.constant(0n), junk), pfns: fc.oneof(fc.constant(new BigUint64Array(4)), junk), notifierSeq: countArb })), run: ([o]) => w.m.hmm.rangeFault(o as any) },
    // Kernel primitives
    { name: 'k.flushTlbPage', args: a(proc, A), run: ([p, x]) => k.flushTlbPage(P(p), x as any) },
    { name: 'k.flushTlbRange', args: a(proc, A, A), run: ([p, s, e]) => k.flushTlbRange(P(p), s as any, e as any) },
    { name: 'k.flushTlbAll', args: a(countArb), run: ([c]) => k.flushTlbAll(c as any) },
    { name: 'k.flushTlbMm', args: a(proc), run: ([p]) => k.flushTlbMm(P(p)) },
    { name: 'k.tlbFlushPending', args: a(proc), run: ([p]) => { k.incTlbFlushPending(P(p)); k.decTlbFlushPending(P(p)); } },
    {
      name: 'k.tlbGather', args: a(proc, optsArb({ fullmm: boolArb }), A, A),
      run: ([p, o, x, y]) => { const g = k.tlbGather(P(p), o as any); try { g.removeTlbEntry(x as any); g.removePmdTlbEntry(y as any); } finally { g.finish(); } },
    },
    { name: 'notifier.checkRetry', args: a(countArb), run: ([n]) => w.notifier.checkRetry(n as any) },
    { name: 'k.invalidateRange', args: a(proc, A, A, enumArb('clear', 'unmap', 'migrate', 'bogus')), run: ([p, s, e, ev]) => k.invalidateRange(P(p), s as any, e as any, ev as any) },
    { name: 'k.ptepGet', args: a(proc, A), run: ([p, x]) => k.ptepGet(P(p), x as any) },
    { name: 'k.ptepGetRaw', args: a(proc, A), run: ([p, x]) => k.ptepGetRaw(P(p), x as any) },
    { name: 'k.ptepGetLockless', args: a(proc, A), run: ([p, x]) => k.ptepGetLockless(P(p), x as any) },
    { name: 'k.setEntry', args: a(proc, A, raw, kernelLevel), run: ([p, x, r, l]) => k.setEntry(P(p), x as any, r as any, l as any) },
    { name: 'k.setPtes', args: a(proc, A, raw, countArb), run: ([p, x, r, n]) => k.setPtes(P(p), x as any, r as any, n as any) },
    { name: 'k.ptepGetAndClear', args: a(proc, A), run: ([p, x]) => k.ptepGetAndClear(P(p), x as any) },
    { name: 'k.getAndClearFullPtes', args: a(proc, A, countArb), run: ([p, x, n]) => k.getAndClearFullPtes(P(p), x as any, n as any) },
    { name: 'k.ptepTestAndClearYoung', args: a(proc, A), run: ([p, x]) => k.ptepTestAndClearYoung(P(p), x as any) },
    { name: 'k.ptepClearFlushYoung', args: a(proc, A), run: ([p, x]) => k.ptepClearFlushYoung(P(p), x as any) },
    { name: 'k.wrprotectPtes', args: a(proc, A, countArb), run: ([p, x, n]) => k.wrprotectPtes(P(p), x as any, n as any) },
    { name: 'k.ptepSetAccessFlags', args: a(proc, A, raw, boolArb), run: ([p, x, r, d]) => k.ptepSetAccessFlags(P(p), x as any, r as any, d as any) },
    { name: 'k.clearYoungDirtyPtes', args: a(proc, A, countArb, optsArb({ young: boolArb, dirty: boolArb })), run: ([p, x, n, o]) => k.clearYoungDirtyPtes(P(p), x as any, n as any, o as any) },
    { name: 'k.unfoldRange', args: a(proc, A, sizeArb), run: ([p, x, l]) => k.unfoldRange(P(p), x as any, l as any) },
    { name: 'k.contScan', args: a(proc, A, sizeArb), run: ([p, x, l]) => k.contScan(P(p), x as any, l as any) },
    { name: 'k.walkPageRange', args: a(proc, A, A, fc.oneof(fc.constant({ pteEntry: () => undefined }), fc.constant({ pteEntry: 5 }), junk)), run: ([p, s, e, o]) => k.walkPageRange(P(p), s as any, e as any, o as any) },
    // CPUs, traces, codecs, units
    { name: 'cpu.read', args: a(proc, A), run: ([p, x]) => w.m.cpu(1).read(P(p), x as any) },
    { name: 'cpu.write', args: a(proc, A, tagArb), run: ([p, x, t]) => w.m.cpu(0).write(P(p), x as any, t as any) },
    { name: 'cpu.access', args: a(countArb, proc, A, enumArb('r', 'w', 'x'), tagArb), run: ([c, p, x, kd, t]) => w.m.cpu(typeof c === 'number' && c >= 0 && c < 2 ? c : 0).access(P(p), x as any, kd as any, t as any) },
    { name: 'Trace.push', args: a(A, enumArb('r', 'w', 'x')), run: ([x, kd]) => new Trace(2).push(x as any, kd as any) },
    { name: 'Trace.random', args: a(optsArb({ start: A, length: sizeArb, count: countArb, seed: countArb, writeRatio: fc.oneof(fc.double(), junk) })), run: ([o]) => Trace.random(o as any) },
    { name: 'Trace.sequential', args: a(A, sizeArb, enumArb('r', 'w')), run: ([x, l, kd]) => Trace.sequential(x as any, l as any, kd as any) },
    { name: 'Trace.fromWords', args: a(fc.oneof(fc.constant(new Uint32Array(4)), fc.constant(new Uint32Array(3)), junk), countArb), run: ([ws, n]) => Trace.fromWords(ws as any, n as any) },
    { name: 'arch.decode', args: a(raw, kernelLevel), run: ([r, l]) => w.m.arch.decode(r as any, l as any) },
    { name: 'arch.makePte', args: a(optsArb({ pfn: countArb, write: boolArb, dirty: boolArb, young: boolArb }), kernelLevel), run: ([o, l]) => w.m.arch.makePte(o as any, l as any) },
    { name: 'arch.makeSwap', args: a(optsArb({ type: countArb, offset: countArb })), run: ([o]) => w.m.arch.makeSwap(o as any) },
    { name: 'arch.makeMarker', args: a(enumArb('uffd-wp', 'guard', 'poisoned', ['uffd-wp', 'guard'])), run: ([kd]) => w.m.arch.makeMarker(kd as any) },
    { name: 'decodePagemap', args: a(raw), run: ([r]) => decodePagemap(r as any) },
    { name: 'parseSize', args: a(sizeArb), run: ([s]) => parseSize(s as any) },
    { name: 'formatSize', args: a(sizeArb), run: ([s]) => formatSize(s as any) },
  ];
  return list;
}
/* eslint-enable @typescript-eslint/no-explicit-any */

/** Primitives that, like the kernel's, leave the books (rmap, refcounts, mmu notifiers) to their caller: m.check() may object. */
const RAW_WRITERS = new Set(['k.setEntry', 'k.setPtes', 'k.ptepGetAndClear', 'k.getAndClearFullPtes', 'k.ptepSetAccessFlags', 'k.walkPageRange', 'k.wrprotectPtes', 'k.clearYoungDirtyPtes']);

/** Calls that fault pages in over a range, one page after another. */
const FAULTS_IN = new Set(['mir.fault', 'hmm.rangeFault', 'm.pin', 'm.get']);

describe('hostile input', () => {
  for (const arch of ['x86_64', 'arm64'] as const) {
    it(`${arch}: every public function, random hostile arguments: EmuErrors with code and argument, machine unchanged on error`, async () => {
      const problems = new Map<string, string>();
      // Raw entry writers get their own machine: like set_pte_at they keep no books (m.check() objects
      // when they break them), so there every call runs on a machine that m.check() passed, and one
      // that stops passing is replaced: the contract is that a machine m.check() passes never traps.
      const w = await world(arch);
      let wr = await world(arch);
      const list = calls(w);
      let rawList = calls(wr);
      let replaced = 0;
      let errors = 0, successes = 0, broken = false;
      const history = new Map<Machine, string[]>([[w.m, []], [wr.m, []]]);
      const spent = new Map<string, number>();
      const callArb = fc.tuple(fc.nat(list.length - 1), fc.boolean()).chain(([i, raw]) => list[i]!.args.map((args) => ({ i, raw: raw || RAW_WRITERS.has(list[i]!.name), args })));
      await fc.assert(fc.asyncProperty(fc.array(callArb, { minLength: 1, maxLength: 20 }), async (batch) => {
        for (const { i, raw, args: generated } of batch) {
          if (raw && wr.m.check().length > 0) {
            wr = await world(arch);
            rawList = calls(wr);
            history.set(wr.m, []);
            replaced++;
          }
          const c = raw ? rawList[i]! : list[i]!;
          const m = raw ? wr.m : w.m;
          // Arguments naming the world's objects are remapped to the raw world's.
          const args = raw ? generated.map((v) => translate(v, w, wr)) : generated;
          let before: string;
          const td = performance.now();
          try { before = m.digest(); } catch (e) { throw new Error(`m.digest() threw ${(e as Error).message} after ${history.get(m)!.at(-1) ?? 'the setup'}`); }
          spent.set('(digest)', (spent.get('(digest)') ?? 0) + performance.now() - td);
          const what = `${c.name}(${args.map(show).join(', ')})`;
          const hist = history.get(m)!;
          hist.push(what);
          if (hist.length > 12) hist.shift();
          let thrown: unknown, ok = false;
          if (TRACE_CALLS) appendFileSync(TRACE_CALLS, `${raw ? 'raw' : 'main'} ${what}\n`);
          const t0 = performance.now();
          try { c.run(args); ok = true; } catch (e) { thrown = e; }
          const dt = performance.now() - t0;
          spent.set(c.name, (spent.get(c.name) ?? 0) + dt);
          if (!raw && !broken) {
            const tc = performance.now();
            const bad = m.check();
            spent.set('(check)', (spent.get('(check)') ?? 0) + performance.now() - tc);
            if (bad.length) {
              broken = true;
              problems.set(`${c.name}:check`, `${what} ${ok ? 'succeeded' : 'failed'} and broke invariants: ${bad[0]!.kind}: ${bad[0]!.message}`);
            }
          }
          if (ok) { successes++; continue; }
          errors++;
          if (!(thrown instanceof EmuError)) {
            problems.set(`${c.name}:${(thrown as Error)?.name}`, `${what} threw ${(thrown as Error)?.name ?? typeof thrown}: ${(thrown as Error)?.message ?? String(thrown)} (${raw ? 'raw' : 'main'} world, after ${history.get(m)!.slice(0, -1).join('; ')})`);
            continue;
          }
          if (!CODES.has(thrown.code)) problems.set(`${c.name}:code`, `${what} threw an EmuError without a known code: ${thrown.code}`);
          if (!thrown.arg) problems.set(`${c.name}:${thrown.code}:arg`, `${what} threw ${thrown.message} without naming the argument`);
          // A fault-in over a range that fails part-way (a hole, SIGBUS past EOF, no memory) keeps what it faulted
          // before, as the kernel does (hmm_range_fault, GUP): only its argument errors must change nothing.
          const partial = FAULTS_IN.has(c.name) && thrown.code !== 'EINVAL';
          if (!partial && m.digest() !== before) problems.set(`${c.name}:${thrown.code}:changed`, `${what} threw ${thrown.message} but changed the machine`);
        }
      }), { seed: SEED, numRuns: Math.ceil(RUNS / 10) });
      console.log(`${arch}: ${successes} calls succeeded, ${errors} refused; raw machines replaced after m.check() objected: ${replaced}; most time: ${[...spent].sort((x, y) => y[1] - x[1]).slice(0, 4).map(([k, v]) => `${k} ${v.toFixed(0)} ms`).join(', ')}`);
      expect([...problems.values()]).toEqual([]);
      expect(errors + successes).toBeGreaterThan(RUNS / 2);
      expect(errors).toBeGreaterThan(RUNS / 4);
      expect(successes).toBeGreaterThan(RUNS / 20);
    });
  }
});

/** The same object in the other world (an argument generated from w's objects, run against wr). */
function translate(v: unknown, w: World, wr: World): unknown {
  if (v !== null && typeof v === 'object') {
    for (const k of Object.keys(w) as (keyof World)[]) if (w[k] === v) return wr[k];
    if (Object.getPrototypeOf(v) === Object.prototype) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, translate(x, w, wr)]));
  }
  return v;
}

function show(v: unknown, depth = 0): string {
  if (typeof v === 'bigint') return `${v}n`;
  if (typeof v === 'symbol') return v.toString();
  if (typeof v === 'function') return 'fn';
  if (typeof v === 'number') return Number.isInteger(v) && v > 4096 ? `0x${v.toString(16)}` : String(v);
  if (v && typeof v === 'object') {
    const proto = Object.getPrototypeOf(v);
    // The world's objects by class name only: their fields reach the core's whole memory.
    if (proto !== Object.prototype && proto !== Array.prototype) return proto?.constructor?.name ?? 'object';
    if (depth > 2) return '…';
    if (Array.isArray(v)) return `[${v.map((x) => show(x, depth + 1)).join(',')}]`;
    return `{${Object.entries(v).map(([k, x]) => `${k}:${show(x, depth + 1)}`).join(',')}}`;
  }
  return JSON.stringify(v) ?? String(v);
}
