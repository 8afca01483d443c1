// The contracts between the `ptemu` commands: what a trace replay takes and
// reports, and what a sweep writes for `ptemu report`.

import type { TranslationMode } from '../machine.js';

export type TraceFormat = 'lackey' | 'pinatrace' | 'champsim' | 'raw';

/**
 * Page-size policy of a replay: '4k' (THP off), 'thp' (THP always: 2 MiB
 * folios where the mapping lines up), 'mthp-64k' (64 KiB anonymous folios,
 * not folded), 'contpte' (arm64: 64 KiB folios folded into contiguous blocks).
 */
export type PagePolicy = '4k' | 'thp' | 'mthp-64k' | 'contpte';

export interface ReplayFileOptions {
  /** Path of the trace; .gz and .xz are decompressed on the fly. */
  trace: string;
  /** Default: from the file name (…lackey…, …pin…, .champsim[.xz|.gz], .ptr) or by sniffing the first bytes. */
  format?: TraceFormat;
  arch?: 'x86_64' | 'arm64';
  /** A TLB preset name, or the path of a JSON file holding a TlbConfig. Default 'skylake' (x86_64) / 'neoverse-n1' (arm64). */
  tlb?: string;
  pages?: PagePolicy;
  cpus?: number;
  mode?: TranslationMode;
  /** A scenario written by `ptemu snapshot`: the address space to replay against (else regions are mapped on first touch). */
  snapshot?: string;
  /** Skip malformed records (counted) instead of failing on the first. */
  skipBad?: boolean;
  /** Stop after this many accesses. */
  limit?: number;
  /** Progress bar on stderr (default: when stderr is a TTY). */
  progress?: boolean;
}

export interface ReplaySummary {
  trace: string;
  format: TraceFormat;
  arch: 'x86_64' | 'arm64';
  pages: PagePolicy;
  tlb: string;
  mode: TranslationMode;
  accesses: number;
  loads: number;
  stores: number;
  ifetches: number;
  /** Malformed records skipped (with skipBad). */
  skipped: number;
  /** Summed over CPUs. */
  l1Hits: number;
  l2Hits: number;
  walks: number;
  walkRefs: number;
  /** walks / accesses. */
  missRate: number;
  walksPer1k: number;
  walkRefsPer1k: number;
  faults: { minor: number; major: number };
  pageTableBytes: number;
  /** Resident pages at the end. */
  rss: number;
  seconds: number;
  /** Accesses per second, parse and simulation together. */
  rate: number;
}

/** One cell of a sweep: a TLB preset × a page-size policy × a trace. */
export interface SweepCell {
  tlb: string;
  pages: PagePolicy;
  trace: string;
  summary: ReplaySummary;
}

/** What `ptemu sweep` writes and `ptemu report` reads. */
export interface SweepResults {
  ptemu: 1;
  cells: SweepCell[];
}
