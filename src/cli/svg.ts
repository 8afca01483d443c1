// Grouped bar charts as standalone SVG, small enough to read in one sitting:
// one group of bars per category (a trace × TLB cell), one bar per series (a
// page-size policy), a linear axis from 0 with round ticks.

export interface BarChart {
  title: string;
  /** Unit shown on the axis ("%", "bytes", ...). */
  unit: string;
  /** One label per group of bars. */
  groups: string[];
  /** One bar per series in each group; values[i] belongs to groups[i]. */
  series: { name: string; values: number[] }[];
}

const PALETTE = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#76b7b2', '#edc948', '#b07aa1', '#9c755f'];
const W = 720, H = 340, LEFT = 70, RIGHT = 20, TOP = 40, BOTTOM = 70;

export function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

/** 1, 2 or 5 times a power of ten, at least max / 5: a tick step giving at most about six ticks. */
export function niceStep(max: number): number {
  if (!(max > 0)) return 1;
  const raw = max / 5;
  const p = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5, 10]) if (m * p >= raw) return m * p;
  return 10 * p;
}

function formatTick(v: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e9) return `${+(v / 1e9).toFixed(2)}G`;
  if (a >= 1e6) return `${+(v / 1e6).toFixed(2)}M`;
  if (a >= 1e3) return `${+(v / 1e3).toFixed(2)}k`;
  return `${+v.toPrecision(3)}`;
}

/** The chart as an <svg> element (no XML prolog: it embeds in HTML and stands alone as a .svg file). */
export function barChartSvg(c: BarChart): string {
  for (const s of c.series) {
    if (s.values.length !== c.groups.length) throw new Error(`series ${s.name} has ${s.values.length} values for ${c.groups.length} groups`);
  }
  const max = Math.max(0, ...c.series.flatMap((s) => s.values.filter(Number.isFinite)));
  const step = niceStep(max);
  const top = Math.max(step, Math.ceil(max / step) * step);
  const plotW = W - LEFT - RIGHT, plotH = H - TOP - BOTTOM;
  const y = (v: number): number => TOP + plotH - (v / top) * plotH;
  const groupW = plotW / Math.max(1, c.groups.length);
  const barW = (groupW * 0.8) / Math.max(1, c.series.length);
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" role="img" aria-label="${escapeXml(c.title)}">`);
  out.push(`<rect width="${W}" height="${H}" fill="#fff"/>`);
  out.push(`<text x="${W / 2}" y="22" text-anchor="middle" font-family="sans-serif" font-size="15" font-weight="bold">${escapeXml(c.title)}</text>`);
  for (let v = 0; v <= top + step / 2; v += step) {
    out.push(`<line x1="${LEFT}" x2="${W - RIGHT}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}" stroke="#ddd"/>`);
    out.push(`<text x="${LEFT - 6}" y="${(y(v) + 4).toFixed(1)}" text-anchor="end" font-family="sans-serif" font-size="11">${formatTick(v)}</text>`);
  }
  out.push(`<text x="14" y="${TOP + plotH / 2}" transform="rotate(-90 14 ${TOP + plotH / 2})" text-anchor="middle" font-family="sans-serif" font-size="11">${escapeXml(c.unit)}</text>`);
  c.groups.forEach((g, gi) => {
    const gx = LEFT + gi * groupW + groupW * 0.1;
    c.series.forEach((s, si) => {
      const v = s.values[gi]!;
      const h = Number.isFinite(v) ? (v / top) * plotH : 0;
      out.push(`<rect class="bar" x="${(gx + si * barW).toFixed(1)}" y="${(TOP + plotH - h).toFixed(1)}" width="${(barW * 0.9).toFixed(1)}" height="${h.toFixed(1)}" fill="${PALETTE[si % PALETTE.length]}"><title>${escapeXml(`${s.name} · ${g}: ${formatTick(v)} ${c.unit}`)}</title></rect>`);
    });
    out.push(`<text x="${(LEFT + (gi + 0.5) * groupW).toFixed(1)}" y="${H - BOTTOM + 16}" text-anchor="middle" font-family="sans-serif" font-size="11">${escapeXml(g)}</text>`);
  });
  out.push(`<line x1="${LEFT}" x2="${W - RIGHT}" y1="${TOP + plotH}" y2="${TOP + plotH}" stroke="#333"/>`);
  c.series.forEach((s, si) => {
    const lx = LEFT + si * 130;
    out.push(`<rect x="${lx}" y="${H - 28}" width="12" height="12" fill="${PALETTE[si % PALETTE.length]}"/>`);
    out.push(`<text x="${lx + 16}" y="${H - 18}" font-family="sans-serif" font-size="12">${escapeXml(s.name)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n');
}
