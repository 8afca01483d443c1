// `ptemu replay <trace>`: argument parsing and output around replayFile.

import { parseArgs } from 'node:util';
import { formatSummary, replayFile, summaryCsv, summaryJson, writeSummary, PAGE_POLICIES, type ReplayRunOptions } from '../replay.js';
import { TRACE_FORMATS } from '../traceformats.js';
import { TLB_PRESETS } from '../../tlb.js';
import type { PagePolicy, TraceFormat } from '../types.js';

export const REPLAY_HELP = `Usage: ptemu replay <trace> [options]

Replays a memory-access trace recorded by a real tool through an emulated
machine with one process, and prints what the TLBs and the kernel did: hits,
page walks, faults, page-table memory, resident set, throughput.

The trace is streamed, never loaded whole; .gz is inflated with zlib and .xz
through \`xz -dc\` (recognised by content, whatever the name). Without
--snapshot, memory is mapped on first touch: each 2 MiB-aligned region an
access lands in is mmapped (private anonymous, rw, x where fetches land)
before the batch holding it is replayed.

Formats (--format; default from the name, else from the first bytes):
  lackey      valgrind --tool=lackey --trace-mem=yes  (I / L / S / M lines;
              ==pid== lines ignored; M = a load and a store; an access
              crossing a page boundary touches both pages)
  pinatrace   Pin's pinatrace tool  ("0x...: R 0x..." / W; # lines ignored)
  champsim    ChampSim binary trace (64-byte input_instr records: a fetch at
              ip, loads for source_memory, stores for destination_memory)
  raw         ptemu's own: "PTEMURAW", u32 version 1, u32 flags 0, then one
              little-endian u64 per access: page address | kind (0 load,
              1 store, 2 fetch). The fastest to replay.
  Names: *lackey*, *pin*, *.champsim*, *.ptr (then .gz / .xz).

Options:
  --format F        lackey | pinatrace | champsim | raw
  --arch A          x86_64 (default) | arm64
  --tlb T           a preset (${Object.keys(TLB_PRESETS).join(', ')}) or a JSON file
                    holding a TLB config; default skylake / neoverse-n1
  --pages P         4k (default, THP off) | thp (THP always) | mthp-64k
                    (64 KiB anonymous folios) | contpte (arm64: 64 KiB folios
                    in contiguous blocks)
  --cpus N          CPUs; batches go to them round-robin (default 1)
  --mode M          model (default: TLBs modelled and counted) | functional
                    (host-speed translation, no TLB counters)
  --snapshot FILE   the address space to replay against, JSON
                    { "vmas": [{ "start", "end", "prot" }] }, instead of
                    mapping on first touch (accesses elsewhere SIGSEGV)
  --skip-bad        skip malformed records (counted) instead of stopping at
                    the first with its file and line or record number
  --limit N         stop after N accesses (suffixes k, M, G: 10M)
  --json FILE       also write the summary as JSON ('-': stdout only)
  --csv FILE        also write the summary as CSV ('-': stdout only)
  --memory SIZE     emulated physical memory (default 4GiB; swap as large)
  --batch N         accesses per batch, the round-robin quantum (default 262144)
  --progress        progress bar on stderr (default: when stderr is a TTY)
  --no-progress     no progress bar
  -h, --help        this text

Exit status: 0 done, 1 the replay failed (unreadable or malformed trace),
2 bad arguments.

Examples:
  valgrind --tool=lackey --trace-mem=yes --log-file=ls.lackey ls
  ptemu replay ls.lackey --pages thp
  ptemu replay 600.perlbench_s-210B.champsimtrace.xz --limit 50M --csv out.csv
  ptemu replay run.ptr --arch arm64 --pages contpte --cpus 4 --json out.json
`;

/** Where a command writes (tests pass their own). */
export interface CommandIo {
  out(text: string): void;
  err(text: string): void;
}

const STDIO: CommandIo = {
  out: (t) => { process.stdout.write(t); },
  err: (t) => { process.stderr.write(t); },
};

class UsageError extends Error {}

/** A count such as 1000, 10k, 2.5M, 1G (decimal multipliers). */
export function parseCount(v: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)([kKmMgG]?)$/.exec(v.trim());
  const n = m ? Number(m[1]) * ({ '': 1, k: 1e3, m: 1e6, g: 1e9 }[m[2]!.toLowerCase()] ?? NaN) : NaN;
  if (!Number.isSafeInteger(n) || n < 0) throw new UsageError(`${flag} must be a non-negative integer (suffixes k, M, G), got ${JSON.stringify(v)}`);
  return n;
}

function oneOf<T extends string>(v: string | undefined, allowed: readonly T[], flag: string): T | undefined {
  if (v === undefined) return undefined;
  if (!(allowed as readonly string[]).includes(v)) throw new UsageError(`${flag} must be one of ${allowed.join(', ')}, got ${JSON.stringify(v)}`);
  return v as T;
}

/** Parses argv (after "replay") into replayFile options and the output files. */
export function parseReplayArgs(argv: string[]): { help: true } | { help: false; run: ReplayRunOptions; json?: string; csv?: string } {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        format: { type: 'string' }, arch: { type: 'string' }, tlb: { type: 'string' }, pages: { type: 'string' },
        cpus: { type: 'string' }, mode: { type: 'string' }, snapshot: { type: 'string' }, 'skip-bad': { type: 'boolean' },
        limit: { type: 'string' }, json: { type: 'string' }, csv: { type: 'string' }, memory: { type: 'string' },
        batch: { type: 'string' }, progress: { type: 'boolean' }, 'no-progress': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (e) {
    throw new UsageError(e instanceof Error ? e.message : String(e));
  }
  const { values: v, positionals } = parsed;
  if (v.help) return { help: true };
  if (positionals.length !== 1) throw new UsageError(positionals.length === 0 ? 'give the trace file to replay' : `one trace at a time, got ${positionals.length}: ${positionals.join(' ')}`);
  if (v.progress && v['no-progress']) throw new UsageError('--progress and --no-progress contradict each other');
  const run: ReplayRunOptions = { trace: positionals[0]! };
  const format = oneOf<TraceFormat>(v.format, TRACE_FORMATS, '--format');
  if (format) run.format = format;
  const arch = oneOf(v.arch, ['x86_64', 'arm64'] as const, '--arch');
  if (arch) run.arch = arch;
  if (v.tlb !== undefined) run.tlb = v.tlb;
  const pages = oneOf<PagePolicy>(v.pages, PAGE_POLICIES, '--pages');
  if (pages) run.pages = pages;
  if (pages === 'contpte' && (arch ?? 'x86_64') !== 'arm64') throw new UsageError('--pages contpte needs --arch arm64 (contiguous PTEs are an arm64 feature)');
  if (v.cpus !== undefined) {
    const n = parseCount(v.cpus, '--cpus');
    if (n < 1 || n > 64) throw new UsageError(`--cpus must be in [1, 64], got ${v.cpus}`);
    run.cpus = n;
  }
  const mode = oneOf(v.mode, ['model', 'functional'] as const, '--mode');
  if (mode) run.mode = mode;
  if (v.snapshot !== undefined) run.snapshot = v.snapshot;
  if (v['skip-bad']) run.skipBad = true;
  if (v.limit !== undefined) run.limit = parseCount(v.limit, '--limit');
  if (v.memory !== undefined) run.memory = v.memory;
  if (v.batch !== undefined) {
    const n = parseCount(v.batch, '--batch');
    if (n < 16) throw new UsageError(`--batch must be at least 16, got ${v.batch}`);
    run.batch = n;
  }
  if (v.progress) run.progress = true;
  if (v['no-progress']) run.progress = false;
  return { help: false, run, ...(v.json !== undefined ? { json: v.json } : {}), ...(v.csv !== undefined ? { csv: v.csv } : {}) };
}

/** `ptemu replay`: returns the exit status. */
export async function replayCommand(argv: string[], io: CommandIo = STDIO): Promise<number> {
  let args;
  try {
    args = parseReplayArgs(argv);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    io.err(`ptemu replay: ${e.message}\n\nRun 'ptemu replay --help' for the options.\n`);
    return 2;
  }
  if (args.help) { io.out(REPLAY_HELP); return 0; }
  try {
    const s = await replayFile(args.run);
    // A summary written to stdout replaces the table there, so it can be piped.
    if (args.json !== '-' && args.csv !== '-') io.out(formatSummary(s));
    if (args.json !== undefined) {
      if (args.json === '-') io.out(summaryJson(s));
      else await writeSummary(args.json, s, 'json');
    }
    if (args.csv !== undefined) {
      if (args.csv === '-') io.out(summaryCsv(s));
      else await writeSummary(args.csv, s, 'csv');
    }
    return 0;
  } catch (e) {
    io.err(`ptemu replay: ${e instanceof Error ? e.message : String(e)}\n`);
    return 1;
  }
}
