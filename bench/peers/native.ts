/**
 * Runs the native C peer (native.c): compiles it with the system C compiler
 * into a temporary directory, runs it and parses the JSON it prints.
 *
 * The C peer is optional for the benchmarks: when no compiler is installed,
 * or the build or run fails, the result is null and `note` says why, so the
 * report can show the gap instead of failing.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { COMPILERS, errorText, findCompiler, findSource, run } from './cc.js';


export interface NativePeerResult {
  pages: number;
  /** Median nanoseconds per page of each operation. */
  faultIn: number;
  mprotect: number;
  dontneed: number;
  walk: number;
  fork: number;
  /** Dirty tracking with 1% / 100% of PTEs writable (wp) or dirty (clean). */
  wp1: number;
  wp100: number;
  clean1: number;
  clean100: number;
  /** Contiguous-block census and unfold of every block. */
  contScan: number;
  contUnfold: number;
  /** UFFDIO_WRITEPROTECT of every page; PAGEMAP_SCAN WP_MATCHING of WRITTEN with 1% written. */
  uffdProtect: number;
  scanWritten1: number;
  /** Device mirror: read fault of every page into an empty mirror, invalidation of the whole range; 4 KiB PTEs and PMD-mapped THPs. */
  mirrorFault: number;
  mirrorInvalidate: number;
  mirrorFaultThp: number;
  mirrorInvalidateThp: number;
}

function parseResult(stdout: string): NativePeerResult | null {
  let parsed: unknown;
  try {
    parsed = JSON.parse(stdout);
  } catch {
    return null;
  }
  if (typeof parsed !== 'object' || parsed === null) {
    return null;
  }
  const record = parsed as Record<string, unknown>;
  const fields = ['pages', 'faultIn', 'mprotect', 'dontneed', 'walk', 'fork', 'wp1', 'wp100', 'clean1', 'clean100', 'contScan', 'contUnfold', 'uffdProtect', 'scanWritten1', 'mirrorFault', 'mirrorInvalidate', 'mirrorFaultThp', 'mirrorInvalidateThp'] as const;
  const valid = fields.every((field) => {
    const value = record[field];
    return typeof value === 'number' && Number.isFinite(value);
  });
  if (!valid) {
    return null;
  }
  const numbers = record as Record<(typeof fields)[number], number>;
  return {
    pages: numbers.pages,
    faultIn: numbers.faultIn,
    mprotect: numbers.mprotect,
    dontneed: numbers.dontneed,
    walk: numbers.walk,
    fork: numbers.fork,
    wp1: numbers.wp1,
    wp100: numbers.wp100,
    clean1: numbers.clean1,
    clean100: numbers.clean100,
    contScan: numbers.contScan,
    contUnfold: numbers.contUnfold,
    uffdProtect: numbers.uffdProtect,
    scanWritten1: numbers.scanWritten1,
    mirrorFault: numbers.mirrorFault,
    mirrorInvalidate: numbers.mirrorInvalidate,
    mirrorFaultThp: numbers.mirrorFaultThp,
    mirrorInvalidateThp: numbers.mirrorInvalidateThp,
  };
}

/**
 * Build and run the C peer over `pages` pages for `repeats` rounds.
 * Never throws for a missing or failing toolchain: `result` is null and
 * `note` explains; on success `note` names the compiler used.
 */
export async function runNativePeer(
  pages: number,
  repeats: number,
): Promise<{ result: NativePeerResult | null; note: string }> {
  if (!Number.isSafeInteger(pages) || pages < 1 || !Number.isSafeInteger(repeats) || repeats < 1) {
    return { result: null, note: `invalid arguments: pages=${pages}, repeats=${repeats}` };
  }
  const source = await findSource('native.c');
  if (source === null) {
    return { result: null, note: 'native.c not found' };
  }
  const compiler = await findCompiler();
  if (compiler === null) {
    return { result: null, note: `no C compiler found (tried ${COMPILERS.join(', ')})` };
  }

  const dir = await mkdtemp(join(tmpdir(), 'ptemu-native-'));
  try {
    const exe = join(dir, process.platform === 'win32' ? 'native.exe' : 'native');
    try {
      await run(compiler.command, ['-O2', '-o', exe, source]);
    } catch (error) {
      return { result: null, note: `${compiler.command} failed to compile native.c: ${errorText(error)}` };
    }

    let stdout: string;
    try {
      ({ stdout } = await run(exe, [String(pages), String(repeats)], { maxBuffer: 1 << 20 }));
    } catch (error) {
      return { result: null, note: `native peer failed: ${errorText(error)}` };
    }
    const result = parseResult(stdout);
    if (result === null) {
      return { result: null, note: `native peer printed unexpected output: ${stdout.trim().slice(0, 200)}` };
    }
    return { result, note: `${compiler.command} -O2 (${compiler.version})` };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
