// The tour that `npm start` prints must run and tell the story it promises.

import { it, expect } from 'vitest';
import { runDemo } from '../src/demo.js';

it('ptemu demo walks through faults, mprotect, pageout/swap-in, shared memory, THP, TLBs, fork with a pin, dirty tracking, contpte, userfaultfd, device mirrors, ptdump and a clean check', async () => {
  const lines: string[] = [];
  await runDemo((l) => lines.push(l));
  const text = lines.join('\n');
  expect(text).toMatch(/read fault: shared zero page/);
  expect(text).toMatch(/write -> SIGSEGV \(SEGV_ACCERR\)/);
  expect(text).toMatch(/PROT_NONE .*pagemap: present,exclusive/);
  expect(text).toMatch(/swap slot 1 +pagemap: swapped/);
  expect(text).toMatch(/read -> tag 0xc0ffee \(major faults: 1\)/);
  expect(text).toMatch(/p writes 111; q reads 111/);
  expect(text).toMatch(/private mapping after its own write reads 222; the shared page now holds 333/);
  expect(text).toMatch(/pmd 0x[0-9a-f]+ RW NX .*2 MiB folio mapped by one PMD/);
  expect(text).toMatch(/pte x510/);
  expect(text).toMatch(/C1 writes again: completes from l1, no fault/);
  expect(text).toMatch(/the write takes 1 fault\(s\)/);
  expect(text).toMatch(/copied at fork \(1 early copy, 1 prealloc retry\)/);
  expect(text).toMatch(/parent reads 0xd11a, child reads 0xd0\b/);
  expect(text).toMatch(/C1 writes 0xbeef: completes from l1, PTE 6 stays clean \(RW /);
  expect(text).toMatch(/3 cleaned, bits 2,5,6, \[start, end\) = \[2, 7\)/);
  expect(text).toMatch(/holds 0xbeef: recorded/);
  expect(text).toMatch(/notifier calls: protection-page start, protection-page end/);
  expect(text).toMatch(/set_ptes\(16\): 0x40000000  pte 0x[0-9a-f]+ RW .*CONT \(64 KiB leaf\)/);
  expect(text).toMatch(/C1 reads all 16 pages: 1 page walk, then hits on one 64K TLB entry/);
  expect(text).toMatch(/0 folded now, \{"folds":0,"unfolds":1\}/);
  expect(text).toMatch(/MADV_DONTNEED: 0x[0-9a-f]+  pte 0x[0-9a-f]+ marker uffd-wp   pagemap: swapped,soft-dirty,uffd-wp/);
  expect(text).toMatch(/C1 writes: waits \(userfaultfd\); message \{"type":"pagefault","address":\d+,"write":true,"wp":true,"cpu":1\}/);
  expect(text).toMatch(/the bit kept: .* ro .*uffd-wp pfn .*pagemap: present,file,exclusive,soft-dirty,uffd-wp/);
  expect(text).toMatch(/resolved; C1 writes again: completes/);
  expect(text).toMatch(/the scan reports \[3, 6\) \[40, 41\), and the next one 0 regions/);
  expect(text).toMatch(/device read fault inside a THP: 512 mirror entries \(the whole PMD\), 3 directories/);
  expect(text).toMatch(/the CPU faults first \(\d+ CPU faults, 1 retry\), then 1024 entries/);
  expect(text).toMatch(/invalidation\): 512 entries left/);
  expect(text).toMatch(/before a DONTNEED: EBUSY; the driver's loop then reads a PMD \(order 9\)/);
  expect(text).toMatch(/4 moved; 0x[0-9a-f]+  pte 0x[0-9a-f]+ device-private/);
  expect(text).toMatch(/tag 0x77 after migrate_to_ram; device memory \{"pages":64,"free":61,"migratedToDevice":4,"migratedToRam":1\}/);
  expect(text).toMatch(/m6\.check\(\): clean/);
  expect(text).toMatch(/m\.check\(\): clean/);
});
