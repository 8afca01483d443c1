// The README's first scenario, runnable: `node dist/examples/first-scenario.js`.
// test/examples.test.ts runs it, so the README cannot drift from the code.

import { Machine } from '../src/index.js';

export async function firstScenario(log: (...args: unknown[]) => void = console.log): Promise<void> {
  const m = await Machine.create({ arch: 'x86_64', memory: '4GiB', thp: 'madvise' });
  const p = m.spawn();
  const a = p.mmap({ length: '1GiB', prot: 'rw' });       // private anonymous, PMD-aligned
  p.touch(a.start, a.length, 'w', 0x1234);                // one call into WASM faults all 262,144 pages

  log(p.pagemap(a.start));                                // present, exclusive, soft-dirty, pfn
  log(p.entry(a.start));                                  // the PTE decoded, with its raw value
  log(p.rss, p.pageTableBytes);

  p.mprotect(a.start, 4096, 'none');
  log(p.write(a.start, 1));                               // SIGSEGV (SEGV_ACCERR): failures are values
  p.madvise(a.start + 4096, 4096, 'pageout');
  log(p.read(a.start + 4096));                            // swapped back in with its tag
  log(p.dump(a.start, '64KiB'));                          // ptdump-style runs of entries
  log(m.check());                                         // [] when every invariant holds
}

if (import.meta.url === `file://${process.argv[1]}`) await firstScenario();
