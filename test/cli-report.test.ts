// `ptemu report`: hand-written SVG bar charts and the HTML page that holds
// them, checked as text and, where a Chromium is installed (Debian's
// `chromium`, which .ci/run installs), rendered in a real headless browser.

import { describe, it, expect } from 'vitest';
import { existsSync, mkdtempSync, readFileSync, writeFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { barChartSvg, niceStep } from '../src/cli/svg.js';
import { renderReport, reportCharts, parseResults, reportCommand } from '../src/cli/report.js';
import type { SweepResults, ReplaySummary, PagePolicy } from '../src/cli/types.js';

function summary(walks: number, tableBytes: number, faults: number): ReplaySummary {
  const accesses = 100_000;
  return {
    trace: 't', format: 'raw', arch: 'x86_64', pages: '4k', tlb: 'skylake', mode: 'model', accesses, loads: accesses, stores: 0, ifetches: 0, skipped: 0,
    l1Hits: accesses - walks, l2Hits: 0, walks, walkRefs: walks * 4, missRate: walks / accesses, walksPer1k: (walks / accesses) * 1000,
    walkRefsPer1k: ((walks * 4) / accesses) * 1000, faults: { minor: faults, major: 0 }, pageTableBytes: tableBytes, rss: faults, seconds: 1, rate: accesses,
  };
}

const RESULTS: SweepResults = {
  ptemu: 1,
  cells: (['a.trace', 'b.trace'] as const).flatMap((trace, ti) => (['skylake', 'tiny'] as const).flatMap((tlb, ki) =>
    (['4k', 'thp', 'mthp-64k'] as PagePolicy[]).map((pages, pi) => ({ tlb, pages, trace, summary: summary(9000 / (pi + 1) + ti * 100 + ki * 10, 40960 / (pi + 1), 500 / (pi + 1)) })))),
};

describe('SVG bar charts', () => {
  it('one bar per series and group, heights proportional to the values on a round axis', () => {
    const svg = barChartSvg({ title: 'T <&>', unit: '%', groups: ['g1', 'g2'], series: [{ name: 'a', values: [10, 20] }, { name: 'b', values: [5, 0] }] });
    const bars = [...svg.matchAll(/<rect class="bar"[^>]*height="([\d.]+)"/g)].map((x) => Number(x[1]));
    expect(bars).toHaveLength(4);
    // Group by group: g1 (a 10, b 5), g2 (a 20, b 0).
    expect(bars[2]! / bars[0]!).toBeCloseTo(2, 5);
    expect(bars[1]! / bars[0]!).toBeCloseTo(0.5, 5);
    expect(bars[3]).toBe(0);
    expect(svg).toContain('T &lt;&amp;&gt;');
    expect(niceStep(93)).toBe(20);
    expect(niceStep(0.0042)).toBe(0.001);
    expect(() => barChartSvg({ title: 't', unit: '', groups: ['x'], series: [{ name: 'a', values: [1, 2] }] })).toThrow(/2 values for 1 groups/);
  });

  it('the report has a chart per metric with a bar per cell, and a table of every cell', () => {
    const charts = reportCharts(RESULTS);
    expect(charts.map((c) => c.id)).toEqual(['miss-rate', 'walk-refs', 'table-bytes', 'faults']);
    expect(charts[0]!.chart.groups).toEqual(['a.trace · skylake', 'a.trace · tiny', 'b.trace · skylake', 'b.trace · tiny']);
    expect(charts[0]!.chart.series.map((s) => s.name)).toEqual(['4k', 'thp', 'mthp-64k']);
    expect(charts[0]!.chart.series[1]!.values[0]).toBeCloseTo(4.5, 6);   // 4500 walks / 100k accesses
    const html = renderReport(RESULTS, 'sweep');
    expect(html.match(/<figure/g)).toHaveLength(4);
    expect(html.match(/<rect class="bar"/g)).toHaveLength(4 * 12);
    expect(html.match(/<tr><td>/g)).toHaveLength(12);
    expect(html).not.toMatch(/<script|https?:\/\/(?!www\.w3\.org)/);    // self-contained
  });

  it('bad results files are refused with the reason', () => {
    expect(() => parseResults('nope', 'r.json')).toThrow(/r\.json: not JSON/);
    expect(() => parseResults('{"cells":[]}', 'r.json')).toThrow(/not a ptemu sweep result/);
    expect(() => parseResults('{"ptemu":1,"cells":[{"tlb":"x"}]}', 'r.json')).toThrow(/cells\[0\] lacks/);
  });

  it('the command writes the page and the separate SVGs', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ptemu-report-'));
    writeFileSync(join(dir, 'r.json'), JSON.stringify(RESULTS));
    const out = join(dir, 'r.html');
    const write = process.stdout.write;
    process.stdout.write = (() => true) as typeof process.stdout.write;
    try {
      expect(await reportCommand([join(dir, 'r.json'), '-o', out, '--svg', join(dir, 'svg')])).toBe(0);
    } finally { process.stdout.write = write; }
    expect(readFileSync(out, 'utf8')).toContain('<figure id="walk-refs">');
    expect(readdirSync(join(dir, 'svg')).sort()).toEqual(['faults.svg', 'miss-rate.svg', 'table-bytes.svg', 'walk-refs.svg']);
  });
});

const chromium = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => existsSync(p));

describe('the report in a real browser', () => {
  // Debian's chromium package; .ci/run installs it. Without one the rendering check cannot run.
  it.skipIf(!chromium)('headless Chromium renders every chart with visible bars (pixels counted in a screenshot)', async () => {
    const { chromium: pw } = await import('playwright-core');
    const browser = await pw.launch({ executablePath: chromium, args: ['--no-sandbox'] });
    try {
      const page = await browser.newPage({ viewport: { width: 1000, height: 800 } });
      await page.setContent(renderReport(RESULTS));
      for (const id of ['miss-rate', 'walk-refs', 'table-bytes', 'faults']) {
        const fig = page.locator(`#${id} svg`);
        const box = await fig.boundingBox();
        expect(box!.width, id).toBeGreaterThan(600);
        const png = await fig.screenshot();
        // Count the bar-coloured pixels of the screenshot, decoded by the browser itself.
        const coloured = await page.evaluate(async (b64) => {
          const img = new Image();
          img.src = `data:image/png;base64,${b64}`;
          await img.decode();
          const canvas = document.createElement('canvas');
          canvas.width = img.width; canvas.height = img.height;
          const ctx = canvas.getContext('2d')!;
          ctx.drawImage(img, 0, 0);
          const d = ctx.getImageData(0, 0, img.width, img.height).data;
          let n = 0;
          for (let i = 0; i < d.length; i += 4) if (Math.abs(d[i]! - d[i + 1]!) > 40 || Math.abs(d[i + 1]! - d[i + 2]!) > 40) n++;
          return n;
        }, png.toString('base64'));
        expect(coloured, id).toBeGreaterThan(2000);
      }
    } finally {
      await browser.close();
    }
  }, 60_000);
});
