// Hostile files: scenario files and traces that are truncated, bit-flipped,
// padded with binary, or random bytes. A scenario either loads or fails with
// a ScenarioError that names file, line and column; one that loads runs to a
// result (never an exception). A trace either reads or fails with a
// TraceFormatError naming the file and the line or record (or, for a damaged
// compressed stream, the byte offset).

import { describe, it, expect } from 'vitest';
import { mkdtempSync, readFileSync, readdirSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { spawnSync } from 'node:child_process';
import fc from 'fast-check';
import { parseScenario, ScenarioError } from '../src/cli/scenario.js';
import { runScenario } from '../src/cli/scenario-run.js';
import { readAllAccesses, writeTrace, TraceFormatError, TRACE_FORMATS } from '../src/cli/traceformats.js';
import type { TraceFormat } from '../src/cli/types.js';

const SEED = Number(process.env.PTEMU_FUZZ_SEED ?? 20261122);
const EXAMPLES = join(import.meta.dirname, '..', 'examples', 'scenarios');

/** Damage to a file's bytes: truncation, flipped bytes, inserted binary, or all random. */
const damage = (bytes: Uint8Array): fc.Arbitrary<Uint8Array> => fc.oneof(
  fc.nat(bytes.length).map((n) => bytes.slice(0, n)),
  fc.array(fc.tuple(fc.nat(Math.max(0, bytes.length - 1)), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 8 }).map((flips) => {
    const b = bytes.slice();
    for (const [i, x] of flips) if (b.length) b[i] = b[i]! ^ x;
    return b;
  }),
  fc.tuple(fc.nat(bytes.length), fc.uint8Array({ minLength: 1, maxLength: 40 })).map(([at, junk]) => new Uint8Array([...bytes.slice(0, at), ...junk, ...bytes.slice(at)])),
  fc.uint8Array({ maxLength: 300 }),
);

describe('hostile scenario files', () => {
  const files = readdirSync(EXAMPLES).filter((f) => f.endsWith('.yaml'));

  it('damaged scenarios: a ScenarioError with file, line and column, or a scenario that runs to a result', async () => {
    expect(files.length).toBeGreaterThan(3);
    let errors = 0, loaded = 0;
    await fc.assert(fc.asyncProperty(fc.constantFrom(...files).chain((f) => {
      const bytes = new Uint8Array(readFileSync(join(EXAMPLES, f)));
      return damage(bytes).map((b) => ({ f, b }));
    }), async ({ f, b }) => {
      const text = new TextDecoder().decode(b);
      let s;
      try {
        s = parseScenario(text, f);
      } catch (e) {
        if (!(e instanceof ScenarioError)) throw new Error(`${f}: ${(e as Error)?.name} instead of a ScenarioError: ${(e as Error)?.message}`);
        expect(e.file).toBe(f);
        expect(e.line).toBeGreaterThanOrEqual(1);
        expect(e.col).toBeGreaterThanOrEqual(1);
        for (const p of e.problems) expect(p.pos.line).toBeGreaterThanOrEqual(1);
        errors++;
        return;
      }
      loaded++;
      const r = await runScenario(s, { failFast: true });
      expect(typeof r.ok).toBe('boolean');
    }), { seed: SEED, numRuns: 300 });
    expect(errors).toBeGreaterThan(100);
    expect(loaded).toBeGreaterThan(0);
  });
});

describe('hostile trace files', () => {
  // Each load and store after an instruction fetch (ChampSim records are instructions).
  const records = Array.from({ length: 40 }, (_, i) => ({ addr: 0x4000_0000 + i * 4096 + (i % 7) * 8, kind: (['x', 'r', 'w', 'm'] as const)[i % 4]!, size: 8 }));

  it('damaged traces in every format (plain and gzip): records, or a TraceFormatError naming file and line or record', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ptemu-hostile-'));
    try {
      const originals = new Map<TraceFormat, Uint8Array>();
      for (const fmt of TRACE_FORMATS) {
        const path = join(dir, `orig.${fmt}`);
        await writeTrace(path, fmt, records);
        originals.set(fmt, new Uint8Array(readFileSync(path)));
      }
      let errors = 0, read = 0, n = 0;
      await fc.assert(fc.asyncProperty(
        fc.constantFrom(...TRACE_FORMATS).chain((fmt) => damage(originals.get(fmt)!).map((b) => ({ fmt, b }))),
        fc.boolean(), fc.boolean(),
        async ({ fmt, b }, gzip, named) => {
          const path = join(dir, `t${n++}${named ? `.${fmt}` : ''}${gzip ? '.gz' : ''}`);
          writeFileSync(path, gzip ? gzipSync(b) : b);
          try {
            const r = await readAllAccesses(path, named ? {} : { format: fmt });
            expect(r.count).toBeGreaterThanOrEqual(0);
            read++;
          } catch (e) {
            if (!(e instanceof TraceFormatError)) throw new Error(`${fmt}${gzip ? '.gz' : ''}: ${(e as Error)?.name} instead of a TraceFormatError: ${(e as Error)?.message}`);
            expect(e.file).toBe(path);
            expect(e.line ?? e.record ?? e.byte).toBeGreaterThanOrEqual(0);
            errors++;
          } finally {
            rmSync(path, { force: true });
          }
        }), { seed: SEED, numRuns: 300 });
      expect(errors).toBeGreaterThan(20);
      expect(read).toBeGreaterThan(20);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a truncated xz stream is a TraceFormatError naming the compressed byte, not a failed child process', async (ctx) => {
    if (spawnSync('xz', ['--version']).status !== 0) ctx.skip();
    const dir = mkdtempSync(join(tmpdir(), 'ptemu-hostile-'));
    try {
      await writeTrace(join(dir, 'whole.lackey'), 'lackey', records);
      const xz = spawnSync('xz', ['-c', join(dir, 'whole.lackey')]).stdout;
      const path = join(dir, 'cut.lackey.xz');
      writeFileSync(path, xz.subarray(0, xz.length - 20));
      const err = await readAllAccesses(path).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(TraceFormatError);
      expect((err as TraceFormatError).byte).toBeGreaterThan(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a truncated gzip stream is a TraceFormatError, not a zlib exception', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ptemu-hostile-'));
    try {
      const path = join(dir, 'cut.lackey.gz');
      await writeTrace(join(dir, 'whole.lackey'), 'lackey', records);
      const gz = gzipSync(readFileSync(join(dir, 'whole.lackey')));
      writeFileSync(path, gz.subarray(0, gz.length - 9));
      await expect(readAllAccesses(path)).rejects.toBeInstanceOf(TraceFormatError);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
