// Scenario files (`ptemu run`): loading and validation. A scenario is YAML or
// JSON; it is parsed with source positions kept, checked against
// scenario.schema.json with ajv, then checked for what a schema cannot say
// (names used before they are made, address expressions, counter paths), so
// that every mistake is reported with file:line:col before anything runs.
// Execution is in scenario-run.ts.

import { readFileSync, existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseDocument, LineCounter, isMap, isSeq, isPair, isScalar, visit, type Document } from 'yaml';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import type { MachineOptions, Advice, ClearRefs, UffdFeature, ErrnoCode, InjectableBug } from '../index.js';

/** A JSON value: what scenario files hold, and what results are written as. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/** Where something is in a scenario file (1-based line and column). */
export interface Pos { file: string; line: number; col: number }

export function formatPos(p: Pos): string { return `${p.file}:${p.line}:${p.col}`; }

export interface ScenarioProblem { pos: Pos; message: string }

/** A scenario that cannot run: the first problem's place, and every problem found. */
export class ScenarioError extends Error {
  readonly file: string;
  readonly line: number;
  readonly col: number;
  readonly problems: readonly ScenarioProblem[];

  constructor(problems: ScenarioProblem[]) {
    const first = problems[0]!;
    const more = problems.length > 1 ? ` (and ${problems.length - 1} more problem${problems.length > 2 ? 's' : ''})` : '';
    super(`${formatPos(first.pos)}: ${first.message}${more}`);
    this.name = 'ScenarioError';
    this.file = first.pos.file;
    this.line = first.pos.line;
    this.col = first.pos.col;
    this.problems = problems;
  }
}

// ---- address expressions ------------------------------------------------------------

/** An address or length expression, parsed: numbers, sizes, mapping names (.start/.end/.length), + - *, parentheses. */
export type Expr =
  | { t: 'num'; v: bigint }
  | { t: 'name'; name: string; field: 'start' | 'end' | 'length' }
  | { t: 'op'; op: '+' | '-' | '*'; a: Expr; b: Expr };

/** An expression as written, with where it was written. */
export interface ExprArg { text: string; expr: Expr; pos: Pos }

const UNITS: Record<string, bigint> = {
  b: 1n, k: 1n << 10n, kb: 1000n, kib: 1n << 10n, m: 1n << 20n, mb: 1000_000n, mib: 1n << 20n,
  g: 1n << 30n, gb: 1000_000_000n, gib: 1n << 30n, t: 1n << 40n, tib: 1n << 40n,
};

/** Parses an expression; throws a message (not positioned) on a syntax error. */
export function parseExpr(text: string): Expr {
  const toks: { s: string; at: number }[] = [];
  const re = /\s*(0[xX][0-9a-fA-F_]+|\d+(?:\.\d+)?[A-Za-z]*|[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z]+)?|[-+*()]|\S)/gy;
  for (let m = re.exec(text); m; m = re.exec(text)) toks.push({ s: m[1]!, at: m.index + m[0].length - m[1]!.length });
  let i = 0;
  const where = (): string => (i < toks.length ? `at column ${toks[i]!.at + 1} ("${toks[i]!.s}")` : 'at the end');
  const factor = (): Expr => {
    const tok = toks[i];
    if (!tok) throw new Error(`expected a number, size or mapping name ${where()}`);
    if (tok.s === '(') {
      i++;
      const e = sum();
      if (toks[i]?.s !== ')') throw new Error(`expected ")" ${where()}`);
      i++;
      return e;
    }
    if (/^0[xX]/.test(tok.s)) { i++; return { t: 'num', v: BigInt(tok.s.replace(/_/g, '')) }; }
    const num = /^(\d+(?:\.\d+)?)([A-Za-z]*)$/.exec(tok.s);
    if (num) {
      const unit = num[2]!.toLowerCase();
      const mul = unit === '' ? 1n : UNITS[unit];
      if (mul === undefined) throw new Error(`unknown size unit "${num[2]}" ${where()} (KiB, MiB, GiB, ...)`);
      const [whole, frac = ''] = num[1]!.split('.');
      const scaled = BigInt(whole! + frac) * mul;
      const div = 10n ** BigInt(frac.length);
      if (scaled % div !== 0n) throw new Error(`${tok.s} is not a whole number of bytes`);
      i++;
      return { t: 'num', v: scaled / div };
    }
    const name = /^([A-Za-z_][A-Za-z0-9_]*)(?:\.([A-Za-z]+))?$/.exec(tok.s);
    if (name) {
      const field = name[2] ?? 'start';
      if (field !== 'start' && field !== 'end' && field !== 'length') throw new Error(`"${tok.s}": a mapping has .start, .end and .length`);
      i++;
      return { t: 'name', name: name[1]!, field };
    }
    throw new Error(`unexpected "${tok.s}" ${where()}`);
  };
  const product = (): Expr => {
    let e = factor();
    while (toks[i]?.s === '*') { i++; e = { t: 'op', op: '*', a: e, b: factor() }; }
    return e;
  };
  const sum = (): Expr => {
    let e = product();
    while (toks[i]?.s === '+' || toks[i]?.s === '-') {
      const op = toks[i]!.s as '+' | '-';
      i++;
      e = { t: 'op', op, a: e, b: product() };
    }
    return e;
  };
  const e = sum();
  if (i < toks.length) throw new Error(`unexpected "${toks[i]!.s}" at column ${toks[i]!.at + 1}`);
  return e;
}

/** Mapping names an expression uses. */
export function exprNames(e: Expr): string[] {
  if (e.t === 'name') return [e.name];
  if (e.t === 'op') return [...exprNames(e.a), ...exprNames(e.b)];
  return [];
}

/** Evaluates an expression; `mapping` gives a named mapping's bounds. */
export function evalExpr(e: Expr, mapping: (name: string) => { start: bigint; end: bigint }): bigint {
  if (e.t === 'num') return e.v;
  if (e.t === 'name') {
    const m = mapping(e.name);
    return e.field === 'start' ? m.start : e.field === 'end' ? m.end : m.end - m.start;
  }
  const a = evalExpr(e.a, mapping), b = evalExpr(e.b, mapping);
  return e.op === '+' ? a + b : e.op === '-' ? a - b : a * b;
}

// ---- the scenario, typed --------------------------------------------------------------

/** What an access must end in. */
export type OutcomeName =
  | 'ok' | 'any' | 'SIGSEGV' | 'SIGBUS' | 'SEGV_MAPERR' | 'SEGV_ACCERR' | 'BUS_ADRERR' | 'BUS_MCEERR_AR' | 'OOM'
  | 'blocked' | 'userfaultfd' | 'page-mkwrite' | 'page-table-lock';

/** A value an expectation wants; expressions where the value is an address or a size. */
export type Want = boolean | number | string | ExprArg | readonly Want[] | { readonly [key: string]: Want };

/** Accesses and checks that run at a yield point of a stepped kernel operation. */
export interface During {
  pos: Pos;
  at: 'entry' | 'flush' | 'vma-start' | 'vma-end';
  addr?: ExprArg;
  process?: string;
  nth: number;
  steps: ScenarioStep[];
}

interface Access { process: string; addr: ExprArg; cpu?: number; outcome: OutcomeName }

/** The arguments of every step, by step name. */
export interface StepArgs {
  spawn: { name: string };
  fork: { process: string; child: string };
  exit: { process: string };
  memfd: { name: string; size: ExprArg; huge?: boolean };
  file: { name: string; size: ExprArg; pageMkwrite?: boolean };
  truncate: { file: string; size: ExprArg };
  mmap: {
    process: string; name?: string; addr?: ExprArg; length: ExprArg; prot?: string; shared?: boolean;
    file?: string; offset?: ExprArg; fixed?: boolean; openMode?: 'rdwr' | 'rdonly';
  };
  munmap: { process: string; addr: ExprArg; length: ExprArg };
  mprotect: { process: string; addr: ExprArg; length: ExprArg; prot: string };
  madvise: { process: string; addr: ExprArg; length: ExprArg; advice: Advice };
  'clear-refs': { process: string; what: ClearRefs; during?: During[] };
  read: Access & { faults?: number };
  write: Access & { tag: number; faults?: number };
  touch: Access & { length: ExprArg; mode: 'r' | 'w'; tag?: number };
  pin: { process: string; addr: ExprArg; pages: number; name: string; kind?: 'pin' | 'get'; write?: boolean; longterm?: boolean; fast?: boolean };
  unpin: { pin: string };
  'dma-write': { pin: string; page?: number; tag: number };
  userfaultfd: { process: string; name: string; features?: UffdFeature[] };
  'uffd-register': { uffd: string; addr: ExprArg; length: ExprArg; missing?: boolean; wp?: boolean };
  'uffd-unregister': { uffd: string; addr: ExprArg; length: ExprArg };
  'uffd-wp': { uffd: string; addr: ExprArg; length: ExprArg; enable?: boolean };
  'uffd-copy': { uffd: string; addr: ExprArg; length: ExprArg; tag: number; wp?: boolean };
  'uffd-zeropage': { uffd: string; addr: ExprArg; length: ExprArg; wp?: boolean };
  'dirty-helper': {
    file: string; op: 'write-protect' | 'clean-record'; first: number; nr: number; bitmapOffset?: number; walkOnSkip?: boolean;
    result?: Record<string, Want>; during?: During[];
  };
  'device-memory': { device: string; pages: number };
  'device-fault': { device: string; process: string; addr: ExprArg; pages: number; mode: 'r' | 'w'; result?: Record<string, Want>; during?: During[] };
  'device-write': { device: string; process: string; addr: ExprArg; tag: number };
  'device-migrate': { device: string; process: string; addr: ExprArg; pages: number; result?: Record<string, Want> };
  'device-release': { device: string; process: string };
  'tlb-flush': { process?: string; addr?: ExprArg; length?: ExprArg; cpu?: number };
  /** A test-only wrong kernel from here on (m.debug.injectBug): how fuzz failures replay. */
  'inject-bug': { bug: InjectableBug };
  expect: { checks: Expectation[] };
}

export type StepName = keyof StepArgs;

/** One step: its name, arguments, place, and the error it must throw if any. */
export type ScenarioStep = { [K in StepName]: { op: K; pos: Pos; args: StepArgs[K]; error?: ErrnoCode } }[StepName];

export type ExpectKind = 'pagemap' | 'entry' | 'frame' | 'read' | 'stats' | 'vmas' | 'events' | 'mirror' | 'contpte' | 'pin' | 'cache' | 'check';

/** What an expectation is about (which keys apply depends on the kind). */
export interface Subject {
  process?: string;
  addr?: ExprArg;
  length?: ExprArg;
  file?: string;
  pgoff?: number;
  device?: string;
  uffd?: string;
  name?: string;
  page?: number;
  cpu?: number;
  outcome?: OutcomeName;
  /** events: the names given to fork messages' child contexts, by message index. */
  bind?: (string | undefined)[];
}

/** One check of an expect block: the subject, and the values wanted (dotted paths for stats). */
export interface Expectation { kind: ExpectKind; pos: Pos; subject: Subject; want: Record<string, Want> }

export interface Scenario {
  /** The file it was loaded from. */
  file: string;
  name?: string;
  description?: string;
  machine: MachineOptions;
  /** Where the machine block is (the top of the file when there is none): Machine.create's errors point here. */
  machinePos: Pos;
  steps: ScenarioStep[];
}

// ---- counters that `stats` may name ------------------------------------------------------

const MTHP_SIZES = ['16K', '32K', '64K', '128K', '256K', '512K', '1M'];
/** Dotted counter paths per subject of a `stats` check (see scenario-run.ts for where each comes from). */
export const STATS_PATHS: Record<'machine' | 'process' | 'file' | 'device' | 'mirror', readonly string[]> = {
  machine: [
    'frames', 'freeFrames', 'swapSlots', 'swapSlotsUsed', 'thpFaultAlloc', 'thpFaultFallback', 'thpSplitPmd', 'thpFileAlloc',
    'thpFileMapped', 'heapBytes', 'wasmMemoryBytes', 'cacheFlushes', 'contpte.folds', 'contpte.unfolds', 'warnings', 'processes',
    ...MTHP_SIZES.flatMap((s) => [`mthp.${s}.faultAlloc`, `mthp.${s}.faultFallback`]),
  ],
  process: [
    'rss.anon', 'rss.file', 'rss.shmem', 'rss.swap', 'faults.minor', 'faults.major', 'pageTableBytes', 'hasPinned',
    'lastFork.retries', 'lastFork.earlyCopies', 'vmas', 'exited',
  ],
  file: ['pages', 'cached', 'swapped', 'pageMkwrite', 'size'],
  device: ['pages', 'free', 'migratedToDevice', 'migratedToRam'],
  mirror: ['live', 'directories', 'bytes', 'rootBytes', 'validEntries', 'faults', 'cpuFaults', 'retries', 'backoffs', 'invalidations'],
};

export function statsSubject(s: Subject): keyof typeof STATS_PATHS {
  if (s.device !== undefined) return s.process !== undefined ? 'mirror' : 'device';
  if (s.process !== undefined) return 'process';
  if (s.file !== undefined) return 'file';
  return 'machine';
}

// ---- loading ------------------------------------------------------------------------------

/** Where the schema is: beside this module (src/cli, or dist/src/cli once copied), else in the source tree. */
function schemaFile(): string {
  const candidates = [new URL('./scenario.schema.json', import.meta.url), new URL('../../../src/cli/scenario.schema.json', import.meta.url)];
  for (const u of candidates) {
    const p = fileURLToPath(u);
    if (existsSync(p)) return p;
  }
  throw new Error(`scenario.schema.json not found beside ${fileURLToPath(import.meta.url)}`);
}

let validator: ValidateFunction | undefined;
/** The JSON Schema of the scenario language, as shipped. */
export function scenarioSchema(): Record<string, unknown> {
  return JSON.parse(readFileSync(schemaFile(), 'utf8')) as Record<string, unknown>;
}
function validate(): ValidateFunction {
  // verbose: errors carry the failing data and their schema, for messages that say what was found and what is allowed.
  validator ??= new Ajv({ allErrors: true, verbose: true, allowUnionTypes: true, strict: true }).compile(scenarioSchema());
  return validator;
}

/** Reads and checks a scenario file; throws ScenarioError (file:line:col) on any problem. */
export function loadScenario(path: string): Scenario {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new ScenarioError([{ pos: { file: path, line: 1, col: 1 }, message: `cannot read: ${(e as Error).message}` }]);
  }
  return parseScenario(text, path);
}

/** Checks scenario text (YAML or JSON) as if read from `file`. */
export function parseScenario(text: string, file: string): Scenario {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  const at = (offset: number): Pos => { const p = lc.linePos(offset); return { file, line: p.line, col: p.col }; };
  if (doc.errors.length > 0) {
    throw new ScenarioError(doc.errors.map((e) => ({ pos: at(e.pos[0]), message: e.message.split(' at line ')[0]!.trim() })));
  }
  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: 1000 });
  } catch (e) {
    // An alias to no anchor, or an alias bomb: report it where the first alias is.
    let offset = 0;
    visit(doc, { Alias(_k, node) { offset = node.range?.[0] ?? 0; return visit.BREAK; } });
    throw new ScenarioError([{ pos: at(offset), message: (e as Error).message }]);
  }
  const locate = (path: readonly (string | number)[], key = false): Pos => at(offsetOf(doc, path, key));
  const v = validate();
  if (!v(data)) throw new ScenarioError(schemaProblems(v.errors ?? [], locate));
  return new Checker(file, locate).scenario(data as RawScenario);
}

/** The source offset of the value (or key) at path; the nearest ancestor's when the path is not there. */
function offsetOf(doc: Document, path: readonly (string | number)[], key: boolean): number {
  let node: unknown = doc.contents;
  let offset = (doc.contents as { range?: [number, number, number] } | null)?.range?.[0] ?? 0;
  for (let i = 0; i < path.length; i++) {
    const seg = path[i]!;
    if (isMap(node)) {
      const pair = node.items.find((p) => isPair(p) && isScalar(p.key) && String(p.key.value) === String(seg));
      if (!pair) break;
      const last = i === path.length - 1;
      const target = last && key ? pair.key : pair.value;
      const r = (target as { range?: [number, number, number] } | null)?.range ?? (pair.key as { range?: [number, number, number] }).range;
      if (r) offset = r[0];
      node = pair.value;
    } else if (isSeq(node)) {
      const item = node.items[Number(seg)] as { range?: [number, number, number] } | undefined;
      if (!item) break;
      if (item.range) offset = item.range[0];
      node = item;
    } else {
      break;
    }
  }
  return offset;
}

function pointer(instancePath: string): string[] {
  return instancePath === '' ? [] : instancePath.slice(1).split('/').map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

function show(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a map';
  return JSON.stringify(v);
}

/**
 * ajv's errors as problems a person can act on. Alternatives (an object or a
 * list of them) produce an error per branch; a branch that failed only on its
 * type is dropped when another went further, so the message is about what the
 * author most likely meant.
 */
function schemaProblems(errors: readonly ErrorObject[], locate: (path: readonly (string | number)[], key?: boolean) => Pos): ScenarioProblem[] {
  // A step with two keys also fails additionalProperties when one is not a step name: one message says it.
  const crowded = new Set(errors.filter((e) => e.keyword === 'maxProperties').map((e) => e.instancePath));
  const errs = errors.filter((e) => e.keyword !== 'anyOf' && e.keyword !== 'oneOf' && !(e.keyword === 'additionalProperties' && crowded.has(e.instancePath)));
  const wentFurther = (p: string): boolean => errs.some((o) => (o.instancePath === p && o.keyword !== 'type') || o.instancePath.startsWith(`${p}/`));
  const out: ScenarioProblem[] = [];
  const typesAt = new Map<string, { err: ErrorObject; types: string[] }>();
  for (const e of errs) {
    if (e.keyword === 'type') {
      if (wentFurther(e.instancePath)) continue;
      const t = typesAt.get(e.instancePath);
      const types = String((e.params as { type: string | string[] }).type).split(',');
      if (t) t.types.push(...types); else typesAt.set(e.instancePath, { err: e, types });
      continue;
    }
    out.push(describe(e, locate));
  }
  for (const { err, types } of typesAt.values()) {
    const names = [...new Set(types)].map((t) => (t === 'object' ? 'a map' : t === 'array' ? 'a list' : `a ${t === 'integer' ? 'number' : t}`));
    out.push({ pos: locate(pointer(err.instancePath)), message: `${label(pointer(err.instancePath))}: expected ${names.join(' or ')}, found ${show(err.data)}` });
  }
  const seen = new Set<string>();
  return out
    .filter((p) => { const k = `${formatPos(p.pos)} ${p.message}`; if (seen.has(k)) return false; seen.add(k); return true; })
    .sort((a, b) => a.pos.line - b.pos.line || a.pos.col - b.pos.col);
}

/** "steps[3].mmap.length" for messages. */
function label(path: readonly string[]): string {
  if (path.length === 0) return 'the scenario';
  return path.map((s, i) => (/^\d+$/.test(s) ? `[${s}]` : i === 0 ? s : `.${s}`)).join('');
}

function describe(e: ErrorObject, locate: (path: readonly (string | number)[], key?: boolean) => Pos): ScenarioProblem {
  const path = pointer(e.instancePath);
  const where = label(path);
  const parent = (e.parentSchema ?? {}) as { properties?: Record<string, unknown>; description?: string };
  const known = Object.keys(parent.properties ?? {});
  const isStepMap = known.includes('read') && known.includes('write');
  switch (e.keyword) {
    case 'additionalProperties': {
      const k = (e.params as { additionalProperty: string }).additionalProperty;
      const what = isStepMap ? 'step' : known.includes('pagemap') ? 'check' : 'key';
      const msg = known.length > 0 ? `unknown ${what} "${k}" in ${where}; expected one of: ${known.join(', ')}` : `unknown key "${k}" in ${where}`;
      return { pos: locate([...path, k], true), message: msg };
    }
    case 'required':
      return { pos: locate(path), message: `${where}: missing "${(e.params as { missingProperty: string }).missingProperty}"` };
    case 'enum':
      return { pos: locate(path), message: `${where}: expected one of ${(e.params as { allowedValues: unknown[] }).allowedValues.map((v) => JSON.stringify(v)).join(', ')}, found ${show(e.data)}` };
    case 'const':
      return { pos: locate(path), message: `${where}: expected ${JSON.stringify((e.params as { allowedValue: unknown }).allowedValue)}, found ${show(e.data)}` };
    case 'pattern':
      return { pos: locate(path), message: `${where}: expected ${parent.description ?? `a string matching ${(e.params as { pattern: string }).pattern}`}, found ${show(e.data)}` };
    case 'minProperties':
    case 'maxProperties':
      if (isStepMap) {
        const keys = Object.keys((e.data ?? {}) as object);
        return {
          pos: locate(path),
          message: `${where}: a step is a map with exactly one key, the step's name (found ${keys.length === 0 ? 'none' : keys.map((k) => `"${k}"`).join(', ')}); put its arguments under that key`,
        };
      }
      return { pos: locate(path), message: `${where}: ${e.message ?? 'wrong number of keys'}` };
    default:
      return { pos: locate(path), message: `${where}: ${e.message ?? e.keyword}, found ${show(e.data)}` };
  }
}

// ---- checks a schema cannot make ---------------------------------------------------------

type RawValue = string | number | boolean | null | RawValue[] | { [k: string]: RawValue };
type RawMap = { [k: string]: RawValue };
interface RawScenario { name?: string; description?: string; machine?: RawMap; steps: RawMap[] }

type Namespace = 'process' | 'mapping' | 'file' | 'pin' | 'uffd';

/** Fields naming something: which kind of thing, and whether the field makes it or uses it. */
const NAME_FIELDS: Partial<Record<StepName, Record<string, [Namespace, 'makes' | 'uses']>>> = {
  spawn: { name: ['process', 'makes'] },
  fork: { process: ['process', 'uses'], child: ['process', 'makes'] },
  exit: { process: ['process', 'uses'] },
  memfd: { name: ['file', 'makes'] },
  file: { name: ['file', 'makes'] },
  truncate: { file: ['file', 'uses'] },
  mmap: { process: ['process', 'uses'], name: ['mapping', 'makes'], file: ['file', 'uses'] },
  pin: { process: ['process', 'uses'], name: ['pin', 'makes'] },
  unpin: { pin: ['pin', 'uses'] },
  'dma-write': { pin: ['pin', 'uses'] },
  userfaultfd: { process: ['process', 'uses'], name: ['uffd', 'makes'] },
  'dirty-helper': { file: ['file', 'uses'] },
};
const USES_BY_FIELD: Record<string, Namespace> = { process: 'process', uffd: 'uffd', file: 'file', pin: 'pin' };

/** Fields holding address or length expressions. */
const EXPR_FIELDS = new Set(['addr', 'length', 'size', 'offset']);
/** Steps whose `length` defaults to the whole mapping when `addr` is a bare mapping name. */
const WHOLE_MAPPING = new Set<StepName>(['munmap', 'mprotect', 'madvise', 'touch', 'uffd-register', 'uffd-unregister', 'uffd-wp', 'uffd-copy', 'uffd-zeropage']);
/** Keys of an expectation that say what it is about; the rest are wanted values. */
const SUBJECT_KEYS: Record<ExpectKind, readonly string[]> = {
  pagemap: ['process', 'addr', 'length'], entry: ['process', 'addr'], frame: ['process', 'addr', 'file', 'pgoff'],
  read: ['process', 'addr', 'cpu', 'outcome'], stats: ['process', 'file', 'device'], vmas: ['process'], events: ['uffd'],
  mirror: ['device', 'process', 'addr'], contpte: ['process', 'addr', 'length'], pin: ['name', 'page'], cache: ['file', 'pgoff'], check: [],
};
/** Wanted values that are expressions (addresses, sizes). */
const EXPR_WANTS = new Set(['start', 'end', 'address', 'size']);
const DURING_STEPS = new Set<StepName>(['read', 'write', 'touch', 'expect']);

type Locate = (path: readonly (string | number)[], key?: boolean) => Pos;

/** Turns validated raw data into a Scenario, collecting every semantic problem. */
class Checker {
  private readonly problems: ScenarioProblem[] = [];
  private readonly made = new Map<string, Pos>();

  constructor(private readonly file: string, private readonly locate: Locate) {}

  scenario(raw: RawScenario): Scenario {
    const steps = raw.steps.map((s, i) => this.step(s, ['steps', i], false));
    if (this.problems.length > 0) throw new ScenarioError(this.problems.sort((a, b) => a.pos.line - b.pos.line || a.pos.col - b.pos.col));
    const machinePos = raw.machine !== undefined ? this.locate(['machine']) : { file: this.file, line: 1, col: 1 };
    const s: Scenario = { file: this.file, machine: (raw.machine ?? {}) as MachineOptions, machinePos, steps };
    if (raw.name !== undefined) s.name = raw.name;
    if (raw.description !== undefined) s.description = raw.description;
    return s;
  }

  private problem(path: readonly (string | number)[], message: string, key = false): void {
    this.problems.push({ pos: this.locate(path, key), message });
  }

  private key(ns: Namespace, name: string): string { return `${ns}:${name}`; }

  private makes(ns: Namespace, name: string, path: readonly (string | number)[]): void {
    const prev = this.made.get(this.key(ns, name));
    if (prev) { this.problem(path, `"${name}" already names a ${ns} (made at ${prev.line}:${prev.col})`); return; }
    this.made.set(this.key(ns, name), this.locate(path));
  }

  private uses(ns: Namespace, name: string, path: readonly (string | number)[]): void {
    if (this.made.has(this.key(ns, name))) return;
    const others = [...this.made.keys()].filter((k) => k.startsWith(`${ns}:`)).map((k) => k.slice(ns.length + 1));
    this.problem(path, `unknown ${ns} "${name}"${others.length ? ` (known: ${others.join(', ')})` : ` (no ${ns} is made before this step)`}`);
  }

  private expr(v: RawValue, path: readonly (string | number)[]): ExprArg {
    const pos = this.locate(path);
    const text = String(v);
    let expr: Expr;
    try {
      expr = typeof v === 'number' ? { t: 'num', v: BigInt(v) } : parseExpr(text);
    } catch (e) {
      this.problem(path, `bad address expression "${text}": ${(e as Error).message}`);
      return { text, expr: { t: 'num', v: 0n }, pos };
    }
    for (const n of exprNames(expr)) this.uses('mapping', n, path);
    return { text, expr, pos };
  }

  /** A step: names made and used, expressions parsed, defaults filled in. */
  private step(raw: RawMap, path: (string | number)[], inDuring: boolean): ScenarioStep {
    const op = Object.keys(raw)[0] as StepName;
    const pos = this.locate(path);
    const p = [...path, op];
    let value = raw[op]!;
    // Steps that take one name are written `spawn: p`, `exit: p`, `unpin: x`, `inject-bug: b`.
    if (op === 'spawn') value = { name: value };
    else if (op === 'exit') value = { process: value };
    else if (op === 'unpin') value = { pin: value };
    else if (op === 'inject-bug') value = { bug: value };
    if (inDuring && !DURING_STEPS.has(op)) this.problem(path, `only read, write, touch and expect can run inside a stepped operation, not ${op}`, true);
    if (op === 'expect') return { op, pos, args: { checks: this.expectBlock(value as RawMap, p) } };
    const v = value as RawMap;
    const args: Record<string, unknown> = {};
    const scalarPath = (k: string): (string | number)[] => (op === 'spawn' || op === 'exit' || op === 'unpin' || op === 'inject-bug' ? p : [...p, k]);
    // Uses first, then what the step makes (a fork's child cannot be its own parent).
    const fields = NAME_FIELDS[op] ?? {};
    for (const [k, val] of Object.entries(v)) {
      if (k === 'error' || k === 'during' || k === 'result') continue;
      const nf = fields[k];
      if (nf?.[1] === 'makes') continue;
      if (nf) this.uses(nf[0], String(val), scalarPath(k));
      else if (USES_BY_FIELD[k] && typeof val === 'string') this.uses(USES_BY_FIELD[k]!, val, scalarPath(k));
      args[k] = EXPR_FIELDS.has(k) ? this.expr(val, [...p, k]) : val;
    }
    if (v.during !== undefined) args.during = (v.during as RawMap[]).map((d, i) => this.during(d, [...p, 'during', i]));
    if (v.result !== undefined) args.result = this.wants(v.result as RawMap, [...p, 'result']);
    for (const [k, val] of Object.entries(v)) {
      const nf = fields[k];
      if (nf?.[1] === 'makes') { this.makes(nf[0], String(val), scalarPath(k)); args[k] = val; }
    }
    if (WHOLE_MAPPING.has(op) && args.length === undefined) {
      const addr = args.addr as ExprArg | undefined;
      if (addr && addr.expr.t === 'name' && addr.expr.field === 'start') {
        args.length = { text: `${addr.expr.name}.length`, expr: { t: 'name', name: addr.expr.name, field: 'length' }, pos: addr.pos };
      } else {
        this.problem(p, `${op} needs a length (it may be left out only when addr is a mapping's name, meaning the whole mapping)`);
      }
    }
    if (op === 'read' || op === 'write' || op === 'touch') args.outcome ??= 'ok';
    if (op === 'tlb-flush' && args.addr !== undefined && args.process === undefined) this.problem(p, 'tlb-flush with an addr needs the process');
    const step = { op, pos, args } as ScenarioStep;
    if (typeof v.error === 'string') step.error = v.error as ErrnoCode;
    return step;
  }

  private during(raw: RawMap, path: (string | number)[]): During {
    const d: During = { pos: this.locate(path), at: raw.at as During['at'], nth: (raw.nth as number | undefined) ?? 1, steps: [] };
    if (raw.addr !== undefined) d.addr = this.expr(raw.addr, [...path, 'addr']);
    if (raw.process !== undefined) { this.uses('process', String(raw.process), [...path, 'process']); d.process = String(raw.process); }
    d.steps = (raw.steps as RawMap[]).map((s, i) => this.step(s, [...path, 'steps', i], true));
    return d;
  }

  private expectBlock(raw: RawMap, path: (string | number)[]): Expectation[] {
    const out: Expectation[] = [];
    for (const [kind, val] of Object.entries(raw) as [ExpectKind, RawValue][]) {
      if (kind === 'check') { out.push({ kind, pos: this.locate([...path, kind], true), subject: {}, want: { problems: 0 } }); continue; }
      const items = Array.isArray(val) ? val.map((x, i) => [x, [...path, kind, i]] as const) : [[val, [...path, kind]] as const];
      for (const [item, ipath] of items) out.push(this.expectation(kind, item as RawMap, ipath));
    }
    return out;
  }

  private expectation(kind: ExpectKind, raw: RawMap, path: readonly (string | number)[]): Expectation {
    const subject: Subject = {};
    const want: Record<string, Want> = {};
    const keys = SUBJECT_KEYS[kind];
    for (const [k, v] of Object.entries(raw)) {
      const kp = [...path, k];
      if (!keys.includes(k)) continue;
      if (k === 'addr' || k === 'length') subject[k] = this.expr(v, kp);
      else if (k === 'process' || k === 'file' || k === 'uffd') { this.uses(USES_BY_FIELD[k]!, String(v), kp); subject[k] = String(v); }
      else if (k === 'name') { this.uses('pin', String(v), kp); subject.name = String(v); }
      else (subject as Record<string, unknown>)[k] = v;
    }
    if (kind === 'frame' && !((subject.process !== undefined && subject.addr !== undefined) || (subject.file !== undefined && subject.pgoff !== undefined))) {
      this.problem(path, 'frame needs process + addr, or file + pgoff');
    }
    if (kind === 'mirror' || kind === 'stats') {
      if (kind === 'stats' && subject.file !== undefined && (subject.process !== undefined || subject.device !== undefined)) this.problem(path, 'stats: give one subject (process, file, device, or device + process for a mirror)');
    }
    const rest = Object.fromEntries(Object.entries(raw).filter(([k]) => !keys.includes(k)));
    if (kind === 'stats') {
      const allowed = STATS_PATHS[statsSubject(subject)];
      for (const [dotted, v] of flatten(rest)) {
        // Written flat ('rss.anon: 1') or nested ('rss: { anon: 1 }').
        const kp = [...path, ...(dotted in rest ? [dotted] : dotted.split('.'))];
        if (!allowed.includes(dotted)) {
          this.problem(kp, `stats of a ${statsSubject(subject)}: unknown counter "${dotted}"; expected one of: ${allowed.join(', ')}`, true);
        } else if (typeof v !== 'number' && typeof v !== 'boolean') {
          this.problem(kp, `stats: ${dotted} must be a number or boolean`);
        } else {
          want[dotted] = v;
        }
      }
    } else if (kind === 'events') {
      const messages = (rest.messages as RawMap[]) ?? [];
      subject.bind = messages.map((m) => (typeof m.name === 'string' ? m.name : undefined));
      want.messages = messages.map((m, i) => this.wants(Object.fromEntries(Object.entries(m).filter(([k]) => k !== 'name')), [...path, 'messages', i]));
      messages.forEach((m, i) => { if (typeof m.name === 'string') this.makes('uffd', m.name, [...path, 'messages', i, 'name']); });
    } else {
      Object.assign(want, this.wants(rest, path));
    }
    return { kind, pos: this.locate(path), subject, want };
  }

  /** Wanted values, with the address-like ones parsed as expressions. */
  private wants(raw: RawMap, path: readonly (string | number)[]): Record<string, Want> {
    const out: Record<string, Want> = {};
    for (const [k, v] of Object.entries(raw)) {
      const kp = [...path, k];
      if (EXPR_WANTS.has(k) && (typeof v === 'string' || typeof v === 'number')) out[k] = this.expr(v, kp);
      else if (Array.isArray(v)) out[k] = v.map((x, i) => (x !== null && typeof x === 'object' && !Array.isArray(x) ? this.wants(x, [...kp, i]) : (x as Want)));
      else if (v !== null && typeof v === 'object') out[k] = this.wants(v, kp);
      else if (v !== null) out[k] = v;
    }
    return out;
  }
}

/** { rss: { anon: 1 } } → [['rss.anon', 1]]. */
function flatten(o: RawMap, prefix = ''): [string, RawValue][] {
  return Object.entries(o).flatMap(([k, v]) => (v !== null && typeof v === 'object' && !Array.isArray(v) ? flatten(v, `${prefix}${k}.`) : [[`${prefix}${k}`, v] as [string, RawValue]]));
}
