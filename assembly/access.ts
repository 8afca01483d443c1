// User accesses: what the MMU and the kernel do together when a process
// reads or writes a page. The MMU walks the tables (setting accessed/dirty
// as hardware does); if it cannot complete, the fault handler runs and the
// access is retried, as on real hardware. Data is a content tag per page.
// (The TLB model in front of the walk arrives with the TLB engine.)

import { Mm } from "./mm";
import { leafLookup, lookupLevel, handleMmFault } from "./fault";
import { hwAccess, leafPfn, isUpperLeaf, ACCESS_WRITE, ACCESS_EXEC } from "./arch/index";
import { tagOf, setTag } from "./frames";
import { levelShift } from "./pgtable";
import {
  VM_FAULT_ERROR, VM_FAULT_OOM, VM_FAULT_SIGBUS, VM_FAULT_HWPOISON, FAULT_FLAG_WRITE, FAULT_FLAG_INSTRUCTION,
  ACCESS_OK, ACCESS_SEGV_MAPERR, ACCESS_SEGV_ACCERR, ACCESS_SIGBUS, ACCESS_OOM, ACCESS_HWPOISON,
} from "./constants";
import { vmaLookup } from "./vma";

/** Results of the last access: the frame touched and the tag read. */
export let accessPfn: u32 = 0;
export let accessTag: u32 = 0;
/** Faults taken by the last access (retries included). */
export let accessFaults: u32 = 0;

const MAX_RETRIES: u32 = 8;

/**
 * Performs one user access at addr: kind 0 read, 1 write (storing `tag`), 2 exec.
 * Returns ACCESS_OK or the signal the process would get.
 */
export function userAccess(mm: Mm, addr: u64, kind: u32, tag: u32): i32 {
  accessFaults = 0;
  let ep: usize = 0, level: u32 = 0;
  for (let attempt: u32 = 0; attempt <= MAX_RETRIES; attempt++) {
    // A fault never frees a PTE table, so after one that left a PTE slot in
    // place the retry can read the same slot instead of walking again.
    if (ep == 0 || level != 0) {
      ep = leafLookup(mm, addr);
      level = lookupLevel;
    }
    const e = load<u64>(ep);
    if (e != 0 && (level == 0 || isUpperLeaf(e))) {
      const n = hwAccess(e, kind);
      if (n != 0) {
        if (n != e) store<u64>(ep, n);
        const pfn = <u32>(leafPfn(e, level) + ((addr >> 12) & ((<u64>1 << (levelShift(level) - 12)) - 1)));
        accessPfn = pfn;
        if (kind == ACCESS_WRITE) setTag(pfn, tag);
        accessTag = tagOf(pfn);
        return ACCESS_OK;
      }
    }
    accessFaults++;
    const flags: u32 = kind == ACCESS_WRITE ? FAULT_FLAG_WRITE : (kind == ACCESS_EXEC ? FAULT_FLAG_INSTRUCTION : 0);
    const r = handleMmFault(mm, addr, flags);
    if ((r & VM_FAULT_ERROR) != 0) {
      if ((r & VM_FAULT_OOM) != 0) return ACCESS_OOM;
      if ((r & VM_FAULT_HWPOISON) != 0) return ACCESS_HWPOISON;
      if ((r & VM_FAULT_SIGBUS) != 0) return ACCESS_SIGBUS;
      return vmaLookup(mm, addr) == null ? ACCESS_SEGV_MAPERR : ACCESS_SEGV_ACCERR;
    }
  }
  return ACCESS_SIGBUS;
}

/** Pages completed by the last touchRange. */
export let touchDone: u64 = 0;

/** Accesses every page of [start, end) in order; stops at the first failure and returns its code. */
export function touchRange(mm: Mm, start: u64, end: u64, kind: u32, tag: u32): i32 {
  touchDone = 0;
  for (let a = start; a < end; a += 4096) {
    const r = userAccess(mm, a, kind, tag);
    if (r != ACCESS_OK) return r;
    touchDone++;
  }
  return ACCESS_OK;
}
