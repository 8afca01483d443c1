// ptdump-style text from the core's dump records (runs of entries that agree
// in level, kind and every attribute bit except the address).

import type { Core } from './core.js';
import type { ArchCodec, DecodedEntry } from './arch.js';
import type { VmaInfo } from './process.js';
import { formatSize } from './units.js';

const RECORD_BYTES = 32;

function hex(v: number | bigint, width = 16): string { return `0x${v.toString(16).padStart(width, '0')}`; }

/** Attribute words for one decoded entry, ptdump-like. */
export function describeEntry(d: DecodedEntry): string {
  switch (d.kind) {
    case 'present': {
      const w: string[] = d.protnone ? ['PROT_NONE'] : [d.write ? 'RW' : 'ro', d.exec ? 'x' : 'NX'];
      if (d.young) w.push('young');
      if (d.dirty) w.push('dirty');
      if (d.special) w.push('special');
      if (d.softDirty) w.push('soft-dirty');
      if (d.uffdWp) w.push('uffd-wp');
      if (d.cont) w.push('CONT');
      return w.join(' ');
    }
    case 'swap': {
      const w = [`swap type=${d.swapType}`];
      if (d.swpExclusive) w.push('exclusive');
      if (d.swpSoftDirty) w.push('soft-dirty');
      if (d.swpUffdWp) w.push('uffd-wp');
      return w.join(' ');
    }
    case 'marker': return `marker ${d.markers!.join('|')}`;
    default: return d.kind;
  }
}

export function formatDump(core: Core, arch: ArchCodec, count: number, vmas: VmaInfo[]): string {
  const lines: string[] = [];
  const base = core.x.dumpRecords();
  let vi = 0;
  for (let i = 0; i < count; i++) {
    const r = base + i * RECORD_BYTES;
    const start = core.u64At(r);
    const end = core.u64At(r + 8);
    const raw = core.u64At(r + 16);
    const level = core.u32At(r + 24);
    const n = core.u32At(r + 28);
    while (vi < vmas.length && BigInt(vmas[vi]!.end) <= start) {
      vi++;
    }
    const v = vmas[vi];
    const d = arch.decode(raw, level);
    const where = d.kind === 'present' ? ` pfn ${hex(d.pfn!, 1)}${n > 1 ? '..' : ''}`
      : d.kind === 'swap' ? ` offset ${hex(d.swapOffset!, 1)}${n > 1 ? '..' : ''}` : '';
    const vmaNote = v && BigInt(v.start) <= start ? `  [${v.prot}${v.shared ? 's' : 'p'}${v.file ? ` file ${v.file}` : ' anon'}]` : '';
    lines.push(`${hex(start)}-${hex(end)} ${formatSize(Number(end - start)).padStart(8)} ${d.level} x${n}  ${describeEntry(d)}${where}${vmaNote}`);
  }
  return lines.join('\n');
}
