// `ptemu run`: the example scenarios run and pass; every kind of mistake in a
// scenario file is refused before anything runs, naming its line and column;
// a failed check reports a diff and the run goes on (or stops with --fail-fast).

import { describe, it, expect } from 'vitest';
import { readdirSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { loadScenario, parseScenario, ScenarioError, parseExpr, evalExpr } from '../src/cli/scenario.js';
import { runScenario, type ScenarioResult } from '../src/cli/scenario-run.js';
import { runCommand, RUN_HELP, type CommandIo } from '../src/cli/commands/run.js';

const EXAMPLES = 'examples/scenarios';
const FIXTURES = 'test/fixtures/scenarios';

function capture(): CommandIo & { stdout: string; stderr: string } {
  const io = { stdout: '', stderr: '', out: (t: string) => { io.stdout += t; }, err: (t: string) => { io.stderr += t; } };
  return io;
}

function failures(r: ScenarioResult): string {
  return r.checks.filter((c) => !c.passed).map((c) => `${c.pos.line}:${c.pos.col} ${c.kind} ${c.subject} ${c.message ?? ''} ${JSON.stringify(c.diff)}`).join('\n')
    + (r.error ? `\nerror at ${r.error.pos.line}:${r.error.pos.col}: ${r.error.message}` : '');
}

describe('the example scenarios', () => {
  const files = readdirSync(EXAMPLES).filter((f) => /\.ya?ml$/.test(f)).sort();

  it('cover the seed topics', () => {
    for (const topic of ['contpte-fold.yaml', 'device-mirror.yaml', 'dirty-race.yaml', 'fork-pin.yaml', 'uffd-wp-dontneed.yaml']) expect(files).toContain(topic);
  });

  for (const f of files) {
    it(`${f} runs every step and passes every check`, async () => {
      const r = await runScenario(loadScenario(join(EXAMPLES, f)));
      expect(failures(r)).toBe('');
      expect(r.ok).toBe(true);
      expect(r.steps.run).toBe(r.steps.total);
      expect(r.expectations.passed).toBeGreaterThan(5);
    });
  }

  it('the rest of the language (every other step kind) runs and passes', async () => {
    const r = await runScenario(loadScenario(join(FIXTURES, 'all-steps.yaml')));
    expect(failures(r)).toBe('');
    expect(r.steps.run).toBe(r.steps.total);
  });

  it('runCommand exits 0 on a passing scenario and prints a summary', async () => {
    const io = capture();
    expect(await runCommand([join(EXAMPLES, 'fork-pin.yaml')], io)).toBe(0);
    expect(io.stdout).toMatch(/fork-pin\.yaml: 14 steps, 17 checks: 17 passed, 0 failed\n$/);
    expect(io.stderr).toBe('');
  });
});

describe('scenario errors: named by line and column, nothing runs', () => {
  const cases: [file: string, line: number, col: number, message: RegExp][] = [
    ['bad-key.yaml', 5, 49, /unknown key "protection" in steps\[1\]\.mmap; expected one of: process, name, addr, length, prot/],
    ['bad-type.yaml', 9, 12, /steps\[2\]\.write\.tag: expected a number, found "seven"/],
    ['bad-expr.yaml', 6, 32, /bad address expression "a \+ \* 2": unexpected "\*" at column 5/],
    ['unknown-process.yaml', 6, 23, /unknown process "q" \(known: p\)/],
    ['unknown-process.json', 6, 29, /unknown process "q" \(known: p\)/],
    ['unknown-mapping.yaml', 7, 36, /unknown mapping "b" \(known: a\)/],
    ['unknown-step.yaml', 5, 5, /unknown step "mmapp" in steps\[1\]; expected one of: spawn, fork, exit/],
    ['yaml-syntax.yaml', 5, 3, /Flow map in block collection/],
  ];
  for (const [file, line, col, message] of cases) {
    it(`${file}: ${line}:${col}`, async () => {
      const path = join(FIXTURES, file);
      let err: unknown;
      try { loadScenario(path); } catch (e) { err = e; }
      expect(err).toBeInstanceOf(ScenarioError);
      const e = err as ScenarioError;
      expect([e.file, e.line, e.col]).toEqual([path, line, col]);
      expect(e.problems[0]!.message).toMatch(message);
      expect(e.message).toMatch(new RegExp(`^${path.replace(/\./g, '\\.')}:${line}:${col}: `));

      // Through the command: exit 2, the problem on stderr, and no run (no summary, no --json file).
      const dir = mkdtempSync(join(tmpdir(), 'ptemu-run-'));
      try {
        const io = capture();
        expect(await runCommand([path, '--json', join(dir, 'out.json')], io)).toBe(2);
        expect(io.stderr).toContain(`${path}:${line}:${col}: `);
        expect(io.stderr).toContain('not run');
        expect(io.stdout).toBe('');
        expect(existsSync(join(dir, 'out.json'))).toBe(false);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }

  it('reports every schema problem of a file, in source order', () => {
    let err: ScenarioError | undefined;
    try { loadScenario(join(FIXTURES, 'unknown-step.yaml')); } catch (e) { err = e as ScenarioError; }
    expect(err!.problems.map((p) => [p.pos.line, p.pos.col])).toEqual([[5, 5], [7, 7]]);
    expect(err!.problems[1]!.message).toMatch(/unknown check "pagemapp" in steps\[2\]\.expect; expected one of: pagemap, entry, frame/);
  });

  it('a step written with two keys says how a step is written', () => {
    const text = 'steps:\n  - spawn: p\n  - mmap: { process: p, length: 4KiB }\n    error: EEXIST\n';
    expect(() => parseScenario(text, 't.yaml')).toThrow(/^t\.yaml:3:5: steps\[1\]: a step is a map with exactly one key/);
  });

  it('names made twice, unknown counters, and a missing length are refused', () => {
    const text = [
      'steps:',
      '  - spawn: p',
      '  - spawn: p',
      '  - mmap: { process: p, name: a, length: 4KiB }',
      '  - madvise: { process: p, addr: a+4KiB, advice: pageout }',
      '  - expect:',
      '      stats: { process: p, rss.anonn: 1 }',
    ].join('\n');
    let err: ScenarioError | undefined;
    try { parseScenario(text, 's.yaml'); } catch (e) { err = e as ScenarioError; }
    expect(err!.problems.map((p) => `${p.pos.line}:${p.pos.col} ${p.message}`)).toEqual([
      '3:12 "p" already names a process (made at 2:12)',
      expect.stringMatching(/^5:14 madvise needs a length/),
      expect.stringMatching(/^7:28 stats of a process: unknown counter "rss\.anonn"; expected one of: rss\.anon/),
    ]);
  });

  it('address expressions: numbers, sizes, names with fields, + - * and parentheses', () => {
    const m = (name: string) => (name === 'a' ? { start: 0x10000n, end: 0x18000n } : { start: 0n, end: 0n });
    expect(evalExpr(parseExpr('a+0x1000'), m)).toBe(0x11000n);
    expect(evalExpr(parseExpr('a.end - 2*4KiB'), m)).toBe(0x16000n);
    expect(evalExpr(parseExpr('(a.length + 1.5KiB) * 2'), m)).toBe(2n * (0x8000n + 1536n));
    expect(() => parseExpr('a.middle')).toThrow(/\.start, \.end and \.length/);
    expect(() => parseExpr('4Kb+')).toThrow(/expected a number, size or mapping name at the end/);
    expect(() => parseExpr('3QiB')).toThrow(/unknown size unit "QiB"/);
  });
});

describe('running: failed checks, errors, --fail-fast, --json', () => {
  it('a failed check gives its place and a diff, and the run goes on', async () => {
    const r = await runScenario(loadScenario(join(FIXTURES, 'failing.yaml')));
    expect(r.ok).toBe(false);
    expect(r.steps).toEqual({ total: 6, run: 6 });
    expect(r.expectations).toEqual({ passed: 2, failed: 2 });
    const failed = r.checks.filter((c) => !c.passed);
    expect(failed.map((c) => [c.pos.line, c.pos.col, c.kind, c.diff])).toEqual([
      [8, 14, 'frame', [{ path: 'refcount', expected: 2, found: 1 }]],
      [10, 13, 'read', [{ path: 'tag', expected: 8, found: 7 }]],
    ]);

    const io = capture();
    expect(await runCommand([join(FIXTURES, 'failing.yaml')], io)).toBe(1);
    expect(io.stdout).toContain('failing.yaml:8:14: frame p @ a+0x1000 (0x');
    expect(io.stdout).toContain('    - refcount: 2\n    + refcount: 1\n');
    expect(io.stdout).toContain('failing.yaml: 6 steps, 4 checks: 2 passed, 2 failed');
  });

  it('--fail-fast stops at the first failed check; --json writes the result', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ptemu-run-'));
    try {
      const io = capture();
      const out = join(dir, 'r.json');
      expect(await runCommand([join(FIXTURES, 'failing.yaml'), '--fail-fast', '--json', out], io)).toBe(1);
      const r = JSON.parse(readFileSync(out, 'utf8')) as ScenarioResult;
      expect(r.steps).toEqual({ total: 6, run: 4 });
      expect(r.expectations).toEqual({ passed: 1, failed: 1 });
      expect(r.checks[1]).toMatchObject({ kind: 'frame', passed: false, pos: { line: 8, col: 14 }, diff: [{ path: 'refcount', expected: 2, found: 1 }] });
      expect(io.stdout).not.toContain('tag: 8');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('an expected error passes; an unexpected one stops the run at its step', async () => {
    const r = await runScenario(loadScenario(join(FIXTURES, 'step-error.yaml')));
    expect(r.checks).toEqual([expect.objectContaining({ kind: 'error', passed: true, pos: expect.objectContaining({ line: 7, col: 5 }) })]);
    expect(r.error).toMatchObject({ pos: { line: 8, col: 5 }, step: 'mmap', code: 'EEXIST' });
    expect(r.steps).toEqual({ total: 5, run: 3 });
    expect(r.ok).toBe(false);
  });

  it('a during clause whose yield point never comes is a failed check', async () => {
    const r = await runScenario(loadScenario(join(FIXTURES, 'during-missed.yaml')));
    const failed = r.checks.filter((c) => !c.passed);
    expect(failed).toHaveLength(1);
    expect(failed[0]).toMatchObject({ kind: 'during', pos: { line: 15, col: 11 }, message: expect.stringMatching(/never reached/) });
  });

  it('keepWorld hands back the machine and the named objects', async () => {
    const r = await runScenario(loadScenario(join(EXAMPLES, 'fork-pin.yaml')), { keepWorld: true });
    const w = r.world!;
    expect([...w.processes.keys()]).toEqual(['p', 'c']);
    expect(w.machine.check()).toEqual([]);
    expect(w.processes.get('c')!.read(w.mappings.get('a')!.start)).toMatchObject({ ok: true, tag: 1 });
  });

  it('usage: --help, no file, unknown option', async () => {
    let io = capture();
    expect(await runCommand(['--help'], io)).toBe(0);
    expect(io.stdout).toBe(RUN_HELP);
    expect(RUN_HELP).toContain('ptemu run <scenario.yaml|scenario.json> [--fail-fast] [--json out.json]');
    io = capture();
    expect(await runCommand([], io)).toBe(2);
    expect(io.stderr).toMatch(/a scenario file is needed/);
    io = capture();
    expect(await runCommand(['x.yaml', '--fast'], io)).toBe(2);
    expect(io.stderr).toMatch(/Unknown option '--fast'/);
  });
});
