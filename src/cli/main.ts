#!/usr/bin/env node
// The `ptemu` command. A thin layer over the API: each command is an exported
// function that tests call directly.

import { parseArgs } from 'node:util';
import { runDemo } from '../demo.js';

const HELP = `ptemu: an emulator of Linux memory management

Usage:
  ptemu demo          a guided tour: faults, mprotect, pageout and swap-in,
                      shared memory, THP, ptdump and invariant checks
  ptemu help          this text

Options:
  -h, --help          show help
`;

export async function main(argv: string[]): Promise<number> {
  const { positionals, values } = parseArgs({ args: argv, allowPositionals: true, strict: false, options: { help: { type: 'boolean', short: 'h' } } });
  const cmd = positionals[0] ?? 'help';
  if (values.help || cmd === 'help') { process.stdout.write(HELP); return 0; }
  if (cmd === 'demo') { await runDemo(); return 0; }
  process.stderr.write(`ptemu: unknown command ${JSON.stringify(cmd)}\n\n${HELP}`);
  return 2;
}

main(process.argv.slice(2)).then((code) => { process.exitCode = code; }, (err: unknown) => {
  process.stderr.write(`ptemu: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
