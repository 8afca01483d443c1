// The examples the README points to must run as documented.

import { it, expect } from 'vitest';
import { firstScenario } from '../examples/first-scenario.js';
import { countDirty } from '../examples/walk-dirty.js';
import { raceOnClean } from '../examples/dirty-race.js';

it('the first scenario runs and ends with a clean check', async () => {
  const out: unknown[][] = [];
  await firstScenario((...a) => out.push(a));
  expect(out[0]![0]).toMatchObject({ present: true, exclusive: true });
  expect(out[2]).toEqual([{ anon: 262144, file: 0, shmem: 0, swap: 0 }, expect.any(Number)]);
  expect(out[3]![0]).toMatchObject({ ok: false, signal: 'SIGSEGV', code: 'SEGV_ACCERR' });
  expect(out[4]![0]).toMatchObject({ ok: true, tag: 0x1234, faults: 1 });
  expect(out.at(-1)![0]).toEqual([]);
});

it('the dirty-counting walk skips the huge PMD and finds the ten written pages', async () => {
  expect(await countDirty()).toEqual({ dirty: 10, skippedHuge: 1 });
});

it('the dirty-tracking race example records page 6, which reads clean yet holds the racing write', async () => {
  expect(await raceOnClean()).toEqual({ cleaned: 2, bits: [2, 6], start: 2, end: 7, page6Dirty: false, page6Tag: 0xbeef });
});
