#!/usr/bin/env node
// The `ptemu` command. A thin layer over the API: each command is an exported
// function that tests call directly.

import { runDemo } from '../demo.js';
import { reportCommand } from './report.js';
import { replayCommand } from './commands/replay.js';
import { sweepCommand } from './sweep.js';
import { runCommand } from './commands/run.js';
import { snapshotCommand } from './commands/snapshot.js';

const HELP = `ptemu: an emulator of Linux memory management

Usage:
  ptemu demo          a guided tour: faults, mprotect, pageout and swap-in,
                      shared memory, THP, TLBs, fork with pins, dirty
                      tracking, contpte, userfaultfd, device mirrors
  ptemu replay <trace> [--format lackey|pinatrace|champsim|raw] [--pages 4k|thp|mthp-64k|contpte]
                      [--tlb preset|file] [--arch] [--cpus] [--mode] [--snapshot snap.json] [--json|--csv FILE]
                      stream a memory trace through the TLBs and page tables
  ptemu sweep <config.yaml> [--workers N] [--json results.json] [--report report.html]
                      traces x TLB presets x page-size policies, on worker threads
  ptemu run <scenario.yaml|json> [--fail-fast] [--json out.json]
                      run a scenario file and check its expect blocks
  ptemu snapshot <pid> -o snap.json [--pfns]
                      a live process's address space as a scenario
  ptemu report <results.json> -o report.html
                      a sweep's results as an HTML page with SVG charts
  ptemu help          this text

Each command takes --help.

Options:
  -h, --help          show help
`;

const DEMO_HELP = `ptemu demo

The guided tour (what npm start runs): short scenarios printing, in kernel
terms, what happens to entries, frames, TLBs and logs: faults on the zero page
and new frames, mprotect, pageout and swap-in, shared memory and COW, THP, a
stale TLB entry, fork with a DMA pin, the dirty-tracking race, contpte
folding, userfaultfd markers and async tracking, a device mirror, ptdump and
the invariant checker. No options.
`;

/** Dispatches to the command named by the first argument; the commands parse their own flags. */
export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === 'help' || cmd === '-h' || cmd === '--help') { process.stdout.write(HELP); return 0; }
  if (cmd === 'demo') {
    if (rest.includes('--help') || rest.includes('-h')) { process.stdout.write(DEMO_HELP); return 0; }
    await runDemo();
    return 0;
  }
  if (cmd === 'replay') return replayCommand(rest);
  if (cmd === 'sweep') return sweepCommand(rest);
  if (cmd === 'run') return runCommand(rest);
  if (cmd === 'snapshot') return snapshotCommand(rest);
  if (cmd === 'report') return reportCommand(rest);
  process.stderr.write(`ptemu: unknown command ${JSON.stringify(cmd)}\n\n${HELP}`);
  return 2;
}

main(process.argv.slice(2)).then((code) => { process.exitCode = code; }, (err: unknown) => {
  process.stderr.write(`ptemu: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
