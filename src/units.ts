import { EmuError, shown } from './errors.js';

/** A byte count: a non-negative integer number, a bigint, or a string such as '4GiB', '64 KiB', '2M', '4096'. */
export type Size = number | bigint | string;

const UNITS: Record<string, number> = {
  '': 1, b: 1,
  k: 2 ** 10, kb: 1e3, kib: 2 ** 10,
  m: 2 ** 20, mb: 1e6, mib: 2 ** 20,
  g: 2 ** 30, gb: 1e9, gib: 2 ** 30,
  t: 2 ** 40, tb: 1e12, tib: 2 ** 40,
};

/** Parses a Size into a byte count (a safe integer), naming `arg` in errors. */
export function parseSize(value: unknown, arg = 'size'): number {
  let n: number;
  if (typeof value === 'bigint') {
    if (value < 0n || value > BigInt(Number.MAX_SAFE_INTEGER)) throw new EmuError('EINVAL', `${arg} out of range: ${value}`, arg);
    n = Number(value);
  } else if (typeof value === 'number') {
    n = value;
  } else if (typeof value === 'string') {
    const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(value);
    const unit = m ? UNITS[m[2]!.toLowerCase()] : undefined;
    if (!m || unit === undefined) throw new EmuError('EINVAL', `${arg} is not a size: ${JSON.stringify(value)}`, arg);
    n = Number(m[1]) * unit;
  } else {
    throw new EmuError('EINVAL', `${arg} must be a number, bigint or size string, got ${typeof value}`, arg);
  }
  if (!Number.isSafeInteger(n) || n < 0) throw new EmuError('EINVAL', `${arg} must be a non-negative integer byte count, got ${shown(value)}`, arg);
  return n;
}

export const PAGE_SIZE = 4096;
export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;

/** Human-readable size, for reports. */
export function formatSize(bytes: number | bigint): string {
  if (typeof bytes === 'bigint' && bytes >= 0n && bytes <= BigInt(Number.MAX_SAFE_INTEGER)) bytes = Number(bytes);
  if (typeof bytes !== 'number' || !Number.isSafeInteger(bytes) || bytes < 0) {
    throw new EmuError('EINVAL', `bytes must be a non-negative integer byte count, got ${typeof bytes === 'bigint' ? `${bytes}n` : typeof bytes === 'number' ? bytes : typeof bytes}`, 'bytes');
  }
  for (const [u, s] of [['GiB', GiB], ['MiB', MiB], ['KiB', KiB]] as const) {
    if (bytes >= s && bytes % s === 0) return `${bytes / s}${u}`;
  }
  return `${bytes}B`;
}
