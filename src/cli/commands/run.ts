// `ptemu run <scenario>`: load a scenario file (refusing it whole, with
// file:line:col, if anything in it is wrong), run it, print the failed checks
// with their diffs and a summary; exit 0 when everything passed.

import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { loadScenario, ScenarioError, formatPos } from '../scenario.js';
import { runScenario, formatCheck, type ScenarioResult } from '../scenario-run.js';

export const RUN_HELP = `Usage: ptemu run <scenario.yaml|scenario.json> [--fail-fast] [--json out.json] [--verbose]

Runs a scenario: a machine, steps that drive it (spawn, fork, mmap, write,
pin, userfaultfd, device faults, ...) and expect blocks that check it
(pagemap bits, page-table entries, frames, counters, m.check()). The whole
file is checked first, against its JSON Schema and for names and address
expressions; any problem is reported as file:line:col and nothing runs.

Options:
  --fail-fast        stop at the first failed check (default: run on and
                     report every failed check; a step that throws an error
                     the scenario did not expect always stops the run)
  --json <file>      also write the result (steps run, every check with its
                     diff) as JSON to <file>
  -v, --verbose      list passed checks too
  -h, --help         this text

Exit status: 0 all checks passed; 1 a check failed or a step threw;
2 the scenario could not be loaded, or bad usage.

The language: the README ("Scenario files"), the JSON Schema
(src/cli/scenario.schema.json, shipped beside the compiled command) and the
examples in examples/scenarios/. Example:

  machine: { arch: x86_64, memory: 64MiB, cpus: 2 }
  steps:
    - spawn: p
    - mmap: { process: p, name: a, length: 16KiB, prot: rw }
    - write: { process: p, addr: a+0x1000, tag: 7, cpu: 1 }
    - fork: { process: p, child: c }
    - expect:
        read: { process: c, addr: a+0x1000, tag: 7 }
        frame: { process: p, addr: a+0x1000, mapcount: 2 }
        check: clean
`;

/** Where a command writes (the process's streams, or a test's buffers). */
export interface CommandIo {
  out: (text: string) => void;
  err: (text: string) => void;
}

export const processIo: CommandIo = {
  out: (t) => { process.stdout.write(t); },
  err: (t) => { process.stderr.write(t); },
};

/** `ptemu run`: argv is what follows the command name. Resolves to the exit status. */
export async function runCommand(argv: string[], io: CommandIo = processIo): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv, allowPositionals: true, strict: true,
      options: { 'fail-fast': { type: 'boolean' }, json: { type: 'string' }, verbose: { type: 'boolean', short: 'v' }, help: { type: 'boolean', short: 'h' } },
    });
  } catch (e) {
    io.err(`ptemu run: ${(e as Error).message}\n\n${RUN_HELP}`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) { io.out(RUN_HELP); return 0; }
  if (positionals.length !== 1) {
    io.err(`ptemu run: ${positionals.length === 0 ? 'a scenario file is needed' : 'one scenario file at a time'}\n\n${RUN_HELP}`);
    return 2;
  }
  const file = positionals[0]!;
  let scenario;
  try {
    scenario = loadScenario(file);
  } catch (e) {
    if (!(e instanceof ScenarioError)) throw e;
    for (const p of e.problems) io.err(`${formatPos(p.pos)}: ${p.message}\n`);
    io.err(`${file}: not run (${e.problems.length} problem${e.problems.length > 1 ? 's' : ''})\n`);
    return 2;
  }
  const result = await runScenario(scenario, { failFast: values['fail-fast'] === true });
  for (const c of result.checks) {
    if (!c.passed) io.out(`${formatCheck(c)}\n`);
    else if (values.verbose) io.out(`${formatPos(c.pos)}: ${c.kind} ${c.subject}: ok\n`);
  }
  if (result.error) {
    const code = result.error.code ? ` ${result.error.code}` : '';
    // EmuError messages start with their code already.
    const message = result.error.code && result.error.message.startsWith(`${result.error.code}: `) ? result.error.message.slice(result.error.code.length + 2) : result.error.message;
    io.out(`${formatPos(result.error.pos)}: ${result.error.step} threw${code}: ${message}\n`);
  }
  io.out(`${summary(result)}\n`);
  if (values.json !== undefined) writeFileSync(values.json, `${JSON.stringify(result, null, 2)}\n`);
  return result.ok ? 0 : 1;
}

function summary(r: ScenarioResult): string {
  const steps = r.steps.run === r.steps.total ? `${r.steps.total} steps` : `${r.steps.run} of ${r.steps.total} steps run`;
  const n = r.expectations.passed + r.expectations.failed;
  const checks = `${n} check${n === 1 ? '' : 's'}: ${r.expectations.passed} passed, ${r.expectations.failed} failed`;
  return `${r.file}: ${steps}, ${checks}${r.ok ? '' : r.error ? ' — stopped by an error' : ''}`;
}
