// The MMU: user accesses on a CPU. A translation comes from the CPU's TLB
// (model mode: the modelled arrays; functional mode: the fast cache) or from
// a page walk that sets accessed/dirty as hardware does and fills the TLB.
// If the access cannot complete, the CPU invalidates what it cached for the
// address (as x86 does on #PF), the kernel's fault handler runs on this CPU,
// and the access is retried. Data is a content tag per page.
//
// What a cached entry allows is what the PTE allowed at fill time: a write
// through an entry that cached "writable and dirty" completes without
// looking at the PTE, which is how a CPU keeps writing after the kernel has
// write-protected or cleaned the PTE, until a flush reaches it.

import { Mm } from "./mm";
import { leafLookup, lookupLevel, handleMmFault, faultBlockedOn } from "./fault";
import { setFaultCpu } from "./uffd";
import { hwAccess, leafPfn, isUpperLeaf, pteCont, tlbPerms, ACCESS_WRITE, ACCESS_EXEC } from "./arch/index";
import { tagOf, setTag, kindOf, KIND_PAGE, KIND_TAIL } from "./frames";
import { warn, WARN_STORE_NOT_DATA } from "./warn";
import {
  Cpu, cpuAt, arrayAt, walkCacheAt, probeList, bumpStat, funcKey, cpuFaultInvalidate, translationMode, MODE_FUNCTIONAL,
  FUNC_SLOTS,
  ST_ACCESSES, ST_L1_HIT, ST_L2_HIT, ST_WALKS, ST_WALK_REFS, ST_WALK_CACHE_HITS, ST_PAGE_FAULTS, ST_DIRTY_REWALKS,
  ST_WALK_SIZE, ST_FAULT_KIND, ST_SIGNALS,
} from "./cpu";
import {
  TlbArray, tlbArrayLookup, tlbArrayFill, walkCacheLookup, walkCacheFill, entryPfn, entryPerms,
  setEntryPerms, invalidateEntry, sizeShift, TLB_READ, TLB_WRITE, TLB_WRITE_UPDATE, TLB_EXEC,
  SIZE_4K, SIZE_64K, SIZE_2M, SIZE_1G,
} from "./tlb";
import {
  VM_FAULT_ERROR, VM_FAULT_OOM, VM_FAULT_SIGBUS, VM_FAULT_HWPOISON, FAULT_FLAG_WRITE, FAULT_FLAG_INSTRUCTION, FAULT_FLAG_ALLOW_RETRY,
  ACCESS_OK, ACCESS_SEGV_MAPERR, ACCESS_SEGV_ACCERR, ACCESS_SIGBUS, ACCESS_OOM, ACCESS_HWPOISON, ACCESS_BLOCKED,
  VM_FAULT_BLOCKED, BLOCKED_PTL,
} from "./constants";
import { ptlHeld } from "./step";
import { vmaLookup } from "./vma";

/** Results of the last access: the frame touched, the tag read, where the translation came from. */
export let accessPfn: u32 = 0;
export let accessTag: u32 = 0;
/** Faults taken by the last access (retries included). */
export let accessFaults: u32 = 0;
/** 1 L1 hit, 2 L2 hit, 3 walk (model mode); 0 in functional mode or after a fault. */
export let accessHit: u32 = 0;

export const HIT_L1: u32 = 1;
export const HIT_L2: u32 = 2;
export const HIT_WALK: u32 = 3;

/** What the last ACCESS_BLOCKED access waits on. */
export let accessBlockedOn: u32 = 0;

/** Heap address of the PTE table a fault at addr would lock (0 if there is none yet). */
function faultNeedsTable(mm: Mm, addr: u64): usize {
  const ep = leafLookup(mm, addr);
  return lookupLevel == 0 ? ep & ~<usize>4095 : 0;
}

const MAX_RETRIES: u32 = 8;
/** Whether the last failed translation came from a cached entry (rather than a walk). */
let faultFromHit = false;
const FAULT: u64 = <u64>-1;

// Fault kinds for the counters.
const FK_NOT_PRESENT: u32 = 0;
const FK_WRITE_PROTECT: u32 = 1;
const FK_PERMISSION: u32 = 2;
const FK_DIRTY_UPDATE: u32 = 3;

/** switch_mm: the CPU starts running mm; it joins mm_cpumask and becomes where its kernel work runs. */
// @ts-ignore: decorator
@inline function switchMm(c: Cpu, mm: Mm): void {
  c.curMm = mm.id;
  mm.cpumask |= <u64>1 << c.id;
  mm.lastCpu = c.id;
}

/** Whether cached permissions allow the access outright. */
// @ts-ignore: decorator
@inline function permits(perms: u32, kind: u32): bool {
  if (kind == ACCESS_EXEC) return (perms & TLB_EXEC) != 0;    // execute-only pages need no read permission
  if ((perms & TLB_READ) == 0) return false;
  return kind != ACCESS_WRITE || (perms & TLB_WRITE) != 0;
}

/**
 * The hardware's atomic A/D update for a write through an entry that cached a
 * writable but clean translation: re-walk, and set dirty in the PTE if it
 * still allows the write. Returns the updated permissions or 0 (fault).
 */
function dirtyRewalk(c: Cpu, mm: Mm, addr: u64): u32 {
  bumpStat(c, ST_DIRTY_REWALKS, 1);
  const ep = leafLookup(mm, addr);
  const level = lookupLevel;
  const e = load<u64>(ep);
  if (e == 0 || (level != 0 && !isUpperLeaf(e))) return 0;
  const n = hwAccess(e, ACCESS_WRITE);
  if (n == 0) return 0;
  if (n != e) store<u64>(ep, n);
  return tlbPerms(n);
}

/** Page-size code of a leaf at `level`. */
// @ts-ignore: decorator
@inline function leafSize(level: u32, e: u64): u32 { return level == 0 ? (pteCont(e) ? SIZE_64K : SIZE_4K) : level == 1 ? SIZE_2M : SIZE_1G; }

/** Largest size the array holds that is no larger than `size` (a big page is cached in smaller fragments); -1 if none. */
function fitSize(a: TlbArray, size: u32): i32 {
  for (let s = <i32>size; s >= 0; s--) if ((a.sizes & (<u32>1 << <u32>s)) != 0) return s;
  return -1;
}

/** Probes the arrays of one level; returns the entry or 0 (probeSize and probeArray say where it hit). */
let probeSize: u32 = 0;
let probeArray: TlbArray = changetype<TlbArray>(0);
// @ts-ignore: decorator
@inline function probeLevel(c: Cpu, level: u32, vpn: u64, kind: u32, asid: u32, stamp: u32, seen: u32): usize {
  const list = probeList(c, level, kind == ACCESS_EXEC);
  const n = <u32>load<u8>(list);
  for (let j: u32 = 0; j < n; j++) {
    const a = arrayAt(c, <u32>load<u8>(list + 1 + j));
    // Sizes this address space never had cached cannot hit: skipping them changes nothing but time.
    let sizes = a.sizes & seen;
    while (sizes != 0) {
      const s = ctz<u32>(sizes);
      sizes &= sizes - 1;
      const e = tlbArrayLookup(a, vpn, s, asid, stamp);
      if (e != 0) { probeSize = s; probeArray = a; return e; }
    }
  }
  return 0;
}

/** First 4 KiB page of the `size` page holding vpn. */
// @ts-ignore: decorator
@inline function alignVpn(vpn: u64, size: u32): u64 { return (vpn >> sizeShift(size)) << sizeShift(size); }

/**
 * Fills an array of `level`: the first that holds pages of the leaf's size,
 * else the first that can hold a smaller piece of it (splintering, as CPUs
 * do for page sizes an array lacks). Returns the entry or 0 if none fits
 * (probeArray/probeSize: where).
 */
function fillLevel(c: Cpu, level: u32, vpn: u64, kind: u32, asid: u32, size: u32, leafVbase: u64, leafPfnBase: u32, perms: u32, stamp: u32): usize {
  probeArray = changetype<TlbArray>(0);
  const list = probeList(c, level, kind == ACCESS_EXEC);
  const n = <u32>load<u8>(list);
  let pick: i32 = -1;
  for (let j: u32 = 0; j < n; j++) {
    const a = arrayAt(c, <u32>load<u8>(list + 1 + j));
    if ((a.sizes & (<u32>1 << size)) != 0) { pick = <i32>j; break; }
    if (pick < 0 && fitSize(a, size) >= 0) pick = <i32>j;
  }
  if (pick >= 0) {
    const a = arrayAt(c, <u32>load<u8>(list + 1 + <u32>pick));
    const s = fitSize(a, size);
    const fragVbase = alignVpn(vpn, <u32>s);
    probeArray = a;
    probeSize = <u32>s;
    return tlbArrayFill(a, vpn, <u32>s, asid, leafPfnBase + <u32>(fragVbase - leafVbase), perms, stamp);
  }
  return 0;
}

/**
 * Model-mode translation: L1, L2, then a walk that fills both. Returns the
 * 4 KiB pfn, or FAULT with the entry (if any) invalidated.
 */
function translateModel(c: Cpu, mm: Mm, addr: u64, kind: u32): u64 {
  const vpn = addr >> 12;
  const asid = mm.id;
  const stamp = ++c.stamp;
  if (c.nArrays == 0) {                          // no TLB at all: every access walks
    accessHit = HIT_WALK;
    faultFromHit = false;
    return walkAndFill(c, mm, addr, kind, stamp);
  }
  faultFromHit = true;
  const seen = mm.tlbSizes;
  let e = probeLevel(c, 1, vpn, kind, asid, stamp, seen);
  if (e != 0) {
    bumpStat(c, ST_L1_HIT + probeSize, 1);
    accessHit = HIT_L1;
  } else {
    e = probeLevel(c, 2, vpn, kind, asid, stamp, seen);
    if (e != 0) {
      bumpStat(c, ST_L2_HIT + probeSize, 1);
      accessHit = HIT_L2;
      const l2Array = probeArray, l2Size = probeSize;
      const l1 = fillLevel(c, 1, vpn, kind, asid, l2Size, alignVpn(vpn, l2Size), entryPfn(e), entryPerms(e), stamp);
      if (l1 != 0) { e = l1; mm.tlbSizes |= <u32>1 << probeSize; } else { probeArray = l2Array; probeSize = l2Size; }
    } else {
      accessHit = HIT_WALK;
      faultFromHit = false;
      return walkAndFill(c, mm, addr, kind, stamp);
    }
  }
  return checkEntry(c, mm, addr, kind, e);
}

/** Applies the cached permissions of a hit; a clean writable entry re-walks to set dirty. */
// @ts-ignore: decorator
@inline function checkEntry(c: Cpu, mm: Mm, addr: u64, kind: u32, e: usize): u64 {
  const perms = entryPerms(e);
  if (!permits(perms, kind)) {
    if (kind == ACCESS_WRITE && (perms & (TLB_READ | TLB_WRITE_UPDATE)) == (TLB_READ | TLB_WRITE_UPDATE)) {
      const np = dirtyRewalk(c, mm, addr);
      if (np != 0 && permits(np, kind)) { setEntryPerms(e, np); return <u64>entryPfn(e) + ((addr >> 12) - alignVpn(addr >> 12, probeSize)); }
      bumpStat(c, ST_FAULT_KIND + FK_DIRTY_UPDATE, 1);
    } else {
      bumpStat(c, ST_FAULT_KIND + (kind == ACCESS_WRITE ? FK_WRITE_PROTECT : FK_PERMISSION), 1);
    }
    invalidateEntry(probeArray, e);
    return FAULT;
  }
  return <u64>entryPfn(e) + ((addr >> 12) - alignVpn(addr >> 12, probeSize));
}

/** The page walk: counts the memory references the paging-structure caches do not save, updates A/D, fills the TLB. */
function walkAndFill(c: Cpu, mm: Mm, addr: u64, kind: u32, stamp: u32): u64 {
  bumpStat(c, ST_WALKS, 1);
  const ep = leafLookup(mm, addr);
  const level = lookupLevel;
  const asid = mm.id;
  // The deepest cached upper entry spares the reads above it.
  const top = mm.levels - 1;
  const cached = c.walkCacheLevels != 0;
  let refs = top - level + 1;
  if (cached) {
    for (let k = level + 1; k <= top; k++) {
      if (walkCacheLookup(walkCacheAt(c, k), addr >> (12 + 9 * <u64>k), asid, stamp)) {
        refs = k - level;
        bumpStat(c, ST_WALK_CACHE_HITS, 1);
        break;
      }
    }
  }
  bumpStat(c, ST_WALK_REFS, <u64>refs);
  const e = load<u64>(ep);
  if (e == 0 || (level != 0 && !isUpperLeaf(e))) { bumpStat(c, ST_FAULT_KIND + FK_NOT_PRESENT, 1); return FAULT; }
  const n = hwAccess(e, kind);
  if (n == 0) { bumpStat(c, ST_FAULT_KIND + (kind == ACCESS_WRITE ? FK_WRITE_PROTECT : FK_NOT_PRESENT), 1); return FAULT; }
  if (n != e) store<u64>(ep, n);
  if (cached) for (let k = level + 1; k <= top; k++) walkCacheFill(walkCacheAt(c, k), addr >> (12 + 9 * <u64>k), asid, stamp);
  const size = leafSize(level, n);
  bumpStat(c, ST_WALK_SIZE + size, 1);
  const shift = sizeShift(size);
  const vpn = addr >> 12;
  const vbase = (vpn >> shift) << shift;
  const leafBase = <u32>leafPfn(n, level) & ~((<u32>1 << <u32>shift) - 1);
  const perms = tlbPerms(n);
  if (c.nArrays != 0) {
    fillLevel(c, 2, vpn, kind, asid, size, vbase, leafBase, perms, stamp);
    if (probeArray != changetype<TlbArray>(0)) mm.tlbSizes |= <u32>1 << probeSize;
    fillLevel(c, 1, vpn, kind, asid, size, vbase, leafBase, perms, stamp);
    if (probeArray != changetype<TlbArray>(0)) mm.tlbSizes |= <u32>1 << probeSize;
  }
  if (!permits(perms, kind)) { faultFromHit = true; return FAULT; }   // the fault must drop what was just filled
  return <u64>leafBase + (vpn - vbase);
}

/**
 * Functional-mode translation: a direct-mapped cache of 4 KiB translations
 * with the same cached permissions (slot: key u64 | pfn u32 | perms u32).
 */
function translateFunctional(c: Cpu, mm: Mm, addr: u64, kind: u32): u64 {
  const vpn = addr >> 12;
  const slot = c.func + (<usize>(<u32>vpn & (FUNC_SLOTS - 1)) << 4);
  const key = funcKey(vpn, mm.id);
  if (load<u64>(slot) == key) {
    const perms = load<u32>(slot, 12);
    if (permits(perms, kind)) return <u64>load<u32>(slot, 8);
    if (kind == ACCESS_WRITE && (perms & (TLB_READ | TLB_WRITE_UPDATE)) == (TLB_READ | TLB_WRITE_UPDATE)) {
      const np = dirtyRewalk(c, mm, addr);
      if (np != 0 && permits(np, kind)) { store<u32>(slot, np, 12); return <u64>load<u32>(slot, 8); }
    }
    store<u64>(slot, 0);
    return FAULT;
  }
  const ep = leafLookup(mm, addr);
  const level = lookupLevel;
  const e = load<u64>(ep);
  if (e == 0 || (level != 0 && !isUpperLeaf(e))) return FAULT;
  const n = hwAccess(e, kind);
  if (n == 0) return FAULT;
  if (n != e) store<u64>(ep, n);
  const pfn = <u32>leafPfn(n, level) + (level == 0 ? 0 : <u32>(vpn & ((<u64>1 << (9 * <u64>level)) - 1)));
  const perms = tlbPerms(n);
  store<u64>(slot, key);
  store<u32>(slot, pfn, 8);
  store<u32>(slot, perms, 12);
  return permits(perms, kind) ? <u64>pfn : FAULT;
}

/**
 * One user access on CPU `cpu` at addr: kind 0 read, 1 write (storing `tag`),
 * 2 exec. Returns ACCESS_OK or the signal the process would get.
 */
export function userAccess(cpu: u32, mm: Mm, addr: u64, kind: u32, tag: u32): i32 {
  const c = cpuAt(cpu);
  if (c.curMm != mm.id || mm.lastCpu != cpu) switchMm(c, mm);
  const functional = translationMode == MODE_FUNCTIONAL;
  if (!functional) bumpStat(c, ST_ACCESSES, 1);
  const pfn = functional ? translateFunctional(c, mm, addr, kind) : translateModel(c, mm, addr, kind);
  if (pfn != FAULT) {
    accessFaults = 0;
    return completeAccess(mm, addr, <u32>pfn, kind, tag, functional);
  }
  return faultAndRetry(c, mm, addr, kind, tag, functional);
}

/**
 * A CPU store's data: the tag is the page's content. Through a stale TLB entry
 * the frame may no longer be a data page (freed, or reused as a page table or
 * mirror directory, whose descriptors keep other things where a page keeps its
 * tag): real memory would be corrupted there; the emulator records a warning
 * and leaves the frame's bookkeeping alone.
 */
// @ts-ignore: decorator
@inline function storeData(mm: Mm, addr: u64, pfn: u32, tag: u32): void {
  const k = kindOf(pfn);
  if (k == KIND_PAGE || k == KIND_TAIL) setTag(pfn, tag);
  else warn(WARN_STORE_NOT_DATA, mm.id, addr, <u64>pfn);
}

/** The data part of an access that translated: the tag is the page's content. */
// @ts-ignore: decorator
@inline function completeAccess(mm: Mm, addr: u64, pfn: u32, kind: u32, tag: u32, functional: bool): i32 {
  accessPfn = pfn;
  if (kind == ACCESS_WRITE) storeData(mm, addr, pfn, tag);
  accessTag = tagOf(pfn);
  if (functional) accessHit = 0;
  return ACCESS_OK;
}

/** After a translation failed: #PF, the kernel's fault handler on this CPU, and the retries. */
function faultAndRetry(c: Cpu, mm: Mm, addr: u64, kind: u32, tag: u32, functional: bool): i32 {
  accessFaults = 0;
  for (let attempt: u32 = 0; attempt <= MAX_RETRIES; attempt++) {
    // #PF: the CPU drops what it cached for the address, the kernel handles the fault here.
    accessFaults++;
    cpuFaultInvalidate(c, mm.id, addr >> 12, faultFromHit || functional);
    if (!functional) bumpStat(c, ST_PAGE_FAULTS, 1);
    const flags: u32 = FAULT_FLAG_ALLOW_RETRY | (kind == ACCESS_WRITE ? FAULT_FLAG_WRITE : (kind == ACCESS_EXEC ? FAULT_FLAG_INSTRUCTION : 0));
    // An interrupted kernel operation holds this address's PTE table lock: the handler would spin on it.
    if (ptlHeld != 0 && faultNeedsTable(mm, addr) == ptlHeld) { accessBlockedOn = BLOCKED_PTL; accessHit = 0; return ACCESS_BLOCKED; }
    setFaultCpu(c.id);
    const r = handleMmFault(mm, addr, flags);
    if ((r & VM_FAULT_BLOCKED) != 0) { accessBlockedOn = faultBlockedOn; accessHit = 0; return ACCESS_BLOCKED; }
    if ((r & VM_FAULT_ERROR) != 0) {
      accessHit = 0;
      if (!functional) bumpStat(c, ST_SIGNALS, 1);
      if ((r & VM_FAULT_OOM) != 0) return ACCESS_OOM;
      if ((r & VM_FAULT_HWPOISON) != 0) return ACCESS_HWPOISON;
      if ((r & VM_FAULT_SIGBUS) != 0) return ACCESS_SIGBUS;
      return vmaLookup(mm, addr) == null ? ACCESS_SEGV_MAPERR : ACCESS_SEGV_ACCERR;
    }
    // The retried access misses the TLB for certain (the fault dropped whatever this CPU
    // cached for the address, and the handler's flushes only remove), so it goes straight
    // to the walk: the probe would change no counter.
    let pfn: u64;
    if (functional) pfn = translateFunctional(c, mm, addr, kind);
    else { accessHit = HIT_WALK; faultFromHit = false; pfn = walkAndFill(c, mm, addr, kind, ++c.stamp); }
    if (pfn != FAULT) return completeAccess(mm, addr, <u32>pfn, kind, tag, functional);
  }
  return ACCESS_SIGBUS;
}

/**
 * Replays `count` trace records (u64: address, kind in bits 0-1) on a CPU in
 * one call: the hot loop of trace replay. A translation that succeeds is
 * completed inline; only faults leave the loop for the kernel. Signals do not
 * stop the replay. With pfnsOut, the frame of each access is written there
 * (0xFFFFFFFF for a signal). Returns the accesses that completed.
 */
export function replayTrace(cpu: u32, mm: Mm, buf: usize, count: u32, pfnsOut: usize): u32 {
  const c = cpuAt(cpu);
  if (c.curMm != mm.id || mm.lastCpu != cpu) switchMm(c, mm);
  const functional = translationMode == MODE_FUNCTIONAL;
  if (!functional) bumpStat(c, ST_ACCESSES, <u64>count);
  let ok: u32 = 0;
  const end = buf + (<usize>count << 3);
  let out = pfnsOut;
  const asid = mm.id;
  for (let p = buf; p < end; p += 8) {
    const rec = load<u64>(p);
    const addr = rec & ~<u64>4095;
    const kind = <u32>rec & 3;
    let pfn: u64;
    if (functional) {
      // The functional cache's hit, inline: one slot, one key compare, the cached permissions.
      const vpn = addr >> 12;
      const slot = c.func + (<usize>(<u32>vpn & (FUNC_SLOTS - 1)) << 4);
      pfn = load<u64>(slot) == funcKey(vpn, asid) && permits(load<u32>(slot, 12), kind)
        ? <u64>load<u32>(slot, 8) : translateFunctional(c, mm, addr, kind);
    } else {
      pfn = translateModel(c, mm, addr, kind);
    }
    if (pfn != FAULT) {
      if (kind == ACCESS_WRITE) storeData(mm, addr, <u32>pfn, 0);
      ok++;
    } else {
      pfn = faultAndRetry(c, mm, addr, kind, 0, functional) == ACCESS_OK ? <u64>accessPfn : <u64>0xFFFF_FFFF;
      if (pfn != 0xFFFF_FFFF) ok++;
    }
    if (pfnsOut != 0) { store<u32>(out, <u32>pfn); out += 4; }
  }
  return ok;
}

/** Pages completed by the last touchRange. */
export let touchDone: u64 = 0;

/** Accesses every page of [start, end) in order on one CPU; stops at the first failure and returns its code. */
export function touchRange(cpu: u32, mm: Mm, start: u64, end: u64, kind: u32, tag: u32): i32 {
  touchDone = 0;
  for (let a = start; a < end; a += 4096) {
    const r = userAccess(cpu, mm, a, kind, tag);
    if (r != ACCESS_OK) return r;
    touchDone++;
  }
  return ACCESS_OK;
}
