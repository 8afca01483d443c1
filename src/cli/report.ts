// `ptemu report`: a sweep's results as one self-contained HTML page (inline
// SVG charts, no scripts, no external files) or as separate .svg charts.

import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { SweepResults, SweepCell, PagePolicy, ReplaySummary } from './types.js';
import { barChartSvg, escapeXml, type BarChart } from './svg.js';

const POLICIES: readonly PagePolicy[] = ['4k', 'thp', 'mthp-64k', 'contpte'];

/** The charts of a report: per metric, one group per trace × TLB, one bar per page-size policy. */
export function reportCharts(r: SweepResults): { id: string; chart: BarChart }[] {
  const groups = [...new Set(r.cells.map((c) => groupOf(c)))];
  const policies = POLICIES.filter((p) => r.cells.some((c) => c.pages === p));
  const metric = (title: string, unit: string, f: (s: ReplaySummary) => number): BarChart => ({
    title, unit, groups,
    series: policies.map((p) => ({
      name: p,
      values: groups.map((g) => { const c = r.cells.find((x) => x.pages === p && groupOf(x) === g); return c ? f(c.summary) : NaN; }),
    })),
  });
  return [
    { id: 'miss-rate', chart: metric('TLB miss rate (walks per access)', '%', (s) => s.missRate * 100) },
    { id: 'walk-refs', chart: metric('Page-walk memory references per 1k accesses', 'refs / 1k', (s) => s.walkRefsPer1k) },
    { id: 'table-bytes', chart: metric('Page-table memory at the end', 'bytes', (s) => s.pageTableBytes) },
    { id: 'faults', chart: metric('Page faults', 'faults', (s) => s.faults.minor + s.faults.major) },
  ];
}

function groupOf(c: SweepCell): string { return `${basename(c.trace)} · ${c.tlb}`; }
function basename(p: string): string { return p.split(/[\\/]/).pop() ?? p; }

/** Checks the shape of a results file before anything is drawn. */
export function parseResults(text: string, file: string): SweepResults {
  let v: unknown;
  try { v = JSON.parse(text); } catch (e) { throw new Error(`${file}: not JSON: ${(e as Error).message}`); }
  const r = v as Partial<SweepResults>;
  if (r === null || typeof r !== 'object' || r.ptemu !== 1 || !Array.isArray(r.cells)) throw new Error(`${file}: not a ptemu sweep result (expected { "ptemu": 1, "cells": [...] })`);
  r.cells.forEach((c, i) => {
    if (typeof c?.tlb !== 'string' || typeof c.trace !== 'string' || !POLICIES.includes(c.pages) || typeof c.summary?.missRate !== 'number') {
      throw new Error(`${file}: cells[${i}] lacks tlb, pages, trace or summary`);
    }
  });
  return r as SweepResults;
}

export function renderReport(r: SweepResults, title = 'ptemu report'): string {
  const charts = reportCharts(r);
  const rows = r.cells.map((c) => `<tr><td>${escapeXml(basename(c.trace))}</td><td>${escapeXml(c.tlb)}</td><td>${c.pages}</td><td>${c.summary.accesses}</td>`
    + `<td>${(c.summary.missRate * 100).toFixed(3)}%</td><td>${c.summary.walkRefsPer1k.toFixed(1)}</td><td>${c.summary.pageTableBytes}</td>`
    + `<td>${c.summary.faults.minor + c.summary.faults.major}</td></tr>`).join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeXml(title)}</title>
<style>body{font-family:sans-serif;margin:24px;max-width:960px}figure{margin:16px 0}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child,th:first-child{text-align:left}</style>
</head><body>
<h1>${escapeXml(title)}</h1>
<p>${r.cells.length} replays: ${new Set(r.cells.map((c) => c.trace)).size} trace(s) × ${new Set(r.cells.map((c) => c.tlb)).size} TLB preset(s) × ${new Set(r.cells.map((c) => c.pages)).size} page-size polic(ies).</p>
${charts.map((c) => `<figure id="${c.id}">\n${barChartSvg(c.chart)}\n</figure>`).join('\n')}
<table><thead><tr><th>trace</th><th>TLB</th><th>pages</th><th>accesses</th><th>miss rate</th><th>walk refs / 1k</th><th>page-table bytes</th><th>faults</th></tr></thead>
<tbody>
${rows}
</tbody></table>
</body></html>
`;
}

const HELP = `ptemu report <results.json> -o report.html [--svg DIR] [--title TEXT]

A sweep's results (ptemu sweep --json) as one self-contained HTML page with
SVG charts: TLB miss rate and page-walk memory references per 1k accesses by
page-size policy, page-table bytes, fault counts.

  -o, --output FILE   the HTML page (default: report.html)
      --svg DIR       also write each chart as DIR/<chart>.svg
      --title TEXT    the page title
  -h, --help          this text
`;

export async function reportCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv, allowPositionals: true,
    options: { output: { type: 'string', short: 'o' }, svg: { type: 'string' }, title: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) { process.stdout.write(HELP); return 0; }
  const file = positionals[0];
  if (!file) { process.stderr.write(`ptemu report: which results file?\n\n${HELP}`); return 2; }
  const results = parseResults(readFileSync(file, 'utf8'), file);
  const out = values.output ?? 'report.html';
  writeFileSync(out, renderReport(results, values.title));
  if (values.svg) {
    mkdirSync(values.svg, { recursive: true });
    for (const c of reportCharts(results)) writeFileSync(join(values.svg, `${c.id}.svg`), `${barChartSvg(c.chart)}\n`);
  }
  process.stdout.write(`wrote ${out}${values.svg ? ` and ${values.svg}/*.svg` : ''}\n`);
  return 0;
}
