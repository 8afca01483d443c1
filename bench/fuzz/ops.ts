// The property fuzzer's operations: a plain serializable union (JSON in, JSON
// out) and the fast-check arbitraries for machines and operation lists.
// execute.ts runs a list against a Machine and the reference model.
//
// Operations name processes, mappings, files and pins by index, taken modulo
// what exists when the operation runs (an operation with nothing to act on
// is skipped). Any list is therefore valid, and shrinking (dropping
// operations, shrinking numbers toward 0) keeps it valid.

import fc from 'fast-check';
import type { MachineOptions, ErrnoCode, Advice, ClearRefs, NotifierEvent, UffdFeature, PagemapScanOptions } from '../../src/index.js';
import type { RegionKind, ProtName } from './model.js';

// ---- the operations -------------------------------------------------------------------

/** Where an operation acts: process, mapping and first page by index (modulo what exists). */
export interface Target { proc: number; region: number; page: number }

/** A write racing a dirty helper: at its nth 'entry' yield point. */
export interface Race { nth: number; proc: number; region: number; page: number; tag: number; cpu: number }

export type PrimName = 'young' | 'flush-young' | 'wrprotect' | 'wrprotect-block' | 'clear-young-block' | 'unfold';

export type Op =
  | { t: 'spawn' }
  | { t: 'fork'; proc: number }
  | { t: 'exit'; proc: number }
  | { t: 'memfd'; pages: number; huge: boolean; regular: boolean; mkwrite: boolean }
  | { t: 'truncate'; file: number; pages: number }
  | { t: 'mmap'; proc: number; slot: number; off: number; pages: number; kind: RegionKind; file: number; pgoff: number; prot: ProtName; fixed: boolean; rdonly: boolean; high: boolean }
  | ({ t: 'munmap'; n: number } & Target)
  | ({ t: 'mprotect'; n: number; prot: ProtName } & Target)
  | ({ t: 'madvise'; n: number; advice: Advice } & Target)
  | ({ t: 'read'; cpu: number } & Target)
  | ({ t: 'write'; cpu: number; tag: number; resolve: boolean } & Target)
  | ({ t: 'touch'; n: number; cpu: number; write: boolean; tag: number } & Target)
  /** MADV_PAGEOUT, then every page read back (swap-in). */
  | ({ t: 'pageout'; n: number; cpu: number } & Target)
  /** m.pin / m.get; with a write pin, `dma` (non-zero) is DMA-written to its first page. */
  | ({ t: 'pin'; n: number; get: boolean; write: boolean; fast: boolean; longterm: boolean; dma: number } & Target)
  | { t: 'unpin'; pin: number }
  | { t: 'dirty'; file: number; first: number; nr: number; clean: boolean; walkOnSkip: boolean; races: Race[] }
  | { t: 'clear-refs'; proc: number; what: ClearRefs }
  /** userfaultfd write-protect; the process's context is made by its first uffd op, with feature set `features`. */
  | ({ t: 'uffd'; n: number; action: 'register' | 'register-wp' | 'register-missing' | 'wp' | 'unwp' | 'unregister'; features: number } & Target)
  | ({ t: 'scan'; n: number; wp: boolean; mask: number; maxPages: number } & Target)
  /** A device fault through the process's mirror; `tag` (non-zero, write faults) is then device-written to the first page. */
  | ({ t: 'device-fault'; n: number; write: boolean; tag: number } & Target)
  | ({ t: 'migrate'; n: number } & Target)
  | ({ t: 'invalidate'; n: number; event: NotifierEvent } & Target)
  | ({ t: 'kprim'; prim: PrimName } & Target);

export type OpKind = Op['t'];

/** userfaultfd feature sets, by the `features` index of the first uffd op of a process. */
export const UFFD_FEATURES: readonly { features: UffdFeature[]; mode: 'sync' | 'async' }[] = [
  { features: ['wp-hugetlbfs-shmem'], mode: 'sync' },
  { features: ['wp-hugetlbfs-shmem', 'wp-unpopulated'], mode: 'sync' },
  { features: ['wp-hugetlbfs-shmem', 'wp-async', 'wp-unpopulated'], mode: 'async' },
];

/** PAGEMAP_SCAN argument sets, by the scan op's `mask`. */
export const SCAN_MASKS: readonly Omit<PagemapScanOptions, 'start' | 'end'>[] = [
  { categoryMask: ['written'], returnMask: ['written'] },
  { returnMask: ['present', 'swapped', 'file'] },
  { categoryAnyof: ['present', 'swapped'], returnMask: ['present', 'huge', 'pfn-zero'] },
  { categoryMask: ['wp-allowed'], categoryInverted: ['written'], returnMask: ['written', 'wp-allowed'] },
  { returnMask: ['soft-dirty', 'guard', 'file', 'present'], checkWpAsync: true },
];

export const ADVICES: readonly Advice[] = ['dontneed', 'remove', 'pageout', 'dontfork', 'dofork', 'hugepage', 'nohugepage'];
export const NOTIFIER_EVENTS: readonly NotifierEvent[] = ['clear', 'unmap', 'protection-vma', 'protection-page', 'soft-dirty', 'release', 'migrate', 'exclusive'];

/**
 * EmuError codes tolerated per operation when the model expected success:
 * legitimate outcomes for random arguments that the model does not predict.
 * Predicted errors (EEXIST, ENOMEM over a hole, EACCES, ...) are asserted, not
 * tolerated. The model is left unchanged after a tolerated error (the API
 * promises a throwing call changed nothing), except where noted.
 */
export const TOLERATED: Readonly<Partial<Record<OpKind, readonly ErrnoCode[]>>> = {
  // The core ran out of emulated memory (frames, or its heap for VMA splits and gathers).
  mmap: ['ENOMEM'], munmap: ['ENOMEM'], mprotect: ['ENOMEM'], madvise: ['ENOMEM'], pageout: ['ENOMEM'], fork: ['ENOMEM'],
  memfd: ['ENOMEM'], spawn: ['ENOMEM'],
  // A pin that faults pages in until one fails (past EOF, out of memory): the pages before it may have been COW-broken.
  pin: ['ENOMEM'],
  // register (EINVAL: a hole, a regular file) and writeProtect (ENOENT: a part not registered) are predicted.
  uffd: ['ENOMEM'],
  // checkWpAsync on a range not registered for async write-protect.
  scan: ['EPERM'],
  // A device fault over PROT_NONE / past EOF / on a page a sync userfaultfd protects (EFAULT), a write fault of a read-only VMA (EACCES), out of memory.
  'device-fault': ['EFAULT', 'EACCES', 'ENOMEM'],
  // migrate_vma needs one private anonymous VMA (EINVAL); device memory may be exhausted or absent (ENOMEM).
  migrate: ['EINVAL', 'ENOMEM'],
  // A PTE primitive on a slot whose PTE table went away (none of those are attempted knowingly).
  kprim: ['EFAULT'],
};

// ---- arbitraries --------------------------------------------------------------------------

const idx = fc.nat(7);
/** Page indices: mostly small, so that operations meet on the same pages. */
const page = fc.oneof({ weight: 5, arbitrary: fc.nat(7) }, { weight: 2, arbitrary: fc.nat(63) }, { weight: 1, arbitrary: fc.nat(1023) });
const count = fc.oneof({ weight: 4, arbitrary: fc.integer({ min: 1, max: 4 }) }, { weight: 2, arbitrary: fc.integer({ min: 1, max: 64 }) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 1024 }) });
const tag = fc.integer({ min: 1, max: 0xffffffff });
const cpu = fc.nat(3);
const prot = fc.constantFrom<ProtName>('rw', 'r', 'none');
const target = { proc: idx, region: idx, page };

export const raceArb: fc.Arbitrary<Race> = fc.record({ nth: fc.integer({ min: 1, max: 8 }), proc: idx, region: idx, page, tag, cpu });

/** One operation, weighted toward what finds bugs: writes, reads, forks, mappings. */
export function opArb(): fc.Arbitrary<Op> {
  const w = <T>(weight: number, arbitrary: fc.Arbitrary<T>) => ({ weight, arbitrary });
  return fc.oneof(
    w(20, fc.record({ t: fc.constant('write' as const), ...target, cpu, tag, resolve: fc.boolean() })),
    w(12, fc.record({ t: fc.constant('read' as const), ...target, cpu })),
    w(9, fc.record({
      t: fc.constant('mmap' as const), proc: idx, slot: fc.nat(15),
      off: fc.oneof({ weight: 3, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.nat(511) }),
      pages: fc.oneof({ weight: 3, arbitrary: fc.integer({ min: 1, max: 16 }) }, { weight: 2, arbitrary: fc.integer({ min: 1, max: 1024 }) }, { weight: 1, arbitrary: fc.constant(512) }),
      kind: fc.constantFrom<RegionKind>('anon', 'anon', 'anon', 'file-private', 'file-shared', 'anon-shared'),
      file: idx, pgoff: fc.oneof({ weight: 3, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.nat(1023) }, { weight: 1, arbitrary: fc.constant(512) }),
      prot: fc.constantFrom<ProtName>('rw', 'rw', 'r', 'none'), fixed: fc.boolean(), rdonly: fc.boolean(), high: fc.boolean(),
    })),
    w(5, fc.record({ t: fc.constant('fork' as const), proc: idx })),
    w(4, fc.record({ t: fc.constant('touch' as const), ...target, n: count, cpu, write: fc.boolean(), tag })),
    w(4, fc.record({ t: fc.constant('madvise' as const), ...target, n: count, advice: fc.constantFrom(...ADVICES) })),
    w(4, fc.record({ t: fc.constant('mprotect' as const), ...target, n: count, prot })),
    w(4, fc.record({ t: fc.constant('pin' as const), ...target, n: count, get: fc.boolean(), write: fc.boolean(), fast: fc.boolean(), longterm: fc.boolean(), dma: fc.oneof(fc.constant(0), tag) })),
    w(4, fc.record({ t: fc.constant('uffd' as const), ...target, n: count, action: fc.constantFrom('register-wp' as const, 'register' as const, 'register-missing' as const, 'wp' as const, 'unwp' as const, 'unregister' as const), features: fc.nat(UFFD_FEATURES.length - 1) })),
    w(3, fc.record({ t: fc.constant('pageout' as const), ...target, n: count, cpu })),
    w(3, fc.record({ t: fc.constant('munmap' as const), ...target, n: count })),
    w(3, fc.record({ t: fc.constant('device-fault' as const), ...target, n: count, write: fc.boolean(), tag: fc.oneof(fc.constant(0), tag) })),
    w(3, fc.record({ t: fc.constant('kprim' as const), ...target, prim: fc.constantFrom<PrimName>('young', 'flush-young', 'wrprotect', 'wrprotect-block', 'clear-young-block', 'unfold') })),
    w(2, fc.record({ t: fc.constant('memfd' as const), pages: fc.oneof(fc.integer({ min: 1, max: 64 }), fc.constantFrom(512, 1024)), huge: fc.boolean(), regular: fc.boolean(), mkwrite: fc.boolean() })),
    w(2, fc.record({ t: fc.constant('truncate' as const), file: idx, pages: fc.oneof(fc.nat(64), fc.nat(1024)) })),
    w(2, fc.record({ t: fc.constant('exit' as const), proc: idx })),
    w(2, fc.record({ t: fc.constant('spawn' as const) })),
    w(2, fc.record({ t: fc.constant('unpin' as const), pin: idx })),
    w(2, fc.record({ t: fc.constant('dirty' as const), file: idx, first: fc.nat(1023), nr: fc.integer({ min: 1, max: 1024 }), clean: fc.boolean(), walkOnSkip: fc.boolean(), races: fc.array(raceArb, { maxLength: 3 }) })),
    w(2, fc.record({ t: fc.constant('scan' as const), ...target, n: count, wp: fc.boolean(), mask: fc.nat(SCAN_MASKS.length - 1), maxPages: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 64 })) })),
    w(2, fc.record({ t: fc.constant('migrate' as const), ...target, n: count })),
    w(1, fc.record({ t: fc.constant('clear-refs' as const), proc: idx, what: fc.constantFrom<ClearRefs>('soft-dirty', 'all', 'anon', 'mapped') })),
    w(1, fc.record({ t: fc.constant('invalidate' as const), ...target, n: count, event: fc.constantFrom(...NOTIFIER_EVENTS) })),
  );
}

/** Operation lists. */
export function opsArb(maxLength = 60): fc.Arbitrary<Op[]> {
  return fc.array(opArb(), { minLength: 1, maxLength, size: 'max' });
}

/** Defaults of the machine options the arbitrary varies: the printed scenario leaves these out. */
export const MACHINE_DEFAULTS: Readonly<Record<string, unknown>> = {
  levels: 4, cpus: 1, thp: 'madvise', era: 'modern', mode: 'model', thpZeroPage: true, faultAround: '64KiB', flushCeiling: 33,
  contpte: true, hwAccessFlag: true, hwDirty: true, softDirty: true,
};

/** Machines: arch (fixed or either), levels, memory, swap, CPUs, TLB preset, THP and mTHP policy, era, and the arch's switches. */
export function machineArb(arch?: 'x86_64' | 'arm64'): fc.Arbitrary<MachineOptions> {
  const archArb = arch ? fc.constant(arch) : fc.constantFrom('x86_64' as const, 'arm64' as const);
  return archArb.chain((a) => fc.record<Record<string, unknown>>({
    arch: fc.constant(a),
    levels: a === 'x86_64' ? fc.constantFrom<4 | 5>(4, 5) : fc.constant<4 | 5>(4),
    memory: fc.constantFrom('32MiB', '16MiB', '64MiB', '4MiB'),
    swap: fc.constantFrom('8MiB', 0, '1MiB'),
    cpus: fc.integer({ min: 1, max: 4 }),
    tlb: fc.constantFrom('tiny' as const, 'none' as const, a === 'arm64' ? 'neoverse-n1' as const : 'skylake' as const),
    mode: fc.constantFrom('model' as const, 'functional' as const),
    thp: fc.constantFrom('madvise' as const, 'always' as const, 'never' as const),
    mthp: fc.constantFrom<MachineOptions['mthp']>({}, { '16K': 'always' }, { '64K': 'always' }, { '16K': 'always', '64K': 'inherit' }, { '32K': 'madvise', '128K': 'always', '1M': 'always' }),
    era: fc.constantFrom('modern' as const, 'seed' as const),
    thpZeroPage: fc.constantFrom(true, false),
    faultAround: fc.constantFrom('64KiB', '4KiB', '2MiB'),
    flushCeiling: fc.constantFrom(33, 0, 1),
    ...(a === 'arm64'
      ? { contpte: fc.constantFrom(true, false), hwAccessFlag: fc.constantFrom(true, false), hwDirty: fc.constantFrom(true, false) }
      : { softDirty: fc.constantFrom(true, false) }),
  } as Record<string, fc.Arbitrary<unknown>>) as fc.Arbitrary<MachineOptions>);
}
