// Loading the WASM core and the typed view of its exports. One WebAssembly
// instance (one linear memory) per Machine; the compiled module is shared.

import { readFileSync, existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { EmuError } from './errors.js';

/** The core's flat ABI (assembly/index.ts). Page numbers are f64; i64 values arrive as bigint. */
export interface CoreExports {
  memory: WebAssembly.Memory;
  resultPtr(): number;
  init(frames: number, slots: number, cpus: number, arch: number, ha: number, dbm: number, softDirty: number, thp: number, thpZero: number, faultAround: number): number;
  setThp(policy: number, useZero: number): void;
  setMthp(always: number, madvise: number, inherit: number): void;
  mthpStats(order: number): void;
  setFailAfter(n: number): void;
  mmNew(levels: number, taskSizePages: number): number;
  mmExit(id: number): number;
  mmap(id: number, vpn: number, pages: number, flags: number, file: number, pgoff: number, replace: number): number;
  unmappedArea(id: number, pages: number, alignPages: number, baseVpn: number): number;
  munmap(id: number, vpn: number, pages: number): number;
  mprotect(id: number, vpn: number, pages: number, prot: number): number;
  madvise(id: number, vpn: number, pages: number, advice: number): number;
  gup(id: number, vpn: number, pages: number, flags: number): number;
  gupPinPfns(pin: number): number;
  gupUnpin(pin: number): number;
  dmaWriteTag(pfn: number, tag: number): void;
  frameTag(pfn: number): number;
  mmFlags(id: number): number;
  mmFork(id: number, seedEra: number): number;
  pageoutCount(): number;
  access(cpu: number, id: number, vpn: number, kind: number, tag: number): number;
  touch(cpu: number, id: number, vpn: number, pages: number, kind: number, tag: number): number;
  replay(cpu: number, id: number, buf: number, count: number, pfnsOut: number): number;
  allocBuffer(bytes: number): number;
  tlbAddArray(level: number, kind: number, sizes: number, sets: number, ways: number, policy: number): number;
  tlbSetWalkCache(level: number, n: number): number;
  setMode(mode: number): void;
  setCeiling(n: number): void;
  cpuStats(cpu: number): number;
  cpuInfo(cpu: number): number;
  cpuPeek(cpu: number, id: number, vpn: number): number;
  logRecords(which: number): number;
  logReset(which: number): void;
  flushTotals(): void;
  stepMode(on: number): void;
  fileWriteProtect(id: number, first: number, nr: number, walkOnSkip: number): number;
  fileCleanRecord(id: number, first: number, nr: number, bitmapPgoff: number, bitmap: number, start: number, end: number, walkOnSkip: number): number;
  clearRefs(id: number, type: number): number;
  mmSetKernel(id: number): number;
  kSetPtes(id: number, vpn: number, lo: number, hi: number, nr: number): number;
  setGrowthBlocked(on: number): void;
  kPteGet(id: number, vpn: number, how: number): number;
  kPteOp(id: number, vpn: number, op: number, nr: number, lo: number, hi: number, flags: number): number;
  contScan(id: number, vpn: number, pages: number): number;
  setContpteEnabled(on: number): void;
  contpteCounters(): void;
  kUnfoldRange(id: number, vpn: number, pages: number): number;
  uffdNew(id: number, features: number): number;
  uffdRegisterRange(ctx: number, vpn: number, pages: number, flags: number): number;
  uffdUnregisterRange(ctx: number, vpn: number, pages: number): number;
  uffdWp(ctx: number, vpn: number, pages: number, protect: number): number;
  uffdEvents(): number;
  uffdClose(ctx: number): void;
  uffdRead(ctx: number): void;
  uffdFill(ctx: number, vpn: number, pages: number, tag: number, zero: number, wp: number): number;
  uffdOwner(ctx: number): number;
  pagemapScanRange(id: number, vpn: number, pages: number, flags: number, inverted: number, mask: number, anyof: number, ret: number,
    maxPages: number, vec: number, vecLen: number): number;
  notifierNew(id: number, vpn: number, pages: number): number;
  notifierFree(sub: number): void;
  notifierReadBegin(sub: number): number;
  notifierCheckRetry(sub: number, seq: number): number;
  notifierInvalidations(sub: number): number;
  mirrorNew(id: number, device: number): number;
  mirrorFree(id: number): void;
  mirrorFaultRange(id: number, vpn: number, pages: number, write: number): number;
  mirrorEntryAt(id: number, vpn: number): void;
  mirrorWrite(id: number, vpn: number): number;
  mirrorDirCount(id: number, vpn: number): number;
  mirrorInfo(id: number): void;
  devicePool(device: number, order: number): number;
  devicePoolStats(device: number): void;
  migrateRangeToDevice(id: number, device: number, vpn: number, pages: number): number;
  hmmRangeFaultRange(sub: number, seq: number, vpn: number, pages: number, pfns: number, defaultHi: number, maskHi: number, owner: number): number;
  kFlushTlbRange(id: number, vpn: number, endVpn: number, stride: number): number;
  kFlushTlbMm(id: number): number;
  kInvalidateRange(id: number, vpn: number, endVpn: number, event: number): number;
  kFlushTlbAll(cpu: number): void;
  kFlushPending(id: number, delta: number): number;
  kGatherBegin(id: number, fullmm: number): number;
  kGatherRemove(g: number, vpn: number, level: number): void;
  kGatherFinish(g: number): number;
  kSetEntry(id: number, vpn: number, level: number, lo: number, hi: number): number;
  entryAt(id: number, vpn: number): number;
  pagemap(id: number, vpn: number, pages: number): number;
  freeBuffer(ptr: number, bytes: number): void;
  dump(id: number, vpn: number, pages: number): number;
  dumpRecords(): number;
  walkStats(id: number, vpn: number, pages: number): number;
  mmInfo(id: number): number;
  vmaInfo(id: number, i: number): number;
  frameInfo(pfn: number): number;
  machineInfo(): void;
  swapInfo(slot: number): void;
  fileNew(pages: number, flags: number): number;
  fileClose(id: number): number;
  fileTruncate(id: number, pages: number): number;
  fileInfo(id: number): number;
  fileLookup(id: number, pgoff: number): number;
  check(): number;
  checkProblems(): number;
  corruptFrame(pfn: number, field: number, value: number): void;
  corruptEntryAt(id: number, vpn: number, level: number, lo: number, hi: number): number;
  debugVmaFlags(id: number, vpn: number, set: number, clear: number): number;
  debugInjectBug(bug: number, on: number): number;
  digest(): void;
  entryPath(id: number, vpn: number): number;
  encodePresent(pfn: number, flags: number, level: number): bigint;
  encodeSwap(type: number, offset: number, flags: number): bigint;
  encodeTable(pfn: number): bigint;
  decode(raw: bigint, level: number): number;
  jsWalk(id: number, vpn: number, endVpn: number, has: number): number;
  walkSetActionExport(a: number): void;
  walkSetEntry(lo: number, hi: number): number;
}

/** Receives the core's walk callbacks (see assembly/ops/jsop.ts). */
export type WalkHandler = (kind: number, level: number, vpn: number, nextVpn: number, entry: bigint, depth: number) => number;
/** Receives the yield points of a stepped kernel operation (assembly/step.ts). */
export type StepHandler = (kind: number, mm: number, vpn: number, endVpn: number) => void;
/** Runs a file's ->page_mkwrite: 0 go on, 1 the writer waits, 2 SIGBUS (assembly/file.ts). */
export type MkwriteHandler = (file: number, pgoff: number, mm: number, vpn: number) => number;

/**
 * Where scenario code is running while the core is in the middle of an
 * operation, and so what it may call: at a yield point of a stepped
 * operation, CPU accesses and inspection (the operation holds no lock the
 * hardware needs); inside ->page_mkwrite, a fault is half done, so only
 * reads of descriptors and counters.
 */
export type HookContext = 'step' | 'page_mkwrite';

const INSPECT = [
  'resultPtr', 'memory', 'frameInfo', 'frameTag', 'machineInfo', 'swapInfo', 'fileInfo', 'fileLookup', 'mmInfo', 'vmaInfo',
  'mmFlags', 'cpuStats', 'cpuInfo', 'logRecords', 'flushTotals', 'mthpStats', 'contpteCounters', 'uffdEvents', 'pageoutCount', 'decode', 'encodePresent', 'encodeSwap', 'encodeTable', 'digest',
];
const ALLOWED: Record<HookContext, ReadonlySet<string>> = {
  page_mkwrite: new Set(INSPECT),
  // Reading a userfaultfd's messages is another thread's read(2): it touches no page table.
  step: new Set([...INSPECT, 'access', 'touch', 'kPteGet', 'contScan', 'cpuPeek', 'entryAt', 'entryPath', 'pagemap', 'allocBuffer', 'freeBuffer', 'dump',
    'dumpRecords', 'walkStats', 'check', 'checkProblems', 'kFlushTlbRange', 'kFlushTlbMm', 'kFlushTlbAll', 'kFlushPending', 'uffdRead', 'uffdOwner',
    'notifierReadBegin', 'notifierCheckRetry', 'notifierInvalidations', 'mirrorEntryAt', 'mirrorInfo', 'mirrorDirCount']),
};

export type CoreArch = 'x86_64' | 'arm64';
const compiled = new Map<CoreArch, WebAssembly.Module>();

/** The core is built once per architecture (the arch codec is a compile-time constant). */
function wasmPath(arch: CoreArch): string {
  for (const rel of [`../build/ptemu-${arch}.wasm`, `../../build/ptemu-${arch}.wasm`]) {
    const p = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(p)) return p;
  }
  throw new Error(`ptemu: build/ptemu-${arch}.wasm not found; run \`npm run build:wasm\``);
}

/** Instantiates a fresh core for an architecture. */
export async function instantiateCore(arch: CoreArch): Promise<Core> {
  let module = compiled.get(arch);
  if (!module) {
    module = await WebAssembly.compile(readFileSync(wasmPath(arch)));
    compiled.set(arch, module);
  }
  let core: Core | undefined;
  const instance = await WebAssembly.instantiate(module, {
    env: {
      walkCallback(kind: number, level: number, vpn: number, nextVpn: number, entry: bigint, depth: number): number {
        const h = core?.walkHandler;
        return h ? h(kind, level, vpn, nextVpn, entry, depth) : 0;
      },
      stepCallback(kind: number, mm: number, vpn: number, endVpn: number): void {
        const h = core?.stepHandler;
        if (h && core!.hookError === undefined) core!.runHook('step', () => h(kind, mm, vpn, endVpn), undefined);
      },
      pageMkwrite(file: number, pgoff: number, mm: number, vpn: number): number {
        const h = core?.mkwriteHandler;
        // A hook that throws fails the fault as a filesystem error would (SIGBUS); the exception follows.
        return h ? core!.runHook('page_mkwrite', () => h(file, pgoff, mm, vpn), 2) : 0;
      },
      abort(_msg: number, _file: number, line: number, col: number): never {
        throw new Error(`ptemu core aborted at ${line}:${col}`);
      },
    },
  });
  core = new Core(instance.exports as unknown as CoreExports);
  return core;
}

/**
 * The exports plus typed-array views on linear memory. Views are re-created
 * whenever memory has grown (a grown buffer detaches the old one).
 */
export class Core {
  private readonly raw: CoreExports;
  /** Set for the duration of a JavaScript-callback walk. */
  walkHandler: WalkHandler | undefined;
  /** Set for the duration of a stepped operation. */
  stepHandler: StepHandler | undefined;
  /** Dispatches ->page_mkwrite to the file's hook (set by the Machine). */
  mkwriteHandler: MkwriteHandler | undefined;
  /** What a hook threw inside the core; thrown again once the core call returns (takeHookError). */
  hookError: unknown;
  private context: HookContext | undefined;
  private guarded: CoreExports | undefined;
  private buffer: ArrayBuffer | undefined;
  private u64: BigUint64Array = new BigUint64Array(0);
  private u32: Uint32Array = new Uint32Array(0);

  constructor(x: CoreExports) { this.raw = x; }

  /** The exports; inside a hook, a view that refuses what the hook may not do (EBUSY). */
  get x(): CoreExports {
    if (this.context === undefined) return this.raw;
    return this.guarded ??= this.makeGuard();
  }

  private makeGuard(): CoreExports {
    // WebAssembly export objects are frozen (a Proxy may not alter them): a plain object of checking wrappers.
    const raw = this.raw as unknown as Record<string, unknown>;
    const guarded: Record<string, unknown> = {};
    for (const name of Object.keys(raw)) {
      const v = raw[name];
      if (typeof v !== 'function') { guarded[name] = v; continue; }
      guarded[name] = (...args: unknown[]): unknown => {
        const ctx = this.context;
        if (ctx !== undefined && !ALLOWED[ctx].has(name)) {
          throw new EmuError('EBUSY', `not allowed inside ${ctx === 'step'
            ? 'an onStep callback (the operation is half done; only CPU accesses and inspection may run)'
            : 'a page_mkwrite hook (the fault is half done)'}`, ctx === 'step' ? 'onStep' : 'pageMkwrite');
        }
        return (v as (...a: unknown[]) => unknown)(...args);
      };
    }
    return guarded as unknown as CoreExports;
  }

  /** Runs scenario code called from inside the core; an exception is kept for takeHookError and `failed` returned. */
  runHook<T>(ctx: HookContext, fn: () => T, failed: T): T {
    const prev = this.context;
    this.context = ctx;
    try {
      return fn();
    } catch (err) {
      if (this.hookError === undefined) this.hookError = err;
      return failed;
    } finally {
      this.context = prev;
    }
  }

  /** Throws what a hook threw during the core call that just returned. */
  takeHookError(): void {
    const err = this.hookError;
    if (err === undefined) return;
    this.hookError = undefined;
    throw err;
  }

  private views(): void {
    if (this.buffer !== this.x.memory.buffer) {
      this.buffer = this.x.memory.buffer;
      this.u64 = new BigUint64Array(this.buffer);
      this.u32 = new Uint32Array(this.buffer);
    }
  }

  /** Slot i of the result area, as a bigint. */
  resultBig(i: number): bigint {
    this.views();
    return this.u64[(this.x.resultPtr() >>> 3) + i]!;
  }

  /** Slot i of the result area, as a number (values the core keeps below 2^53). */
  result(i: number): number { return Number(this.resultBig(i)); }

  /** Copies `count` u64 values starting at byte address ptr. */
  copyU64(ptr: number, count: number): BigUint64Array {
    this.views();
    const start = (ptr >>> 0) >>> 3;
    return this.u64.slice(start, start + count);
  }

  /** Copies values into linear memory at byte address ptr (8-aligned). */
  writeU64(ptr: number, values: BigUint64Array): void {
    this.views();
    this.u64.set(values, (ptr >>> 0) >>> 3);
  }

  u32At(ptr: number): number {
    this.views();
    return this.u32[(ptr >>> 0) >>> 2]!;
  }

  u64At(ptr: number): bigint {
    this.views();
    return this.u64[(ptr >>> 0) >>> 3]!;
  }

  /** The memory as 32-bit words, for a loop that decodes many records (valid until the core next runs). */
  words(): Uint32Array {
    this.views();
    return this.u32;
  }
}
