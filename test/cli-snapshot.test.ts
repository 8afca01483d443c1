// `ptemu snapshot`: a live process's address space becomes a scenario that
// rebuilds it. The rebuilt process must have the host's VMAs (addresses,
// protections; neighbours the emulator merges may be joined) and, page by
// page, the host's pagemap present / swapped / exclusive bits.

import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync, mkdirSync, openSync, readSync, closeSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { snapshotProcess, parseMaps, type SnapshotScenario, type SnapshotVma } from '../src/cli/snapshot.js';
import { snapshotCommand } from '../src/cli/commands/snapshot.js';
import { loadScenario } from '../src/cli/scenario.js';
import { runScenario, type ScenarioResult } from '../src/cli/scenario-run.js';
import type { CommandIo } from '../src/cli/commands/run.js';

const dir = mkdtempSync(join(tmpdir(), 'ptemu-snap-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const hasCc = spawnSync('cc', ['--version'], { stdio: 'ignore' }).status === 0;
if (!hasCc) console.warn('cli-snapshot: no C compiler (cc): the C child tests are skipped; the node child test still runs');

// A child that maps and touches a few kinds of memory, then waits: anonymous
// pages written and read (the zero page), a page written then made read-only,
// a memfd mapped shared and privately (a page-cache page mapped twice, a COW copy).
const CHILD_C = String.raw`
#define _GNU_SOURCE
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>
int main(void) {
  long P = 4096;
  volatile char x;
  char *a = mmap(NULL, 16 * P, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  a[0] = 1; a[2 * P] = 2; a[5 * P] = 3; x = a[7 * P];
  char *ro = mmap(NULL, 4 * P, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ro[P] = 1; mprotect(ro, 4 * P, PROT_READ);
  int fd = memfd_create("t", 0); ftruncate(fd, 8 * P);
  char *s = mmap(NULL, 8 * P, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  s[0] = 1; s[3 * P] = 2;
  char *pf = mmap(NULL, 8 * P, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  x = pf[3 * P]; pf[6 * P] = 5; x = pf[7 * P];
  printf("ready %p\n", (void *)a); fflush(stdout);
  pause();
  return x;
}
`;

/** Starts a child and waits for its "ready" line; returns it and the line. */
async function start(cmd: string, args: string[]): Promise<{ child: ChildProcess; line: string }> {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  const line = await new Promise<string>((resolve, reject) => {
    let buf = '';
    child.stdout!.on('data', (d: Buffer) => { buf += d.toString(); if (buf.includes('\n')) resolve(buf.split('\n')[0]!); });
    child.on('exit', (code) => reject(new Error(`child exited with ${code} before it was ready`)));
  });
  return { child, line };
}

/** The host's pagemap of [start, end), read now. */
function hostPagemap(pid: number, start: number, end: number): BigUint64Array {
  const out = new BigUint64Array((end - start) / 4096);
  const fd = openSync(`/proc/${pid}/pagemap`, 'r');
  try {
    readSync(fd, new Uint8Array(out.buffer), 0, out.byteLength, (start / 4096) * 8);
  } finally {
    closeSync(fd);
  }
  return out;
}

const bits = (raw: bigint): string => `${raw >> 63n & 1n}${raw >> 62n & 1n}${raw >> 56n & 1n}`;

/** Runs the snapshot as `ptemu run` would, from a file, keeping the machine. */
async function rebuild(snap: SnapshotScenario, name: string): Promise<ScenarioResult> {
  const file = join(dir, name);
  writeFileSync(file, JSON.stringify(snap));
  return runScenario(loadScenario(file), { keepWorld: true });
}

/**
 * The rebuilt process has the host's VMAs: each rebuilt VMA is one host VMA,
 * or consecutive host VMAs with the same protection that the emulator merged.
 */
function expectSameVmas(host: readonly SnapshotVma[], r: ScenarioResult): void {
  const rebuilt = r.world!.processes.get('p')!.vmas;
  let i = 0;
  for (const v of rebuilt) {
    const first = host[i]!;
    expect({ start: first.start, prot: first.prot, shared: first.shared }).toEqual({ start: v.start, prot: v.prot, shared: v.shared });
    let end = first.end;
    i++;
    while (end < v.end) {
      expect({ start: host[i]!.start, prot: host[i]!.prot }).toEqual({ start: end, prot: v.prot });
      end = host[i]!.end;
      i++;
    }
    expect(end).toBe(v.end);
  }
  expect(i).toBe(host.length);
}

/** Page by page, the rebuilt pagemap has the host's present, swapped and exclusive bits. */
function expectSamePages(pid: number, host: readonly SnapshotVma[], r: ScenarioResult): { present: number } {
  const p = r.world!.processes.get('p')!;
  let present = 0;
  for (const v of host) {
    const want = hostPagemap(pid, v.start, v.end);
    const got = p.pagemapRange(v.start, v.end - v.start);
    const diff: string[] = [];
    want.forEach((raw, i) => {
      if (bits(raw) !== bits(got[i]!)) diff.push(`0x${(v.start + i * 4096).toString(16)} ${v.path ?? ''}: host ${bits(raw)} rebuilt ${bits(got[i]!)}`);
      if (raw >> 63n) present++;
    });
    expect(diff).toEqual([]);
  }
  return { present };
}

const capture = (): CommandIo & { stdout: string; stderr: string } => {
  const io = { stdout: '', stderr: '', out: (t: string) => { io.stdout += t; }, err: (t: string) => { io.stderr += t; } };
  return io;
};

describe.skipIf(!hasCc)('snapshot of a C child', () => {
  let child: ChildProcess;
  let anon = 0;
  beforeAll(async () => {
    writeFileSync(join(dir, 'child.c'), CHILD_C);
    const cc = spawnSync('cc', ['-O1', '-o', join(dir, 'child'), join(dir, 'child.c')], { encoding: 'utf8' });
    if (cc.status !== 0) throw new Error(`cc failed: ${cc.stderr}`);
    const s = await start(join(dir, 'child'), []);
    child = s.child;
    anon = parseInt(/ready (0x[0-9a-f]+)/.exec(s.line)![1]!, 16);
  });
  afterAll(() => { child?.kill('SIGKILL'); });

  it('rebuilds the same VMAs and the same present pages with the same pagemap bits', async () => {
    const snap = await snapshotProcess(child.pid!);
    const r = await rebuild(snap, 'c.json');
    // The scenario's own expect blocks (VMAs, pagemap runs, m.check()) pass.
    expect(r.checks.filter((c) => !c.passed)).toEqual([]);
    expect(r.error).toBeUndefined();
    expect(r.ok).toBe(true);

    // Independently: the VMAs the host has now, as maps lists them, less what cannot be emulated ([vsyscall]).
    const host = parseMaps(readFileSync(`/proc/${child.pid}/maps`, 'utf8')).filter((v) => v.end <= 2 ** 47);
    expect(snap.vmas.map((v) => [v.start, v.end, v.prot])).toEqual(host.map((v) => [v.start, v.end, v.perms.slice(0, 3)]));
    expectSameVmas(snap.vmas, r);
    const { present } = expectSamePages(child.pid!, snap.vmas, r);
    expect(present).toBeGreaterThan(10);

    // The child's own anonymous mapping: pages 0, 2, 5 written (exclusive), page 7 read (the zero page).
    const p = r.world!.processes.get('p')!;
    const page = (i: number) => p.pagemap(anon + i * 4096);
    expect([0, 2, 5].map((i) => [page(i).present, page(i).exclusive])).toEqual([[true, true], [true, true], [true, true]]);
    expect([page(7).present, page(7).exclusive, page(1).present]).toEqual([true, false, false]);
    expect(r.world!.machine.frame(page(7).pfn!).zero).toBe(true);
    expect(snap.source.notes.some((n) => n.includes('[vsyscall]'))).toBe(true);
  });

  it('the top-level vmas are in the shape replay reads; the YAML written by the command loads and passes', async () => {
    const out = join(dir, 'c.yaml');
    const io = capture();
    expect(await snapshotCommand([String(child.pid), '-o', out], io)).toBe(0);
    expect(io.stderr).toMatch(/VMAs, \d+ steps written to/);
    const text = readFileSync(out, 'utf8');
    expect(text).toMatch(/^ {2}- mmap: \{ process: p, name: v\d+, addr: "0x[0-9a-f]+", length: /m);
    const s = loadScenario(out);
    const r = await runScenario(s);
    expect(r.ok).toBe(true);
    const json = join(dir, 'c2.json');
    expect(await snapshotCommand([String(child.pid), '-o', json], capture())).toBe(0);
    const doc = JSON.parse(readFileSync(json, 'utf8')) as { vmas: { start: unknown; end: unknown; prot: unknown }[] };
    for (const v of doc.vmas) {
      expect(typeof v.start).toBe('number');
      expect(typeof v.end).toBe('number');
      expect(v.prot).toMatch(/^[r-][w-][x-]$/);
    }
  });

  it('records host PFNs when asked (root can read them)', async () => {
    const snap = await snapshotProcess(child.pid!, { pfns: true });
    const all = snap.source.pfns!.flatMap((r) => r.pfns);
    expect(all.some((f) => f !== 0)).toBe(true);
  });
});

describe('snapshot of a node child', () => {
  it('rebuilds a larger address space (V8 heaps, libraries) with the same VMAs and pagemap bits', async () => {
    const { child } = await start(process.execPath, ['-e', 'const b = Buffer.alloc(1 << 20, 1); console.log("ready"); setInterval(() => b[0]++, 1e6)']);
    try {
      const snap = await snapshotProcess(child.pid!);
      expect(snap.vmas.length).toBeGreaterThan(20);
      const r = await rebuild(snap, 'node.json');
      expect(r.checks.filter((c) => !c.passed).slice(0, 3)).toEqual([]);
      expect(r.ok).toBe(true);
      // A live V8 may touch pages after the snapshot, so the pagemap bits are compared with what the
      // snapshot read (its own expect blocks, passed above), not with the host's now.
      expectSameVmas(snap.vmas, r);
      const p = r.world!.processes.get('p')!;
      expect(p.rss.anon + p.rss.shmem).toBeGreaterThan(256);
    } finally {
      child.kill('SIGKILL');
    }
  });
});

describe('snapshot errors', () => {
  /** A saved /proc/<pid> with maps and a pagemap whose present entries carry PFN 0, as an unprivileged reader sees them. */
  function fakeProc(): string {
    const root = join(dir, 'proc');
    mkdirSync(join(root, '4242'), { recursive: true });
    writeFileSync(join(root, '4242', 'maps'), '00400000-00402000 rw-p 00000000 00:00 0 \n00500000-00501000 r--p 00000000 00:00 0 \n');
    const pm = Buffer.alloc((0x501000 / 4096) * 8);
    const exclusivePresent = (1n << 63n) | (1n << 56n);
    pm.writeBigUInt64LE(exclusivePresent, (0x400000 / 4096) * 8);
    pm.writeBigUInt64LE(exclusivePresent, (0x401000 / 4096) * 8);
    writeFileSync(join(root, '4242', 'pagemap'), pm);
    return root;
  }

  it('refuses --pfns when pagemap hides them, with a clear message', async () => {
    const procRoot = fakeProc();
    await expect(snapshotProcess(4242, { pfns: true, procRoot })).rejects.toThrow(/PFNs are hidden: .*CAP_SYS_ADMIN.*without --pfns/);
    // Without --pfns the same files make a scenario (no smaps: every VMA is scanned) that rebuilds and passes.
    const snap = await snapshotProcess(4242, { procRoot });
    expect(snap.source.notes.some((n) => n.includes('smaps could not be read'))).toBe(true);
    const r = await rebuild(snap, 'fake.json');
    expect(r.ok).toBe(true);
    const p = r.world!.processes.get('p')!;
    expect(p.vmas.map((v) => [v.start, v.end, v.prot])).toEqual([[0x400000, 0x402000, 'rw-'], [0x500000, 0x501000, 'r--']]);
    expect(p.rss.anon).toBe(2);
  });

  it('a process that does not exist, and bad usage', async () => {
    await expect(snapshotProcess(2 ** 30)).rejects.toThrow(/does not exist \(no such process\?\)/);
    let io = capture();
    expect(await snapshotCommand(['nope'], io)).toBe(2);
    expect(io.stderr).toMatch(/one process id is needed, got nope/);
    io = capture();
    expect(await snapshotCommand([String(2 ** 30), '-o', join(dir, 'x.json')], io)).toBe(1);
    expect(io.stderr).toMatch(/^ptemu snapshot: maps: .* does not exist/);
    io = capture();
    expect(await snapshotCommand(['--help'], io)).toBe(0);
    expect(io.stdout).toContain('Usage: ptemu snapshot <pid> [-o snap.json|snap.yaml] [--pfns]');
  });
});
