import { expect } from 'vitest';
import { Machine, type MachineOptions } from '../src/index.js';

/** A machine for a scenario; tests call expectClean(m) at the end. */
export async function machine(opts: MachineOptions = {}): Promise<Machine> {
  return Machine.create({ memory: '256MiB', ...opts });
}

/** The invariant checker finds nothing. */
export function expectClean(m: Machine): void {
  expect(m.check()).toEqual([]);
}

/** Distinct table spans touched by [start, end) at a shift: how many tables of the level below exist. */
export function spans(start: number, end: number, shift: number): number {
  const s = BigInt(start) >> BigInt(shift);
  const e = (BigInt(end) - 1n) >> BigInt(shift);
  return Number(e - s + 1n);
}

export const PAGE = 4096;
export const MiB = 1 << 20;
export const GiB = 1 << 30;
