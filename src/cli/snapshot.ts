// `ptemu snapshot`: a live process's address space, read from /proc/PID/maps,
// smaps and pagemap, written as a scenario that rebuilds it in the emulator:
// the same VMAs at the same addresses with the same protections, and the same
// pages present, swapped and exclusively mapped, with expect blocks that
// check those pagemap bits. What /proc cannot tell is approximated; each
// approximation is stated in the scenario's description and notes.
//
// How pages are rebuilt (pagemap gives present, swapped, file and exclusive
// bits, nothing about dirtiness or content):
// - present exclusive anonymous page (in an anonymous VMA, or a COW copy in a
//   private file VMA) -> written: a write fault makes exactly that;
// - present non-exclusive anonymous page -> read: the zero page (present, not
//   exclusive); a page shared copy-on-write with another process looks the same;
// - present page-cache page -> read through the mapping; if it is not
//   exclusive (other processes map it, as with shared libraries), a second
//   process, `holder`, maps the same stand-in file and reads it too, so the
//   mapcount is above one again;
// - swapped page of a private VMA -> written, then MADV_PAGEOUT;
// - files (and [vdso]-like special mappings, and shared anonymous memory) are
//   memfd stand-ins of the right size, mapped at the same offsets.

import { readFileSync, openSync, readSync, closeSync } from 'node:fs';
import { arch as hostArch, release } from 'node:os';
import type { JsonValue } from './scenario.js';

export interface SnapshotOptions {
  /**
   * Record each present page's host PFN in `source.pfns`. PFNs read as zero
   * without CAP_SYS_ADMIN: the snapshot is then refused rather than written
   * with made-up zeros.
   */
  pfns?: boolean;
  /** Where proc is mounted (default /proc); a directory holding saved <pid>/maps, smaps and pagemap works too. */
  procRoot?: string;
}

/** One VMA of the host process, as maps and smaps describe it (sizes from smaps in kB). */
export interface HostVma {
  start: number;
  end: number;
  /** As in maps: 'r-xp', 'rw-s', ... */
  perms: string;
  offset: number;
  dev: string;
  inode: number;
  path: string;
  rss?: number;
  swap?: number;
  anonHugePages?: number;
  kernelPageSize?: number;
  thpEligible?: boolean;
  vmFlags?: string[];
}

/** A VMA in the shape `ptemu replay --snapshot` reads (prot as 'r-x'; start and end in bytes). */
export interface SnapshotVma { start: number; end: number; prot: string; shared: boolean; path?: string }

export interface SnapshotSource {
  pid: number;
  command: string;
  /** ISO time of the snapshot. */
  taken: string;
  kernel: string;
  /** What could not be rebuilt exactly, and why. */
  notes: string[];
  /** Host PFNs of each rebuilt VMA's pages (0 where not present), when asked for. */
  pfns?: { start: string; pfns: number[] }[];
}

/** A scenario in the `ptemu run` language, plus the top-level `vmas` that replay reads. */
export interface SnapshotScenario {
  name: string;
  description: string;
  source: SnapshotSource;
  machine: { arch: 'x86_64' | 'arm64'; levels?: 5; memory: string; faultAround: string; thp: 'madvise' };
  vmas: SnapshotVma[];
  steps: { [step: string]: JsonValue }[];
}

const PAGE = 4096;
const PM_PRESENT = 1n << 63n, PM_SWAP = 1n << 62n, PM_FILE = 1n << 61n, PM_EXCLUSIVE = 1n << 56n, PM_PFN = (1n << 55n) - 1n;
/** mmap_min_addr: the emulator refuses mappings below it, as the kernel does. */
const MMAP_MIN = 0x10000;
/** Pagemap entries read per pread. */
const CHUNK_PAGES = 1 << 16;

/** What a rebuilt page needs: w write, r read, rh read here and in the holder, sw write then page out, - nothing. */
type Act = 'w' | 'r' | 'rh' | 'sw' | '-';
type Backing = { kind: 'anon' } | { kind: 'file'; key: string; offset: number };

interface Plan {
  host: HostVma;
  name: string;
  prot: string;
  shared: boolean;
  backing: Backing;
  acts: Act[];
  bits: { present: boolean; swapped: boolean; exclusive: boolean }[];
  pfns: number[];
  /** madvise flags to reproduce. */
  advice: ('hugepage' | 'nohugepage' | 'dontfork')[];
}

/** Parses /proc/PID/maps (or the header lines of smaps). */
export function parseMaps(text: string): HostVma[] {
  const out: HostVma[] = [];
  for (const line of text.split('\n')) {
    const m = /^([0-9a-f]+)-([0-9a-f]+)\s+([-rwxsp]{4})\s+([0-9a-f]+)\s+([0-9a-f]+:[0-9a-f]+)\s+(\d+)\s*(.*)$/.exec(line);
    if (!m) continue;
    out.push({
      start: parseInt(m[1]!, 16), end: parseInt(m[2]!, 16), perms: m[3]!, offset: parseInt(m[4]!, 16), dev: m[5]!, inode: Number(m[6]), path: m[7]!.trim(),
    });
  }
  return out;
}

/** Adds smaps' per-VMA details (Rss, Swap, AnonHugePages, KernelPageSize, THPeligible, VmFlags) to the maps records. */
export function mergeSmaps(vmas: HostVma[], text: string): void {
  const byStart = new Map(vmas.map((v) => [v.start, v]));
  let cur: HostVma | undefined;
  for (const line of text.split('\n')) {
    const head = /^([0-9a-f]+)-[0-9a-f]+\s/.exec(line);
    if (head) { cur = byStart.get(parseInt(head[1]!, 16)); continue; }
    if (!cur) continue;
    const kv = /^(\w+):\s+(.*)$/.exec(line);
    if (!kv) continue;
    const [, key, value] = kv;
    const kb = Number(/^(\d+)/.exec(value!)?.[1] ?? NaN);
    if (key === 'Rss') cur.rss = kb;
    else if (key === 'Swap') cur.swap = kb;
    else if (key === 'AnonHugePages') cur.anonHugePages = kb;
    else if (key === 'KernelPageSize') cur.kernelPageSize = kb;
    else if (key === 'THPeligible') cur.thpEligible = value!.trim() === '1';
    else if (key === 'VmFlags') cur.vmFlags = value!.trim().split(/\s+/);
  }
}

function readText(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new Error(`${what}: ${path} does not exist (no such process?)`);
    if (code === 'EACCES' || code === 'EPERM') throw new Error(`${what}: permission denied reading ${path} (run as the process's owner or root)`);
    throw new Error(`${what}: cannot read ${path}: ${(e as Error).message}`);
  }
}

/** Reads the raw pagemap values of [start, end). */
function readPagemap(fd: number, start: number, end: number): BigUint64Array {
  const pages = (end - start) / PAGE;
  const out = new BigUint64Array(pages);
  const bytes = new Uint8Array(out.buffer);
  for (let done = 0; done < pages;) {
    const n = Math.min(CHUNK_PAGES, pages - done);
    const want = n * 8;
    let got = 0;
    while (got < want) {
      const r = readSync(fd, bytes, done * 8 + got, want - got, (start / PAGE + done) * 8 + got);
      if (r === 0) break;
      got += r;
    }
    if (got < want) throw new Error(`pagemap: short read at 0x${(start + done * PAGE).toString(16)}`);
    done += n;
  }
  return out;
}

const hex = (n: number): string => `0x${n.toString(16)}`;
function size(bytes: number): string {
  if (bytes % (1 << 20) === 0) return `${bytes / (1 << 20)}MiB`;
  if (bytes % 1024 === 0) return `${bytes / 1024}KiB`;
  return String(bytes);
}
const at = (name: string, off: number): string => (off === 0 ? name : `${name}+${hex(off)}`);

/** Runs of equal keys: [first index, count, key]. */
function runs<T>(items: readonly T[], key: (t: T) => string | undefined): [number, number, string][] {
  const out: [number, number, string][] = [];
  for (let i = 0; i < items.length;) {
    const k = key(items[i]!);
    let j = i + 1;
    while (j < items.length && key(items[j]!) === k) j++;
    if (k !== undefined) out.push([i, j - i, k]);
    i = j;
  }
  return out;
}

/** Snapshots process `pid` as a scenario that rebuilds its address space. */
export async function snapshotProcess(pid: number, opts: SnapshotOptions = {}): Promise<SnapshotScenario> {
  if (!Number.isSafeInteger(pid) || pid <= 0) throw new Error(`pid must be a positive integer, got ${String(pid)}`);
  const dir = `${opts.procRoot ?? '/proc'}/${pid}`;
  const host = parseMaps(readText(`${dir}/maps`, 'maps'));
  let haveSmaps = true;
  try { mergeSmaps(host, readFileSync(`${dir}/smaps`, 'utf8')); } catch { haveSmaps = false; }
  let command = '';
  try { command = readFileSync(`${dir}/comm`, 'utf8').trim(); } catch { /* a saved snapshot may lack it */ }

  const arch = hostArch() === 'arm64' ? 'arm64' : 'x86_64';
  const notes: string[] = [];
  if (hostArch() !== 'x64' && hostArch() !== 'arm64') notes.push(`host arch ${hostArch()} is rebuilt as x86_64`);
  if (!haveSmaps) notes.push('smaps could not be read: no THP or VmFlags information, every VMA scanned');
  // x86-64 user space ends below 2^47 with 4 levels, 2^56 with 5; arm64 (4 KiB granule, 4 levels) at 2^48.
  const needs5 = arch === 'x86_64' && host.some((v) => v.end > 2 ** 47 - PAGE && v.end <= 2 ** 56);
  const taskSize = arch === 'arm64' ? 2 ** 48 : needs5 ? 2 ** 56 - PAGE : 2 ** 47 - PAGE;

  let fd: number;
  try {
    fd = openSync(`${dir}/pagemap`, 'r');
  } catch (e) {
    throw new Error(`pagemap: cannot open ${dir}/pagemap: ${(e as Error).message}`);
  }
  const plans: Plan[] = [];
  const standIns = new Map<string, { name: string; size: number; holderPages: Set<number> }>();
  let special = 0;
  try {
    for (const v of host) {
      if (v.end > taskSize || v.start < MMAP_MIN) {
        notes.push(`${hex(v.start)}-${hex(v.end)} ${v.path || '(anonymous)'}: outside the emulated user space, not rebuilt`);
        continue;
      }
      const shared = v.perms[3] === 's';
      const len = v.end - v.start;
      let backing: Backing;
      const bracketed = /^\[.*\]$/.test(v.path);
      const plainAnon = v.inode === 0 && !shared && (v.path === '' || v.path === '[heap]' || /^\[stack/.test(v.path) || /^\[anon/.test(v.path));
      if (plainAnon) backing = { kind: 'anon' };
      else if (v.inode !== 0) backing = { kind: 'file', key: `${v.dev}:${v.inode}`, offset: v.offset };
      else backing = { kind: 'file', key: `special-${special++}`, offset: 0 };   // [vdso], [vvar], shared anonymous memory: a file of their own
      if (backing.kind === 'file') {
        const s = standIns.get(backing.key) ?? { name: `f${standIns.size}`, size: 0, holderPages: new Set<number>() };
        s.size = Math.max(s.size, backing.offset + len);
        standIns.set(backing.key, s);
      }
      if (v.kernelPageSize !== undefined && v.kernelPageSize !== 4) notes.push(`${hex(v.start)} ${v.path}: ${v.kernelPageSize} kB pages (hugetlb) rebuilt with 4 KiB pages`);
      if (bracketed && !plainAnon) notes.push(`${hex(v.start)} ${v.path}: a special mapping, rebuilt as a private mapping of a memfd stand-in`);
      const scan = !haveSmaps || (v.rss ?? 1) > 0 || (v.swap ?? 1) > 0;
      const raws = scan ? readPagemap(fd, v.start, v.end) : new BigUint64Array(len / PAGE);
      const acts: Act[] = [];
      const bits: Plan['bits'] = [];
      const pfns: number[] = [];
      let markerNoted = false;
      for (const raw of raws) {
        const present = (raw & PM_PRESENT) !== 0n, swapped = (raw & PM_SWAP) !== 0n;
        const file = (raw & PM_FILE) !== 0n, exclusive = (raw & PM_EXCLUSIVE) !== 0n;
        bits.push({ present, swapped, exclusive });
        pfns.push(present ? Number(raw & PM_PFN) : 0);
        let act: Act = '-';
        if (present) {
          if (backing.kind === 'anon') act = exclusive ? 'w' : 'r';
          else if (shared) act = exclusive ? 'r' : 'rh';
          else act = file ? (exclusive ? 'r' : 'rh') : exclusive ? 'w' : 'rh';
        } else if (swapped) {
          if (shared) {
            if (!markerNoted) notes.push(`${hex(v.start)} ${v.path || '(shared)'}: swap-format entries in a shared mapping (pte markers) are not rebuilt`);
            markerNoted = true;
          } else {
            act = 'sw';
          }
        }
        acts.push(act);
      }
      const plan: Plan = { host: v, name: `v${plans.length}`, prot: v.perms.slice(0, 3), shared, backing, acts, bits, pfns, advice: [] };
      const flags = v.vmFlags ?? [];
      if (flags.includes('hg') && backing.kind === 'anon') {
        if (thpBlocksClean(plan)) plan.advice.push('hugepage');
        else notes.push(`${hex(v.start)}: MADV_HUGEPAGE not reproduced (a 2 MiB block is partly populated; THP faults would fill it)`);
      }
      if (flags.includes('nh')) plan.advice.push('nohugepage');
      if (flags.includes('dc')) plan.advice.push('dontfork');
      if ((v.anonHugePages ?? 0) > 0 && !plan.advice.includes('hugepage')) notes.push(`${hex(v.start)}: ${v.anonHugePages} kB of THP on the host, rebuilt with 4 KiB pages`);
      if (backing.kind === 'file') {
        const s = standIns.get(backing.key)!;
        acts.forEach((a, i) => { if (a === 'rh') s.holderPages.add(backing.offset / PAGE + i); });
      }
      plans.push(plan);
    }
  } finally {
    closeSync(fd);
  }

  const presentPages = plans.reduce((n, p) => n + p.bits.filter((b) => b.present).length, 0);
  const pfnRecords: { start: string; pfns: number[] }[] = [];
  if (opts.pfns) {
    if (presentPages > 0 && plans.every((p) => p.pfns.every((f) => f === 0))) {
      throw new Error('PFNs are hidden: /proc/PID/pagemap reports PFN 0 to readers without CAP_SYS_ADMIN. Run as root, or snapshot without --pfns');
    }
    for (const p of plans) if (p.pfns.some((f) => f !== 0)) pfnRecords.push({ start: hex(p.host.start), pfns: p.pfns });
  }

  const steps = buildSteps(plans, standIns);
  // Frames for every page rebuilt plus THP blocks, page tables (at worst one per page) and room: 2 pages per page + 64 MiB.
  const memory = Math.min(256 * 1024, Math.ceil(((presentPages + plans.reduce((n, p) => n + p.acts.filter((a) => a === 'sw').length, 0)) * 2 * PAGE) / (1 << 20)) + 64);
  const source: SnapshotSource = { pid, command, taken: new Date().toISOString(), kernel: release(), notes };
  if (opts.pfns) source.pfns = pfnRecords;
  return {
    name: `snapshot of ${command || 'process'} ${pid}`,
    description:
      'Rebuilds the VMAs (addresses, protections, private/shared; files as memfd stand-ins) and the present and swapped pages ' +
      'of a live process. Dirtiness and content are not in pagemap: exclusive anonymous pages are written, other present pages read ' +
      '(non-exclusive page-cache pages also by a second process, holder); swapped pages are written then paged out. ' +
      'The expect blocks check the rebuilt pagemap bits (present, swapped, exclusive) against the host\'s; adjacent VMAs the ' +
      'emulator merges are expected merged.',
    source,
    machine: { arch, ...(needs5 ? { levels: 5 as const } : {}), memory: `${memory}MiB`, faultAround: '4KiB', thp: 'madvise' },
    vmas: plans.map((p) => ({ start: p.host.start, end: p.host.end, prot: p.prot, shared: p.shared, ...(p.host.path ? { path: p.host.path } : {}) })),
    steps,
  };
}

/** MADV_HUGEPAGE can be reproduced only if no 2 MiB block inside the VMA is partly populated (a THP fault fills its block). */
function thpBlocksClean(p: Plan): boolean {
  const H = 512;
  const first = Math.ceil(p.host.start / (H * PAGE)) * H * PAGE;
  for (let b = first; b + H * PAGE <= p.host.end; b += H * PAGE) {
    const i0 = (b - p.host.start) / PAGE;
    const slice = p.acts.slice(i0, i0 + H);
    const all = slice.every((a) => a === 'w'), none = slice.every((a) => a === '-');
    if (!all && !none) return false;
  }
  return true;
}

/** The mmap protection for rebuilding: the final one plus what the touches need (then mprotect back). */
function buildProt(p: Plan): string {
  const writes = p.acts.some((a) => a === 'w' || a === 'sw');
  const reads = p.acts.some((a) => a !== '-');
  const r = p.prot[0] === 'r' || reads || writes, w = p.prot[1] === 'w' || writes;
  const x = p.prot[2] === 'x';
  if (!r && !w && !x) return 'none';
  return `${r ? 'r' : '-'}${w ? 'w' : '-'}${x ? 'x' : '-'}`;
}
const mmapProt = (prot: string): string => (prot === '---' ? 'none' : prot);

function buildSteps(plans: Plan[], standIns: Map<string, { name: string; size: number; holderPages: Set<number> }>): { [step: string]: JsonValue }[] {
  const steps: { [step: string]: JsonValue }[] = [{ spawn: 'p' }];
  const holderFiles = [...standIns.values()].filter((s) => s.holderPages.size > 0);
  if (holderFiles.length > 0) steps.push({ spawn: 'holder' });
  for (const s of standIns.values()) steps.push({ memfd: { name: s.name, size: hex(Math.ceil(s.size / PAGE) * PAGE) } });
  // The holder maps each stand-in whose pages others map too, and reads those pages.
  holderFiles.forEach((s, i) => {
    const name = `h${i}`;
    const len = Math.ceil(s.size / PAGE) * PAGE;
    steps.push({ mmap: { process: 'holder', name, file: s.name, shared: true, length: hex(len), prot: 'r' } });
    const pages = [...s.holderPages].sort((a, b) => a - b);
    for (let i = 0; i < pages.length;) {
      let j = i + 1;
      while (j < pages.length && pages[j] === pages[j - 1]! + 1) j++;
      steps.push({ touch: { process: 'holder', addr: at(name, pages[i]! * PAGE), length: size((j - i) * PAGE), mode: 'r' } });
      i = j;
    }
  });
  const mmapStep = (p: Plan, prot: string): { [step: string]: JsonValue } => {
    const m: { [k: string]: JsonValue } = { process: 'p', name: p.name, addr: hex(p.host.start), length: size(p.host.end - p.host.start), prot: mmapProt(prot) };
    if (p.shared) m.shared = true;
    if (p.backing.kind === 'file') {
      m.file = standIns.get(p.backing.key)!.name;
      if (p.backing.offset !== 0) m.offset = hex(p.backing.offset);
    }
    return { mmap: m };
  };
  const adviceSteps = (p: Plan): { [step: string]: JsonValue }[] => p.advice.map((advice) => ({ madvise: { process: 'p', addr: p.name, advice } }));
  const touchSteps = (p: Plan): { [step: string]: JsonValue }[] => {
    const out: { [step: string]: JsonValue }[] = [];
    const mode = (a: Act): string | undefined => (a === 'w' || a === 'sw' ? 'w' : a === 'r' || a === 'rh' ? 'r' : undefined);
    for (const [i, n, m] of runs(p.acts, mode)) out.push({ touch: { process: 'p', addr: at(p.name, i * PAGE), length: size(n * PAGE), mode: m } });
    for (const [i, n] of runs(p.acts, (a) => (a === 'sw' ? 'sw' : undefined))) out.push({ madvise: { process: 'p', addr: at(p.name, i * PAGE), length: size(n * PAGE), advice: 'pageout' } });
    return out;
  };
  // VMAs whose touches need more permission than they end with go first, whole (map, touch,
  // mprotect back), so the others can still merge with them on mmap as the kernel would.
  const widened = plans.filter((p) => buildProt(p) !== p.prot);
  for (const p of widened) {
    steps.push(mmapStep(p, buildProt(p)), ...adviceSteps(p), ...touchSteps(p));
    steps.push({ mprotect: { process: 'p', addr: p.name, prot: mmapProt(p.prot) } });
  }
  const rest = plans.filter((p) => buildProt(p) === p.prot);
  for (const p of rest) steps.push(mmapStep(p, p.prot), ...adviceSteps(p));
  for (const p of rest) steps.push(...touchSteps(p));

  const pagemap: JsonValue[] = [];
  for (const p of plans) {
    for (const [i, n, k] of runs(p.bits, (b) => `${+b.present}${+b.swapped}${+b.exclusive}`)) {
      pagemap.push({ process: 'p', addr: at(p.name, i * PAGE), length: size(n * PAGE), present: k[0] === '1', swapped: k[1] === '1', exclusive: k[2] === '1' });
    }
  }
  steps.push({ expect: { vmas: { process: 'p', list: coalesce(plans) }, pagemap, check: 'clean' } });
  return steps;
}

/**
 * The VMA list the rebuild should end with: the host's, with adjacent VMAs
 * joined where the emulator merges new mappings (same protection, sharing,
 * backing at contiguous offsets and madvise flags). The host kept such VMAs
 * apart for reasons /proc shows but ptemu does not model (another anon_vma,
 * VM_ACCOUNT, ...).
 */
function coalesce(plans: Plan[]): JsonValue[] {
  const out: { start: string; end: string; prot: string; shared: boolean }[] = [];
  let prev: Plan | undefined;
  for (const p of plans) {
    const last = out.at(-1);
    if (last && prev && mergeable(prev, p)) { last.end = `${p.name}.end`; prev = p; continue; }
    out.push({ start: p.name, end: `${p.name}.end`, prot: p.prot, shared: p.shared });
    prev = p;
  }
  return out;
}

function mergeable(a: Plan, b: Plan): boolean {
  if (a.host.end !== b.host.start || a.prot !== b.prot || a.shared !== b.shared) return false;
  if ([...a.advice].sort().join() !== [...b.advice].sort().join()) return false;
  if (a.backing.kind === 'anon' || b.backing.kind === 'anon') return a.backing.kind === b.backing.kind;
  return a.backing.key === b.backing.key && b.backing.offset === a.backing.offset + (a.host.end - a.host.start);
}
