// m.check(): the core's invariant report, in words.

import type { Core } from './core.js';

/** One invariant violation found by m.check(). */
export interface Problem {
  kind: string;
  message: string;
}

const RECORD_BYTES = 32;

export function readProblems(core: Core, count: number): Problem[] {
  const out: Problem[] = [];
  const base = core.x.checkProblems();
  for (let i = 0; i < count; i++) {
    const r = base + i * RECORD_BYTES;
    const code = core.u32At(r);
    const id = core.u32At(r + 4);
    const a = core.u64At(r + 8), b = core.u64At(r + 16), c = core.u64At(r + 24);
    const h = (v: bigint): string => `0x${v.toString(16)}`;
    let p: Problem;
    switch (code) {
      case 1: p = { kind: 'refcount', message: `pfn ${h(BigInt(id))}: refcount ${b}, accounted ${a}` }; break;
      case 2: p = { kind: 'mapcount', message: `pfn ${h(BigInt(id))}: mapcount ${b}, page tables map it ${a} times` }; break;
      case 3: p = { kind: 'entire-mapcount', message: `folio ${h(BigInt(id))}: entire mapcount ${b}, PMD maps ${a}` }; break;
      case 4: p = { kind: 'leaked-frame', message: `pfn ${h(BigInt(id))} is allocated (refcount ${a}) but nothing refers to it` }; break;
      case 5: p = { kind: 'maps-free-frame', message: `mm ${id} at ${h(a)} maps pfn ${h(b)}, which is free or a table` }; break;
      case 6: p = { kind: 'writable-shared-anon', message: c === 1n ? `anon pfn ${h(BigInt(id))} is writable but mapped more than once` : `mm ${id} at ${h(a)}: anon pfn ${h(b)} writable in two places` }; break;
      case 7: p = { kind: 'table-leak', message: `page-table page ${h(BigInt(id))} is not linked from any mm` }; break;
      case 8: p = { kind: 'table-shared', message: `page-table page ${h(BigInt(id))} is linked ${a} times` }; break;
      case 9: p = { kind: 'rss', message: `mm ${id}: rss counter ${['file', 'anon', 'swap', 'shmem'][Number(a)]} is ${c}, page tables say ${b}` }; break;
      case 10: p = { kind: 'table-count', message: `mm ${id}: holds ${b} table pages, walk found ${a}` }; break;
      case 11: p = { kind: 'swap-count', message: `swap slot ${id}: count ${b}, entries referring to it ${a}` }; break;
      case 12: p = { kind: 'swap-cache', message: `swap slot ${id}: cached pfn ${h(a)} does not point back to it` }; break;
      case 13: p = { kind: 'free-list', message: `free list inconsistent at pfn ${h(BigInt(id))} (${a})` }; break;
      case 14: p = { kind: 'bad-entry', message: `mm ${id} at ${h(a)}: malformed entry ${h(b)} (${c})` }; break;
      case 15: p = { kind: 'page-cache', message: `file ${id} pgoff ${a}: page ${h(b)} is not a cache page for that index` }; break;
      case 16: p = { kind: 'free-count', message: `free frame counter ${a}, free lists hold ${b}` }; break;
      case 17: p = { kind: 'anon-not-exclusive', message: `mm ${id} at ${h(a)}: writable anon pfn ${h(b)} is not PageAnonExclusive` }; break;
      case 18: p = { kind: 'pincount', message: `folio ${h(BigInt(id))}: pincount should be ${a}, is ${b}` }; break;
      case 19: p = { kind: 'i_mmap', message: id === 0 ? `file VMAs ${a}, i_mmap records ${b}` : `file ${id}: i_mmap record (mm ${a >> 48n}, vm_start ${h((a & 0xffffffffffffn) << 12n)}, pgoff ${b}) ${['', 'names no such VMA', 'is out of pgoff order', 'appears twice'][Number(c)]}` }; break;
      case 20: p = { kind: 'contpte', message: `mm ${id} at ${h(a)}: ${['', 'folded block starts at an unaligned frame', 'folded block is not 16 consecutive frames with one set of attributes', 'folded block is not inside one large folio'][Number(c)]} (entry ${h(b)})` }; break;
      case 21: p = { kind: 'mirror', message: id === 0 ? 'a device mirror directory\'s count is not its number of valid entries' : `mirror of mm ${id} at ${h(a)}: entry ${h(b)} ${['', '', 'outlived its mm', 'maps what the CPU does not map', 'maps another frame than the CPU', 'is writable where the CPU entry is not'][Number(c)]}` }; break;
      default: p = { kind: `code-${code}`, message: `unknown problem ${code}` };
    }
    out.push(p);
  }
  return out;
}
