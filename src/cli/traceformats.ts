// Memory-access trace files from real tools, read as a stream of batches of
// accesses (never the whole file) in the layout the core replays: two u32
// words per access, low word = address bits 12-31 | kind (0 load, 1 store,
// 2 instruction fetch), high word = address bits 32-63 (src/trace.ts).
// Also writers for every format, so tests and benchmarks make their own
// traces.
//
// Formats:
//  - lackey: `valgrind --tool=lackey --trace-mem=yes` output. `I  addr,size`
//    instruction fetch, ` L addr,size` load, ` S addr,size` store,
//    ` M addr,size` modify (a load then a store). Valgrind's own lines
//    (`==pid==`, `--pid--`, `**pid**`) and blank lines are ignored; any other
//    line is malformed (a program's output mixed into the log, or not lackey).
//    An access whose bytes cross a page boundary touches both pages, as the
//    MMU translates both: it becomes two accesses of the same kind.
//  - pinatrace: Pin's ManualExamples/pinatrace.cpp, `ip: R addr` / `ip: W addr`
//    (printf %p: `0x...`, `(nil)` for 0). Lines starting with `#` (`#eof`) are
//    ignored. The tool logs data accesses only: the ip of a memory
//    instruction is not an instruction fetch trace, so no fetches are made.
//  - champsim: ChampSim's binary trace, one 64-byte `input_instr` per
//    instruction (inc/trace_instruction.h): ip u64 @0, is_branch u8 @8,
//    branch_taken u8 @9, destination_registers[2] u8 @10, source_registers[4]
//    u8 @12, destination_memory[2] u64 @16, source_memory[4] u64 @32, little
//    endian. Each record is an instruction fetch at ip, then a load per
//    nonzero source_memory, then a store per nonzero destination_memory.
//    is_branch and branch_taken above 1 mark the record malformed (the only
//    check the format allows; it catches a wrong --format quickly).
//  - raw: ptemu's own format, made to be replayed at memory speed:
//
//      offset 0   8 bytes  magic "PTEMURAW"
//      offset 8   u32 LE   version = 1
//      offset 12  u32 LE   flags = 0 (reserved; readers reject other values)
//      offset 16  u64 LE   one per access: bits 0-1 kind (0 load, 1 store,
//                          2 fetch; 3 is invalid), bits 2-11 zero,
//                          bits 12-63 the page address (address & ~0xfff)
//
//    A record is exactly the core's replay record, so an uncompressed file is
//    read straight into the batch buffer and handed on with no conversion;
//    the only per-access work is one compare that checks the low 12 bits.
//
// Compression is recognised by its magic bytes (gzip 1f 8b, xz fd 37 7a 58 5a
// 00), whatever the name: gzip is inflated with node:zlib, xz by an `xz -dc`
// child process.

import { open, stat, type FileHandle } from 'node:fs/promises';
import { createReadStream, openSync, writeSync, closeSync } from 'node:fs';
import { createGunzip, gzipSync } from 'node:zlib';
import { spawn, spawnSync } from 'node:child_process';
import { basename } from 'node:path';
import type { Readable } from 'node:stream';
import type { TraceFormat } from './types.js';

export const KIND_LOAD = 0;
export const KIND_STORE = 1;
export const KIND_FETCH = 2;

export const TRACE_FORMATS: readonly TraceFormat[] = ['lackey', 'pinatrace', 'champsim', 'raw'];

/**
 * Accesses per batch unless told otherwise: 2 MiB of records, big enough
 * that per-batch costs vanish (m.replay's counter reads, one mmap check per
 * region) and small enough to stay in cache between the passes over a batch
 * (read, check, region scan, copy into the core, replay).
 */
export const DEFAULT_BATCH = 1 << 18;
/** The most accesses one input record can make (a ChampSim instruction: a fetch, 4 loads, 2 stores). */
const MAX_PER_RECORD = 8;

export const RAW_MAGIC = 'PTEMURAW';
export const RAW_VERSION = 1;
export const RAW_HEADER_BYTES = 16;
export const CHAMPSIM_RECORD_BYTES = 64;

/** The longest text line taken (a file without newlines is not a text trace). */
const MAX_LINE = 1 << 20;
/** Bytes read from a plain file per call (two buffers: the next is read while the current is parsed). */
const READ_CHUNK = 4 << 20;

// ---- batches and errors ----------------------------------------------------------------------

/** A reusable buffer of accesses: `count` records in `words` (two u32 each, as Trace.words). */
export class AccessBatch {
  readonly capacity: number;
  readonly words: Uint32Array;
  /** The same memory as bytes (file data is copied or read into it directly). */
  readonly bytes: Uint8Array;
  count = 0;

  constructor(capacity: number) {
    this.capacity = capacity;
    this.words = new Uint32Array(capacity * 2);
    this.bytes = new Uint8Array(this.words.buffer);
  }
}

/**
 * A malformed record, named by file and line (text formats) or record number
 * (binary formats), 1-based; or a damaged compressed stream, named by the
 * compressed byte offset where decompression failed.
 */
export class TraceFormatError extends Error {
  readonly file: string;
  readonly line: number | undefined;
  readonly record: number | undefined;
  readonly byte: number | undefined;

  constructor(file: string, where: { line?: number; record?: number; byte?: number }, detail: string) {
    super(where.line !== undefined ? `${file}:${where.line}: ${detail}`
      : where.byte !== undefined ? `${file}: byte ${where.byte}: ${detail}` : `${file}: record ${where.record ?? '?'}: ${detail}`);
    this.name = 'TraceFormatError';
    this.file = file;
    this.line = where.line;
    this.record = where.record;
    this.byte = where.byte;
  }
}

// ---- format and compression detection --------------------------------------------------------

export type Compression = 'none' | 'gzip' | 'xz';

/** Compression from a file's first bytes. */
export function compressionOf(head: Uint8Array): Compression {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.length >= 6 && head[0] === 0xfd && head[1] === 0x37 && head[2] === 0x7a && head[3] === 0x58 && head[4] === 0x5a && head[5] === 0x00) return 'xz';
  return 'none';
}

/** The format a file name implies (…lackey…, …champsim…, .ptr, …pin…), compression suffixes aside. */
export function formatFromName(path: string): TraceFormat | undefined {
  const name = basename(path).toLowerCase().replace(/\.(gz|xz)$/, '');
  if (name.includes('lackey')) return 'lackey';
  if (name.includes('champsim')) return 'champsim';
  if (name.endsWith('.ptr')) return 'raw';
  if (name.includes('pin')) return 'pinatrace';
  return undefined;
}

/** The format of decompressed data from its first bytes; undefined for empty or unrecognisable text. */
export function sniffFormat(head: Uint8Array): TraceFormat | undefined {
  if (head.length === 0) return undefined;
  if (head.length >= 8 && latin1(head, 0, 8) === RAW_MAGIC) return 'raw';
  const n = Math.min(head.length, 4096);
  for (let i = 0; i < n; i++) {
    const c = head[i]!;
    // Binary: ChampSim, the one format without a magic.
    if (c < 0x09 || (c > 0x0d && c < 0x20) || c > 0x7e) return 'champsim';
  }
  let line = '';
  for (const l of latin1(head, 0, n).split('\n')) if (l.trim() !== '') { line = l; break; }
  if (/^(==\d+==|--\d+--|\*\*\d+\*\*|I  [0-9a-fA-F]+,| [LSM] [0-9a-fA-F]+,)/.test(line)) return 'lackey';
  if (/^(#|0x[0-9a-fA-F]+: [RW] |\(nil\): )/.test(line)) return 'pinatrace';
  return undefined;
}

function latin1(b: Uint8Array, from: number, to: number): string {
  return Buffer.from(b.buffer, b.byteOffset + from, to - from).toString('latin1');
}

// ---- decoders --------------------------------------------------------------------------------

/**
 * Turns decompressed bytes into accesses. decode() takes whole records of
 * data[pos, end) while the batch has room for the largest record, and returns
 * where it stopped, always a record boundary: the caller carries the rest
 * over to the next chunk. With `final` the input ends at `end`, so a last
 * line without a newline is decoded and a partial binary record is malformed.
 */
interface Decoder {
  decode(data: Uint8Array, pos: number, end: number, out: AccessBatch, final: boolean): number;
  /** The line (text) or record (binary) being decoded, for errors found outside decode(). */
  where(): { line?: number; record?: number };
}

/** No room left for the largest record: decoders stop, the batch goes out. */
function isFull(b: AccessBatch): boolean { return b.capacity - b.count < MAX_PER_RECORD; }

/** Shared by decoders: where errors go, and the skip counter. */
class Damage {
  skipped = 0;
  constructor(readonly file: string, readonly skipBad: boolean) {}

  /** A malformed record: counted with skipBad, thrown otherwise. */
  bad(where: { line?: number; record?: number }, detail: string): void {
    if (!this.skipBad) throw new TraceFormatError(this.file, where, detail);
    this.skipped++;
  }
}

/** Hex digit values, -1 for other bytes. */
const HEX = new Int8Array(256).fill(-1);
for (let i = 0; i < 10; i++) HEX[0x30 + i] = i;
for (let i = 0; i < 6; i++) { HEX[0x41 + i] = 10 + i; HEX[0x61 + i] = 10 + i; }

const NL = 0x0a, CR = 0x0d, SP = 0x20, COMMA = 0x2c;

/** The line [pos, eol) for error messages, shortened. */
function quoteLine(d: Uint8Array, pos: number, eol: number): string {
  let e = eol;
  if (e > pos && d[e - 1] === CR) e--;
  const s = latin1(d, pos, Math.min(e, pos + 80));
  return JSON.stringify(e - pos > 80 ? `${s}…` : s);
}

/** End of the line starting at pos: the index of its '\n', or -1 when the data ends first. */
function lineEnd(d: Uint8Array, pos: number, end: number): number {
  for (let i = pos; i < end; i++) if (d[i] === NL) return i;
  return -1;
}

class LackeyDecoder implements Decoder {
  line = 0;
  constructor(private readonly dmg: Damage) {}
  where(): { line: number } { return { line: this.line + 1 }; }

  decode(d: Uint8Array, pos: number, end: number, out: AccessBatch, final: boolean): number {
    const w = out.words;
    let n = out.count;
    const room = out.capacity - MAX_PER_RECORD; // n <= room: the largest record fits
    let line = this.line;
    // One pass per line: the fields are parsed in order and the newline must
    // follow the size, so a line is found and parsed without a separate scan.
    while (pos < end && n <= room) {
      const c0 = d[pos]!;
      let kind = -1;
      let modify = false;
      if (c0 === 0x49 /* I */) {
        if (pos + 2 < end && d[pos + 1] === SP && d[pos + 2] === SP) kind = KIND_FETCH;
      } else if (c0 === SP) {
        if (pos + 2 < end && d[pos + 2] === SP) {
          const c1 = d[pos + 1];
          if (c1 === 0x4c /* L */) kind = KIND_LOAD;
          else if (c1 === 0x53 /* S */) kind = KIND_STORE;
          else if (c1 === 0x4d /* M */) { kind = KIND_LOAD; modify = true; }
        }
      }
      if (kind >= 0) {
        let p = pos + 3;
        let hi = 0, lo = 0, digits = 0, v = 0;
        while (p < end && (v = HEX[d[p]!]!) >= 0) {
          hi = ((hi << 4) | (lo >>> 28)) >>> 0;
          lo = ((lo << 4) | v) >>> 0;
          digits++;
          p++;
        }
        let size = 0, sizeDigits = 0;
        if (p < end && d[p] === COMMA) {
          p++;
          let c = 0;
          while (p < end && (c = d[p]! - 0x30) >= 0 && c <= 9) { size = size * 10 + c; sizeDigits++; p++; }
        }
        while (p < end && (d[p] === SP || d[p] === CR)) p++;
        if (p === end && !final) break; // the line goes on in the next chunk
        line++;
        if ((p < end && d[p] !== NL) || digits === 0 || digits > 16 || sizeDigits === 0 || sizeDigits > 9) {
          const eol = p < end ? lineEnd(d, p, end) : -1;
          // The rest of a bad line is in the next chunk: report it whole, once, from there.
          if (eol < 0 && !final) { line--; break; }
          this.dmg.bad({ line }, `malformed lackey record ${quoteLine(d, pos, eol < 0 ? end : eol)}`);
          pos = eol < 0 ? end : eol + 1;
          continue;
        }
        pos = p + 1;
        // The pages of the first and the last byte (sizes beyond a page touch those two only).
        const lo0 = (lo & 0xfffff000) >>> 0;
        const cross = size > 0 && (lo & 0xfff) + size > 4096;
        let lo1 = 0, hi1 = hi;
        if (cross) {
          const last = lo + size - 1;
          lo1 = (last >= 0x1_0000_0000 ? last - 0x1_0000_0000 : last) & 0xfffff000;
          if (last >= 0x1_0000_0000) hi1 = (hi + 1) >>> 0;
        }
        w[2 * n] = lo0 | kind; w[2 * n + 1] = hi; n++;
        if (cross) { w[2 * n] = lo1 | kind; w[2 * n + 1] = hi1; n++; }
        if (modify) {
          w[2 * n] = lo0 | KIND_STORE; w[2 * n + 1] = hi; n++;
          if (cross) { w[2 * n] = lo1 | KIND_STORE; w[2 * n + 1] = hi1; n++; }
        }
        continue;
      }
      // Not an access: a Valgrind message, a blank line, or garbage.
      const eol = lineEnd(d, pos, end);
      if (eol < 0 && !final) break;
      const e = eol < 0 ? end : eol;
      line++;
      const blank = e === pos || (e === pos + 1 && d[pos] === CR);
      const message = e - pos >= 2 && (c0 === 0x3d || c0 === 0x2d || c0 === 0x2a) && d[pos + 1] === c0;
      if (!blank && !message) this.dmg.bad({ line }, `not a lackey record ${quoteLine(d, pos, e)}`);
      pos = eol < 0 ? end : eol + 1;
    }
    this.line = line;
    out.count = n;
    return pos;
  }
}

class PinatraceDecoder implements Decoder {
  line = 0;
  constructor(private readonly dmg: Damage) {}
  where(): { line: number } { return { line: this.line + 1 }; }

  /** Parses `0x<hex>` or `(nil)` at p; returns the end, or -1. Sets this.hi/this.lo. */
  private hi = 0;
  private lo = 0;
  private pointer(d: Uint8Array, p: number, end: number): number {
    if (p + 5 <= end && d[p] === 0x28 /* ( */ && latin1(d, p, p + 5) === '(nil)') { this.hi = 0; this.lo = 0; return p + 5; }
    if (p + 2 > end || d[p] !== 0x30 || (d[p + 1] !== 0x78 && d[p + 1] !== 0x58)) return -1;
    p += 2;
    let hi = 0, lo = 0, digits = 0, v = 0;
    while (p < end && (v = HEX[d[p]!]!) >= 0) {
      hi = ((hi << 4) | (lo >>> 28)) >>> 0;
      lo = ((lo << 4) | v) >>> 0;
      digits++;
      p++;
    }
    if (digits === 0 || digits > 16) return -1;
    this.hi = hi; this.lo = lo;
    return p;
  }

  decode(d: Uint8Array, pos: number, end: number, out: AccessBatch, final: boolean): number {
    const w = out.words;
    let n = out.count;
    const room = out.capacity - MAX_PER_RECORD; // n <= room: the largest record fits
    while (pos < end && n <= room) {
      const eol = lineEnd(d, pos, end);
      if (eol < 0 && !final) break;
      const e = eol < 0 ? end : eol;
      this.line++;
      const next = eol < 0 ? end : eol + 1;
      let stop = e;
      while (stop > pos && (d[stop - 1] === CR || d[stop - 1] === SP)) stop--;
      if (stop === pos || d[pos] === 0x23 /* # */) { pos = next; continue; }
      // ip ": " R|W " " addr
      let p = this.pointer(d, pos, stop);
      let kind = -1;
      if (p > 0 && p + 4 < stop && d[p] === 0x3a && d[p + 1] === SP && d[p + 3] === SP) {
        const k = d[p + 2];
        kind = k === 0x52 /* R */ ? KIND_LOAD : k === 0x57 /* W */ ? KIND_STORE : -1;
      }
      if (kind >= 0) p = this.pointer(d, p + 4, stop);
      if (kind < 0 || p !== stop) {
        this.dmg.bad({ line: this.line }, `malformed pinatrace record ${quoteLine(d, pos, e)}`);
        pos = next;
        continue;
      }
      w[2 * n] = (this.lo & 0xfffff000) | kind; w[2 * n + 1] = this.hi; n++;
      pos = next;
    }
    out.count = n;
    return pos;
  }
}

class ChampsimDecoder implements Decoder {
  record = 0;
  constructor(private readonly dmg: Damage) {}
  where(): { record: number } { return { record: this.record + 1 }; }

  decode(d: Uint8Array, pos: number, end: number, out: AccessBatch, final: boolean): number {
    const w = out.words;
    let n = out.count;
    const room = out.capacity - MAX_PER_RECORD; // n <= room: the largest record fits
    const dv = new DataView(d.buffer, d.byteOffset, d.byteLength);
    while (end - pos >= CHAMPSIM_RECORD_BYTES && n <= room) {
      this.record++;
      if (d[pos + 8]! > 1 || d[pos + 9]! > 1) {
        this.dmg.bad({ record: this.record }, `is_branch ${d[pos + 8]}, branch_taken ${d[pos + 9]}: not a ChampSim input_instr (byte offset ${(this.record - 1) * CHAMPSIM_RECORD_BYTES})`);
        pos += CHAMPSIM_RECORD_BYTES;
        continue;
      }
      w[2 * n] = (dv.getUint32(pos, true) & 0xfffff000) | KIND_FETCH; w[2 * n + 1] = dv.getUint32(pos + 4, true); n++;
      for (let off = 32; off < 64; off += 8) {
        const lo = dv.getUint32(pos + off, true), hi = dv.getUint32(pos + off + 4, true);
        if ((lo | hi) !== 0) { w[2 * n] = (lo & 0xfffff000) | KIND_LOAD; w[2 * n + 1] = hi; n++; }
      }
      for (let off = 16; off < 32; off += 8) {
        const lo = dv.getUint32(pos + off, true), hi = dv.getUint32(pos + off + 4, true);
        if ((lo | hi) !== 0) { w[2 * n] = (lo & 0xfffff000) | KIND_STORE; w[2 * n + 1] = hi; n++; }
      }
      pos += CHAMPSIM_RECORD_BYTES;
    }
    if (final && pos < end && end - pos < CHAMPSIM_RECORD_BYTES && n <= room) {
      this.record++;
      this.dmg.bad({ record: this.record }, `truncated: ${end - pos} of ${CHAMPSIM_RECORD_BYTES} bytes at the end of the file`);
      pos = end;
    }
    out.count = n;
    return pos;
  }
}

/**
 * The index of the first raw record of [from, n) with bad low bits, or n.
 * Alone in its function so that V8 keeps it optimised; on a signed view,
 * because V8 handles Uint32Array values above 2^31 as doubles.
 */
function firstBadRaw(w: Int32Array, from: number, n: number): number {
  let i = from;
  for (let j = 2 * from; i < n; i++, j += 2) if ((w[j]! & 0xfff) > 2) break;
  return i;
}

/**
 * Checks the raw records out.words[from, out.count): the low 12 bits must be
 * a kind of 0-2 and nothing else. Bad ones are dropped (skipBad, the rest
 * moved down) or thrown. `first` is the 1-based number of record `from`.
 */
function checkRaw(out: AccessBatch, from: number, first: number, dmg: Damage): void {
  const n = out.count;
  let i = firstBadRaw(new Int32Array(out.words.buffer, 0, n * 2), from, n);
  if (i === n) return;
  const w = out.words;
  let k = i;
  for (; i < n; i++) {
    const lo = w[2 * i]!;
    if ((lo & 0xfff) > 2) {
      dmg.bad({ record: first + i - from }, `low bits 0x${(lo & 0xfff).toString(16)}: not a kind (0 load, 1 store, 2 fetch) with bits 2-11 clear`);
      continue;
    }
    w[2 * k] = lo; w[2 * k + 1] = w[2 * i + 1]!; k++;
  }
  out.count = k;
}

/** Checks a raw header; throws (a bad header is never skippable: the file is not ours). */
function checkRawHeader(d: Uint8Array, pos: number, file: string): void {
  const dv = new DataView(d.buffer, d.byteOffset + pos, RAW_HEADER_BYTES);
  if (latin1(d, pos, pos + 8) !== RAW_MAGIC) throw new TraceFormatError(file, { record: 0 }, `no ${RAW_MAGIC} magic: not a raw ptemu trace`);
  const version = dv.getUint32(8, true), flags = dv.getUint32(12, true);
  if (version !== RAW_VERSION) throw new TraceFormatError(file, { record: 0 }, `raw trace version ${version}; this reader knows version ${RAW_VERSION}`);
  if (flags !== 0) throw new TraceFormatError(file, { record: 0 }, `raw trace flags 0x${flags.toString(16)}; none are defined`);
}

class RawDecoder implements Decoder {
  record = 0;
  private header = false;
  constructor(private readonly dmg: Damage) {}
  where(): { record: number } { return { record: this.record + 1 }; }

  decode(d: Uint8Array, pos: number, end: number, out: AccessBatch, final: boolean): number {
    if (!this.header) {
      if (end - pos < RAW_HEADER_BYTES) {
        if (final) throw new TraceFormatError(this.dmg.file, { record: 0 }, `truncated header (${end - pos} of ${RAW_HEADER_BYTES} bytes)`);
        return pos;
      }
      checkRawHeader(d, pos, this.dmg.file);
      this.header = true;
      pos += RAW_HEADER_BYTES;
    }
    const k = Math.min((end - pos) >>> 3, out.capacity - out.count);
    if (k > 0) {
      const from = out.count;
      out.bytes.set(d.subarray(pos, pos + k * 8), from * 8);
      out.count += k;
      checkRaw(out, from, this.record + 1, this.dmg);
      this.record += k;
      pos += k * 8;
    }
    if (final && end - pos > 0 && end - pos < 8 && out.count < out.capacity) {
      this.record++;
      this.dmg.bad({ record: this.record }, `truncated: ${end - pos} of 8 bytes at the end of the file`);
      pos = end;
    }
    return pos;
  }
}

function makeDecoder(format: TraceFormat, dmg: Damage): Decoder {
  switch (format) {
    case 'lackey': return new LackeyDecoder(dmg);
    case 'pinatrace': return new PinatraceDecoder(dmg);
    case 'champsim': return new ChampsimDecoder(dmg);
    case 'raw': return new RawDecoder(dmg);
  }
}

// ---- byte sources ----------------------------------------------------------------------------

/** Reads until len bytes or the end of the file; returns the bytes read. */
async function readFull(fh: FileHandle, buf: Uint8Array, off: number, len: number, position: number): Promise<number> {
  let got = 0;
  while (got < len) {
    const { bytesRead } = await fh.read(buf, off + got, len - got, position + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return got;
}

/**
 * Reads a file from `start` into two buffers of one size by turns, the next
 * read already under way while the caller works on the buffer just filled:
 * yields which buffer and how many bytes; ends after a short read.
 */
async function* prefetchedReads(fh: FileHandle, bufs: readonly [Uint8Array, Uint8Array], start: number, progress: { bytesIn: number }): AsyncGenerator<{ index: 0 | 1; got: number }> {
  const size = bufs[0].length;
  let position = start, index: 0 | 1 = 0;
  let pending = readFull(fh, bufs[0], 0, size, position);
  let inFlight = true;
  try {
    for (;;) {
      const got = await pending;
      inFlight = false;
      if (got === 0) return;
      position += got;
      progress.bytesIn = position;
      const cur = index;
      index = index === 0 ? 1 : 0;
      if (got === size) { pending = readFull(fh, bufs[index], 0, size, position); inFlight = true; }
      yield { index: cur, got };
      if (got < size) return;
    }
  } finally {
    // The file is closed after this: no read may still be writing into a buffer.
    if (inFlight) await pending.catch(() => 0);
  }
}

/** A plain file in chunks (prefetchedReads). */
async function* plainChunks(fh: FileHandle, progress: { bytesIn: number }): AsyncGenerator<Uint8Array> {
  const bufs: [Uint8Array, Uint8Array] = [new Uint8Array(READ_CHUNK), new Uint8Array(READ_CHUNK)];
  for await (const { index, got } of prefetchedReads(fh, bufs, 0, progress)) yield bufs[index].subarray(0, got);
}

/** Counts the compressed bytes read from the file, for progress. */
function countingStream(path: string, progress: { bytesIn: number }): Readable {
  const s = createReadStream(path, { highWaterMark: 1 << 20 });
  s.on('data', (c: Buffer | string) => { progress.bytesIn += c.length; });
  return s;
}

async function* gzipChunks(path: string, progress: { bytesIn: number }): AsyncGenerator<Uint8Array> {
  const src = countingStream(path, progress);
  const gunzip = createGunzip({ chunkSize: 256 << 10 });
  src.on('error', (e) => gunzip.destroy(e));
  src.pipe(gunzip);
  try {
    for await (const chunk of gunzip) yield chunk as Buffer;
  } catch (e) {
    throw new TraceFormatError(path, { byte: progress.bytesIn }, `damaged gzip stream: ${e instanceof Error ? e.message : String(e)}`);
  } finally {
    src.destroy();
    gunzip.destroy();
  }
}

async function* xzChunks(path: string, progress: { bytesIn: number }): AsyncGenerator<Uint8Array> {
  const child = spawn('xz', ['-dc'], { stdio: ['pipe', 'pipe', 'pipe'] });
  const spawned = new Promise<void>((resolve, reject) => {
    child.once('spawn', () => resolve());
    child.once('error', (e: NodeJS.ErrnoException) => reject(e.code === 'ENOENT'
      ? new Error(`${path}: reading .xz traces needs the xz program (xz-utils), which is not on PATH; decompress the file first or install xz`)
      : new Error(`${path}: cannot run xz: ${e.message}`)));
  });
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => { if (stderr.length < 4096) stderr += c.toString(); });
  await spawned;
  const src = countingStream(path, progress);
  src.on('error', (e) => child.stdin.destroy(e));
  child.stdin.on('error', () => { /* xz exited early (bad data): reported from its exit status */ });
  src.pipe(child.stdin);
  let done = false;
  try {
    for await (const chunk of child.stdout) yield chunk as Buffer;
    done = true;
  } finally {
    src.destroy();
    if (!done) child.kill();
  }
  const code = await exited;
  if (code !== 0) throw new TraceFormatError(path, { byte: progress.bytesIn }, `damaged xz stream (xz -dc exit ${code}): ${stderr.trim() || 'no message'}`);
}

// ---- the reader ------------------------------------------------------------------------------

export interface TraceReadOptions {
  /** Default: from the name, else from the first decompressed bytes. */
  format?: TraceFormat;
  /** Count malformed records instead of throwing on the first. */
  skipBad?: boolean;
  /** Accesses per batch (at least 16). Default DEFAULT_BATCH. */
  batchSize?: number;
}

/**
 * One pass over a trace file: `for await (const b of reader.batches())`.
 * Each batch is valid until the next one is asked for (buffers are reused).
 * `format` is known once the first batch arrives (or the pass ends).
 */
export class TraceReader {
  readonly path: string;
  format: TraceFormat | undefined;
  compression: Compression = 'none';
  /** Bytes of the file read so far (compressed bytes for compressed files) and its size: progress. */
  bytesIn = 0;
  fileSize = 0;
  private readonly opts: TraceReadOptions;
  private dmg: Damage;

  constructor(path: string, opts: TraceReadOptions = {}) {
    this.path = path;
    this.opts = opts;
    this.format = opts.format;
    this.dmg = new Damage(path, opts.skipBad === true);
    const b = opts.batchSize ?? DEFAULT_BATCH;
    if (!Number.isInteger(b) || b < 2 * MAX_PER_RECORD) throw new RangeError(`batch size must be an integer of at least ${2 * MAX_PER_RECORD}, got ${String(b)}`);
    if (opts.format !== undefined && !TRACE_FORMATS.includes(opts.format)) throw new RangeError(`format must be one of ${TRACE_FORMATS.join(', ')}, got ${String(opts.format)}`);
  }

  /** Malformed records skipped so far. */
  get skipped(): number { return this.dmg.skipped; }

  /** Fraction of the file consumed, in [0, 1]. */
  get progress(): number { return this.fileSize > 0 ? Math.min(1, this.bytesIn / this.fileSize) : 1; }

  async *batches(): AsyncGenerator<AccessBatch, void, void> {
    this.dmg = new Damage(this.path, this.opts.skipBad === true);
    this.bytesIn = 0;
    this.fileSize = (await stat(this.path)).size;
    const fh = await open(this.path, 'r');
    try {
      const head = new Uint8Array(6);
      await readFull(fh, head, 0, 6, 0);
      this.compression = compressionOf(head);
      const byName = this.opts.format ?? formatFromName(this.path);
      const capacity = this.opts.batchSize ?? DEFAULT_BATCH;
      if (this.compression === 'none' && (byName === 'raw' || (byName === undefined && latin1(head, 0, 6) === RAW_MAGIC.slice(0, 6)))) {
        this.format = 'raw';
        yield* this.rawPlain(fh, capacity);
        return;
      }
      const progress = this;
      const chunks = this.compression === 'gzip' ? gzipChunks(this.path, progress)
        : this.compression === 'xz' ? xzChunks(this.path, progress) : plainChunks(fh, progress);
      let decoder: Decoder | undefined;
      const out = new AccessBatch(capacity);
      let carry: Uint8Array | undefined;
      for await (const chunk of chunks) {
        let data = chunk;
        if (carry) {
          data = new Uint8Array(carry.length + chunk.length);
          data.set(carry);
          data.set(chunk, carry.length);
          carry = undefined;
        }
        if (!decoder) {
          // Sniff on enough bytes to see a first line or the raw magic.
          if (byName === undefined && data.length < 512) { carry = data.slice(); continue; }
          decoder = this.start(byName, data);
        }
        let pos = 0;
        for (;;) {
          pos = decoder.decode(data, pos, data.length, out, false);
          if (!isFull(out)) break; // the chunk is used up, but for a partial record
          yield out;
          out.count = 0;
        }
        // A copy: the chunk's buffer is refilled while the next one is parsed.
        if (pos < data.length) carry = data.slice(pos);
        if (carry && carry.length > MAX_LINE) throw new TraceFormatError(this.path, decoder.where(), `no end of line in ${MAX_LINE} bytes: not a ${this.format} trace`);
      }
      const rest = carry ?? new Uint8Array(0);
      decoder ??= this.start(byName, rest);
      let pos = 0;
      for (;;) {
        pos = decoder.decode(rest, pos, rest.length, out, true);
        if (pos >= rest.length) break;
        if (!isFull(out)) throw new Error(`${this.path}: internal error: the ${this.format} decoder stopped at byte ${pos} of ${rest.length}`);
        yield out;
        out.count = 0;
      }
      if (out.count > 0) { yield out; out.count = 0; }
    } finally {
      await fh.close();
    }
  }

  private start(byName: TraceFormat | undefined, data: Uint8Array): Decoder {
    const format = byName ?? sniffFormat(data) ?? (data.length === 0 ? 'lackey' : undefined);
    if (format === undefined) throw new TraceFormatError(this.path, { line: 1 }, `cannot tell the trace format from the name or the first bytes; give one of ${TRACE_FORMATS.join(', ')}`);
    this.format = format;
    return makeDecoder(format, this.dmg);
  }

  /**
   * The fast path: an uncompressed raw file is read straight into the batch
   * buffers (two, the next read under way while the caller replays the
   * current one), checked with one compare per record, and handed on.
   */
  private async *rawPlain(fh: FileHandle, capacity: number): AsyncGenerator<AccessBatch, void, void> {
    const header = new Uint8Array(RAW_HEADER_BYTES);
    const got = await readFull(fh, header, 0, RAW_HEADER_BYTES, 0);
    if (got < RAW_HEADER_BYTES) throw new TraceFormatError(this.path, { record: 0 }, `truncated header (${got} of ${RAW_HEADER_BYTES} bytes)`);
    checkRawHeader(header, 0, this.path);
    const batches: [AccessBatch, AccessBatch] = [new AccessBatch(capacity), new AccessBatch(capacity)];
    let record = 1;
    for await (const { index, got: n } of prefetchedReads(fh, [batches[0].bytes, batches[1].bytes], RAW_HEADER_BYTES, this)) {
      const cur = batches[index];
      const whole = n >>> 3;
      cur.count = whole;
      checkRaw(cur, 0, record, this.dmg);
      record += whole;
      if (n & 7) this.dmg.bad({ record }, `truncated: ${n & 7} of 8 bytes at the end of the file`);
      if (cur.count > 0) yield cur;
    }
  }
}

/** The accesses of a whole trace in one buffer (tests and small traces). */
export async function readAllAccesses(path: string, opts: TraceReadOptions = {}): Promise<{ format: TraceFormat; words: Uint32Array; count: number; skipped: number }> {
  const r = new TraceReader(path, opts);
  let words = new Uint32Array(1024);
  let count = 0;
  for await (const b of r.batches()) {
    if ((count + b.count) * 2 > words.length) {
      const grown = new Uint32Array(Math.max(words.length * 2, (count + b.count) * 2));
      grown.set(words.subarray(0, count * 2));
      words = grown;
    }
    words.set(b.words.subarray(0, b.count * 2), count * 2);
    count += b.count;
  }
  return { format: r.format ?? 'lackey', words: words.subarray(0, count * 2), count, skipped: r.skipped };
}

// ---- writers ---------------------------------------------------------------------------------

/** What a writer takes: 'm' (modify, a load and a store) is a lackey record; other formats write it as 'r' then 'w'. */
export type WriteKind = 'r' | 'w' | 'x' | 'm';

export interface TraceWriteRecord {
  addr: number | bigint;
  kind: WriteKind;
  /** Bytes accessed (lackey only; default 4 for fetches, 8 for data). */
  size?: number;
}

const OUT_CHUNK = 1 << 20;
const LACKEY_TAG: Record<WriteKind, string> = { x: 'I ', r: ' L', w: ' S', m: ' M' };

/**
 * Writes a trace in any format. Records go into a buffer flushed to the file
 * synchronously; with a .gz or .xz name the whole output is kept and
 * compressed at close (gzip by node:zlib, xz by `xz -c`), which suits
 * fixtures and test traces; compress big traces with the tools instead.
 */
export class TraceWriter {
  readonly path: string;
  readonly format: TraceFormat;
  private readonly compression: Compression;
  private fd: number;
  private readonly kept: Uint8Array[] = [];
  private buf = new Uint8Array(OUT_CHUNK);
  private len = 0;
  private text: string[] = [];
  private textLen = 0;
  /** ChampSim: the instruction being filled; pinatrace: the ip of the last fetch. */
  private instr: Uint8Array | undefined;
  private sources = 0;
  private dests = 0;
  private ip = 0n;
  private closed = false;

  constructor(path: string, format: TraceFormat) {
    if (!TRACE_FORMATS.includes(format)) throw new RangeError(`format must be one of ${TRACE_FORMATS.join(', ')}, got ${String(format)}`);
    this.path = path;
    this.format = format;
    this.compression = /\.gz$/i.test(path) ? 'gzip' : /\.xz$/i.test(path) ? 'xz' : 'none';
    this.fd = openSync(path, 'w');
    if (format === 'raw') {
      const h = new Uint8Array(RAW_HEADER_BYTES);
      h.set(Buffer.from(RAW_MAGIC, 'latin1'));
      new DataView(h.buffer).setUint32(8, RAW_VERSION, true);
      this.bytes(h);
    }
  }

  /** One access (see TraceWriteRecord). */
  add(addr: number | bigint, kind: WriteKind, size?: number): this {
    if (kind !== 'r' && kind !== 'w' && kind !== 'x' && kind !== 'm') throw new RangeError(`kind must be r, w, x or m, got ${String(kind)}`);
    if (this.format === 'lackey' && typeof addr === 'number' && Number.isSafeInteger(addr) && addr >= 0) {
      // The common case without BigInt: writing big text traces stays quick.
      this.line(`${LACKEY_TAG[kind]} ${addr.toString(16).padStart(8, '0')},${size ?? (kind === 'x' ? 4 : 8)}`);
      return this;
    }
    if (typeof addr === 'number' && !Number.isSafeInteger(addr)) throw new RangeError(`address ${addr} is not a safe integer: pass a bigint`);
    const a = typeof addr === 'bigint' ? addr : BigInt(addr);
    if (a < 0n || a >= 1n << 64n) throw new RangeError(`address out of the 64-bit range: ${String(addr)}`);
    switch (this.format) {
      case 'lackey':
        this.line(`${LACKEY_TAG[kind]} ${a.toString(16).padStart(8, '0')},${size ?? (kind === 'x' ? 4 : 8)}`);
        break;
      case 'pinatrace':
        if (kind === 'x') { this.ip = a; break; }
        if (kind !== 'w') this.line(`${pointer(this.ip)}: R ${pointer(a)}`);
        if (kind !== 'r') this.line(`${pointer(this.ip)}: W ${pointer(a)}`);
        break;
      case 'champsim':
        this.champsim(a, kind);
        break;
      case 'raw': {
        const rec = new Uint8Array(8);
        const dv = new DataView(rec.buffer);
        const page = a & ~0xfffn;
        for (const k of kind === 'm' ? [KIND_LOAD, KIND_STORE] : [kind === 'r' ? KIND_LOAD : kind === 'w' ? KIND_STORE : KIND_FETCH]) {
          dv.setBigUint64(0, page | BigInt(k), true);
          this.bytes(rec);
        }
        break;
      }
    }
    return this;
  }

  /** Raw format: records already in the core's layout (Trace.words), appended as they are. */
  addWords(words: Uint32Array, count: number): this {
    if (this.format !== 'raw') throw new Error('addWords is for the raw format');
    this.bytes(new Uint8Array(words.buffer, words.byteOffset, count * 8));
    return this;
  }

  /** Text formats: a line as it is (banners, comments, or malformed lines for tests). */
  line(text: string): this {
    if (this.format !== 'lackey' && this.format !== 'pinatrace') throw new Error('line() is for text formats');
    this.text.push(text, '\n');
    this.textLen += text.length + 1;
    if (this.textLen >= OUT_CHUNK) this.flushText();
    return this;
  }

  /** Bytes as they are (binary formats; malformed records for tests). */
  bytes(b: Uint8Array): this {
    this.flushInstr();
    let off = 0;
    while (off < b.length) {
      const k = Math.min(b.length - off, this.buf.length - this.len);
      this.buf.set(b.subarray(off, off + k), this.len);
      this.len += k;
      off += k;
      if (this.len === this.buf.length) this.flushBytes();
    }
    return this;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.flushInstr();
    if (this.format === 'pinatrace') this.line('#eof');
    this.flushText();
    this.flushBytes();
    if (this.compression !== 'none') {
      const all = Buffer.concat(this.kept);
      let packed: Uint8Array;
      if (this.compression === 'gzip') {
        packed = gzipSync(all, { level: 9 });
      } else {
        const r = spawnSync('xz', ['-c', '-6'], { input: all, maxBuffer: 1 << 30 });
        if (r.error) throw new Error(`${this.path}: cannot run xz to compress: ${r.error.message}`);
        if (r.status !== 0) throw new Error(`${this.path}: xz -c failed: ${r.stderr.toString().trim()}`);
        packed = r.stdout;
      }
      writeSync(this.fd, packed);
    }
    closeSync(this.fd);
  }

  private champsim(a: bigint, kind: WriteKind): void {
    if (kind === 'x') {
      this.flushInstr();
      this.instr = new Uint8Array(CHAMPSIM_RECORD_BYTES);
      new DataView(this.instr.buffer).setBigUint64(0, a, true);
      this.sources = 0;
      this.dests = 0;
      return;
    }
    if (!this.instr) throw new Error('champsim: a load or store needs an instruction fetch (kind x) before it');
    if (a === 0n) throw new Error('champsim: address 0 means "no access" in the format');
    const dv = new DataView(this.instr.buffer);
    if (kind === 'r' || kind === 'm') {
      if (this.sources === 4) throw new Error('champsim: an instruction has at most 4 source memory operands');
      dv.setBigUint64(32 + 8 * this.sources++, a, true);
    }
    if (kind === 'w' || kind === 'm') {
      if (this.dests === 2) throw new Error('champsim: an instruction has at most 2 destination memory operands');
      dv.setBigUint64(16 + 8 * this.dests++, a, true);
    }
  }

  private flushInstr(): void {
    const i = this.instr;
    if (!i) return;
    this.instr = undefined;
    this.bytes(i);
  }

  private flushText(): void {
    if (this.textLen === 0) return;
    this.emit(Buffer.from(this.text.join(''), 'latin1'));
    this.text = [];
    this.textLen = 0;
  }

  private flushBytes(): void {
    if (this.len === 0) return;
    this.emit(this.buf.subarray(0, this.len));
    if (this.compression !== 'none') this.buf = new Uint8Array(OUT_CHUNK);
    this.len = 0;
  }

  private emit(b: Uint8Array): void {
    if (this.compression === 'none') writeSync(this.fd, b);
    else this.kept.push(b);
  }
}

/** printf("%p"): 0x-prefixed lowercase hex, "(nil)" for 0. */
function pointer(a: bigint): string {
  return a === 0n ? '(nil)' : `0x${a.toString(16)}`;
}

/** Writes a whole trace; returns the records written. */
export async function writeTrace(path: string, format: TraceFormat, records: Iterable<TraceWriteRecord>): Promise<number> {
  const w = new TraceWriter(path, format);
  let n = 0;
  try {
    for (const r of records) { w.add(r.addr, r.kind, r.size); n++; }
  } finally {
    await w.close();
  }
  return n;
}
