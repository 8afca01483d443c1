// `ptemu replay`: the trace readers on fixtures written by our own writers
// (exact accesses), malformed records, compression, and replays of files
// checked against the same accesses replayed through the API.
//
// The fixtures in test/fixtures/traces are made by the writers; the first
// test checks they still are. To remake them after changing a writer or a
// fixture below: PTEMU_REGEN_FIXTURES=1 npx vitest run test/cli-replay.test.ts

import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, readFileSync, writeFileSync, rmSync, copyFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync, gzipSync } from 'node:zlib';
import { spawnSync } from 'node:child_process';
import { Machine, Trace, type TlbStats } from '../src/index.js';
import {
  TraceWriter, TraceReader, readAllAccesses, TraceFormatError, formatFromName, sniffFormat, RAW_HEADER_BYTES,
  type TraceWriteRecord,
} from '../src/cli/traceformats.js';
import { replayFile, formatSummary, summaryCsv, mapSnapshot, type ReplayFileResult } from '../src/cli/replay.js';
import { replayCommand, parseCount } from '../src/cli/commands/replay.js';
import type { TraceFormat } from '../src/cli/types.js';

const FIXTURES = fileURLToPath(new URL('./fixtures/traces/', import.meta.url));
const fx = (name: string): string => join(FIXTURES, name);
const MiB = 1 << 20;
const hasXz = spawnSync('xz', ['--version']).status === 0;
const hasValgrind = spawnSync('which', ['valgrind']).status === 0;

let tmp = '';
beforeAll(() => { tmp = mkdtempSync(join(tmpdir(), 'ptemu-replay-')); });
afterAll(() => { rmSync(tmp, { recursive: true, force: true }); });

// ---- the fixtures, as written by the writers -------------------------------------------------

const r = (addr: number | bigint, kind: TraceWriteRecord['kind'], size?: number): TraceWriteRecord => (size === undefined ? { addr, kind } : { addr, kind, size });

/** A tiny program's lackey log: banner lines, M records, page-crossing accesses, addresses above 4 GiB. */
const LACKEY: TraceWriteRecord[] = [
  r(0x401000, 'x', 3), r(0x401003, 'x', 5), r(0x1ffefffff8, 'w', 8), r(0x601040, 'r', 8), r(0x601048, 'm', 4),
  r(0x401008, 'x', 2), r(0x601ffc, 'r', 8) /* crosses into 0x602000 */, r(0x401ffe, 'x', 4) /* crosses into 0x402000 */,
  r(0x7f0000001000, 'w', 16), r(0x601ffe, 'm', 4) /* a crossing modify: 2 loads, 2 stores */, r(0x100000000, 'r', 8), r(0x402000, 'x', 4),
];
type Expect = [number, 'r' | 'w' | 'x'];
const LACKEY_ACCESSES: Expect[] = [
  [0x401000, 'x'], [0x401000, 'x'], [0x1ffefff000, 'w'], [0x601000, 'r'], [0x601000, 'r'], [0x601000, 'w'],
  [0x401000, 'x'], [0x601000, 'r'], [0x602000, 'r'], [0x401000, 'x'], [0x402000, 'x'],
  [0x7f0000001000, 'w'], [0x601000, 'r'], [0x602000, 'r'], [0x601000, 'w'], [0x602000, 'w'], [0x100000000, 'r'], [0x402000, 'x'],
];

const PIN: TraceWriteRecord[] = [
  r(0x401000, 'x'), r(0x601040, 'r'), r(0x401004, 'x'), r(0x1ffefffff8, 'w'), r(0x401008, 'x'), r(0x7f0000001000, 'r'),
  r(0x601048, 'm'), r(0x40100c, 'x'), r(0x100000000, 'r'),
];
const PIN_ACCESSES: Expect[] = [
  [0x601000, 'r'], [0x1ffefff000, 'w'], [0x7f0000001000, 'r'], [0x601000, 'r'], [0x601000, 'w'], [0x100000000, 'r'],
];

const CHAMPSIM: TraceWriteRecord[] = [
  r(0x401000, 'x'), r(0x601040, 'r'),
  r(0x401004, 'x'), r(0x1ffefffff8, 'w'),
  r(0x401008, 'x'), r(0x601040, 'r'), r(0x602000, 'r'), r(0x7f0000001000, 'r'), r(0x100000000, 'r'), r(0x601048, 'w'), r(0x1ffefffff0, 'w'),
  r(0x402000, 'x'),
];
const CHAMPSIM_ACCESSES: Expect[] = [
  [0x401000, 'x'], [0x601000, 'r'],
  [0x401000, 'x'], [0x1ffefff000, 'w'],
  [0x401000, 'x'], [0x601000, 'r'], [0x602000, 'r'], [0x7f0000001000, 'r'], [0x100000000, 'r'], [0x601000, 'w'], [0x1ffefff000, 'w'],
  [0x402000, 'x'],
];

const RAW: TraceWriteRecord[] = [
  r(0x401000, 'x'), r(0x601040, 'r'), r(0x601048, 'w'), r(0x7f0000001000, 'r'), r(0x402000, 'x'), r(0x1ffefffff8, 'm'),
];
const RAW_ACCESSES: Expect[] = [
  [0x401000, 'x'], [0x601000, 'r'], [0x601000, 'w'], [0x7f0000001000, 'r'], [0x402000, 'x'], [0x1ffefff000, 'r'], [0x1ffefff000, 'w'],
];

interface Fixture { name: string; format: TraceFormat; write(w: TraceWriter): void }

const lackeyBody = (w: TraceWriter): void => {
  w.line('==4242== Lackey, an example Valgrind tool').line('==4242== Command: ./tiny').line('==4242== ');
  for (const x of LACKEY) w.add(x.addr, x.kind, x.size);
  w.line('==4242== ').line('==4242== Counted 1 call to main()');
};
const records = (list: TraceWriteRecord[]) => (w: TraceWriter): void => { for (const x of list) w.add(x.addr, x.kind, x.size); };

const FIXTURE_LIST: Fixture[] = [
  { name: 'small.lackey', format: 'lackey', write: lackeyBody },
  { name: 'small.lackey.gz', format: 'lackey', write: lackeyBody },
  { name: 'small.lackey.xz', format: 'lackey', write: lackeyBody },
  { name: 'small.pinatrace', format: 'pinatrace', write: records(PIN) },
  { name: 'small.champsim', format: 'champsim', write: records(CHAMPSIM) },
  { name: 'small.champsim.xz', format: 'champsim', write: records(CHAMPSIM) },
  { name: 'small.ptr', format: 'raw', write: records(RAW) },
  { name: 'small.ptr.gz', format: 'raw', write: records(RAW) },
  {
    // Lines 4-7 are malformed: program output, a missing size, an unknown record, a bad digit.
    name: 'bad.lackey', format: 'lackey', write: (w) => {
      w.line('==7== Lackey').add(0x401000, 'x', 3).add(0x601040, 'r', 8)
        .line('hello from the program').line(' S 1ffefffff8').line(' X 0601040,8').line(' L 0601zz0,8')
        .add(0x401004, 'x', 2);
    },
  },
  {
    // Lines 2 and 4 are malformed.
    name: 'bad.pinatrace', format: 'pinatrace', write: (w) => {
      w.line('0x401000: R 0x601040').line('0x401004: X 0x601048').line('0x401008: W 0x601050').line('garbage');
    },
  },
];

/** What a trace file holds once decompressed. */
function plainBytes(path: string): Buffer {
  const b = readFileSync(path);
  if (path.endsWith('.gz')) return gunzipSync(b);
  if (path.endsWith('.xz')) return spawnSync('xz', ['-dc', path], { maxBuffer: 1 << 26 }).stdout;
  return b;
}

async function writeFixture(dir: string, f: Fixture): Promise<string> {
  const path = join(dir, f.name);
  const w = new TraceWriter(path, f.format);
  f.write(w);
  await w.close();
  return path;
}

function decode(words: Uint32Array, count: number): Expect[] {
  const out: Expect[] = [];
  for (let i = 0; i < count; i++) {
    const lo = words[2 * i]!, hi = words[2 * i + 1]!;
    out.push([hi * 2 ** 32 + ((lo & ~0xfff) >>> 0), (['r', 'w', 'x'] as const)[lo & 3]!]);
  }
  return out;
}

async function accessesOf(path: string, opts: Parameters<typeof readAllAccesses>[1] = {}): Promise<Expect[]> {
  const a = await readAllAccesses(path, opts);
  return decode(a.words, a.count);
}

describe('fixtures', () => {
  it('are what the writers produce', async () => {
    if (process.env.PTEMU_REGEN_FIXTURES === '1') for (const f of FIXTURE_LIST) await writeFixture(FIXTURES, f);
    for (const f of FIXTURE_LIST) {
      if (f.name.endsWith('.xz') && !hasXz) continue;
      const fresh = await writeFixture(tmp, f);
      expect(plainBytes(fx(f.name)).equals(plainBytes(fresh)), f.name).toBe(true);
      expect(statSync(fx(f.name)).size).toBeLessThan(50_000);
    }
  });
});

// ---- readers ---------------------------------------------------------------------------------

describe('readers', () => {
  it('lackey: fetches, loads, stores, modifies as a load and a store, page-crossing accesses on both pages, banners ignored', async () => {
    const a = await readAllAccesses(fx('small.lackey'));
    expect(a.format).toBe('lackey');
    expect(a.skipped).toBe(0);
    expect(decode(a.words, a.count)).toEqual(LACKEY_ACCESSES);
    const s = await replayFile({ trace: fx('small.lackey'), progress: false, memory: '256MiB' });
    expect([s.accesses, s.ifetches, s.loads, s.stores]).toEqual([18, 6, 7, 5]);
  });

  it('pinatrace: R and W lines, #eof ignored, no fetches', async () => {
    expect(readFileSync(fx('small.pinatrace'), 'latin1')).toContain('0x401008: R 0x7f0000001000\n');
    expect(readFileSync(fx('small.pinatrace'), 'latin1').endsWith('#eof\n')).toBe(true);
    const a = await readAllAccesses(fx('small.pinatrace'));
    expect(a.format).toBe('pinatrace');
    expect(decode(a.words, a.count)).toEqual(PIN_ACCESSES);
    const s = await replayFile({ trace: fx('small.pinatrace'), progress: false, memory: '256MiB' });
    expect([s.accesses, s.ifetches, s.loads, s.stores]).toEqual([6, 0, 4, 2]);
  });

  it('champsim: 64-byte input_instr records, a fetch then loads (source_memory) then stores (destination_memory)', async () => {
    const bytes = readFileSync(fx('small.champsim'));
    expect(bytes.length).toBe(4 * 64);
    // The layout of inc/trace_instruction.h: ip @0, destination_memory @16, source_memory @32.
    expect(bytes.readBigUInt64LE(2 * 64)).toBe(0x401008n);
    expect(bytes.readBigUInt64LE(2 * 64 + 16)).toBe(0x601048n);
    expect(bytes.readBigUInt64LE(2 * 64 + 32 + 24)).toBe(0x100000000n);
    const a = await readAllAccesses(fx('small.champsim'));
    expect(a.format).toBe('champsim');
    expect(decode(a.words, a.count)).toEqual(CHAMPSIM_ACCESSES);
    const s = await replayFile({ trace: fx('small.champsim'), progress: false, memory: '256MiB' });
    expect([s.accesses, s.ifetches, s.loads, s.stores]).toEqual([12, 4, 5, 3]);
  });

  it('raw: a 16-byte header, then u64 page | kind records', async () => {
    const bytes = readFileSync(fx('small.ptr'));
    expect(bytes.subarray(0, 8).toString('latin1')).toBe('PTEMURAW');
    expect(bytes.readUInt32LE(8)).toBe(1);
    expect(bytes.length).toBe(RAW_HEADER_BYTES + 7 * 8);
    expect(bytes.readBigUInt64LE(16 + 3 * 8)).toBe(0x7f0000001000n);
    expect(await accessesOf(fx('small.ptr'))).toEqual(RAW_ACCESSES);
    const s = await replayFile({ trace: fx('small.ptr'), progress: false, memory: '256MiB' });
    expect([s.accesses, s.ifetches, s.loads, s.stores]).toEqual([7, 2, 3, 2]);
  });

  it('formats come from names, else from the first bytes', async () => {
    expect(formatFromName('/x/ls.lackey.gz')).toBe('lackey');
    expect(formatFromName('600.perlbench_s-210B.champsimtrace.xz')).toBe('champsim');
    expect(formatFromName('run.ptr')).toBe('raw');
    expect(formatFromName('gcc.pinatrace.out')).toBe('pinatrace');
    expect(formatFromName('trace.bin')).toBeUndefined();
    expect(sniffFormat(readFileSync(fx('small.lackey')))).toBe('lackey');
    expect(sniffFormat(readFileSync(fx('small.pinatrace')))).toBe('pinatrace');
    expect(sniffFormat(readFileSync(fx('small.champsim')))).toBe('champsim');
    expect(sniffFormat(readFileSync(fx('small.ptr')))).toBe('raw');
    for (const [src, want] of [['small.lackey', LACKEY_ACCESSES], ['small.pinatrace', PIN_ACCESSES], ['small.champsim', CHAMPSIM_ACCESSES], ['small.ptr.gz', RAW_ACCESSES]] as const) {
      const anon = join(tmp, `anonymous-${src.replace(/\./g, '-')}`);
      copyFileSync(fx(src), anon);
      expect(await accessesOf(anon), src).toEqual(want);
    }
  });

  it('gzip and xz are read transparently (by content, whatever the name)', async () => {
    expect(await accessesOf(fx('small.lackey.gz'))).toEqual(LACKEY_ACCESSES);
    expect(await accessesOf(fx('small.ptr.gz'))).toEqual(RAW_ACCESSES);
    if (hasXz) {
      expect(await accessesOf(fx('small.lackey.xz'))).toEqual(LACKEY_ACCESSES);
      expect(await accessesOf(fx('small.champsim.xz'))).toEqual(CHAMPSIM_ACCESSES);
    }
    const renamed = join(tmp, 'renamed.lackey');
    copyFileSync(fx('small.lackey.gz'), renamed);
    expect(await accessesOf(renamed)).toEqual(LACKEY_ACCESSES);
  });

  it.skipIf(!hasXz)('an .xz trace without the xz program is a clear error', async () => {
    const path = process.env.PATH;
    process.env.PATH = join(tmp, 'no-such-dir');
    try {
      await expect(readAllAccesses(fx('small.lackey.xz'))).rejects.toThrow(/needs the xz program/);
    } finally {
      process.env.PATH = path;
    }
  });

  it('a corrupt gzip stream names the file', async () => {
    const bad = join(tmp, 'corrupt.lackey.gz');
    const gz = gzipSync(readFileSync(fx('small.lackey')));
    writeFileSync(bad, gz.subarray(0, gz.length - 12));
    await expect(readAllAccesses(bad)).rejects.toThrow(/corrupt\.lackey\.gz/);
  });

  it('batches of any size, and records split across read chunks, give the same accesses', async () => {
    // ~6 MB of lackey text: more than one 4 MiB read chunk, and many 256 KiB gzip chunks.
    const n = 400_000;
    const want = new Uint32Array(n * 4); // an 'm' is two accesses
    const lackey = new TraceWriter(join(tmp, 'big.lackey'), 'lackey');
    const raw = new TraceWriter(join(tmp, 'big.ptr'), 'raw');
    let x = 12345, k = 0;
    for (let i = 0; i < n; i++) {
      x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
      const addr = 0x7f00_0000_0000 + (x % (1 << 30)) * 8;
      const kind = (['r', 'w', 'x', 'm'] as const)[i % 4]!;
      lackey.add(addr, kind, 8);
      raw.add(addr, kind);
      const page = (addr % 2 ** 32) & ~0xfff, hi = Math.floor(addr / 2 ** 32);
      for (const c of kind === 'm' ? [0, 1] : [kind === 'r' ? 0 : kind === 'w' ? 1 : 2]) { want[2 * k] = page | c; want[2 * k + 1] = hi; k++; }
    }
    await lackey.close();
    await raw.close();
    writeFileSync(join(tmp, 'big.lackey.gz'), gzipSync(readFileSync(join(tmp, 'big.lackey')), { level: 1 }));
    const expected = want.subarray(0, 2 * k);
    for (const [file, batchSize] of [['big.lackey', undefined], ['big.lackey', 1000], ['big.lackey.gz', 4096], ['big.ptr', 777], ['big.ptr', undefined]] as const) {
      const a = await readAllAccesses(join(tmp, file), batchSize ? { batchSize } : {});
      expect(a.count, file).toBe(k);
      expect(Buffer.from(a.words.buffer, a.words.byteOffset, a.words.byteLength).equals(Buffer.from(expected.buffer, 0, expected.byteLength)), `${file} ${batchSize}`).toBe(true);
    }
    // A batch is never bigger than asked for.
    let most = 0;
    for await (const b of new TraceReader(join(tmp, 'big.lackey.gz'), { batchSize: 4096 }).batches()) most = Math.max(most, b.count);
    expect(most).toBeLessThanOrEqual(4096);
  });
});

// ---- malformed records -----------------------------------------------------------------------

describe('malformed records', () => {
  it('lackey: an error names the file and the line; skipBad counts them', async () => {
    const err = await readAllAccesses(fx('bad.lackey')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TraceFormatError);
    expect((err as TraceFormatError).line).toBe(4);
    expect((err as Error).message).toMatch(/bad\.lackey:4: .*"hello from the program"/);
    const a = await readAllAccesses(fx('bad.lackey'), { skipBad: true });
    expect(a.skipped).toBe(4);
    expect(decode(a.words, a.count)).toEqual([[0x401000, 'x'], [0x601000, 'r'], [0x401000, 'x']]);
    const s = await replayFile({ trace: fx('bad.lackey'), skipBad: true, progress: false, memory: '256MiB' });
    expect([s.accesses, s.skipped]).toEqual([3, 4]);
    await expect(replayFile({ trace: fx('bad.lackey'), progress: false, memory: '256MiB' })).rejects.toThrow(/bad\.lackey:4:/);
  });

  it('bad lines across read chunks are counted once, with the right line numbers', async () => {
    // ~5 MB: bad lines straddle 4 MiB read chunks and 256 KiB gzip chunks.
    const path = join(tmp, 'sprinkled.lackey');
    const w = new TraceWriter(path, 'lackey');
    let bad = 0, firstBad = 0, good = 0, bytes = 0;
    const CHUNK = 4 << 20; // the plain reader's chunk
    let straddled = false;
    for (let line = 1; line <= 300_000; line++) {
      const text = line % 997 === 0 ? (line % 2 ? ' L 0601zz0,8 and some more text to make the line long' : 'program output')
        : ` L ${(0x601000 + (line % 512) * 8).toString(16).padStart(8, '0')},8`;
      // One bad line exactly across the first chunk boundary.
      const across = !straddled && bytes + 120 > CHUNK;
      const out = across ? ' L 0601zz0,8 ' + 'x'.repeat(100) : text;
      if (across) straddled = true;
      w.line(out);
      if (across && !(bytes < CHUNK && bytes + out.length > CHUNK)) throw new Error('the test lost its chunk boundary');
      bytes += out.length + 1;
      if (out === text && line % 997 !== 0) good++;
      else { bad++; firstBad ||= line; }
    }
    await w.close();
    writeFileSync(`${path}.gz`, gzipSync(readFileSync(path), { level: 1 }));
    for (const p of [path, `${path}.gz`]) {
      const a = await readAllAccesses(p, { skipBad: true });
      expect([a.skipped, a.count], p).toEqual([bad, good]);
      await expect(readAllAccesses(p), p).rejects.toThrow(new RegExp(`sprinkled\\.lackey(\\.gz)?:${firstBad}: `));
    }
  });

  it('a file without newlines is not taken for a text trace', async () => {
    const path = join(tmp, 'blob.lackey');
    writeFileSync(path, Buffer.alloc(3 << 20, 0x41));
    await expect(readAllAccesses(path, { skipBad: true })).rejects.toThrow(/no end of line/);
  });

  it('pinatrace: line numbers; skipBad counts', async () => {
    await expect(readAllAccesses(fx('bad.pinatrace'))).rejects.toThrow(/bad\.pinatrace:2: malformed pinatrace record "0x401004: X 0x601048"/);
    const a = await readAllAccesses(fx('bad.pinatrace'), { skipBad: true });
    expect(a.skipped).toBe(2);
    expect(decode(a.words, a.count)).toEqual([[0x601000, 'r'], [0x601000, 'w']]);
  });

  it('champsim: a record that is not an input_instr, and a truncated last record, by record number', async () => {
    const path = join(tmp, 'bad.champsim');
    const good = readFileSync(fx('small.champsim'));
    const odd = Buffer.from(good.subarray(0, 64));
    odd[8] = 7; // is_branch 7
    writeFileSync(path, Buffer.concat([good.subarray(0, 128), odd, good.subarray(128, 192), good.subarray(0, 10)]));
    await expect(readAllAccesses(path)).rejects.toThrow(/bad\.champsim: record 3: is_branch 7/);
    const a = await readAllAccesses(path, { skipBad: true });
    expect(a.skipped).toBe(2);
    expect(decode(a.words, a.count)).toEqual(CHAMPSIM_ACCESSES.slice(0, 4 + 7));
    writeFileSync(path, Buffer.concat([good, good.subarray(0, 10)]));
    await expect(readAllAccesses(path)).rejects.toThrow(/record 5: truncated: 10 of 64 bytes/);
  });

  it('raw: bad low bits and a truncated tail, by record number, on the fast path and through gzip', async () => {
    const good = readFileSync(fx('small.ptr'));
    const bad = Buffer.from(good);
    bad.writeUInt32LE(0x601003, 16 + 2 * 8); // kind 3
    const path = join(tmp, 'bad.ptr');
    writeFileSync(path, Buffer.concat([bad, Buffer.from([1, 2, 3])]));
    writeFileSync(`${path}.gz`, gzipSync(readFileSync(path)));
    for (const p of [path, `${path}.gz`]) {
      await expect(readAllAccesses(p)).rejects.toThrow(/record 3: low bits 0x3/);
      const a = await readAllAccesses(p, { skipBad: true });
      expect(a.skipped, p).toBe(2);
      expect(decode(a.words, a.count)).toEqual([...RAW_ACCESSES.slice(0, 2), ...RAW_ACCESSES.slice(3)]);
    }
    writeFileSync(path, Buffer.from('PTEMURAW\x02\x00\x00\x00\x00\x00\x00\x00', 'latin1'));
    await expect(readAllAccesses(path)).rejects.toThrow(/version 2/);
    await expect(readAllAccesses(fx('small.lackey'), { format: 'raw' })).rejects.toThrow(/not a raw ptemu trace/);
  });
});

// ---- replay ----------------------------------------------------------------------------------

function sum(b: TlbStats['l1Hits']): number { return b['4K'] + b['64K'] + b['2M'] + b['1G']; }

/**
 * The same accesses through the API: each 2 MiB region they touch mapped
 * up front (rwx where a fetch lands), then m.replay, batch by batch on the
 * CPUs in turn.
 */
async function replayDirect(path: string, opts: { arch?: 'x86_64' | 'arm64'; cpus?: number; batch?: number; thp?: 'never' | 'always' } = {}) {
  const a = await readAllAccesses(path);
  const m = await Machine.create({ memory: '256MiB', arch: opts.arch ?? 'x86_64', cpus: opts.cpus ?? 1, thp: opts.thp ?? 'never' });
  const p = m.spawn();
  const regions = new Map<number, boolean>();
  for (const [addr, kind] of decode(a.words, a.count)) {
    const reg = Math.floor(addr / (2 * MiB));
    regions.set(reg, (regions.get(reg) ?? false) || kind === 'x');
  }
  for (const [reg, x] of [...regions].sort((u, v) => u[0] - v[0])) p.mmap({ addr: reg * 2 * MiB, length: 2 * MiB, prot: x ? 'rwx' : 'rw', fixed: true });
  const batch = opts.batch ?? a.count;
  const total = { l1: 0, l2: 0, walks: 0, walkRefs: 0, minor: 0, major: 0 };
  const all = decode(a.words, a.count);
  for (let i = 0, b = 0; i < all.length; i += batch, b++) {
    const t = new Trace(batch);
    for (const [addr, kind] of all.slice(i, i + batch)) t.push(addr, kind);
    const s = m.replay(p, t, { cpu: b % (opts.cpus ?? 1) });
    total.l1 += sum(s.tlb!.l1Hits); total.l2 += sum(s.tlb!.l2Hits); total.walks += s.tlb!.walks; total.walkRefs += s.tlb!.walkRefs;
    total.minor += s.faults.minor; total.major += s.faults.major;
  }
  const rss = p.rss;
  return { ...total, pageTableBytes: p.pageTableBytes, rss: rss.anon + rss.file + rss.shmem, count: a.count };
}

function fromSummary(s: ReplayFileResult) {
  return { l1: s.l1Hits, l2: s.l2Hits, walks: s.walks, walkRefs: s.walkRefs, minor: s.faults.minor, major: s.faults.major, pageTableBytes: s.pageTableBytes, rss: s.rss, count: s.accesses };
}

describe('replayFile', () => {
  for (const name of ['small.lackey', 'small.champsim', 'small.ptr', 'small.pinatrace']) {
    it(`${name}: the summary equals the same accesses replayed through the API`, async () => {
      const s = await replayFile({ trace: fx(name), progress: false, memory: '256MiB' });
      const d = await replayDirect(fx(name));
      expect(fromSummary(s)).toEqual(d);
      expect(s.signals).toBe(0);
      expect(s.walks).toBeGreaterThan(0);
      expect(s.missRate).toBeCloseTo(s.walks / s.accesses, 12);
      expect(s.walksPer1k).toBeCloseTo((s.walks * 1000) / s.accesses, 9);
    });
  }

  it('several CPUs: batches round-robin, counters summed over the CPUs', async () => {
    const trace = join(tmp, 'rr.ptr');
    const w = new TraceWriter(trace, 'raw');
    for (let i = 0; i < 3000; i++) w.add(0x7f00_0000_0000 + ((i * 37) % 256) * 4096, i % 3 === 0 ? 'w' : 'r');
    await w.close();
    const s = await replayFile({ trace, cpus: 3, batch: 256, progress: false, memory: '256MiB' });
    expect(s.cpus).toBe(3);
    expect(fromSummary(s)).toEqual(await replayDirect(trace, { cpus: 3, batch: 256 }));
    const one = await replayFile({ trace, progress: false, memory: '256MiB' });
    expect(one.walks).toBeLessThan(s.walks); // three cold TLBs walk more than one
  });

  it('limit stops after N accesses', async () => {
    const s = await replayFile({ trace: fx('small.lackey'), limit: 5, progress: false, memory: '256MiB' });
    expect([s.accesses, s.ifetches, s.loads, s.stores]).toEqual([5, 2, 2, 1]);
    const z = await replayFile({ trace: fx('small.lackey'), limit: 0, progress: false, memory: '256MiB' });
    expect(z.accesses).toBe(0);
  });

  it('a region first mapped rw that later sees a fetch becomes executable; addresses beyond user space signal', async () => {
    const trace = join(tmp, 'upgrade.ptr');
    const w = new TraceWriter(trace, 'raw');
    for (let i = 0; i < 40; i++) w.add(0x500000 + i * 4096, 'r');
    w.add(0x500000, 'x').add(0x8000, 'r').add(0xffff_8000_0000_0000n, 'r').add(0x7fff_ffff_f000, 'r');
    await w.close();
    const s = await replayFile({ trace, batch: 16, progress: false, memory: '256MiB' });
    // Below mmap_min_addr, in the kernel half, and the top page of the lower half (beyond TASK_SIZE on x86-64).
    expect(s.signals).toBe(3);
    expect(s.accesses).toBe(44);
    expect(s.ifetches).toBe(1);
  });

  it('a snapshot gives the address space instead of first-touch mapping', async () => {
    const snap = join(tmp, 'snap.json');
    writeFileSync(snap, JSON.stringify({ vmas: [
      { start: '0x400000', end: '0x403000', prot: 'r-x' },
      { start: 0x600000, end: 0x603000, prot: 'rw-' },
      { start: '0x1ffeffe000', end: '0x1fff000000', prot: 'rw-' },
      { start: '0x7f0000000000', end: '0x7f0000002000', prot: 'rw-' },
      { start: 0x100000000, end: 0x100001000, prot: 'rw-', shared: true, path: '/dev/shm/x' },
    ] }));
    const s = await replayFile({ trace: fx('small.lackey'), snapshot: snap, progress: false, memory: '256MiB' });
    expect(s.signals).toBe(0);
    expect(s.regions).toBe(5);
    expect(s.accesses).toBe(18);
    expect(s.rss).toBeGreaterThan(0);
    // Without the data mapping, the accesses there fault with SIGSEGV and the replay goes on.
    writeFileSync(snap, JSON.stringify({ vmas: [{ start: '0x400000', end: '0x403000', prot: 'r-x' }] }));
    const t = await replayFile({ trace: fx('small.lackey'), snapshot: snap, progress: false, memory: '256MiB' });
    expect(t.signals).toBe(18 - 6);
    writeFileSync(snap, '{"regions": []}');
    await expect(replayFile({ trace: fx('small.lackey'), snapshot: snap, progress: false, memory: '256MiB' })).rejects.toThrow(/expected \{ "vmas"/);
    const m = await Machine.create({ memory: '64MiB' });
    writeFileSync(snap, JSON.stringify({ vmas: [{ start: 'zz', end: 1 }] }));
    await expect(mapSnapshot(m.spawn(), snap)).rejects.toThrow(/vmas\[0\]\.start/);
  });

  it('larger pages, fewer walks: 4k vs thp (x86-64); 4k vs mthp-64k vs contpte vs thp (arm64)', async () => {
    // 32 MiB written page by page, then 200k random loads over it.
    const trace = join(tmp, 'large.ptr');
    const base = 0x7f00_0000_0000, pages = 8192;
    const w = new TraceWriter(trace, 'raw');
    for (let i = 0; i < pages; i++) w.add(base + i * 4096, 'w');
    let x = 99;
    for (let i = 0; i < 200_000; i++) {
      x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
      w.add(base + (x % pages) * 4096, 'r');
    }
    await w.close();
    const run = (arch: 'x86_64' | 'arm64', pages: '4k' | 'thp' | 'mthp-64k' | 'contpte') => replayFile({ trace, arch, pages, progress: false, memory: '256MiB' });
    const x4k = await run('x86_64', '4k'), xthp = await run('x86_64', 'thp');
    expect(xthp.walks * 20).toBeLessThan(x4k.walks);
    expect(xthp.faults.minor * 100).toBeLessThan(x4k.faults.minor);
    const a4k = await run('arm64', '4k'), a64k = await run('arm64', 'mthp-64k'), acont = await run('arm64', 'contpte'), athp = await run('arm64', 'thp');
    expect(acont.walks * 5).toBeLessThan(a4k.walks);
    expect(acont.walks * 5).toBeLessThan(a64k.walks); // the same 64 KiB folios, but one TLB entry per 4 KiB without contiguous PTEs
    expect(a64k.faults.minor * 10).toBeLessThan(a4k.faults.minor);
    expect(athp.walks).toBeLessThan(acont.walks);
    await expect(run('x86_64', 'contpte')).rejects.toThrow(/needs arch arm64/);
  });

  it('a TLB config from a JSON file', async () => {
    const cfg = join(tmp, 'tlb.json');
    writeFileSync(cfg, JSON.stringify({ arrays: [{ level: 1, kind: 'unified', sizes: ['4K', '2M'], entries: 2, ways: 2 }] }));
    const s = await replayFile({ trace: fx('small.lackey'), tlb: cfg, progress: false, memory: '256MiB' });
    const t = await replayFile({ trace: fx('small.lackey'), tlb: 'none', progress: false, memory: '256MiB' });
    expect(s.tlb).toBe(cfg);
    expect(s.walks).toBeLessThan(t.walks);
    expect(t.walks).toBeGreaterThanOrEqual(18);
    await expect(replayFile({ trace: fx('small.lackey'), tlb: join(tmp, 'nope.json'), progress: false })).rejects.toThrow(/neither a preset/);
  });

  it('functional mode counts faults but no TLB events', async () => {
    const s = await replayFile({ trace: fx('small.lackey'), mode: 'functional', progress: false, memory: '256MiB' });
    expect(s.mode).toBe('functional');
    expect([s.walks, s.l1Hits]).toEqual([0, 0]);
    expect(s.faults.minor).toBeGreaterThan(0);
    expect(formatSummary(s)).toContain('not modelled in functional mode');
  });

  it.skipIf(!hasValgrind)('a real valgrind lackey trace of /bin/true replays with every access mapped', async () => {
    const log = join(tmp, 'true.lackey');
    const v = spawnSync('valgrind', ['--tool=lackey', '--trace-mem=yes', `--log-file=${log}`, '/bin/true'], { timeout: 60_000 });
    expect(v.status, v.stderr?.toString()).toBe(0);
    const s = await replayFile({ trace: log, progress: false, memory: '256MiB' });
    expect(s.format).toBe('lackey');
    expect(s.skipped).toBe(0);
    expect(s.signals).toBe(0);
    expect(s.ifetches).toBeGreaterThan(10_000);
    expect(s.loads).toBeGreaterThan(1000);
    expect(s.stores).toBeGreaterThan(1000);
    expect(s.faults.minor).toBeGreaterThan(10);
    expect(s.l1Hits / s.accesses).toBeGreaterThan(0.9);
  }, 120_000);
  if (!hasValgrind) it.skip('valgrind is not installed: the real lackey trace test needs `valgrind` on PATH', () => {});
});

// ---- the command -----------------------------------------------------------------------------

function io() {
  const out: string[] = [], err: string[] = [];
  return { out, err, io: { out: (t: string) => { out.push(t); }, err: (t: string) => { err.push(t); } } };
}

describe('ptemu replay', () => {
  it('--help', async () => {
    const c = io();
    expect(await replayCommand(['--help'], c.io)).toBe(0);
    const help = c.out.join('');
    for (const flag of ['--format', '--arch', '--tlb', '--pages', '--cpus', '--mode', '--snapshot', '--skip-bad', '--limit', '--json', '--csv']) expect(help).toContain(flag);
  });

  it('prints the table and writes JSON and CSV', async () => {
    const c = io();
    const json = join(tmp, 'out.json'), csv = join(tmp, 'out.csv');
    expect(await replayCommand([fx('small.champsim'), '--pages', 'thp', '--memory', '256MiB', '--json', json, '--csv', csv, '--no-progress'], c.io)).toBe(0);
    expect(c.out.join('')).toMatch(/accesses\s+12 {2}\(loads 5, stores 3, fetches 4\)/);
    const s = JSON.parse(readFileSync(json, 'utf8')) as ReplayFileResult;
    expect(s).toMatchObject({ format: 'champsim', pages: 'thp', accesses: 12, arch: 'x86_64', tlb: 'skylake' });
    const [head, row] = readFileSync(csv, 'utf8').trim().split('\n');
    const cols = head!.split(','), vals = row!.split(',');
    expect(vals[cols.indexOf('walks')]).toBe(String(s.walks));
    expect(vals[cols.indexOf('faultsMinor')]).toBe(String(s.faults.minor));
    expect(summaryCsv([s, s]).trim().split('\n')).toHaveLength(3);
  });

  it('--json - writes only JSON to stdout', async () => {
    const c = io();
    expect(await replayCommand([fx('small.ptr'), '--json', '-', '--limit', '3', '--memory', '64MiB'], c.io)).toBe(0);
    expect(JSON.parse(c.out.join(''))).toMatchObject({ accesses: 3, format: 'raw' });
  });

  it('bad arguments exit 2, failed replays 1, with a message', async () => {
    for (const argv of [[], ['a', 'b'], ['x', '--pages', 'huge'], ['x', '--pages', 'contpte'], ['x', '--cpus', '0'], ['x', '--limit', 'lots'], ['x', '--bogus']]) {
      const c = io();
      expect(await replayCommand(argv, c.io), argv.join(' ')).toBe(2);
      expect(c.err.join('')).toMatch(/^ptemu replay: /);
    }
    const c = io();
    expect(await replayCommand([fx('bad.lackey'), '--memory', '64MiB'], c.io)).toBe(1);
    expect(c.err.join('')).toMatch(/bad\.lackey:4:/);
    const d = io();
    expect(await replayCommand([join(tmp, 'missing.lackey')], d.io)).toBe(1);
    expect(d.err.join('')).toMatch(/ENOENT/);
    const e = io();
    expect(await replayCommand([fx('bad.lackey'), '--skip-bad', '--memory', '64MiB'], e.io)).toBe(0);
    expect(e.out.join('')).toMatch(/skipped\s+4 malformed records/);
  });

  it('counts take k, M, G', () => {
    expect(parseCount('10M', '--limit')).toBe(10_000_000);
    expect(parseCount('2.5k', '--limit')).toBe(2500);
    expect(() => parseCount('-1', '--limit')).toThrow();
  });
});
