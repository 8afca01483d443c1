// `ptemu sweep`: a grid of replays on worker threads gives the same numbers
// as each replay run alone (the wall-time gain is measured by bench:sweep).

import { describe, it, expect } from 'vitest';
import { mkdtempSync, writeFileSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { loadSweepConfig, runSweep, sweepCells, sweepCommand } from '../src/cli/sweep.js';
import { replayFile } from '../src/cli/replay.js';
import type { ReplaySummary } from '../src/cli/types.js';

const FIXTURES = resolve(import.meta.dirname, 'fixtures/traces');

/** The deterministic part of a summary (time and rate vary). */
function counters(s: ReplaySummary): Omit<ReplaySummary, 'seconds' | 'rate'> {
  const { seconds: _s, rate: _r, ...rest } = s;
  return rest;
}

describe('ptemu sweep', () => {
  it('2 presets × 3 policies × 2 traces on 2 workers: the same numbers as each cell alone, in grid order', async () => {
    const traces = readdirSync(FIXTURES).filter((f) => /^small\.(lackey|pinatrace)$/.test(f)).slice(0, 2);
    expect(traces).toHaveLength(2);
    const dir = mkdtempSync(join(tmpdir(), 'ptemu-sweep-'));
    const cfgFile = join(dir, 'sweep.yaml');
    writeFileSync(cfgFile, `traces: [${traces.map((t) => JSON.stringify(join(FIXTURES, t))).join(', ')}]\ntlb: [skylake, tiny]\npages: [4k, thp, mthp-64k]\nworkers: 2\n`);
    const cfg = loadSweepConfig(cfgFile);
    const r = await runSweep(cfg);
    expect(r.cells).toHaveLength(12);
    expect(r.cells.map((c) => `${c.trace.split('/').pop()} ${c.tlb} ${c.pages}`)).toEqual(
      traces.flatMap((t) => ['skylake', 'tiny'].flatMap((tlb) => ['4k', 'thp', 'mthp-64k'].map((p) => `${t} ${tlb} ${p}`))));
    const cells = sweepCells(cfg);
    for (let i = 0; i < cells.length; i++) {
      const alone = await replayFile(cells[i]!);
      expect(counters(r.cells[i]!.summary), `${cells[i]!.trace} ${cells[i]!.tlb} ${cells[i]!.pages}`).toEqual(counters(alone));
    }
  }, 120_000);

  it('a bad config is refused with the file and the reason; the command writes results and a report', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ptemu-sweep-'));
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'traces: [a]\ntlb: [skylake]\npages: [2m]\n');
    expect(() => loadSweepConfig(bad)).toThrow(/bad\.yaml: pages\[0\] must be one of 4k, thp, mthp-64k, contpte/);
    writeFileSync(bad, 'traces: [a]\ntlb: [skylake]\npages: [4k]\ncolour: red\n');
    expect(() => loadSweepConfig(bad)).toThrow(/unknown key "colour"/);
    // A malformed trace fails the sweep with the worker's error: file, line, and the cell.
    const badCfg = join(dir, 'badtrace.yaml');
    writeFileSync(badCfg, `traces: [${JSON.stringify(join(FIXTURES, 'bad.lackey'))}]\ntlb: [tiny]\npages: [4k]\n`);
    await expect(runSweep(loadSweepConfig(badCfg), { workers: 1 })).rejects.toThrow(/bad\.lackey \(tiny, 4k\): .*bad\.lackey:4: not a lackey record/);
    const trace = 'small.lackey';
    const cfg = join(dir, 'ok.yaml');
    writeFileSync(cfg, `traces: [${JSON.stringify(join(FIXTURES, trace))}]\ntlb: [tiny]\npages: [4k, thp]\nworkers: 1\n`);
    const out = join(dir, 'r.json'), html = join(dir, 'r.html');
    const write = process.stdout.write;
    process.stdout.write = (() => true) as typeof process.stdout.write;
    try {
      expect(await sweepCommand([cfg, '--json', out, '--report', html])).toBe(0);
    } finally { process.stdout.write = write; }
    expect(JSON.parse(readFileSync(out, 'utf8')).cells).toHaveLength(2);
    expect(readFileSync(html, 'utf8')).toContain('<figure id="miss-rate">');
  }, 60_000);
});
