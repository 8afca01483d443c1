// `ptemu snapshot <pid> -o snap.json`: write a live process's address space as
// a scenario (snapshot.ts) that `ptemu run` rebuilds and checks, and that
// `ptemu replay --snapshot` maps before replaying a trace.

import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Document, isMap, isSeq, isPair } from 'yaml';
import { snapshotProcess, type SnapshotScenario } from '../snapshot.js';
import { parseScenario, ScenarioError } from '../scenario.js';
import { processIo, type CommandIo } from './run.js';

export const SNAPSHOT_HELP = `Usage: ptemu snapshot <pid> [-o snap.json|snap.yaml] [--pfns]

Reads /proc/<pid>/maps, smaps and pagemap of a live process and writes a
scenario that rebuilds its address space in the emulator: every VMA at its
address with its protection (files and special mappings as memfd stand-ins),
the pages present and swapped, and expect blocks checking that the rebuilt
pagemap bits (present, swapped, exclusive) are the host's. Run it with
\`ptemu run snap.json\`. The file also has a top-level "vmas" list
({ start, end, prot, shared, path }) for \`ptemu replay --snapshot\`.

pagemap has no dirty bit: exclusive anonymous pages are rebuilt by writes,
other present pages by reads; see the scenario's description and
source.notes for what was approximated.

Options:
  -o, --output <file>  where to write (.yaml/.yml: YAML, else JSON); default stdout (JSON)
  --pfns               record the host PFN of every present page (source.pfns);
                       refused when PFNs are hidden (reading pagemap without
                       CAP_SYS_ADMIN shows them as 0)
  -h, --help           this text

Exit status: 0 written; 1 the process could not be read; 2 bad usage.
`;

/** `ptemu snapshot`: argv is what follows the command name. Resolves to the exit status. */
export async function snapshotCommand(argv: string[], io: CommandIo = processIo): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv, allowPositionals: true, strict: true,
      options: { output: { type: 'string', short: 'o' }, pfns: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
    });
  } catch (e) {
    io.err(`ptemu snapshot: ${(e as Error).message}\n\n${SNAPSHOT_HELP}`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help) { io.out(SNAPSHOT_HELP); return 0; }
  const pid = Number(positionals[0]);
  if (positionals.length !== 1 || !Number.isSafeInteger(pid) || pid <= 0) {
    io.err(`ptemu snapshot: one process id is needed${positionals.length ? `, got ${positionals.join(' ')}` : ''}\n\n${SNAPSHOT_HELP}`);
    return 2;
  }
  let snap;
  try {
    snap = await snapshotProcess(pid, { pfns: values.pfns === true });
  } catch (e) {
    io.err(`ptemu snapshot: ${(e as Error).message}\n`);
    return 1;
  }
  const out = values.output;
  const yaml = out !== undefined && /\.ya?ml$/i.test(out);
  const text = yaml ? toYaml(snap) : `${JSON.stringify(snap, null, 2)}\n`;
  // What is written must load: a snapshot that `ptemu run` refuses is a bug here, not the user's.
  try {
    parseScenario(text, out ?? '<stdout>');
  } catch (e) {
    if (e instanceof ScenarioError) { io.err(`ptemu snapshot: internal error, the scenario does not validate: ${e.message}\n`); return 1; }
    throw e;
  }
  if (out === undefined) io.out(text);
  else {
    writeFileSync(out, text);
    const pages = snap.steps.length;
    io.err(`ptemu snapshot: ${snap.vmas.length} VMAs, ${pages} steps written to ${out}${snap.source.notes.length ? ` (${snap.source.notes.length} notes in source.notes)` : ''}\n`);
  }
  return 0;
}

/** YAML with one line per step and per check ({ process: p, addr: v3, ... }), the way scenarios are written by hand. */
function toYaml(snap: SnapshotScenario): string {
  const doc = new Document(snap);
  const flowItems = (node: unknown): void => {
    if (isSeq(node)) for (const item of node.items) { if (isMap(item) || isSeq(item)) item.flow = true; }
  };
  flowItems(doc.get('vmas'));
  const steps = doc.get('steps');
  if (isSeq(steps)) {
    for (const step of steps.items) {
      if (!isMap(step)) continue;
      for (const pair of step.items) {
        if (!isPair(pair)) continue;
        const v = pair.value;
        if (!isMap(v)) continue;
        if (String((pair.key as { value?: unknown }).value) !== 'expect') { v.flow = true; continue; }
        for (const check of v.items) {
          if (!isPair(check)) continue;
          if (isSeq(check.value)) flowItems(check.value);
          else if (isMap(check.value)) for (const p of check.value.items) if (isPair(p)) flowItems(p.value);
        }
      }
    }
  }
  return doc.toString({ lineWidth: 0 });
}
