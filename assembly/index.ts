// The core's exported ABI: a flat numeric interface used by src/core.ts.
//
// Addresses cross as page numbers in f64 (exact up to 2^53 pages, so 57-bit
// address spaces fit) to keep BigInt out of every call; byte offsets within
// a page never matter to the core. Results that do not fit a return value are
// left in the result area (u64 slots) that JavaScript reads through a view.
// Errors are negative errno values.

import { heapInit, heapBytesInUse, heapBytesReserved, kmalloc, kfree } from "./heap";
import {
  framesInit, nrFrames, freeFrames, refcount, mapcount, tagOf, indexOf, info, kindOf, folioHead, entireMapcount,
  pincount, zeroPfn, isZeroPfn, frameIsFree, testFlag, PG_ANON, KIND_PAGE, KIND_TAIL, hugeZeroPfn, setFailAfter as framesSetFailAfter,
  setRefcount, setInfo, setTag, cachePageIndex,
} from "./frames";
import { archInit, isTableEntry, isUpperLeaf, tableEntryPfn, ptePresent } from "./arch/index";
import { entryPtr, pmdCacheInvalidate, tablePtr } from "./pgtable";
import { rawEntryProblem, RAW_NOT_PRESENT } from "./rawentry";
import { Mm, mmById, getRss, MMF_KERNEL } from "./mm";
import { vmaAt, vmaLookup, vmaSetPageProt } from "./vma";
import { mmCreate, mmapRegion, doMunmap, doMprotect, doMadvise, exitMmap, getUnmappedArea, pageoutReclaimed, splitVmasAt } from "./mmap";
import { userAccess, touchRange, replayTrace, accessPfn, accessTag, accessFaults, accessHit, accessBlockedOn, touchDone } from "./access";
import { cpusInit, cpusAddArray, cpusSetWalkCache, setTranslationMode, nrCpus, cpuAt, arrayAt, funcKey, FUNC_SLOTS } from "./cpu";
import { tlbArrayCount, tlbArrayPeek, entryPfn, entryPerms, sizeShift } from "./tlb";
import {
  flushLog, totalFlushes, totalIpis, flushTlbRange, flushTlbMm, flushTlbAll,
  setFlushCeiling,
} from "./flush";
import { Gather, gatherAlloc, gatherFree, tlbGatherMmu, tlbFinishMmu, tlbFlushPteRange, tlbFlushPmdRange } from "./gather";
import { leafLookup, lookupLevel, pmdOffsetAlloc, pteTableAlloc, faultBlockedOn } from "./fault";
import { setFaultAroundPages } from "./filemap";
import { walkPageRange, walkTables, setWalkAction, walkMm } from "./walk";
import { StatsOp } from "./ops/stats";
import { JsOp, jsWalkEntry, jsWalkLevel, setJsWalkEntry } from "./ops/jsop";
import { PagemapOp } from "./ops/pagemap";
import { DumpOp } from "./ops/dump";
import { swapInit, swapSlots, slotsInUse, swapCount, swapCachePfn, swapTag } from "./swap";
import { fileCreate, fileById, filePut, File, cacheLookup, fileTableCapacity, CACHE_PAGE } from "./file";
import { truncateFile } from "./truncate";
import { setMthpPolicy, mthpAlloc, mthpFallback } from "./mthp";
import {
  uffdCreate, uffdMm, uffdRegister, uffdRegisterCheck, uffdUnregister, uffdWriteProtect, uffdPagesChanged, uffdLog, uffdRelease,
  uffdAck, uffdCopy, setFaultCpu,
} from "./uffd";
import {
  setPtes, ptepGet as contptePtepGet, ptepGetLockless, locklessOk, ptepGetAndClear as contptePtepGetAndClear, getAndClearFullPtes,
  testAndClearYoung, clearFlushYoung, wrprotectPtes, setAccessFlags, clearYoungDirtyPtes, setContpte, contpteFolds, contpteUnfolds,
  unfoldRange,
} from "./arch/contpte";
import { ContScanOp } from "./ops/contscan";
import { pagemapScan, scanWalkEnd } from "./ops/pagemapscan";
import { Log, logClear } from "./log";
import { notifierLog } from "./notifier";
import { warnLog } from "./warn";
import { setStepping } from "./step";
import { wpSharedMappingRange, cleanRecordSharedMappingRange, cacheFlushes, cleanStart, cleanEnd } from "./ops/mappingdirty";
import { clearRefs as clearRefsMm } from "./ops/clearrefs";
import { thpSplitPmd, thpFaultAlloc, thpFaultFallback, thpFileAlloc, thpFileMapped, setThpPolicy } from "./thp";
import { checkAll, problems } from "./check";
import { machineDigest } from "./digest";
import { setInjectedSkipCowCopy } from "./wp";
import { Mirror, mirrorById, mirrorCreate, mirrorDestroy, mirrorLive, mirrorLookup, mirrorDeviceWrite, mirrorLeafCount } from "./mirror";
import { mirrorFault } from "./ops/mirrorfault";
import { hmmRangeFault, hmmCpuFaults, hmmLast } from "./ops/hmmrange";
import { devicePoolCreate, devicePoolInfo, migrateToDevice } from "./devmem";
import {
  subscribe, unsubscribe, subscriptionLive, subscriptionMm, subscriptionInvalidations, intervalReadBegin, intervalCheckRetry, SUB_INTERVAL,
  mmuNotifierInvalidateStart, mmuNotifierInvalidateEnd,
} from "./notifier";
import { dupMmap, forkRetries, forkEarlyCopies } from "./fork";
import { gupRange, gupRelease, gupFastPages, pinPfns } from "./gup";
import { ENOMEM, EINVAL, ENOENT, EFAULT, EBADF } from "./constants";
import {
  makePresent, makeSwapEntry, makeTable, decodeEntry, decodedPfn, decodedFlags, decodedType, decodedOffset,
} from "./codec";

const statsOp = new StatsOp();
const pagemapOp = new PagemapOp();
const dumpOp = new DumpOp();
const jsOp = new JsOp();
const result = new StaticArray<u64>(16);

// @ts-ignore: decorator
@inline function addr(vpn: f64): u64 { return <u64>vpn << 12; }
function mm(id: u32): Mm | null { return mmById(id); }

export function resultPtr(): usize { return changetype<usize>(result); }

/** Boots the machine: frames, swap device, CPUs, arch codec and policies. Returns 0 or -ENOMEM. */
export function init(frames: u32, slots: u32, cpus: u32, arch: u32, ha: bool, dbm: bool, softDirty: bool, thp: u32, thpZero: bool, faultAround: u32): i32 {
  heapInit();
  if (!archInit(arch, ha, dbm, softDirty)) return -EINVAL;
  if (!framesInit(frames)) return -ENOMEM;
  if (!swapInit(slots)) return -ENOMEM;
  if (!cpusInit(cpus)) return -ENOMEM;
  setThpPolicy(thp, thpZero);
  setFaultAroundPages(faultAround);
  return 0;
}

export function setThp(policy: u32, useZero: bool): void { setThpPolicy(policy, useZero); }
/** Per-size mTHP settings as order bitmasks (hugepages-<size>kB/enabled = always / madvise / inherit). */
export function setMthp(always: u32, madvise: u32, inherit: u32): void { setMthpPolicy(always, madvise, inherit); }
/** mTHP counters of one order: [0] anon_fault_alloc, [1] anon_fault_fallback. */
export function mthpStats(order: u32): void {
  unchecked(result[0] = order < 10 ? mthpAlloc[order] : 0);
  unchecked(result[1] = order < 10 ? mthpFallback[order] : 0);
}
export function setFailAfter(n: i32): void { framesSetFailAfter(n); }
export { setGrowthBlocked } from "./heap";

// ---- processes ---------------------------------------------------------------------------

export function mmNew(levels: u32, taskSizePages: f64): i32 {
  const m = mmCreate(levels, addr(taskSizePages));
  return m == null ? -ENOMEM : <i32>m.id;
}

/** fork's dup_mmap: the child's mm id or -ENOMEM. [0] = EAGAIN retries, [1] = pages copied early. */
export function mmFork(id: u32, seedEra: bool): i32 {
  const m = mm(id);
  if (m == null) return -ENOENT;
  const child = dupMmap(m, seedEra);
  unchecked(result[0] = <u64>forkRetries);
  unchecked(result[1] = forkEarlyCopies);
  return child == null ? -ENOMEM : <i32>child.id;
}

export function mmExit(id: u32): i32 {
  const m = mm(id);
  if (m == null) return -ENOENT;
  return exitMmap(m) ? 0 : -ENOMEM;
}

export function mmap(id: u32, vpn: f64, pages: f64, flags: u32, file: u32, pgoff: f64, replace: bool): i32 {
  const m = mm(id);
  if (m == null) return -ENOENT;
  return mmapRegion(m, addr(vpn), addr(pages), flags, file, <u64>pgoff, replace);
}

/** Top-down free area of `pages` aligned to `alignPages` below baseVpn; 0 when none. */
export function unmappedArea(id: u32, pages: f64, alignPages: f64, baseVpn: f64): f64 {
  const m = mm(id);
  if (m == null) return 0;
  return <f64>(getUnmappedArea(m, addr(pages), addr(alignPages), addr(baseVpn)) >> 12);
}

export function munmap(id: u32, vpn: f64, pages: f64): i32 {
  const m = mm(id);
  return m == null ? -ENOENT : doMunmap(m, addr(vpn), addr(vpn + pages));
}

export function mprotect(id: u32, vpn: f64, pages: f64, prot: u32): i32 {
  const m = mm(id);
  return m == null ? -ENOENT : doMprotect(m, addr(vpn), addr(vpn + pages), prot);
}

export function madvise(id: u32, vpn: f64, pages: f64, advice: u32): i32 {
  const m = mm(id);
  return m == null ? -ENOENT : doMadvise(m, addr(vpn), addr(vpn + pages), advice);
}

export function pageoutCount(): f64 { return <f64>pageoutReclaimed(); }

// ---- accesses ----------------------------------------------------------------------------

/** One user access on a CPU; [0] pfn, [1] tag, [2] faults, [3] where the translation came from. */
export function access(cpu: u32, id: u32, vpn: f64, kind: u32, tag: u32): i32 {
  const m = mm(id);
  if (m == null || cpu >= nrCpus) return -ENOENT;
  const r = userAccess(cpu, m, addr(vpn), kind, tag);
  unchecked(result[0] = <u64>accessPfn);
  unchecked(result[1] = <u64>accessTag);
  unchecked(result[2] = <u64>accessFaults);
  unchecked(result[3] = <u64>accessHit);
  unchecked(result[4] = <u64>accessBlockedOn);
  return r;
}

/** Accesses every page of a range on a CPU; [0] = pages completed. */
export function touch(cpu: u32, id: u32, vpn: f64, pages: f64, kind: u32, tag: u32): i32 {
  const m = mm(id);
  if (m == null || cpu >= nrCpus) return -ENOENT;
  const r = touchRange(cpu, m, addr(vpn), addr(vpn + pages), kind, tag);
  unchecked(result[0] = touchDone);
  unchecked(result[1] = <u64>accessBlockedOn);
  return r;
}

// ---- GUP --------------------------------------------------------------------------------------

/** get_user_pages / pin_user_pages over whole pages; returns the pin id or -errno. [0] = pages taken by GUP-fast. */
export function gup(id: u32, vpn: f64, pages: u32, flags: u32): i32 {
  const m = mm(id);
  if (m == null) return -ENOENT;
  setFaultCpu(0);                        // GUP runs in the caller's context, taken as CPU 0
  const r = gupRange(m, addr(vpn), pages, flags);
  unchecked(result[0] = <u64>gupFastPages);
  unchecked(result[1] = <u64>faultBlockedOn);
  return r;
}
export function gupPinPfns(pin: u32): usize { return pinPfns(pin); }
export function gupUnpin(pin: u32): bool { return gupRelease(pin); }
/** A device write through a pinned frame (the frame was validated when it was pinned). */
export function dmaWriteTag(pfn: u32, tag: u32): void { if (pfn < nrFrames && !isZeroPfn(pfn)) setTag(pfn, tag); }
export function frameTag(pfn: u32): u32 { return pfn < nrFrames ? tagOf(pfn) : 0; }
export function mmFlags(id: u32): u32 { const m = mm(id); return m == null ? 0 : m.flags; }

/**
 * Replays `count` trace records (u64: address with the access kind in bits
 * 0-1) on a CPU, in one call. Signals do not stop the replay; they are
 * counted. Returns the accesses that completed.
 */
export function replay(cpu: u32, id: u32, buf: usize, count: u32, pfnsOut: usize): i32 {
  const m = mm(id);
  if (m == null || cpu >= nrCpus) return -ENOENT;
  return <i32>replayTrace(cpu, m, buf, count, pfnsOut);
}

/** A scratch buffer in the core's memory (for traces); 0 when out of memory. */
export function allocBuffer(bytes: usize): usize { return kmalloc(bytes); }

// ---- CPUs and TLBs -----------------------------------------------------------------------

export function tlbAddArray(level: u32, kind: u32, sizes: u32, sets: u32, ways: u32, policy: u32): i32 {
  return cpusAddArray(level, kind, sizes, sets, ways, policy) ? 0 : -ENOMEM;
}
export function tlbSetWalkCache(level: u32, n: u32): i32 { return cpusSetWalkCache(level, n) ? 0 : -ENOMEM; }
export function setMode(mode: u32): void { setTranslationMode(mode); }
export function setCeiling(n: u32): void { setFlushCeiling(n); }
/** The CPU's counters (NR_STATS u64). */
export function cpuStats(cpu: u32): usize { return cpu < nrCpus ? cpuAt(cpu).stats : 0; }
/** [0] mm running, [1] valid entries per array packed 16 bits each (arrays 0..3), [2] (arrays 4..7). */
export function cpuInfo(cpu: u32): i32 {
  if (cpu >= nrCpus) return -EINVAL;
  const c = cpuAt(cpu);
  unchecked(result[0] = <u64>c.curMm);
  let lo: u64 = 0, hi: u64 = 0;
  for (let i: u32 = 0; i < c.nArrays; i++) {
    const n = <u64>tlbArrayCount(arrayAt(c, i)) & 0xFFFF;
    if (i < 4) lo |= n << (16 * <u64>i); else hi |= n << (16 * <u64>(i - 4));
  }
  unchecked(result[1] = lo);
  unchecked(result[2] = hi);
  return <i32>c.nArrays;
}

/**
 * Looks for a cached translation of vpn for mm on a CPU without touching
 * recency: returns 0 none, 1 in L1, 2 in L2, 3 in the functional cache;
 * [0] pfn of the page, [1] permissions, [2] size code.
 */
export function cpuPeek(cpu: u32, id: u32, vpn: f64): i32 {
  if (cpu >= nrCpus) return -EINVAL;
  const c = cpuAt(cpu);
  const v = <u64>vpn;
  for (let level: u32 = 1; level <= 2; level++) {
    for (let i: u32 = 0; i < c.nArrays; i++) {
      const a = arrayAt(c, i);
      if (a.level != level) continue;
      for (let s: u32 = 0; s < 4; s++) {
        if ((a.sizes & (<u32>1 << s)) == 0) continue;
        const e = tlbArrayPeek(a, v, s, id);
        if (e != 0) {
          unchecked(result[0] = <u64>entryPfn(e) + (v - ((v >> sizeShift(s)) << sizeShift(s))));
          unchecked(result[1] = <u64>(entryPerms(e) & 31));
          unchecked(result[2] = <u64>s);
          return <i32>level;
        }
      }
    }
  }
  const slot = c.func + (<usize>(<u32>v & (FUNC_SLOTS - 1)) << 4);
  if (load<u64>(slot) == funcKey(v, id)) {
    unchecked(result[0] = <u64>load<u32>(slot, 8));
    unchecked(result[1] = <u64>load<u32>(slot, 12));
    unchecked(result[2] = 0);
    return 3;
  }
  return 0;
}

// ---- flushes (m.kernel) and the flush log ---------------------------------------------------

// @ts-ignore: decorator
@inline function logOf(which: u32): Log { return which == 0 ? flushLog : which == 1 ? notifierLog : warnLog; }
/** Log `which` (0 flushes, 1 mmu notifier calls, 2 warnings): returns its records; [0] count, [1] dropped. */
export function logRecords(which: u32): usize {
  const l = logOf(which);
  unchecked(result[0] = <u64>l.count);
  unchecked(result[1] = l.dropped);
  return l.buf;
}
export function logReset(which: u32): void { logClear(logOf(which)); }
/** [0] flushes, [1] IPIs, [2] flush records dropped, [3] flush_cache_range calls. */
export function flushTotals(): void {
  unchecked(result[0] = totalFlushes);
  unchecked(result[1] = totalIpis);
  unchecked(result[2] = flushLog.dropped);
  unchecked(result[3] = cacheFlushes);
}
export function kFlushTlbRange(id: u32, vpn: f64, endVpn: f64, stride: u32): i32 {
  const m = mm(id);
  if (m == null) return -ENOENT;
  flushTlbRange(m, addr(vpn), addr(endVpn), stride);
  return 0;
}
/** mmu_notifier_invalidate_range_start + _end over [vpn, endVpn) with `event`, no page-table change: every subscriber sees it. */
export function kInvalidateRange(id: u32, vpn: f64, endVpn: f64, event: u32): i32 {
  const m = mm(id);
  if (m == null) return -ENOENT;
  mmuNotifierInvalidateStart(m, event, addr(vpn), addr(endVpn));
  mmuNotifierInvalidateEnd(m, event, addr(vpn), addr(endVpn));
  return 0;
}
export function kFlushTlbMm(id: u32): i32 {
  const m = mm(id);
  if (m == null) return -ENOENT;
  flushTlbMm(m);
  return 0;
}
export function kFlushTlbAll(cpu: u32): void { flushTlbAll(cpu); }
/** inc/dec_tlb_flush_pending. */
export function kFlushPending(id: u32, delta: i32): i32 {
  const m = mm(id);
  if (m == null) return -ENOENT;
  if (delta < 0 && m.flushPending == 0) return -EINVAL;
  m.flushPending += <u32>delta;
  return <i32>m.flushPending;
}
/** tlb_gather_mmu: a gather for the kernel API; returns a handle or 0. */
export function kGatherBegin(id: u32, fullmm: bool): usize {
  const m = mm(id);
  if (m == null) return 0;
  const g = gatherAlloc();
  if (g == null) return 0;
  tlbGatherMmu(changetype<Gather>(g), m, fullmm);
  return changetype<usize>(g);
}
/** tlb_remove_tlb_entry (level 0) / tlb_remove_pmd_tlb_entry (level 1). */
export function kGatherRemove(g: usize, vpn: f64, level: u32): void {
  if (level == 0) tlbFlushPteRange(changetype<Gather>(g), addr(vpn), 4096);
  else tlbFlushPmdRange(changetype<Gather>(g), addr(vpn), <u64>1 << 21);
}
/** tlb_finish_mmu; the handle is freed. Returns the flushes it issued. */
export function kGatherFinish(g: usize): i32 {
  const gg = changetype<Gather>(g);
  tlbFinishMmu(gg);
  const n = <i32>gg.flushes;
  gatherFree(gg);
  return n;
}
/** set_pte_at / set_pmd_at with a raw value, no flush, no bookkeeping (tables down to `level` must exist). */
export function kSetEntry(id: u32, vpn: f64, level: u32, lo: u32, hi: u32): i32 {
  return storeEntryAt(id, vpn, level, lo, hi, true);
}

// ---- inspection --------------------------------------------------------------------------

/** The entry mapping vpn: returns its level (0 pte .. 4), [0] = raw value, [1] = pfn of the table holding it. */
export function entryAt(id: u32, vpn: f64): i32 {
  const m = mm(id);
  if (m == null) return -ENOENT;
  const ep = leafLookup(m, addr(vpn));
  unchecked(result[0] = load<u64>(ep));
  unchecked(result[1] = <u64>(ep >> 12));
  return <i32>lookupLevel;
}

/** The hardware walk for vpn: [0..n) the entries read from the top level down; returns n. */
export function entryPath(id: u32, vpn: f64): i32 {
  const m = mm(id);
  if (m == null) return -ENOENT;
  const a = addr(vpn);
  let table = m.root;
  let n: i32 = 0;
  for (let level = <i32>m.levels - 1; level >= 0; level--) {
    const e = load<u64>(entryPtr(table, a, <u32>level));
    unchecked(result[n++] = e);
    if (level == 0 || !isTableEntry(e)) break;
    table = <u32>tableEntryPfn(e);
  }
  return n;
}

/** Test-only: set and clear vm_flags bits of the VMA holding vpn (vm_page_prot follows). */
export function debugVmaFlags(id: u32, vpn: f64, set: u32, clear: u32): i32 {
  const m = mm(id);
  if (m == null) return -ENOENT;
  const v = vmaLookup(m, addr(vpn));
  if (v == null) return -EFAULT;
  v.flags = (v.flags | set) & ~clear;
  vmaSetPageProt(v);
  return 0;
}

/** m.debug.corruptEntry: any value at any level, for testing the checker (walking the result may trap). */
export function corruptEntryAt(id: u32, vpn: f64, level: u32, lo: u32, hi: u32): i32 {
  return storeEntryAt(id, vpn, level, lo, hi, false);
}

/** Stores a raw entry at `level` for vpn; `checked` refuses what the core could not survive (rawentry.ts). */
function storeEntryAt(id: u32, vpn: f64, level: u32, lo: u32, hi: u32, checked: bool): i32 {
  const m = mm(id);
  if (m == null) return -ENOENT;
  const a = addr(vpn);
  let table = m.root;
  for (let l = m.levels - 1; l > level; l--) {
    const e = load<u64>(entryPtr(table, a, l));
    if (!isTableEntry(e) || isUpperLeaf(e)) return -EINVAL;
    table = <u32>tableEntryPfn(e);
  }
  const ep = entryPtr(table, a, level);
  const e = (<u64>hi << 32) | <u64>lo;
  if (checked) {
    const bad = rawEntryProblem(m, e, load<u64>(ep), level, 1);
    if (bad != 0) return bad;
  }
  store<u64>(ep, e);
  pmdCacheInvalidate();
  return 0;
}

/** Fills a fresh buffer with pagemap values for `pages` pages; returns its pointer (0: out of memory). */
export function pagemap(id: u32, vpn: f64, pages: f64): usize {
  const m = mm(id);
  if (m == null || pages > <f64>(1 << 28)) return 0;
  const bytes = <usize>pages << 3;
  const buf = kmalloc(bytes);
  if (buf == 0) return 0;
  pagemapOp.buf = buf;
  pagemapOp.start = addr(vpn);
  walkPageRange<PagemapOp>(pagemapOp, m, addr(vpn), addr(vpn + pages));
  return buf;
}

export function freeBuffer(ptr: usize, bytes: usize): void { kfree(ptr, bytes); }

/** Dump records for a range; returns the count (records at dumpRecords()), -ENOMEM if the buffer could not grow. */
export function dump(id: u32, vpn: f64, pages: f64): i32 {
  const m = mm(id);
  if (m == null) return -ENOENT;
  dumpOp.reset();
  walkTables<DumpOp>(dumpOp, m, addr(vpn), addr(vpn + pages));
  dumpOp.flush();
  return dumpOp.failed ? -ENOMEM : <i32>dumpOp.count;
}
export function dumpRecords(): usize { return dumpOp.buf; }

/**
 * walk_page_range with JavaScript callbacks (`has` says which exist); returns
 * what the walk returned. Callbacks may call walkAction / walkSetEntry.
 */
export function jsWalk(id: u32, vpn: f64, endVpn: f64, has: u32): i32 {
  const m = mm(id);
  if (m == null) return -ENOENT;
  jsOp.has = has;
  const r = walkPageRange<JsOp>(jsOp, m, addr(vpn), addr(endVpn));
  setJsWalkEntry(0);   // a setEntry after the walk has nothing to write
  return r;
}
export function walkSetActionExport(a: i32): void { setWalkAction(a); }
/** Stores a raw value into the entry the current callback was given. */
export function walkSetEntry(lo: u32, hi: u32): i32 {
  if (jsWalkEntry == 0) return -EINVAL;
  const e = (<u64>hi << 32) | <u64>lo;
  const bad = rawEntryProblem(walkMm, e, load<u64>(jsWalkEntry), jsWalkLevel, 1);
  if (bad != 0) return bad;
  store<u64>(jsWalkEntry, e);
  pmdCacheInvalidate();
  return 0;
}

/** Counts over a range: [0] present ptes, [1] swap, [2] markers, [3] pmd leaves, [4] pud leaves, [5] pfn sum. */
export function walkStats(id: u32, vpn: f64, pages: f64): i32 {
  const m = mm(id);
  if (m == null) return -ENOENT;
  statsOp.reset();
  walkTables<StatsOp>(statsOp, m, addr(vpn), addr(vpn + pages));
  statsOp.finish();
  unchecked(result[0] = statsOp.present);
  unchecked(result[1] = statsOp.swap);
  unchecked(result[2] = statsOp.markers);
  unchecked(result[3] = statsOp.pmdLeaves);
  unchecked(result[4] = statsOp.pudLeaves);
  unchecked(result[5] = statsOp.pfnSum);
  return 0;
}

/** [0..3] rss counters (file, anon, swapents, shmem), [4] tables, [5] minflt, [6] majflt, [7] vmas. */
export function mmInfo(id: u32): i32 {
  const m = mm(id);
  if (m == null) return -ENOENT;
  for (let c: u32 = 0; c < 4; c++) unchecked(result[c] = <u64>getRss(m, c));
  unchecked(result[4] = <u64>m.nrTables);
  unchecked(result[5] = m.minFlt);
  unchecked(result[6] = m.majFlt);
  unchecked(result[7] = <u64>m.nrVmas);
  return 0;
}

/** VMA i: [0] start, [1] end, [2] pgoff, [3] flags, [4] file, [5] anon_vma. */
export function vmaInfo(id: u32, i: u32): i32 {
  const m = mm(id);
  if (m == null) return -ENOENT;
  if (i >= m.nrVmas) return -EINVAL;
  const v = vmaAt(m, i);
  unchecked(result[0] = v.start);
  unchecked(result[1] = v.end);
  unchecked(result[2] = v.pgoff);
  unchecked(result[3] = <u64>v.flags);
  unchecked(result[4] = <u64>v.file);
  unchecked(result[5] = <u64>v.anonVma);
  return 0;
}

/** Frame descriptor: [0] refcount, [1] mapcount, [2] tag, [3] index, [4] info, [5] head, [6] entire, [7] pincount,
 *  [8] owning file.
 *  Returns 1 when the frame is free (inside a buddy block), 0 otherwise. */
export function frameInfo(pfn: u32): i32 {
  if (pfn >= nrFrames) return -EINVAL;
  if (frameIsFree(pfn)) {
    for (let i = 0; i < 8; i++) unchecked(result[i] = 0);
    unchecked(result[5] = <u64>pfn);
    return 1;
  }
  const head = folioHead(pfn);
  unchecked(result[0] = <u64>refcount(head));
  unchecked(result[1] = <u64>mapcount(pfn));
  unchecked(result[2] = <u64>tagOf(pfn));
  unchecked(result[3] = <u64>indexOf(pfn));
  unchecked(result[4] = <u64>info(pfn));
  unchecked(result[5] = <u64>head);
  unchecked(result[6] = <u64>entireMapcount(head));
  unchecked(result[7] = <u64>pincount(head));
  unchecked(result[8] = <u64>pageCacheOwner(pfn));
  return 0;
}

/**
 * The file whose page cache holds pfn (0: none). Descriptors keep the pgoff
 * (index) but not the owner, to stay at 16 bytes; the owner is the file
 * whose cache slot at that index points back at the page.
 */
function pageCacheOwner(pfn: u32): u32 {
  const kind = kindOf(pfn);
  if ((kind != KIND_PAGE && kind != KIND_TAIL) || testFlag(folioHead(pfn), PG_ANON)) return 0;
  const want = (<u64>pfn << 2) | CACHE_PAGE;
  for (let id: u32 = 1; id < fileTableCapacity(); id++) {
    const f = fileById(id);
    if (f != null && cacheLookup(changetype<File>(f), <u64>cachePageIndex(pfn)) == want) return id;
  }
  return 0;
}

/** Machine counters: [0] frames, [1] free, [2] swap slots, [3] slots in use, [4] zero pfn, [5] huge zero pfn,
 *  [6] heap bytes in use, [7] linear memory bytes, [8] THP faults, [9] THP fallbacks, [10] PMD splits,
 *  [11] shmem huge folios allocated, [12] PMD mappings of them made by faults. */
export function machineInfo(): void {
  unchecked(result[0] = <u64>nrFrames);
  unchecked(result[1] = <u64>freeFrames);
  unchecked(result[2] = <u64>swapSlots());
  unchecked(result[3] = <u64>slotsInUse);
  unchecked(result[4] = <u64>zeroPfn);
  unchecked(result[5] = <u64>hugeZeroPfn);
  unchecked(result[6] = <u64>heapBytesInUse());
  unchecked(result[7] = <u64>heapBytesReserved());
  unchecked(result[8] = thpFaultAlloc);
  unchecked(result[9] = thpFaultFallback);
  unchecked(result[10] = thpSplitPmd);
  unchecked(result[11] = thpFileAlloc);
  unchecked(result[12] = thpFileMapped);
}

/** Swap slot: [0] count, [1] cached pfn, [2] tag. */
export function swapInfo(slot: u32): void {
  unchecked(result[0] = <u64>swapCount(slot));
  unchecked(result[1] = <u64>swapCachePfn(slot));
  unchecked(result[2] = <u64>swapTag(slot));
}

// ---- files -------------------------------------------------------------------------------

export function fileNew(pages: f64, flags: u32): i32 {
  const id = fileCreate(<u64>pages, flags);
  return id == 0 ? -ENOMEM : <i32>id;
}

export function fileClose(id: u32): i32 {
  if (fileById(id) == null) return -ENOENT;
  filePut(id);
  return 0;
}

export function fileTruncate(id: u32, pages: f64): i32 {
  const f = fileById(id);
  if (f == null) return -ENOENT;
  truncateFile(changetype<File>(f), <u64>pages);
  return 0;
}

/** [0] size pages, [1] cached pages, [2] swapped pages, [3] page_mkwrite calls, [4] refs. */
export function fileInfo(id: u32): i32 {
  const f = fileById(id);
  if (f == null) return -ENOENT;
  const ff = changetype<File>(f);
  unchecked(result[0] = ff.sizePages);
  unchecked(result[1] = ff.nrPages);
  unchecked(result[2] = ff.nrSwapped);
  unchecked(result[3] = ff.mkwriteCount);
  unchecked(result[4] = <u64>ff.refs);
  return 0;
}

/** Page-cache slot of pgoff: returns 0 empty, 1 page ([0] pfn), 2 swapped ([0] slot). */
export function fileLookup(id: u32, pgoff: f64): i32 {
  const f = fileById(id);
  if (f == null) return -ENOENT;
  const v = cacheLookup(changetype<File>(f), <u64>pgoff);
  unchecked(result[0] = v >> 2);
  return <i32>(v & 3);
}

// ---- invariants ---------------------------------------------------------------------------

export function check(): i32 { return <i32>checkAll(); }
export function checkProblems(): usize { return problems; }

/** Test-only corruption, so that tests can prove the checker catches it. */
export function corruptFrame(pfn: u32, field: u32, value: u32): void {
  if (pfn >= nrFrames) return;
  if (field == 0) setRefcount(pfn, value);
  else if (field == 1) setInfo(pfn, (info(pfn) & ~0x3FFFF) | (value & 0x3FFFF));
  else setTag(pfn, value);
}



// ---- entry codec (m.arch) ---------------------------------------------------------------------

export function encodePresent(pfn: f64, flags: u32, level: u32): u64 { return makePresent(<u64>pfn, flags, level); }
export function encodeSwap(type: u32, offset: f64, flags: u32): u64 { return makeSwapEntry(type, <u64>offset, flags); }
export function encodeTable(pfn: f64): u64 { return makeTable(<u64>pfn); }
/** Decodes raw at level; returns the kind; [0] pfn, [1] flags, [2] swap type, [3] swap offset. */
export function decode(raw: u64, level: u32): i32 {
  const k = decodeEntry(raw, level);
  unchecked(result[0] = decodedPfn);
  unchecked(result[1] = <u64>decodedFlags);
  unchecked(result[2] = <u64>decodedType);
  unchecked(result[3] = decodedOffset);
  return k;
}

// ---- dirty tracking (mapping_dirty_helpers, clear_refs) ------------------------------------

/** Turns yield points of kernel range operations on or off (see step.ts). */
export function stepMode(on: bool): void { setStepping(on); }

/** wp_shared_mapping_range: PTEs write-protected, or -errno. */
export function fileWriteProtect(id: u32, first: f64, nr: f64, walkOnSkip: bool): f64 {
  const f = fileById(id);
  if (f == null) return -ENOENT;
  return <f64>wpSharedMappingRange(changetype<File>(f), <u64>first, <u64>nr, walkOnSkip);
}

/**
 * clean_record_shared_mapping_range over a bitmap at `bitmap` (bit i = pgoff
 * bitmapPgoff + i, little-endian bytes like the kernel's unsigned longs).
 * Returns the PTEs cleaned (or -errno); [0] start, [1] end of the set bits.
 */
export function fileCleanRecord(id: u32, first: f64, nr: f64, bitmapPgoff: f64, bitmap: usize, start: f64, end: f64, walkOnSkip: bool): f64 {
  const f = fileById(id);
  if (f == null) return -ENOENT;
  const total = cleanRecordSharedMappingRange(changetype<File>(f), <u64>first, <u64>nr, <u64>bitmapPgoff, bitmap, <u64>start, <u64>end, walkOnSkip);
  unchecked(result[0] = cleanStart);
  unchecked(result[1] = cleanEnd);
  return <f64>total;
}

/** Writing `type` to /proc/PID/clear_refs. */
export function clearRefs(id: u32, type: u32): i32 {
  const m = mm(id);
  if (m == null) return -ENOENT;
  clearRefsMm(m, type);
  return 0;
}

// ---- the PTE API (m.kernel): arm64 contpte semantics on arm64 user mms ------------------

/** The PTE slot for vpn, tables allocated on demand (pte_alloc); 0 when out of memory. */
function ptepAlloc(m: Mm, vpn: f64): usize {
  const pmdp = pmdOffsetAlloc(m, addr(vpn));
  if (pmdp == 0) return 0;
  if (load<u64>(pmdp) == 0 && pteTableAlloc(m, pmdp) == 0) return 0;
  const pmd = load<u64>(pmdp);
  if (!isTableEntry(pmd)) return 0;
  return tablePtr(<u32>tableEntryPfn(pmd)) + (<usize>((addr(vpn) >> 12) & 511) << 3);
}

/** The existing PTE slot for vpn, or 0. */
function ptepAt(m: Mm, vpn: f64): usize {
  const ep = leafLookup(m, addr(vpn));
  return lookupLevel == 0 ? ep : 0;
}

/** Marks an mm as the kernel's (init_mm: never folded). */
export function mmSetKernel(id: u32): i32 {
  const m = mm(id);
  if (m == null) return -ENOENT;
  m.flags |= MMF_KERNEL;
  return 0;
}

/** set_ptes(mm, addr, ptep, pte, nr) within one PTE table. -EINVAL when nr crosses it, -ENOMEM for tables. */
export function kSetPtes(id: u32, vpn: f64, lo: u32, hi: u32, nr: u32): i32 {
  const m = mm(id);
  if (m == null) return -ENOENT;
  if (nr == 0 || ((<u64>vpn & 511) + <u64>nr) > 512) return -EINVAL;
  const e = (<u64>hi << 32) | <u64>lo;
  const bad = rawEntryProblem(m, e, 0, 0, nr);
  if (bad != 0) return bad;
  const ptep = ptepAlloc(m, vpn);
  if (ptep == 0) return -ENOMEM;
  setPtes(m, addr(vpn), ptep, e, nr);
  return 0;
}

/** Reads a PTE: how 0 __ptep_get, 1 ptep_get, 2 ptep_get_lockless. [0] value, [1] 0 when the lockless read would retry. */
export function kPteGet(id: u32, vpn: f64, how: u32): i32 {
  const m = mm(id);
  if (m == null) return -ENOENT;
  const ptep = ptepAt(m, vpn);
  if (ptep == 0) return -EFAULT;
  const v = how == 0 ? load<u64>(ptep) : how == 1 ? contptePtepGet(ptep) : ptepGetLockless(ptep);
  unchecked(result[0] = v);
  unchecked(result[1] = how == 2 && !locklessOk ? 0 : 1);
  return 0;
}

const PTE_GET_AND_CLEAR: u32 = 0;
const PTE_GET_AND_CLEAR_FULL: u32 = 1;
const PTE_TEST_AND_CLEAR_YOUNG: u32 = 2;
const PTE_CLEAR_FLUSH_YOUNG: u32 = 3;
const PTE_WRPROTECT: u32 = 4;
const PTE_SET_ACCESS_FLAGS: u32 = 5;
const PTE_CLEAR_YOUNG_DIRTY: u32 = 6;

/**
 * One of the modifying PTE primitives on nr PTEs from vpn (within one table).
 * [0] what it returns (the value, or 0/1). `lo`/`hi`: the entry for
 * set_access_flags; `flags`: its `dirty`, or clear_young_dirty's CYDP bits.
 */
export function kPteOp(id: u32, vpn: f64, op: u32, nr: u32, lo: u32, hi: u32, flags: u32): i32 {
  const m = mm(id);
  if (m == null) return -ENOENT;
  if (nr == 0 || ((<u64>vpn & 511) + <u64>nr) > 512) return -EINVAL;
  const ptep = ptepAt(m, vpn);
  if (ptep == 0) return -EFAULT;
  if (op == PTE_SET_ACCESS_FLAGS) {
    const bad = rawEntryProblem(m, (<u64>hi << 32) | <u64>lo, 0, 0, 1);
    if (bad != 0) return bad;
  }
  // The bit-changing primitives are for present PTEs (their callers hold one); on a swap entry or marker they would corrupt it.
  if (op >= PTE_TEST_AND_CLEAR_YOUNG) {
    for (let i: u32 = 0; i < nr; i++) if (!ptePresent(load<u64>(ptep + (<usize>i << 3)))) return RAW_NOT_PRESENT;
  }
  const a = addr(vpn);
  let r: u64 = 0;
  if (op == PTE_GET_AND_CLEAR) r = contptePtepGetAndClear(m, a, ptep);
  else if (op == PTE_GET_AND_CLEAR_FULL) r = getAndClearFullPtes(m, a, ptep, nr);
  else if (op == PTE_TEST_AND_CLEAR_YOUNG) r = testAndClearYoung(m, a, ptep) ? 1 : 0;
  else if (op == PTE_CLEAR_FLUSH_YOUNG) r = clearFlushYoung(m, a, ptep) ? 1 : 0;
  else if (op == PTE_WRPROTECT) wrprotectPtes(m, a, ptep, nr);
  else if (op == PTE_SET_ACCESS_FLAGS) r = setAccessFlags(m, a, ptep, (<u64>hi << 32) | <u64>lo, flags != 0) ? 1 : 0;
  else if (op == PTE_CLEAR_YOUNG_DIRTY) clearYoungDirtyPtes(m, a, ptep, nr, flags);
  else return -EINVAL;
  unchecked(result[0] = r);
  return 0;
}

const contScanOp = new ContScanOp();
/** Folded / foldable / broken contiguous blocks over [vpn, +pages): [0] folded, [1] foldable, [2] broken, [3] blocks judged. */
export function contScan(id: u32, vpn: f64, pages: f64): i32 {
  const m = mm(id);
  if (m == null) return -ENOENT;
  contScanOp.folded = 0; contScanOp.foldable = 0; contScanOp.broken = 0; contScanOp.blocks = 0;
  if (pages > 0) walkPageRange<ContScanOp>(contScanOp, m, addr(vpn), addr(vpn + pages));
  unchecked(result[0] = contScanOp.folded);
  unchecked(result[1] = contScanOp.foldable);
  unchecked(result[2] = contScanOp.broken);
  unchecked(result[3] = contScanOp.blocks);
  return 0;
}

/** Unfolds every folded block in [vpn, +pages) (what a folio split does to its mappings). */
export function kUnfoldRange(id: u32, vpn: f64, pages: f64): i32 {
  const m = mm(id);
  if (m == null) return -ENOENT;
  unfoldRange(m, addr(vpn), addr(vpn + pages));
  return 0;
}

/** [0] contiguous blocks folded so far, [1] unfolded. */
export function contpteCounters(): void {
  unchecked(result[0] = contpteFolds);
  unchecked(result[1] = contpteUnfolds);
}

/** The `contpte` machine option (CONFIG_ARM64_CONTPTE). */
export function setContpteEnabled(on: bool): void { setContpte(on); }

// ---- userfaultfd --------------------------------------------------------------------------

/** userfaultfd(2) for mm `id`: the context id, or -errno. */
export function uffdNew(id: u32, features: u32): i32 {
  const m = mm(id);
  if (m == null) return -ENOENT;
  return uffdCreate(m, features);
}

/** UFFDIO_REGISTER (flags: VM_UFFD_MISSING / VM_UFFD_WP bits). 0 or -errno. */
export function uffdRegisterRange(ctx: u32, vpn: f64, pages: f64, flags: u32): i32 {
  const m = mm(uffdMm(ctx));
  if (m == null) return -EBADF;
  const start = addr(vpn), end = addr(vpn + pages);
  // Checked before splitting: a failing registration changes nothing.
  const r = uffdRegisterCheck(m, ctx, start, end, flags);
  if (r != 0) return r;
  if (!splitVmasAt(m, start, end)) return -ENOMEM;
  uffdRegister(m, ctx, start, end, flags);
  return 0;
}

/** UFFDIO_UNREGISTER. */
export function uffdUnregisterRange(ctx: u32, vpn: f64, pages: f64): i32 {
  const m = mm(uffdMm(ctx));
  if (m == null) return -EBADF;
  const start = addr(vpn), end = addr(vpn + pages);
  if (!splitVmasAt(m, start, end)) return -ENOMEM;
  return uffdUnregister(m, start, end);
}

/** UFFDIO_WRITEPROTECT; [0] entries changed. */
export function uffdWp(ctx: u32, vpn: f64, pages: f64, protect: bool): i32 {
  const m = mm(uffdMm(ctx));
  if (m == null) return -EBADF;
  const r = uffdWriteProtect(m, ctx, addr(vpn), addr(vpn + pages), protect);
  unchecked(result[0] = uffdPagesChanged());
  return r;
}

/** The event log (all contexts): its records; [0] count, [1] dropped. */
export function uffdEvents(): usize {
  unchecked(result[0] = <u64>uffdLog.count);
  unchecked(result[1] = uffdLog.dropped);
  return uffdLog.buf;
}

/** close(uffd). */
export function uffdClose(ctx: u32): void { uffdRelease(mm(uffdMm(ctx)), ctx); }

/** UFFDIO_COPY (zero false) / UFFDIO_ZEROPAGE over [vpn, +pages): pages filled, or -errno. */
export function uffdFill(ctx: u32, vpn: f64, pages: u32, tag: u32, zero: bool, wp: bool): f64 {
  const m = mm(uffdMm(ctx));
  if (m == null) return -EBADF;
  return <f64>uffdCopy(m, ctx, addr(vpn), pages, tag, zero, wp);
}

/** The monitor has read ctx's messages. */
export function uffdRead(ctx: u32): void { uffdAck(ctx); }

/** The mm a context belongs to (0: none). */
export function uffdOwner(ctx: u32): u32 { return uffdMm(ctx); }

/**
 * PAGEMAP_SCAN over [vpn, +pages) into `vec` (24-byte regions, vecLen of
 * them). Masks arrive as f64 (they are below 2^9). Returns the regions or
 * -errno; [0] walk_end page number.
 */
export function pagemapScanRange(id: u32, vpn: f64, pages: f64, flags: u32, inverted: u32, mask: u32, anyof: u32, ret: u32,
  maxPages: f64, vec: usize, vecLen: u32): i32 {
  const m = mm(id);
  if (m == null) return -ENOENT;
  const r = pagemapScan(m, addr(vpn), addr(vpn + pages), flags, inverted, mask, anyof, ret, <u64>maxPages, vec, vecLen);
  unchecked(result[0] = scanWalkEnd >> 12);
  return r;
}

// ---- mmu interval notifiers and device mirrors --------------------------------------------------

/** mmu_interval_notifier_insert over [vpn, +pages) of mm id: the notifier's id, or -errno. */
export function notifierNew(id: u32, vpn: f64, pages: f64): i32 {
  const m = mm(id);
  if (m == null) return -ENOENT;
  return subscribe(m, SUB_INTERVAL, 0, addr(vpn), addr(vpn + pages));
}

/** mmu_interval_notifier_remove. */
export function notifierFree(sub: u32): void {
  if (!subscriptionLive(sub)) return;
  const m = mm(subscriptionMm(sub));
  if (m != null) unsubscribe(m, sub);
}

/** mmu_interval_read_begin: the sequence (as f64), or -errno (-EBUSY: an invalidation is in progress; -ENOENT: gone). */
export function notifierReadBegin(sub: u32): f64 {
  if (!subscriptionLive(sub)) return -ENOENT;
  const m = mm(subscriptionMm(sub));
  return m == null ? -ENOENT : <f64>intervalReadBegin(m, sub);
}

/** mmu_interval_check_retry: 1 if an invalidation overlapped since seq was read (or the notifier is gone). */
export function notifierCheckRetry(sub: u32, seq: f64): u32 { return !subscriptionLive(sub) || intervalCheckRetry(sub, <u64>seq) ? 1 : 0; }

/** Invalidations that overlapped the notifier so far. */
export function notifierInvalidations(sub: u32): f64 { return subscriptionLive(sub) ? <f64>subscriptionInvalidations(sub) : -1; }

/** A device mirror of mm id for device `device`: its id, or -errno. */
export function mirrorNew(id: u32, device: u32): i32 {
  const m = mm(id);
  if (m == null) return -ENOENT;
  return mirrorCreate(m, device);
}

export function mirrorFree(id: u32): void { const m = mirrorById(id); if (m != null) mirrorDestroy(m); }

/** The seed's device fault over [vpn, +pages): 0 or -errno. */
export function mirrorFaultRange(id: u32, vpn: f64, pages: f64, write: bool): i32 {
  const m = mirrorById(id);
  if (m == null) return -ENOENT;
  return mirrorFault(m, addr(vpn), addr(vpn + pages), write);
}

/** The mirror entry for vpn (as two u32 halves in [0]). */
export function mirrorEntryAt(id: u32, vpn: f64): void {
  const m = mirrorById(id);
  unchecked(result[0] = m == null ? 0 : mirrorLookup(m, addr(vpn)));
}

/** The count of the mirror's leaf directory covering vpn (0: none). */
export function mirrorDirCount(id: u32, vpn: f64): u32 { const m = mirrorById(id); return m == null ? 0 : mirrorLeafCount(m, addr(vpn)); }

/** A device write through the mirror at vpn: 0, or -EFAULT if the entry is not valid and writable. */
export function mirrorWrite(id: u32, vpn: f64): i32 {
  const m = mirrorById(id);
  if (m == null || !mirrorLive(m)) return -ENOENT;
  return mirrorDeviceWrite(m, addr(vpn)) ? 0 : -EFAULT;
}

/** [0] live, [1] directories, [2] root bytes, [3] valid entries, [4] faults, [5] cpu faults, [6] retries, [7] backoffs, [8] invalidations. */
export function mirrorInfo(id: u32): void {
  const m = mirrorById(id);
  for (let i = 0; i < 9; i++) unchecked(result[i] = 0);
  if (m == null) return;
  unchecked(result[0] = mirrorLive(m) ? 1 : 0);
  unchecked(result[1] = m.directories);
  unchecked(result[2] = <u64>m.rootEntries << 3);
  unchecked(result[3] = m.valid);
  unchecked(result[4] = m.faults);
  unchecked(result[5] = m.cpuFaults);
  unchecked(result[6] = m.retries);
  unchecked(result[7] = m.backoffs);
  unchecked(result[8] = m.invalidations);
}

/**
 * hmm_range_fault over [vpn, +pages) of the notifier's mm, checked against
 * sequence `seq`; `pfns` holds one u64 per page (inputs in, outputs out). The
 * request flags arrive as their high 32-bit words (REQ_FAULT bit 31, REQ_WRITE
 * bit 30). 0 or -errno; [0] CPU faults taken, [1] the page where the outputs end.
 */
export function hmmRangeFaultRange(sub: u32, seq: f64, vpn: f64, pages: f64, pfns: usize, defaultHi: u32, maskHi: u32, owner: u32): i32 {
  if (!subscriptionLive(sub)) return -ENOENT;
  const m = mm(subscriptionMm(sub));
  if (m == null) return -ENOENT;
  const r = hmmRangeFault(m, sub, <u64>seq, addr(vpn), addr(vpn + pages), pfns, <u64>defaultHi << 32, <u64>maskHi << 32, owner);
  unchecked(result[0] = hmmCpuFaults);
  unchecked(result[1] = hmmLast >> 12);
  return r;
}

/** Device-private memory of 2^order pages for `device`: 0 or -errno. */
export function devicePool(device: u32, order: u32): i32 { return order > 18 ? -EINVAL : devicePoolCreate(device, order); }

/** [0] pages, [1] free, [2] migrated to the device, [3] migrated back to RAM. */
export function devicePoolStats(device: u32): void { devicePoolInfo(device, changetype<usize>(result)); }

/** migrate_vma of [vpn, +pages) of mm id to `device`'s memory: pages migrated, or -errno. */
export function migrateRangeToDevice(id: u32, device: u32, vpn: f64, pages: f64): f64 {
  const m = mm(id);
  if (m == null) return -ENOENT;
  return <f64>migrateToDevice(m, device, addr(vpn), addr(vpn + pages));
}

/** The state digest (digest.ts), as two u32 halves in [0]. */
export function digest(): void { unchecked(result[0] = machineDigest()); }

/** Test-only wrong kernels for the fuzzers to find: 1 = a write to a COW-shared anonymous page reuses it. */
export function debugInjectBug(bug: u32, on: bool): i32 {
  if (bug != 1) return -EINVAL;
  setInjectedSkipCowCopy(on);
  return 0;
}
