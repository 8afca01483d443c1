// Memory-access traces for m.replay: records of (address, kind) kept in a
// typed buffer, two u32 words each (low word: address bits 12-31 with the
// kind in bits 0-1; high word: address bits 32-63), so building a trace
// needs no BigInt. The core replays them in large chunks.

import { EmuError, shown, ownEntry } from './errors.js';

/** Records a trace may hold: 2^28 (2 GiB of words). */
const MAX_RECORDS = 1 << 28;

export type AccessKind = 'r' | 'w' | 'x';
const KIND: Record<AccessKind, number> = { r: 0, w: 1, x: 2 };

export class Trace {
  /** @internal */ words: Uint32Array;
  private n = 0;

  constructor(capacity = 1024) {
    if (!Number.isInteger(capacity) || capacity < 1 || capacity > MAX_RECORDS) throw new EmuError('EINVAL', `capacity must be an integer in [1, 2^28], got ${shown(capacity)}`, 'capacity');
    this.words = new Uint32Array(capacity * 2);
  }

  get length(): number { return this.n; }

  /** Appends one access. Addresses are numbers below 2^53. */
  push(addr: number, kind: AccessKind = 'r'): this {
    const k = ownEntry(KIND, kind);
    if (k === undefined) throw new EmuError('EINVAL', `kind must be 'r', 'w' or 'x', got ${shown(kind)}`, 'kind');
    if (!Number.isSafeInteger(addr) || addr < 0) throw new EmuError('EINVAL', `addr must be a non-negative safe integer, got ${shown(addr)}`, 'addr');
    if (this.n * 2 === this.words.length) {
      if (this.n >= MAX_RECORDS) throw new EmuError('ENOMEM', 'a trace holds at most 2^28 records', 'addr');
      const w = new Uint32Array(this.words.length * 2);
      w.set(this.words);
      this.words = w;
    }
    this.words[this.n * 2] = ((addr % 0x1_0000_0000) & ~0xfff) | k;
    this.words[this.n * 2 + 1] = Math.floor(addr / 0x1_0000_0000);
    this.n++;
    return this;
  }

  /** The i-th record. */
  at(i: number): { addr: number; kind: AccessKind } {
    const lo = this.words[i * 2]!, hi = this.words[i * 2 + 1]!;
    return { addr: hi * 0x1_0000_0000 + ((lo & ~0xfff) >>> 0), kind: (['r', 'w', 'x'] as const)[lo & 3]! };
  }

  /** The records as u32 word pairs, ready to copy into the core. */
  view(from: number, count: number): Uint32Array { return this.words.subarray(from * 2, (from + count) * 2); }

  /**
   * A trace over records already in the replay layout (two u32 words per
   * access, see the top of this file), without copying them: how a file
   * reader hands its batches to m.replay. `count` defaults to all of them.
   */
  static fromWords(words: Uint32Array, count = words.length >>> 1): Trace {
    if (!(words instanceof Uint32Array)) throw new EmuError('EINVAL', 'words must be a Uint32Array', 'words');
    if (!Number.isInteger(count) || count < 0 || count * 2 > words.length) throw new EmuError('EINVAL', `count must be an integer in [0, ${words.length >>> 1}]`, 'count');
    const t = new Trace(1);
    t.words = words;
    t.n = count;
    return t;
  }

  /**
   * Uniformly random page accesses over [start, start+length) from a seeded
   * xorshift generator: the same seed gives the same trace.
   */
  static random(opts: { start: number; length: number; count: number; seed?: number; writeRatio?: number }): Trace {
    if (opts === null || typeof opts !== 'object') throw new EmuError('EINVAL', 'opts must be an object', 'opts');
    const { start, length, count } = opts;
    if (!Number.isSafeInteger(start) || start < 0) throw new EmuError('EINVAL', `start must be a non-negative safe integer, got ${shown(start)}`, 'start');
    if (!Number.isSafeInteger(length) || length < 4096) throw new EmuError('EINVAL', `length must be an integer covering at least one page, got ${shown(length)}`, 'length');
    if (!Number.isInteger(count) || count < 1 || count > MAX_RECORDS) throw new EmuError('EINVAL', `count must be an integer in [1, 2^28], got ${shown(count)}`, 'count');
    if (start + length > Number.MAX_SAFE_INTEGER) throw new EmuError('EINVAL', 'start + length is beyond 2^53', 'length');
    const pages = Math.floor(length / 4096);
    const wr = opts.writeRatio ?? 0;
    if (typeof wr !== 'number' || !(wr >= 0 && wr <= 1)) throw new EmuError('EINVAL', `writeRatio must be in [0, 1], got ${shown(wr)}`, 'writeRatio');
    const seed = opts.seed ?? 1;
    if (!Number.isSafeInteger(seed)) throw new EmuError('EINVAL', `seed must be an integer, got ${shown(seed)}`, 'seed');
    let x = seed >>> 0 || 1;
    const w = wr;
    const t = new Trace(count);
    for (let i = 0; i < count; i++) {
      x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
      const page = x % pages;
      x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
      t.push(start + page * 4096, (x / 0x1_0000_0000) < w ? 'w' : 'r');
    }
    return t;
  }

  /** A sequential sweep of every page of a range. */
  static sequential(start: number, length: number, kind: AccessKind = 'r'): Trace {
    if (!Number.isSafeInteger(start) || start < 0) throw new EmuError('EINVAL', `start must be a non-negative safe integer, got ${shown(start)}`, 'start');
    if (!Number.isSafeInteger(length) || length < 0 || length / 4096 > MAX_RECORDS) throw new EmuError('EINVAL', `length must be a byte count of at most 2^28 pages, got ${shown(length)}`, 'length');
    if (ownEntry(KIND, kind) === undefined) throw new EmuError('EINVAL', `kind must be 'r', 'w' or 'x', got ${shown(kind)}`, 'kind');
    if (start + length > Number.MAX_SAFE_INTEGER) throw new EmuError('EINVAL', 'start + length is beyond 2^53', 'length');
    const pages = Math.floor(length / 4096);
    const t = new Trace(Math.max(1, pages));
    for (let i = 0; i < pages; i++) t.push(start + i * 4096, kind);
    return t;
  }
}
