// The Machine: one emulated computer (physical memory, swap device, CPUs,
// architecture) and its processes and files. It owns one WASM core instance.

import { createHash } from 'node:crypto';
import { instantiateCore, type Core } from './core.js';
import { EmuError, shown, ownEntry, optionsArg } from './errors.js';
import { parseSize, GiB, PAGE_SIZE, type Size } from './units.js';
import { ArchCodec, LEVEL_NAMES, type ArchName, type EntryLevel } from './arch.js';
import type { Geometry, Addr } from './addr.js';
import { Process, liveProcessOf } from './process.js';
import { File, FILE_SHMEM, FILE_WRITENOTIFY, FILE_MKWRITE_HOOK, FILE_HUGE, type PageMkwriteHook } from './file.js';
import {
  readFlushLog, readNotifierLog, readWarnings, LOG_FLUSH, LOG_NOTIFIER, LOG_WARN,
  type FlushRecord, type NotifierRecord, type KernelWarning,
} from './logs.js';
import { readProblems, type Problem } from './check.js';
import { Kernel } from './kernel.js';
import { Cpu, readCpuStats, toTlbStats, type TlbStats } from './cpu.js';
import { resolveTlb, type ResolvedTlb, type TlbPreset, type TlbConfig } from './tlb.js';
import { Trace } from './trace.js';
import { Pin, takeUserPages, type PinOptions } from './pin.js';
import { Device } from './device.js';
import { Hmm } from './hmm.js';

/** Trace records copied into the core per replay call. */
const REPLAY_CHUNK = 1 << 20;

export type ThpPolicy = 'never' | 'madvise' | 'always';

/** Anonymous folio sizes below PMD size (hugepages-<size>kB). */
export type MthpSize = '16K' | '32K' | '64K' | '128K' | '256K' | '512K' | '1M';
/** hugepages-<size>kB/enabled: 'inherit' follows `thp`. */
export type MthpPolicy = 'never' | 'madvise' | 'always' | 'inherit';
const MTHP_ORDER: Record<MthpSize, number> = { '16K': 2, '32K': 3, '64K': 4, '128K': 5, '256K': 6, '512K': 7, '1M': 8 };

/** Test-only wrong kernels m.debug.injectBug can switch on (the fuzzers must find them). */
export type InjectableBug = 'skip-cow-copy';

export interface MachineOptions {
  arch?: ArchName;
  /** Page-table levels: 4 (48-bit VA) or 5 (57-bit, x86-64 only). */
  levels?: 4 | 5;
  /** Emulated physical memory (frames carry metadata only). Default 4 GiB, at most 256 GiB. */
  memory?: Size;
  /** Swap device size. Default: the size of memory; 0 disables swap. */
  swap?: Size;
  cpus?: number;
  /** /sys/kernel/mm/transparent_hugepage/enabled. Default 'madvise'. */
  thp?: ThpPolicy;
  /**
   * Multi-size THP for anonymous memory, per size (default 'never' for all,
   * as the kernel): a write fault maps the largest enabled folio whose aligned
   * range fits the VMA with all its PTEs empty, e.g. `{ '64K': 'always' }`.
   */
  mthp?: Partial<Record<MthpSize, MthpPolicy>>;
  /**
   * CONFIG_ARM64_CONTPTE (arm64 only; ignored on x86-64): PTEs of user mms
   * that map 64 KiB of one large folio are folded into contiguous blocks
   * (PTE_CONT), one TLB entry each. Default true.
   */
  contpte?: boolean;
  /** transparent_hugepage/use_zero_page. Default true. */
  thpZeroPage?: boolean;
  /** CONFIG_MEM_SOFT_DIRTY (x86-64 only). Default true. */
  softDirty?: boolean;
  /** arm64 FEAT_HAFDBS: hardware access flag / dirty-bit management. Default true. */
  hwAccessFlag?: boolean;
  hwDirty?: boolean;
  /** fault_around_bytes. Default 64 KiB. */
  faultAround?: Size;
  /** TLB hierarchy of every CPU: a preset or a custom config. Default: skylake on x86-64, neoverse-n1 on arm64. */
  tlb?: TlbPreset | TlbConfig;
  /**
   * 'model' (default): every access goes through the modelled TLBs and is
   * counted. 'functional': a host-speed translation cache, for when only the
   * results matter (no TLB statistics are kept).
   */
  mode?: TranslationMode;
  /** tlb_single_page_flush_ceiling: range flushes of more pages become whole-mm flushes. Default 33. */
  flushCeiling?: number;
  /**
   * Seed for randomised choices. 0 (the default) disables them, as
   * `norandmaps` does; any other value randomises mmap_base (ASLR), the same
   * way for the same seed.
   */
  seed?: number;
  /**
   * Which fork rule copies a maybe-pinned page into the child at fork time.
   * 'modern' (default): has-pinned, maybe-pinned and PageAnonExclusive (a page
   * already shared with another mm cannot have been pinned since, GUP unshares
   * first). 'seed': the 2020 rule, has-pinned and maybe-pinned on any anon
   * page of a COW mapping.
   */
  era?: 'modern' | 'seed';
}

const OPTION_KEYS = ['arch', 'levels', 'memory', 'swap', 'cpus', 'thp', 'mthp', 'contpte', 'thpZeroPage', 'softDirty', 'hwAccessFlag', 'hwDirty', 'faultAround', 'tlb', 'mode', 'flushCeiling', 'seed', 'era'];
const THP: Record<ThpPolicy, number> = { never: 0, madvise: 1, always: 2 };
const MAX_MEMORY = 256 * GiB;

export interface FrameInfo {
  pfn: number;
  /** Refcount of the folio the frame belongs to. */
  refcount: number;
  mapcount: number;
  tag: number;
  /** page->index: pgoff of a page-cache page, swap slot of a swap-cache page. */
  index: number;
  /** The file (id) whose page cache holds the page, 0 for none. */
  owner: number;
  kind: 'page' | 'tail' | 'table' | 'free';
  order: number;
  head: number;
  entireMapcount: number;
  pincount: number;
  /** folio_maybe_dma_pinned: pincount > 0 for large folios, refcount >= 1024 for small ones (false positives included). */
  maybePinned: boolean;
  anon: boolean;
  exclusive: boolean;
  dirty: boolean;
  swapbacked: boolean;
  locked: boolean;
  lru: boolean;
  swapcache: boolean;
  zero: boolean;
}

export interface MachineStats {
  frames: number;
  freeFrames: number;
  swapSlots: number;
  swapSlotsUsed: number;
  thpFaultAlloc: number;
  thpFaultFallback: number;
  thpSplitPmd: number;
  /** Huge (PMD-size) folios allocated in the page cache of huge memfds, and PMD mappings faults made of them. */
  thpFileAlloc: number;
  thpFileMapped: number;
  /** Bytes of the core's heap in use (tables, VMAs, caches) and of linear memory reserved. */
  heapBytes: number;
  wasmMemoryBytes: number;
  /** arm64 contiguous blocks folded and unfolded (each one contpte_convert, with its flush). */
  contpte: { folds: number; unfolds: number };
  /** mTHP anonymous faults per size: folios allocated, and attempts that fell back to a smaller size. */
  mthp: Record<MthpSize, { faultAlloc: number; faultFallback: number }>;
  /** flush_cache_range calls (no-ops on x86-64 and arm64, whose caches are physically tagged; counted so staging is visible). */
  cacheFlushes: number;
}

/** splitmix64: a well-mixed 64-bit value from a seed (deterministic across runs and hosts). */
function splitmix64(seed: bigint): bigint {
  let z = BigInt.asUintN(64, seed + 0x9e3779b97f4a7c15n);
  z = BigInt.asUintN(64, (z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n);
  z = BigInt.asUintN(64, (z ^ (z >> 27n)) * 0x94d049bb133111ebn);
  return z ^ (z >> 31n);
}

export type TranslationMode = 'model' | 'functional';

/** What a replay did, as deltas of the CPU's counters. TLB counters only exist in model mode. */
export interface ReplayStats {
  accesses: number;
  /** Accesses that completed (the rest ended in a signal). */
  completed: number;
  mode: TranslationMode;
  tlb?: TlbStats;
  faults: { minor: number; major: number };
  flushes: number;
  ipis: number;
  /** With `collectPfns`: the frame each access reached (0xFFFFFFFF where it ended in a signal). */
  pfns?: Uint32Array;
}

type ResolvedOptions = Required<Omit<MachineOptions, 'memory' | 'swap' | 'faultAround' | 'tlb'>> & {
  memory: number; swap: number; faultAround: number; tlb: ResolvedTlb;
};

export class Machine {
  readonly arch: ArchCodec;
  readonly options: Readonly<ResolvedOptions>;
  readonly geometry: Geometry;
  /** mmap_base: top of the default mmap window, below which mappings are placed top-down. */
  readonly mmapBase: bigint;
  /** @internal */ readonly core: Core;
  /** Kernel-level primitives (walkPageRange, ...). */
  readonly kernel: Kernel;
  /** HMM: interval notifiers and hmm_range_fault. */
  readonly hmm: Hmm;
  private readonly devices = new Map<string, Device>();
  private readonly processes = new Map<number, Process>();
  private readonly cpuObjects: Cpu[];
  private readonly mkwriteHooks = new Map<number, { file: File; hook: PageMkwriteHook }>();
  private replayBuf = 0;
  private replayPfnBuf = 0;

  private constructor(core: Core, opts: Machine['options']) {
    this.core = core;
    this.options = opts;
    this.arch = new ArchCodec(core, opts.arch);
    this.kernel = new Kernel(this);
    this.hmm = new Hmm(this);
    core.mkwriteHandler = (file, pgoff, pid, vpn) => this.pageMkwrite(file, pgoff, pid, vpn);
    this.cpuObjects = Array.from({ length: opts.cpus }, (_, i) => new Cpu(this, core, i));
    const vaBits = opts.levels === 5 ? 57 : 48;
    // TASK_SIZE: x86-64 keeps the top page of the lower half unmapped; arm64 TTBR0 covers 2^48.
    const taskSize = opts.arch === 'arm64' ? 1n << 48n : (1n << BigInt(vaBits - 1)) - 4096n;
    this.geometry = { vaBits, taskSize };
    // The default mmap window stays 47/48-bit even with 5 levels; mmap_base sits 128 MiB
    // below it, lowered by a random number of pages (mmap_rnd_bits: 28 on x86-64, 18 on
    // arm64) when a non-zero seed asks for address-space randomisation.
    const window = opts.arch === 'arm64' ? 1n << 48n : (1n << 47n) - 4096n;
    const rndBits = opts.arch === 'arm64' ? 18n : 28n;
    const rnd = opts.seed === 0 ? 0n : splitmix64(BigInt(opts.seed)) & ((1n << rndBits) - 1n);
    this.mmapBase = window - (128n << 20n) - (rnd << 12n);
  }

  static async create(options: MachineOptions = {}): Promise<Machine> {
    if (options === null || typeof options !== 'object') throw new EmuError('EINVAL', 'options must be an object', 'options');
    for (const k of Object.keys(options)) if (!OPTION_KEYS.includes(k)) throw new EmuError('EINVAL', `unknown machine option ${k}`, k);
    const arch = options.arch ?? 'x86_64';
    if (arch !== 'x86_64' && arch !== 'arm64') throw new EmuError('EINVAL', `arch must be 'x86_64' or 'arm64', got ${shown(arch)}`, 'arch');
    const levels = options.levels ?? 4;
    if (levels !== 4 && levels !== 5) throw new EmuError('EINVAL', `levels must be 4 or 5, got ${shown(levels)}`, 'levels');
    if (arch === 'arm64' && levels !== 4) throw new EmuError('EINVAL', 'arm64 with a 4 KiB granule is modelled with 4 levels', 'levels');
    const memory = parseSize(options.memory ?? '4GiB', 'memory');
    if (memory % PAGE_SIZE !== 0 || memory < 16 * PAGE_SIZE || memory > MAX_MEMORY) {
      throw new EmuError('EINVAL', `memory must be a page multiple between 64 KiB and 256 GiB, got ${memory}`, 'memory');
    }
    const swap = parseSize(options.swap ?? memory, 'swap');
    if (swap % PAGE_SIZE !== 0 || swap > MAX_MEMORY) throw new EmuError('EINVAL', `swap must be a page multiple up to 256 GiB, got ${swap}`, 'swap');
    const cpus = options.cpus ?? 1;
    if (!Number.isInteger(cpus) || cpus < 1 || cpus > 64) throw new EmuError('EINVAL', `cpus must be an integer in [1, 64], got ${shown(cpus)}`, 'cpus');
    const tlb = resolveTlb(options.tlb, arch);
    const mode = options.mode ?? 'model';
    if (mode !== 'model' && mode !== 'functional') throw new EmuError('EINVAL', `mode must be 'model' or 'functional', got ${shown(mode)}`, 'mode');
    const flushCeiling = options.flushCeiling ?? 33;
    if (!Number.isInteger(flushCeiling) || flushCeiling < 0) throw new EmuError('EINVAL', `flushCeiling must be a non-negative integer`, 'flushCeiling');
    const thp = options.thp ?? 'madvise';
    if (ownEntry(THP, thp) === undefined) throw new EmuError('EINVAL', `thp must be never, madvise or always, got ${shown(thp)}`, 'thp');
    const mthp = options.mthp ?? {};
    if (mthp === null || typeof mthp !== 'object') throw new EmuError('EINVAL', 'mthp must be an object of size: policy', 'mthp');
    const mthpMasks = { always: 0, madvise: 0, inherit: 0 };
    for (const [size, policy] of Object.entries(mthp)) {
      const order = ownEntry(MTHP_ORDER, size);
      if (order === undefined) throw new EmuError('EINVAL', `mthp size must be one of ${Object.keys(MTHP_ORDER).join(', ')}, got ${size}`, 'mthp');
      if (policy !== 'never' && policy !== 'madvise' && policy !== 'always' && policy !== 'inherit') {
        throw new EmuError('EINVAL', `mthp['${size}'] must be never, madvise, always or inherit, got ${shown(policy)}`, 'mthp');
      }
      if (policy !== 'never') mthpMasks[policy] |= 1 << order;
    }
    const bools = { thpZeroPage: true, softDirty: true, hwAccessFlag: true, hwDirty: true, contpte: true };
    for (const k of Object.keys(bools) as (keyof typeof bools)[]) {
      const v = options[k];
      if (v !== undefined && typeof v !== 'boolean') throw new EmuError('EINVAL', `${k} must be a boolean`, k);
      bools[k] = v ?? bools[k];
    }
    const faultAround = parseSize(options.faultAround ?? 65536, 'faultAround');
    if (faultAround % PAGE_SIZE !== 0 || faultAround === 0 || faultAround > 2 * 1024 * 1024 || (faultAround & (faultAround - 1)) !== 0) {
      throw new EmuError('EINVAL', `faultAround must be a power-of-two page multiple up to 2 MiB, got ${faultAround}`, 'faultAround');
    }
    const era = options.era ?? 'modern';
    if (era !== 'modern' && era !== 'seed') throw new EmuError('EINVAL', `era must be 'modern' or 'seed', got ${shown(era)}`, 'era');
    const seed = options.seed ?? 0;
    if (!Number.isInteger(seed)) throw new EmuError('EINVAL', `seed must be an integer, got ${shown(seed)}`, 'seed');

    const core = await instantiateCore(arch);
    const r = core.x.init(memory / PAGE_SIZE, swap / PAGE_SIZE, cpus, arch === 'arm64' ? 1 : 0, +bools.hwAccessFlag, +bools.hwDirty,
      +(bools.softDirty && arch === 'x86_64'), THP[thp], +bools.thpZeroPage, faultAround / PAGE_SIZE);
    if (r < 0) throw new EmuError('ENOMEM', `cannot hold ${memory} bytes of frame metadata in WebAssembly memory`, 'memory');
    for (const a of tlb.arrays) {
      if (core.x.tlbAddArray(a.level, a.kind, a.sizes, a.sets, a.ways, a.policy) < 0) throw new EmuError('ENOMEM', 'no memory for the TLB arrays', 'tlb');
    }
    tlb.walkCache.forEach((n, i) => {
      if (core.x.tlbSetWalkCache(i + 1, n) < 0) throw new EmuError('ENOMEM', 'no memory for the walk caches', 'tlb');
    });
    core.x.setMode(mode === 'functional' ? 1 : 0);
    core.x.setCeiling(flushCeiling);
    core.x.setMthp(mthpMasks.always, mthpMasks.madvise, mthpMasks.inherit);
    core.x.setContpteEnabled(bools.contpte && arch === 'arm64' ? 1 : 0);
    return new Machine(core, {
      arch, levels, memory, swap, cpus, thp, mthp: { ...mthp }, seed, faultAround, tlb, mode, flushCeiling, era,
      thpZeroPage: bools.thpZeroPage, softDirty: bools.softDirty && arch === 'x86_64', hwAccessFlag: bools.hwAccessFlag, hwDirty: bools.hwDirty,
      contpte: bools.contpte && arch === 'arm64',
    });
  }

  /** CPU i (0-based). */
  cpu(i: number): Cpu {
    return this.cpuObjects[this.cpuIndex(i)]!;
  }

  /** @internal Validates a CPU number (default 0). */
  cpuIndex(i: number | undefined): number {
    if (i === undefined) return 0;
    if (!Number.isInteger(i) || i < 0 || i >= this.options.cpus) throw new EmuError('EINVAL', `cpu must be an integer in [0, ${this.options.cpus - 1}], got ${shown(i)}`, 'cpu');
    return i;
  }

  /** The TLB invalidations issued since the last clearFlushLog(), oldest first. */
  get flushLog(): FlushRecord[] { return readFlushLog(this.core, this.options.cpus); }
  clearFlushLog(): void { this.core.x.logReset(LOG_FLUSH); }

  /** mmu-notifier invalidate_range_start/end calls since the last clearNotifierLog(), oldest first. */
  get notifierLog(): NotifierRecord[] { return readNotifierLog(this.core); }
  clearNotifierLog(): void { this.core.x.logReset(LOG_NOTIFIER); }

  /** WARN()s the kernel would have printed since the last clearWarnings(). */
  get warnings(): KernelWarning[] { return readWarnings(this.core); }
  clearWarnings(): void { this.core.x.logReset(LOG_WARN); }

  /**
   * Replays a trace of accesses by p on one CPU, inside the core in large
   * chunks (faults are handled there too). Signals do not stop the replay.
   */
  replay(p: Process, trace: Trace, opts: { cpu?: number; mode?: TranslationMode; collectPfns?: boolean } = {}): ReplayStats {
    optionsArg(opts);
    liveProcessOf(this, p);
    if (!(trace instanceof Trace)) throw new EmuError('EINVAL', 'trace must be a Trace', 'trace');
    const cpu = this.cpuIndex(opts.cpu);
    const mode = opts.mode ?? this.options.mode;
    if (mode !== 'model' && mode !== 'functional') throw new EmuError('EINVAL', `mode must be 'model' or 'functional'`, 'mode');
    const c = this.core;
    const chunk = Math.min(trace.length, REPLAY_CHUNK);
    if (this.replayBuf === 0 && chunk > 0) {
      this.replayBuf = c.x.allocBuffer(REPLAY_CHUNK * 8);
      this.replayPfnBuf = c.x.allocBuffer(REPLAY_CHUNK * 4);
      if (this.replayBuf === 0 || this.replayPfnBuf === 0) throw new EmuError('ENOMEM', 'no memory for the replay buffer', 'trace');
    }
    const pfns = opts.collectPfns ? new Uint32Array(trace.length) : undefined;
    const before = readCpuStats(c, cpu);
    const faults0 = p.faults;
    c.x.flushTotals();
    const fl0 = c.result(0), ipi0 = c.result(1);
    c.x.setMode(mode === 'functional' ? 1 : 0);
    let completed = 0;
    try {
      for (let i = 0; i < trace.length; i += REPLAY_CHUNK) {
        const n = Math.min(REPLAY_CHUNK, trace.length - i);
        new Uint32Array(c.x.memory.buffer, this.replayBuf >>> 0, n * 2).set(trace.view(i, n));
        completed += c.x.replay(cpu, p.pid, this.replayBuf, n, pfns ? this.replayPfnBuf : 0);
        if (pfns) pfns.set(new Uint32Array(c.x.memory.buffer, this.replayPfnBuf >>> 0, n), i);
      }
    } finally {
      c.x.setMode(this.options.mode === 'functional' ? 1 : 0);
    }
    c.takeHookError();
    const after = readCpuStats(c, cpu);
    const faults1 = p.faults;
    c.x.flushTotals();
    const stats: ReplayStats = {
      accesses: trace.length, completed, mode,
      faults: { minor: faults1.minor - faults0.minor, major: faults1.major - faults0.major },
      flushes: c.result(0) - fl0, ipis: c.result(1) - ipi0,
    };
    if (mode === 'model') stats.tlb = toTlbStats(after.map((v, i) => v - before[i]!));
    if (pfns) stats.pfns = pfns;
    return stats;
  }

  /** A new process with an empty address space. */
  spawn(): Process {
    const id = this.core.x.mmNew(this.options.levels, Number(this.geometry.taskSize >> 12n));
    if (id < 0) throw new EmuError('ENOMEM', 'no memory for a new mm', 'spawn');
    const p = new Process(this, this.core, id);
    this.processes.set(id, p);
    return p;
  }

  /** @internal fork: wraps the child mm the core built. */
  adopt(id: number): Process {
    const p = new Process(this, this.core, id);
    this.processes.set(id, p);
    return p;
  }

  /** Live processes. */
  get procs(): Process[] { return [...this.processes.values()]; }

  /** @internal */
  forget(p: Process): void { this.processes.delete(p.pid); }

  /** The device called `name` (made on first use): it mirrors processes (`device.mirror(p)`). */
  device(name: string): Device {
    if (typeof name !== 'string' || name.length === 0) throw new EmuError('EINVAL', 'a device needs a non-empty name', 'name');
    let d = this.devices.get(name);
    if (!d) { d = new Device(this, name, this.devices.size + 1); this.devices.set(name, d); }
    return d;
  }

  /**
   * memfd_create + ftruncate: a shmem file. `huge: true` is tmpfs huge=always:
   * faults allocate PMD-size folios where 2 MiB of the file and of the mapping
   * line up, and map them with one PMD.
   */
  memfd(opts: { size: Size; huge?: boolean }): File {
    optionsArg(opts);
    const huge = opts?.huge;
    if (huge !== undefined && typeof huge !== 'boolean') throw new EmuError('EINVAL', 'huge must be a boolean', 'huge');
    return this.newFile(opts, FILE_SHMEM | (huge ? FILE_HUGE : 0), 'memfd');
  }

  /**
   * A regular file with a page cache. With `pageMkwrite` its shared writable
   * mappings are write-notified: mapped read-only, and the first write to
   * each page calls ->page_mkwrite (counted in file.stats). Give a function
   * to take part: it runs inside the write fault and may let the writer in,
   * make it wait, or fail it.
   */
  file(opts: { size: Size; pageMkwrite?: boolean | PageMkwriteHook }): File {
    optionsArg(opts);
    const hook = opts?.pageMkwrite;
    if (hook !== undefined && typeof hook !== 'boolean' && typeof hook !== 'function') {
      throw new EmuError('EINVAL', 'pageMkwrite must be a boolean or a function', 'pageMkwrite');
    }
    const flags = typeof hook === 'function' ? FILE_WRITENOTIFY | FILE_MKWRITE_HOOK : hook ? FILE_WRITENOTIFY : 0;
    const f = this.newFile(opts, flags, 'file');
    if (typeof hook === 'function') this.mkwriteHooks.set(f.id, { file: f, hook });
    else this.mkwriteHooks.delete(f.id);
    return f;
  }

  private newFile(opts: { size: Size }, flags: number, kind: 'memfd' | 'file'): File {
    const known = kind === 'memfd' ? ['size', 'huge'] : ['size', 'pageMkwrite'];
    for (const k of Object.keys(opts ?? {})) if (!known.includes(k)) throw new EmuError('EINVAL', `unknown ${kind} option ${k}`, k);
    if (opts === null || typeof opts !== 'object') throw new EmuError('EINVAL', 'file options must be an object', 'opts');
    const size = parseSize(opts.size, 'size');
    if (size % PAGE_SIZE !== 0) throw new EmuError('EINVAL', `size ${size} is not a multiple of the page size`, 'size');
    const id = this.core.x.fileNew(size / PAGE_SIZE, flags);
    if (id < 0) throw new EmuError('ENOMEM', 'no memory for a new file', 'size');
    return new File(this.core, id, kind, (flags & FILE_HUGE) !== 0);
  }

  /** ->page_mkwrite of a file with a hook (ids are reused once a file is gone, so the newest file wins). */
  private pageMkwrite(fileId: number, pgoff: number, pid: number, vpn: number): number {
    const h = this.mkwriteHooks.get(fileId);
    if (!h) return 0;
    const r = h.hook({ file: h.file, pgoff, pid, addr: vpn * PAGE_SIZE });
    if (r === undefined || r === 'ok') return 0;
    if (r === 'block') return 1;
    if (r === 'sigbus') return 2;
    throw new EmuError('EINVAL', `pageMkwrite returned ${shown(r)}; expected nothing, 'ok', 'block' or 'sigbus'`, 'pageMkwrite');
  }

  /**
   * A digest of the whole memory-management state (frames, every mm's VMAs
   * and page-table entries and counters, page caches, swap) and the
   * statistics: the same operations give the same digest on any machine;
   * a call that throws leaves it unchanged.
   */
  digest(): string {
    this.core.x.digest();
    const core = this.core.resultBig(0);
    // The heap's size and the linear memory's are housekeeping, not state: a failed call may grow them.
    const { heapBytes: _h, wasmMemoryBytes: _w, ...stats } = this.stats;
    return createHash('sha256').update(core.toString(16)).update(JSON.stringify(stats)).digest('hex');
  }

  /** A frame's descriptor. */
  frame(pfn: number): FrameInfo {
    if (!Number.isInteger(pfn) || pfn < 0 || pfn >= this.options.memory / PAGE_SIZE) {
      throw new EmuError('EINVAL', `pfn must be an integer below ${this.options.memory / PAGE_SIZE}, got ${shown(pfn)}`, 'pfn');
    }
    const c = this.core;
    c.x.machineInfo();
    const zero = c.result(4), hugeZero = c.result(5);
    const free = c.x.frameInfo(pfn) === 1;
    const info = c.result(4);
    const kindBits = free ? 3 : (info >>> 23) & 3;
    return {
      pfn, refcount: c.result(0), mapcount: c.result(1), tag: c.result(2), index: c.result(3), owner: c.result(8),
      kind: (['page', 'tail', 'table', 'free'] as const)[kindBits]!,
      order: (info >>> 18) & 31, head: c.result(5), entireMapcount: c.result(6), pincount: c.result(7),
      anon: (info & (1 << 25)) !== 0, exclusive: (info & (1 << 26)) !== 0, dirty: (info & (1 << 27)) !== 0,
      swapbacked: (info & (1 << 28)) !== 0, locked: (info & (1 << 29)) !== 0, lru: (info & (1 << 30)) !== 0,
      swapcache: (info & (1 << 31)) !== 0,
      zero: pfn === zero || (hugeZero !== 0 && pfn >= hugeZero && pfn < hugeZero + 512),
      maybePinned: !free && kindBits !== 2 && (((info >>> 18) & 31) > 0 ? c.result(7) > 0 : c.result(0) >= 1024),
    };
  }

  /** A swap slot: how many entries refer to it, the page caching it, the content written to it. */
  swapSlot(slot: number): { count: number; cachedPfn: number; tag: number } {
    if (!Number.isInteger(slot) || slot < 0) throw new EmuError('EINVAL', `slot must be a non-negative integer, got ${shown(slot)}`, 'slot');
    this.core.x.swapInfo(slot);
    return { count: this.core.result(0), cachedPfn: this.core.result(1), tag: this.core.result(2) };
  }

  get stats(): MachineStats {
    const c = this.core;
    c.x.machineInfo();
    return {
      frames: c.result(0), freeFrames: c.result(1), swapSlots: c.result(2), swapSlotsUsed: c.result(3),
      heapBytes: c.result(6), wasmMemoryBytes: c.result(7),
      thpFaultAlloc: c.result(8), thpFaultFallback: c.result(9), thpSplitPmd: c.result(10),
      thpFileAlloc: c.result(11), thpFileMapped: c.result(12),
      cacheFlushes: (c.x.flushTotals(), c.result(3)),
      contpte: (c.x.contpteCounters(), { folds: c.result(0), unfolds: c.result(1) }),
      mthp: Object.fromEntries(Object.entries(MTHP_ORDER).map(([size, order]) => {
        c.x.mthpStats(order);
        return [size, { faultAlloc: c.result(0), faultFallback: c.result(1) }];
      })) as MachineStats['mthp'],
    };
  }

  /**
   * The invariant checker: recounts every frame's references and mappings,
   * every swap slot's users and every table's owner from the page tables,
   * page caches and swap cache. Returns the problems found (none: []).
   */
  /**
   * pin_user_pages(FOLL_PIN): faults the pages in as the kernel's slow GUP
   * does (a write pin breaks COW, a read-only pin of a shared anon page
   * unshares it) and pins them; marks the mm has-pinned (sticky).
   */
  pin(p: Process, addr: Addr, npages: number, opts?: PinOptions): Pin {
    optionsArg(opts);
    return takeUserPages(this.core, this.geometry, liveProcessOf(this, p), addr, npages, opts, 'pin');
  }

  /** get_user_pages(FOLL_GET): plain references, no has-pinned, never "maybe pinned" unless 1024 pile up. */
  get(p: Process, addr: Addr, npages: number, opts?: PinOptions): Pin {
    optionsArg(opts);
    return takeUserPages(this.core, this.geometry, liveProcessOf(this, p), addr, npages, opts, 'get');
  }

  check(): Problem[] {
    const n = this.core.x.check();
    return readProblems(this.core, n);
  }

  /**
   * Test hooks: corruption on purpose (to prove the checker catches it),
   * failure injection, wrong kernels. Unlike the rest of the API they do not
   * protect the core from what they are asked to do: operating on a machine
   * corrupted this way may trap.
   */
  readonly debug = {
    corruptFrame: (pfn: number, field: 'refcount' | 'mapcount' | 'tag', value: number): void => {
      this.core.x.corruptFrame(pfn, field === 'refcount' ? 0 : field === 'mapcount' ? 1 : 2, value);
    },
    /** Overwrites the entry at `level` ('pte' by default) on the walk to addr; the tables above must exist. */
    corruptEntry: (p: Process, addr: number, raw: bigint, level: EntryLevel = 'pte'): void => {
      const r = this.core.x.corruptEntryAt(p.pid, Math.floor(addr / PAGE_SIZE), LEVEL_NAMES.indexOf(level), Number(raw & 0xffffffffn), Number(raw >> 32n));
      if (r < 0) throw new EmuError('EINVAL', `no table at ${level} level for 0x${addr.toString(16)}`, 'addr');
    },
    /**
     * Sets and clears raw vm_flags bits of the VMA holding addr, to reach code
     * paths for VMA kinds ptemu cannot create (e.g. VM_HUGETLB, 0x400000).
     */
    setVmaFlags: (p: Process, addr: number, flags: { set?: number; clear?: number }): void => {
      const r = this.core.x.debugVmaFlags(p.pid, Math.floor(addr / PAGE_SIZE), flags.set ?? 0, flags.clear ?? 0);
      if (r < 0) throw new EmuError('EFAULT', `no VMA holds 0x${addr.toString(16)}`, 'addr');
    },
    /** The next n frame allocations succeed, then every one fails (ENOMEM paths). -1 disables. */
    failAllocationsAfter: (n: number): void => {
      if (!Number.isInteger(n) || n < -1 || n > 0x7fff_ffff) throw new EmuError('EINVAL', `n must be an integer from -1, got ${shown(n)}`, 'n');
      this.core.x.setFailAfter(n);
    },
    /** Linear memory stops growing (as when the engine refuses memory.grow): the core's own allocations fail once its free blocks run out. */
    failMemoryGrowth: (on = true): void => { this.core.x.setGrowthBlocked(on ? 1 : 0); },
    /**
     * Test-only wrong kernels, for checking that the fuzzers find bugs:
     * 'skip-cow-copy' makes a write to a COW-shared anonymous page reuse it
     * instead of copying it. `on: false` restores the right behaviour.
     */
    injectBug: (bug: InjectableBug, on = true): void => {
      if (bug !== 'skip-cow-copy') throw new EmuError('EINVAL', `unknown bug ${shown(bug)}`, 'bug');
      this.core.x.debugInjectBug(1, on ? 1 : 0);
    },
  };
}
