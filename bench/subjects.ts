/**
 * The implementations under test, behind one interface so that the same
 * benchmark specs drive both: the WASM core through the public API, and the
 * naive TypeScript peer. (The C peer runs its own loop, see peers/native.ts.)
 *
 * Each subject tracks whether its range is faulted in, so the harness can
 * restore the right state between consuming operations and refuse to time
 * a call made in the wrong state.
 */
import { Machine } from '../src/index.js';
import { NaivePageTables, PAGE_SIZE, RANGE_START } from './peers/naive.js';

export interface Subject {
  readonly label: string;
  readonly pages: number;
  /** Every page of the range is mapped (after faultIn, until dontneed). */
  readonly faulted: boolean;
  /** Write-fault every page of the range. */
  faultIn(): void;
  /** MADV_DONTNEED over the range. */
  dontneed(): void;
  mprotect(writable: boolean): void;
  /** Read-only walk of the range; returns the present PTE count. */
  walk(): number;
  /**
   * Run every operation once, checking it did all the work it should
   * (untimed; doubles as JIT warm-up). Throws with a description of the
   * first disagreement. Leaves the range faulted in.
   */
  verify(): void;
}

function expectEqual(what: string, got: number | boolean, want: number | boolean): void {
  if (got !== want) {
    throw new Error(`verification failed: ${what}: got ${String(got)}, expected ${String(want)}`);
  }
}

/** Emulated RAM for the WASM machine: the range plus room, at least 8 GiB as in the brief. */
function machineMemory(pages: number): number {
  const GiB = 2 ** 30;
  const wanted = Math.ceil((pages * PAGE_SIZE * 1.5) / GiB) * GiB;
  return Math.min(Math.max(8 * GiB, wanted), 256 * GiB);
}

export async function wasmSubject(pages: number): Promise<Subject> {
  // THP off so that every op works on 4 KiB PTEs, like the peers.
  // No modelled TLB: these benchmarks time the kernel's work (faults, range ops), which the peers
  // implement; trace replay through the TLB model has its own benchmark (bench/replay.ts).
  const machine = await Machine.create({ memory: machineMemory(pages), thp: 'never', tlb: 'none' });
  const proc = machine.spawn();
  const { start, length } = proc.mmap({ length: pages * PAGE_SIZE, prot: 'rw' });
  const last = start + length - PAGE_SIZE;
  let faulted = false;

  const subject: Subject = {
    label: 'WASM',
    pages,
    get faulted() {
      return faulted;
    },
    faultIn() {
      const r = proc.touch(start, length, 'w');
      if (!r.ok) {
        throw new Error(`WASM touch failed after ${r.pages} pages: ${r.signal} ${r.code}`);
      }
      faulted = true;
    },
    dontneed() {
      proc.madvise(start, length, 'dontneed');
      faulted = false;
    },
    mprotect(writable) {
      proc.mprotect(start, length, writable ? 'rw' : 'r');
    },
    walk() {
      return proc.scan(start, length).present;
    },
    verify() {
      // A fresh mapping, then a refault after DONTNEED: both must take one
      // minor fault per page, which is what the fault-in benchmark times.
      for (const round of ['first fault-in', 'fault-in after dontneed']) {
        const before = proc.faults.minor;
        subject.faultIn();
        expectEqual(`WASM ${round}: minor faults`, proc.faults.minor - before, pages);
        expectEqual(`WASM ${round}: present PTEs`, subject.walk(), pages);
        expectEqual(`WASM ${round}: anon RSS pages`, proc.rss.anon, pages);
        if (round === 'first fault-in') {
          subject.mprotect(false);
          expectEqual('WASM mprotect r: first PTE writable', proc.entry(start).write, false);
          expectEqual('WASM mprotect r: last PTE writable', proc.entry(last).write, false);
          expectEqual('WASM mprotect r: present PTEs', subject.walk(), pages);
          subject.mprotect(true);
          expectEqual('WASM mprotect rw: first PTE writable', proc.entry(start).write, true);
          expectEqual('WASM mprotect rw: last PTE writable', proc.entry(last).write, true);
          subject.dontneed();
          expectEqual('WASM dontneed: present PTEs', subject.walk(), 0);
          expectEqual('WASM dontneed: anon RSS pages', proc.rss.anon, 0);
        }
      }
      // Faulting a mapped range again must be free of faults, or the
      // harness's "ready" bookkeeping would not match the core.
      const before = proc.faults.minor;
      subject.faultIn();
      expectEqual('WASM touch of a mapped range: minor faults', proc.faults.minor - before, 0);
    },
  };
  return subject;
}

export function naiveSubject(pages: number): Subject {
  const tables = NaivePageTables.forRange(pages);
  const allFree = tables.freeFrames;
  let faulted = false;

  const subject: Subject = {
    label: 'naive TS',
    pages,
    get faulted() {
      return faulted;
    },
    faultIn() {
      tables.faultIn(RANGE_START, pages);
      faulted = true;
    },
    dontneed() {
      tables.dontneed(RANGE_START, pages);
      faulted = false;
    },
    mprotect(writable) {
      tables.mprotect(RANGE_START, pages, writable);
    },
    walk() {
      return tables.walk(RANGE_START, pages).present;
    },
    verify() {
      subject.faultIn();
      const tableFrames = allFree - tables.freeFrames - pages;
      expectEqual('naive fault-in: present PTEs', subject.walk(), pages);
      expectEqual('naive mprotect r: changed PTEs', tables.mprotect(RANGE_START, pages, false), pages);
      expectEqual('naive mprotect rw: changed PTEs', tables.mprotect(RANGE_START, pages, true), pages);
      expectEqual('naive dontneed: freed frames', tables.dontneed(RANGE_START, pages), pages);
      faulted = false;
      expectEqual('naive dontneed: present PTEs', subject.walk(), 0);
      // Only the page tables stay allocated, as in the kernel and the C peer.
      expectEqual('naive dontneed: frames still allocated', allFree - tables.freeFrames, tableFrames);
      subject.faultIn();
      expectEqual('naive fault-in after dontneed: present PTEs', subject.walk(), pages);
    },
  };
  return subject;
}
