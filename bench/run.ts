/**
 * `npm run bench`: times fault-in, mprotect, walk and MADV_DONTNEED over a
 * range of 4 KiB pages in the WASM core, the naive TypeScript peer and the
 * C peer, and prints one comparison table.
 *
 *   node --expose-gc dist/bench/run.js [--pages N] [--quick] [--naive-pages N] [--json out.json]
 *
 * WASM and naive TS are measured with benchmark.js in one suite (see
 * harness.ts for how consuming operations are timed); the C peer is built
 * and run once with its own timing loop.
 */
import { writeFile } from 'node:fs/promises';
import os from 'node:os';
import { parseArgs } from 'node:util';

import { formatSize } from '../src/index.js';
import { runSuite, type OpSpec, type SampleSettings, type Timing } from './harness.js';
import { runNativePeer, type NativePeerResult } from './peers/native.js';
import { PAGE_SIZE } from './peers/naive.js';
import { naiveSubject, wasmSubject, type Subject } from './subjects.js';
import { formatTable, num, ratio } from './table.js';

const OPS = ['fault-in', 'mprotect', 'walk', 'dontneed'] as const;
type Op = (typeof OPS)[number];

/** The C peer's JSON field for each operation. */
const NATIVE_FIELD: Record<Op, keyof Omit<NativePeerResult, 'pages'>> = {
  'fault-in': 'faultIn',
  mprotect: 'mprotect',
  walk: 'walk',
  dontneed: 'dontneed',
};

/** Above this the naive peer's per-PTE objects make the run slow and memory-hungry. */
const NAIVE_MAX_PAGES = 1 << 20;

interface Config {
  pages: number;
  naivePages: number;
  quick: boolean;
  json: string | undefined;
  samples: SampleSettings;
  nativeRepeats: number;
}

function positiveInt(text: string, flag: string): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new Error(`${flag} must be a positive integer, got ${JSON.stringify(text)}`);
  }
  return value;
}

function parseConfig(argv: string[]): Config {
  const { values } = parseArgs({
    args: argv,
    options: {
      pages: { type: 'string' },
      'naive-pages': { type: 'string' },
      quick: { type: 'boolean', default: false },
      json: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(
      'usage: node --expose-gc dist/bench/run.js [--pages N] [--quick] [--naive-pages N] [--json out.json]\n' +
        '  --pages N        4 KiB pages per range (default 262144 = 1 GiB; 65536 with --quick)\n' +
        '  --quick          fewer samples and 65536 pages unless --pages is given\n' +
        `  --naive-pages N  range for the naive TS peer (default: --pages, capped at ${NAIVE_MAX_PAGES})\n` +
        '  --json FILE      also write the results as JSON\n',
    );
    process.exit(0);
  }
  const quick = values.quick === true;
  const pages = values.pages === undefined ? (quick ? 65536 : 262144) : positiveInt(values.pages, '--pages');
  const naivePages =
    values['naive-pages'] === undefined ? Math.min(pages, NAIVE_MAX_PAGES) : positiveInt(values['naive-pages'], '--naive-pages');
  return {
    pages,
    naivePages,
    quick,
    json: values.json,
    // Sized so the full 1 GiB run stays well under three minutes on two cores.
    samples: quick ? { minSamples: 5, maxTime: 0.5 } : { minSamples: 10, maxTime: 3 },
    nativeRepeats: quick ? 5 : 15,
  };
}

/** The four benchmark specs for one subject. */
function specsFor(subject: Subject): Map<Op, OpSpec> {
  const ensureFaulted = (): void => {
    if (!subject.faulted) {
      subject.faultIn();
    }
  };
  const name = (op: Op): string => `${subject.label} ${op}`;
  // mprotect alternates RO and RW so that every call changes every PTE.
  let writable = true;
  // Checking every walk's count keeps its result observable (no call can be
  // optimised away) and catches a walk that silently saw less.
  let badWalks = 0;
  return new Map<Op, OpSpec>([
    [
      'fault-in',
      {
        name: name('fault-in'),
        pages: subject.pages,
        fn: () => subject.faultIn(),
        consuming: { restore: () => subject.dontneed(), ready: () => !subject.faulted },
      },
    ],
    [
      'mprotect',
      {
        name: name('mprotect'),
        pages: subject.pages,
        prepare: ensureFaulted,
        fn: () => {
          writable = !writable;
          subject.mprotect(writable);
        },
        // Leave the range writable: a later write fault on a read-only VMA would SIGSEGV.
        finish: () => {
          if (!writable) {
            writable = true;
            subject.mprotect(true);
          }
        },
      },
    ],
    [
      'walk',
      {
        name: name('walk'),
        pages: subject.pages,
        prepare: ensureFaulted,
        fn: () => {
          if (subject.walk() !== subject.pages) {
            badWalks++;
          }
        },
        finish: () => {
          if (badWalks !== 0) {
            throw new Error(`${subject.label} walk: ${badWalks} walks did not see every page present`);
          }
        },
      },
    ],
    [
      'dontneed',
      {
        name: name('dontneed'),
        pages: subject.pages,
        fn: () => subject.dontneed(),
        consuming: { restore: () => subject.faultIn(), ready: () => subject.faulted },
      },
    ],
  ]);
}

function describeRange(pages: number): string {
  return `${pages} pages (${formatSize(pages * PAGE_SIZE)})`;
}

async function main(): Promise<void> {
  const config = parseConfig(process.argv.slice(2));
  const cpus = os.cpus();
  const machine = `${cpus[0]?.model.trim() ?? 'unknown CPU'} ×${cpus.length}, ${os.platform()} ${os.arch()}, Node ${process.version}`;
  const notes: string[] = [];
  if (typeof (globalThis as { gc?: unknown }).gc !== 'function') {
    notes.push('run without --expose-gc: no full GC between benchmarks, expect noisier naive TS numbers');
  }

  // C first: it is quick, and a peer that disagrees should stop the run before the long part.
  process.stderr.write(`C peer: ${config.nativeRepeats} rounds over ${describeRange(config.pages)}...\n`);
  const native = await runNativePeer(config.pages, config.nativeRepeats);
  if (native.result === null) {
    // native.c exits with "got X, expected Y" when its own counts are wrong: that is a disagreement, not a missing toolchain.
    if (/expected \d+/.test(native.note)) {
      throw new Error(`C peer disagrees: ${native.note}`);
    }
    notes.push(`C peer skipped: ${native.note}`);
  } else {
    if (native.result.pages !== config.pages) {
      throw new Error(`C peer ran over ${native.result.pages} pages, asked for ${config.pages}`);
    }
    notes.push(`C: ${native.note}; median of ${config.nativeRepeats} rounds of its own loop (first round also allocates the page tables)`);
  }

  process.stderr.write('verifying WASM and naive TS peers...\n');
  const subjects = [await wasmSubject(config.pages), naiveSubject(config.naivePages)];
  for (const subject of subjects) {
    subject.verify();
  }

  process.stderr.write('benchmark.js suite:\n');
  const specs = subjects.map(specsFor);
  const timings = await runSuite(
    specs.flatMap((byOp) => [...byOp.values()]),
    config.samples,
  );
  const timing = (subjectIndex: number, op: Op): Timing | undefined =>
    timings.get(specs[subjectIndex]!.get(op)!.name);

  const rows = OPS.map((op) => {
    const wasm = timing(0, op)?.nsPerPage;
    const naive = timing(1, op)?.nsPerPage;
    const c = native.result?.[NATIVE_FIELD[op]];
    return [op, num(wasm), num(naive), num(c), ratio(naive, wasm), ratio(c, wasm)];
  });

  notes.unshift(
    'ns/page: median over benchmark.js samples of (time per call ÷ pages); lower is better',
    'fault-in, dontneed: one call per sample on a freshly dontneed\'d / faulted range, state restored untimed between samples',
    'mprotect: calls alternate RO and RW, each counted as one op (C: mean of its RO and RW medians)',
    'WASM÷naive = naive ns ÷ WASM ns (speedup); WASM÷C = C ns ÷ WASM ns (1.00× = C speed)',
  );
  if (Math.min(config.pages, config.naivePages) < 16384) {
    notes.push('small range: the fixed cost of each call (a few µs) is a visible part of ns/page');
  }
  if (config.naivePages !== config.pages) {
    notes.push(`naive TS measured over ${describeRange(config.naivePages)}, not ${config.pages}: ns/page is comparable, cache behaviour may differ`);
  }

  const header =
    `ptemu benchmark — ${machine}\n` +
    `range: ${describeRange(config.pages)} of 4 KiB, x86-64 4-level tables, THP off, no modelled TLB (kernel work only)${config.quick ? ', --quick' : ''}`;
  const table = formatTable(
    ['operation', 'WASM ns/page', 'naive TS ns/page', 'C ns/page', 'WASM÷naive speedup', 'WASM÷C ratio'],
    rows,
  );
  process.stdout.write(`\n${header}\n\n${table}\n\n${notes.map((note) => `- ${note}`).join('\n')}\n`);

  if (config.json !== undefined) {
    const results = Object.fromEntries(
      OPS.map((op) => [
        op,
        { wasm: timing(0, op) ?? null, naive: timing(1, op) ?? null, c: native.result?.[NATIVE_FIELD[op]] ?? null },
      ]),
    );
    const report = {
      machine: { cpu: cpus[0]?.model.trim() ?? null, cores: cpus.length, platform: os.platform(), arch: os.arch(), node: process.version },
      pages: config.pages,
      naivePages: config.naivePages,
      quick: config.quick,
      samples: config.samples,
      nativeRepeats: config.nativeRepeats,
      results,
      notes,
    };
    await writeFile(config.json, JSON.stringify(report, null, 2) + '\n');
    process.stderr.write(`wrote ${config.json}\n`);
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`bench: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
