import { EmuError } from './errors.js';

/** A virtual address: a number for 48-bit spaces, or a bigint (needed above 2^53 on 5-level machines). */
export type Addr = number | bigint;

/** Address-space geometry of a machine. */
export interface Geometry {
  /** Virtual address bits translated (48 or 57). */
  vaBits: number;
  /** TASK_SIZE: the end of user space. */
  taskSize: bigint;
}

/** Converts and validates an address argument; returns it as a bigint. */
export function toBigAddr(value: unknown, arg: string): bigint {
  if (typeof value === 'bigint') {
    if (value < 0n || value >= 1n << 64n) throw new EmuError('EINVAL', `${arg} out of the 64-bit range: ${value}`, arg);
    return value;
  }
  if (typeof value === 'number') {
    if (!Number.isInteger(value) || value < 0) throw new EmuError('EINVAL', `${arg} must be a non-negative integer address, got ${value}`, arg);
    if (!Number.isSafeInteger(value)) throw new EmuError('EINVAL', `${arg} ${value} is beyond 2^53: pass it as a bigint`, arg);
    return BigInt(value);
  }
  throw new EmuError('EINVAL', `${arg} must be a number or bigint address, got ${value === null ? 'null' : typeof value}`, arg);
}

/**
 * Checks that [start, start+len) lies in user space. Non-canonical addresses
 * (upper bits not a sign extension) and canonical kernel-half addresses are
 * both outside it; the message says which. `code` is what the syscall returns.
 */
export function checkUserRange(g: Geometry, start: bigint, len: bigint, arg: string, code: 'EINVAL' | 'ENOMEM'): void {
  const end = start + len;
  if (end <= g.taskSize) return;
  const top = start >> BigInt(g.vaBits - 1);
  const canonical = top === 0n || top === (1n << BigInt(65 - g.vaBits)) - 1n;
  const hex = `0x${start.toString(16)}`;
  if (!canonical) throw new EmuError(code, `${arg} ${hex} is non-canonical for a ${g.vaBits}-bit address space`, arg);
  throw new EmuError(code, `${arg} range ${hex}+0x${len.toString(16)} goes beyond the user address limit 0x${g.taskSize.toString(16)}`, arg);
}

/** Page-aligned check. */
export function checkAligned(v: bigint, arg: string): void {
  if ((v & 0xfffn) !== 0n) throw new EmuError('EINVAL', `${arg} 0x${v.toString(16)} is not page-aligned`, arg);
}

/** bigint address -> number when exact (the usual 48-bit case). */
export function toNumberAddr(v: bigint): number { return Number(v); }
