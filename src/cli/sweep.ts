// `ptemu sweep`: a grid of replays (traces × TLB presets × page-size
// policies), run in parallel on worker threads, one Machine per replay,
// merged into one results file in grid order.

import { readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { dirname, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';
import { parse as parseYaml } from 'yaml';
import type { PagePolicy, ReplayFileOptions, SweepCell, SweepResults, TraceFormat } from './types.js';
import { renderReport } from './report.js';

export interface SweepConfig {
  traces: { path: string; format?: TraceFormat }[];
  tlb: string[];
  pages: PagePolicy[];
  arch?: 'x86_64' | 'arm64';
  cpus?: number;
  mode?: 'model' | 'functional';
  /** Accesses per replay at most. */
  limit?: number;
  /** Worker threads (default: the machine's parallelism). */
  workers?: number;
}

const POLICIES: readonly PagePolicy[] = ['4k', 'thp', 'mthp-64k', 'contpte'];
const KEYS = new Set(['traces', 'tlb', 'pages', 'arch', 'cpus', 'mode', 'limit', 'workers']);

/** Reads and checks a sweep config (YAML or JSON); trace paths are relative to the config file. */
export function loadSweepConfig(file: string): SweepConfig {
  const raw: unknown = parseYaml(readFileSync(file, 'utf8'));
  const bad = (what: string): never => { throw new Error(`${file}: ${what}`); };
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) bad('expected a mapping with traces, tlb and pages');
  const c = raw as Record<string, unknown>;
  for (const k of Object.keys(c)) if (!KEYS.has(k)) bad(`unknown key ${JSON.stringify(k)} (expected one of ${[...KEYS].join(', ')})`);
  const list = (k: string): unknown[] => { const v = c[k]; if (!Array.isArray(v) || v.length === 0) bad(`${k} must be a non-empty list`); return v as unknown[]; };
  const traces = list('traces').map((t, i) => {
    const o = typeof t === 'string' ? { path: t } : t as { path?: unknown; format?: unknown };
    if (typeof o?.path !== 'string') bad(`traces[${i}] must be a path or { path, format }`);
    return { path: resolve(dirname(file), o.path as string), ...(o.format === undefined ? {} : { format: o.format as TraceFormat }) };
  });
  const tlb = list('tlb').map((t, i) => (typeof t === 'string' ? t : bad(`tlb[${i}] must be a preset name or a file`)));
  const pages = list('pages').map((p, i) => (POLICIES.includes(p as PagePolicy) ? p as PagePolicy : bad(`pages[${i}] must be one of ${POLICIES.join(', ')}`)));
  const int = (k: string): number | undefined => {
    const v = c[k];
    if (v === undefined) return undefined;
    if (!Number.isSafeInteger(v) || (v as number) < 1) bad(`${k} must be a positive integer`);
    return v as number;
  };
  const arch = c.arch === undefined ? undefined : c.arch === 'x86_64' || c.arch === 'arm64' ? c.arch : bad('arch must be x86_64 or arm64');
  const mode = c.mode === undefined ? undefined : c.mode === 'model' || c.mode === 'functional' ? c.mode : bad('mode must be model or functional');
  return { traces, tlb, pages, arch, mode, cpus: int('cpus'), limit: int('limit'), workers: int('workers') };
}

/** The grid in a fixed order: trace, then TLB preset, then policy. */
export function sweepCells(c: SweepConfig): ReplayFileOptions[] {
  return c.traces.flatMap((t) => c.tlb.flatMap((tlb) => c.pages.map((pages): ReplayFileOptions => ({
    trace: t.path, format: t.format, tlb, pages, arch: c.arch, cpus: c.cpus, mode: c.mode, limit: c.limit, progress: false,
  }))));
}

/**
 * The worker script. Workers run compiled JavaScript: from the TypeScript
 * sources (under vitest) the built copy in dist/ is used, which `npm install`
 * makes.
 */
function workerUrl(): URL {
  return new URL(import.meta.url.endsWith('.ts') ? '../../dist/src/cli/sweep-worker.js' : './sweep-worker.js', import.meta.url);
}

/** Runs every cell on a pool of worker threads; the results come back in grid order. */
export async function runSweep(c: SweepConfig, opts: { workers?: number; onCell?: (done: number, total: number) => void } = {}): Promise<SweepResults> {
  const cells = sweepCells(c);
  const n = Math.max(1, Math.min(opts.workers ?? c.workers ?? availableParallelism(), cells.length));
  const out: SweepCell[] = new Array(cells.length);
  let next = 0, done = 0;
  const runWorker = (): Promise<void> => new Promise((resolveWorker, reject) => {
    const w = new Worker(workerUrl());
    const feed = (): void => {
      if (next >= cells.length) { void w.terminate().then(() => resolveWorker()); return; }
      const i = next++;
      w.postMessage({ i, opts: cells[i] });
    };
    w.on('message', (m: { i: number; summary?: SweepCell['summary']; error?: string }) => {
      if (m.error !== undefined) { void w.terminate(); reject(new Error(m.error)); return; }
      const o = cells[m.i]!;
      out[m.i] = { tlb: o.tlb!, pages: o.pages!, trace: o.trace, summary: m.summary! };
      opts.onCell?.(++done, cells.length);
      feed();
    });
    w.on('error', reject);
    feed();
  });
  await Promise.all(Array.from({ length: n }, runWorker));
  return { ptemu: 1, cells: out };
}

const HELP = `ptemu sweep <config.yaml> [--workers N] [--json results.json] [--report report.html]

Replays every trace under every TLB preset and page-size policy of the config,
in parallel on worker threads (one machine per replay), and prints one table.

  config (YAML or JSON; trace paths relative to it):
    traces:  [a.lackey.gz, { path: b.trace, format: champsim }]
    tlb:     [skylake, tiny]            presets, or JSON files of a TLB config
    pages:   [4k, thp, mthp-64k]        also contpte (arm64)
    arch:    x86_64                     optional: cpus, mode, limit, workers

  --workers N        worker threads (default: the config's, else all cores)
  --json FILE        the results, for ptemu report
  --report FILE      also write the HTML report
  -h, --help         this text
`;

export async function sweepCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv, allowPositionals: true,
    options: { workers: { type: 'string' }, json: { type: 'string' }, report: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) { process.stdout.write(HELP); return 0; }
  const file = positionals[0];
  if (!file) { process.stderr.write(`ptemu sweep: which config?\n\n${HELP}`); return 2; }
  const workers = values.workers === undefined ? undefined : Number(values.workers);
  if (workers !== undefined && (!Number.isSafeInteger(workers) || workers < 1)) { process.stderr.write('ptemu sweep: --workers must be a positive integer\n'); return 2; }
  const config = loadSweepConfig(file);
  const tty = process.stderr.isTTY;
  const t0 = performance.now();
  const r = await runSweep(config, { workers, onCell: tty ? (d, t) => process.stderr.write(`\r${d}/${t} replays`) : undefined });
  if (tty) process.stderr.write('\n');
  process.stdout.write(formatSweep(r));
  process.stdout.write(`${r.cells.length} replays in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
  if (values.json) writeFileSync(values.json, `${JSON.stringify(r, null, 1)}\n`);
  if (values.report) writeFileSync(values.report, renderReport(r, `ptemu sweep ${file}`));
  return 0;
}

/** One line per cell. */
export function formatSweep(r: SweepResults): string {
  const head = ['trace', 'tlb', 'pages', 'accesses', 'miss rate', 'walk refs/1k', 'table bytes', 'faults'];
  const rows = r.cells.map((c) => [c.trace.split(/[\\/]/).pop()!, c.tlb, c.pages, String(c.summary.accesses), `${(c.summary.missRate * 100).toFixed(3)}%`,
    c.summary.walkRefsPer1k.toFixed(1), String(c.summary.pageTableBytes), String(c.summary.faults.minor + c.summary.faults.major)]);
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cols: string[]): string => `${cols.map((x, i) => (i < 3 ? x.padEnd(w[i]!) : x.padStart(w[i]!))).join('  ')}\n`;
  return line(head) + rows.map(line).join('');
}
