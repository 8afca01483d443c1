// Running a scenario (scenario.ts loads and checks it): each step is one call
// of the public API, each expect check reads state through the public API
// and compares it with what the file wants. A failed check is recorded with a
// small diff and the run goes on (or stops, with failFast); a step that throws
// when no `error:` was expected stops the run, since later steps build on it.

import {
  Machine, EmuError, type Process, type File, type Pin, type Userfaultfd, type Mirror, type Mapping, type AccessResult,
  type TouchResult, type Step,
} from '../index.js';
import {
  evalExpr, formatPos, statsSubject, type Scenario, type ScenarioStep, type StepArgs, type Expectation, type ExprArg, type Want,
  type Pos, type OutcomeName, type During, type JsonValue,
} from './scenario.js';

export type { JsonValue } from './scenario.js';

/** One field that differs: what the scenario wanted, what was there. */
export interface DiffLine { path: string; expected: JsonValue; found: JsonValue }

/** The outcome of one check: an expect item, an access's outcome, a step's result or expected error, a during clause firing. */
export interface CheckOutcome {
  pos: Pos;
  /** 'pagemap', 'frame', ... for expect items; 'outcome', 'result', 'error', 'during' for the checks steps make. */
  kind: string;
  /** What was checked, in words: "pagemap p @ a+0x1000 (0x7f0000001000)". */
  subject: string;
  passed: boolean;
  diff: DiffLine[];
  /** Why, when a diff does not say it all (a page not present, a call that threw, ...). */
  message?: string;
}

export interface ScenarioResult {
  file: string;
  name?: string;
  /** Every check passed and no step failed. */
  ok: boolean;
  steps: { total: number; run: number };
  expectations: { passed: number; failed: number };
  /** Every check made, in order. */
  checks: CheckOutcome[];
  /** A step that threw unexpectedly: the run stopped there. */
  error?: { pos: Pos; step: string; message: string; code?: string };
  /** The machine and everything named in it, when asked for (keepWorld). Not serialisable. */
  world?: ScenarioWorld;
}

export interface RunOptions {
  /** Stop at the first failed check (default false: run on and report them all). */
  failFast?: boolean;
  /** Return the machine and named objects in result.world. */
  keepWorld?: boolean;
}

/** What the names of a scenario stand for while it runs. */
export interface ScenarioWorld {
  machine: Machine;
  processes: Map<string, Process>;
  mappings: Map<string, Mapping>;
  files: Map<string, File>;
  pins: Map<string, Pin>;
  uffds: Map<string, Userfaultfd>;
  /** Keyed "device/process". */
  mirrors: Map<string, Mirror>;
}

class StopRun extends Error {}

const hex = (v: bigint | number): string => `0x${v.toString(16)}`;
/** An address or length as the API takes it: a number when exact. */
const api = (v: bigint): number | bigint => (v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v);
const isExpr = (w: unknown): w is ExprArg => typeof w === 'object' && w !== null && 'expr' in w && 'text' in w;
/** Keys whose values read best in hex. */
const ADDRESS_KEYS = new Set(['start', 'end', 'address', 'addr']);

export async function runScenario(s: Scenario, opts: RunOptions = {}): Promise<ScenarioResult> {
  const result: ScenarioResult = {
    file: s.file, ok: true, steps: { total: s.steps.length, run: 0 }, expectations: { passed: 0, failed: 0 }, checks: [],
  };
  if (s.name !== undefined) result.name = s.name;
  let machine: Machine;
  try {
    machine = await Machine.create(s.machine);
  } catch (e) {
    result.ok = false;
    result.error = { pos: s.machinePos, step: 'machine', message: e instanceof Error ? e.message : String(e) };
    if (e instanceof EmuError) result.error.code = e.code;
    return result;
  }
  const run = new Runner(machine, opts.failFast === true);
  result.checks = run.checks;
  for (const step of s.steps) {
    try {
      run.step(step);
      result.steps.run++;
    } catch (e) {
      if (e instanceof StopRun) { result.steps.run++; break; }
      result.error = { pos: step.pos, step: step.op, message: e instanceof Error ? e.message : String(e) };
      if (e instanceof EmuError) result.error.code = e.code;
      break;
    }
    if (run.stopped) break;
  }
  result.expectations.passed = run.checks.filter((c) => c.passed).length;
  result.expectations.failed = run.checks.length - result.expectations.passed;
  result.ok = result.error === undefined && result.expectations.failed === 0;
  if (opts.keepWorld) result.world = run.world;
  return result;
}

/** Text for a failed check: where, what, and the diff (- expected, + found). */
export function formatCheck(c: CheckOutcome): string {
  const lines = [`${formatPos(c.pos)}: ${c.kind} ${c.subject}: FAILED${c.message ? ` — ${c.message}` : ''}`];
  for (const d of c.diff) {
    lines.push(`    - ${d.path}: ${JSON.stringify(d.expected)}`);
    lines.push(`    + ${d.path}: ${JSON.stringify(d.found)}`);
  }
  return lines.join('\n');
}

class Runner {
  readonly world: ScenarioWorld;
  readonly checks: CheckOutcome[] = [];
  stopped = false;

  constructor(readonly m: Machine, private readonly failFast: boolean) {
    this.world = { machine: m, processes: new Map(), mappings: new Map(), files: new Map(), pins: new Map(), uffds: new Map(), mirrors: new Map() };
  }

  // ---- names ----

  private get<T>(map: Map<string, T>, name: string, what: string): T {
    const v = map.get(name);
    if (v === undefined) throw new Error(`${what} "${name}" does not exist (the step that makes it failed or was skipped)`);
    return v;
  }
  private proc(name: string): Process { return this.get(this.world.processes, name, 'process'); }
  private file(name: string): File { return this.get(this.world.files, name, 'file'); }
  private uffd(name: string): Userfaultfd { return this.get(this.world.uffds, name, 'userfaultfd'); }
  private mirror(device: string, process: string): Mirror {
    const key = `${device}/${process}`;
    let mir = this.world.mirrors.get(key);
    if (!mir) { mir = this.m.device(device).mirror(this.proc(process)); this.world.mirrors.set(key, mir); }
    return mir;
  }

  private value(e: ExprArg): bigint {
    const v = evalExpr(e.expr, (name) => {
      const mp = this.get(this.world.mappings, name, 'mapping');
      return { start: mp.startBig, end: mp.endBig };
    });
    if (v < 0n) throw new Error(`${e.text} is negative (${v})`);
    return v;
  }
  private addr(e: ExprArg): number | bigint { return api(this.value(e)); }
  private describeAddr(e: ExprArg): string { return /^\d+$/.test(e.text) || /^0x/i.test(e.text) ? hex(this.value(e)) : `${e.text} (${hex(this.value(e))})`; }

  // ---- checks ----

  private record(c: CheckOutcome): void {
    this.checks.push(c);
    if (!c.passed && this.failFast) { this.stopped = true; throw new StopRun(); }
  }

  private compareInto(want: Want, found: unknown, path: string, diff: DiffLine[]): void {
    if (isExpr(want)) {
      const w = this.value(want);
      const f = typeof found === 'number' || typeof found === 'bigint' ? BigInt(found) : undefined;
      if (f !== w) {
        const key = path.split('.').at(-1) ?? '';
        const addrLike = ADDRESS_KEYS.has(key);
        diff.push({ path, expected: addrLike ? hex(w) : Number(w), found: f === undefined ? json(found) : addrLike ? hex(f) : Number(f) });
      }
      return;
    }
    if (Array.isArray(want)) {
      const list = Array.isArray(found) ? (found as unknown[]) : undefined;
      if (!list) { diff.push({ path, expected: json(want), found: json(found) }); return; }
      const allScalars = want.every((w) => typeof w !== 'object') && list.every((x) => typeof x !== 'object');
      if (allScalars) {
        if (want.length !== list.length || want.some((w, i) => w !== list[i])) diff.push({ path, expected: json(want), found: json(list) });
        return;
      }
      if (want.length !== list.length) diff.push({ path: `${path}.length`, expected: want.length, found: list.length });
      for (let i = 0; i < Math.min(want.length, list.length); i++) this.compareInto(want[i]!, list[i], `${path}[${i}]`, diff);
      return;
    }
    if (typeof want === 'object' && want !== null) {
      const obj = (found ?? {}) as Record<string, unknown>;
      for (const [k, w] of Object.entries(want)) this.compareInto(w, obj[k], path ? `${path}.${k}` : k, diff);
      return;
    }
    if (want !== found) diff.push({ path, expected: json(want), found: json(found) });
  }

  private compare(want: Record<string, Want>, found: Record<string, unknown>): DiffLine[] {
    const diff: DiffLine[] = [];
    for (const [k, w] of Object.entries(want)) this.compareInto(w, found[k], k, diff);
    return diff;
  }

  private outcomeCheck(pos: Pos, subject: string, want: OutcomeName, r: AccessResult | TouchResult, faults?: number): void {
    const found = describeOutcome(r);
    const diff: DiffLine[] = [];
    if (!outcomeMatches(want, r)) diff.push({ path: 'outcome', expected: want, found });
    if (faults !== undefined && 'faults' in r && r.faults !== faults) diff.push({ path: 'faults', expected: faults, found: r.faults });
    this.record({ pos, kind: 'outcome', subject, passed: diff.length === 0, diff });
  }

  // ---- steps ----

  step(step: ScenarioStep): void {
    if (step.error === undefined) { this.exec(step); return; }
    let thrown: unknown;
    try {
      this.exec(step);
    } catch (e) {
      if (e instanceof StopRun) throw e;
      thrown = e;
    }
    const code = thrown instanceof EmuError ? thrown.code : thrown === undefined ? 'none (the step succeeded)' : `not an EmuError: ${String(thrown)}`;
    this.record({
      pos: step.pos, kind: 'error', subject: `${step.op} fails with ${step.error}`, passed: code === step.error,
      diff: code === step.error ? [] : [{ path: 'error', expected: step.error, found: code }],
      ...(thrown instanceof Error && code !== step.error ? { message: thrown.message } : {}),
    });
  }

  private exec(step: ScenarioStep): void {
    const m = this.m, w = this.world;
    switch (step.op) {
      case 'spawn': w.processes.set(step.args.name, m.spawn()); return;
      case 'fork': w.processes.set(step.args.child, this.proc(step.args.process).fork()); return;
      case 'exit': this.proc(step.args.process).exit(); return;
      case 'memfd': {
        const a = step.args;
        w.files.set(a.name, m.memfd({ size: api(this.value(a.size)), ...(a.huge !== undefined ? { huge: a.huge } : {}) }));
        return;
      }
      case 'file': {
        const a = step.args;
        w.files.set(a.name, m.file({ size: api(this.value(a.size)), ...(a.pageMkwrite !== undefined ? { pageMkwrite: a.pageMkwrite } : {}) }));
        return;
      }
      case 'truncate': this.file(step.args.file).truncate(api(this.value(step.args.size))); return;
      case 'mmap': {
        const a = step.args;
        const mp = this.proc(a.process).mmap({
          length: api(this.value(a.length)),
          ...(a.addr !== undefined ? { addr: this.addr(a.addr) } : {}),
          ...(a.prot !== undefined ? { prot: a.prot } : {}),
          ...(a.shared !== undefined ? { shared: a.shared } : {}),
          ...(a.file !== undefined ? { file: this.file(a.file) } : {}),
          ...(a.offset !== undefined ? { offset: api(this.value(a.offset)) } : {}),
          ...(a.fixed !== undefined ? { fixed: a.fixed } : {}),
          ...(a.openMode !== undefined ? { openMode: a.openMode } : {}),
        });
        if (a.name !== undefined) w.mappings.set(a.name, mp);
        return;
      }
      case 'munmap': this.proc(step.args.process).munmap(this.addr(step.args.addr), api(this.value(step.args.length))); return;
      case 'mprotect': this.proc(step.args.process).mprotect(this.addr(step.args.addr), api(this.value(step.args.length)), step.args.prot); return;
      case 'madvise': this.proc(step.args.process).madvise(this.addr(step.args.addr), api(this.value(step.args.length)), step.args.advice); return;
      case 'clear-refs': {
        const a = step.args;
        this.stepped(step.pos, a.during, (onStep) => this.proc(a.process).clearRefs(a.what, onStep ? { onStep } : {}));
        return;
      }
      case 'read': case 'write': case 'touch': this.access(step); return;
      case 'pin': {
        const a = step.args;
        const o = { ...(a.write !== undefined ? { write: a.write } : {}), ...(a.longterm !== undefined ? { longterm: a.longterm } : {}), ...(a.fast !== undefined ? { fast: a.fast } : {}) };
        const p = this.proc(a.process);
        w.pins.set(a.name, a.kind === 'get' ? m.get(p, this.addr(a.addr), a.pages, o) : m.pin(p, this.addr(a.addr), a.pages, o));
        return;
      }
      case 'unpin': this.get(w.pins, step.args.pin, 'pin').unpin(); return;
      case 'dma-write': this.get(w.pins, step.args.pin, 'pin').dmaWrite(step.args.page ?? 0, step.args.tag); return;
      case 'userfaultfd': w.uffds.set(step.args.name, this.proc(step.args.process).userfaultfd({ features: step.args.features ?? [] })); return;
      case 'uffd-register': {
        const a = step.args;
        const mode = a.missing === undefined && a.wp === undefined ? { wp: true } : { ...(a.missing !== undefined ? { missing: a.missing } : {}), ...(a.wp !== undefined ? { wp: a.wp } : {}) };
        this.uffd(a.uffd).register(this.addr(a.addr), this.addr(a.length), mode);
        return;
      }
      case 'uffd-unregister': this.uffd(step.args.uffd).unregister(this.addr(step.args.addr), this.addr(step.args.length)); return;
      case 'uffd-wp': this.uffd(step.args.uffd).writeProtect(this.addr(step.args.addr), this.addr(step.args.length), step.args.enable ?? true); return;
      case 'uffd-copy': {
        const a = step.args;
        this.uffd(a.uffd).copy(this.addr(a.addr), this.addr(a.length), a.tag, a.wp !== undefined ? { wp: a.wp } : {});
        return;
      }
      case 'uffd-zeropage': {
        const a = step.args;
        this.uffd(a.uffd).zeropage(this.addr(a.addr), this.addr(a.length), a.wp !== undefined ? { wp: a.wp } : {});
        return;
      }
      case 'dirty-helper': this.dirtyHelper(step.pos, step.args); return;
      case 'device-memory': m.device(step.args.device).addMemory(step.args.pages); return;
      case 'device-fault': {
        const a = step.args;
        const mir = this.mirror(a.device, a.process);
        const r = this.stepped(step.pos, a.during, (onStep) => mir.fault(this.addr(a.addr), a.pages, a.mode, onStep ? { onStep } : {}));
        if (a.result) this.resultCheck(step.pos, `device-fault ${a.device} ${a.process} @ ${this.describeAddr(a.addr)}`, a.result, { ...r });
        return;
      }
      case 'device-write': this.mirror(step.args.device, step.args.process).deviceWrite(this.addr(step.args.addr), step.args.tag); return;
      case 'device-migrate': {
        const a = step.args;
        const moved = this.mirror(a.device, a.process).migrateToDevice(this.addr(a.addr), a.pages);
        if (a.result) this.resultCheck(step.pos, `device-migrate ${a.device} ${a.process} @ ${this.describeAddr(a.addr)}`, a.result, { moved });
        return;
      }
      case 'device-release': {
        const key = `${step.args.device}/${step.args.process}`;
        this.get(w.mirrors, key, 'mirror').release();
        w.mirrors.delete(key);
        return;
      }
      case 'tlb-flush': {
        const a = step.args;
        if (a.process === undefined) { m.kernel.flushTlbAll(a.cpu ?? 0); return; }
        const p = this.proc(a.process);
        if (a.addr === undefined) { m.kernel.flushTlbMm(p); return; }
        const start = this.value(a.addr);
        if (a.length === undefined) m.kernel.flushTlbPage(p, api(start));
        else m.kernel.flushTlbRange(p, api(start), api(start + this.value(a.length)));
        return;
      }
      case 'inject-bug': m.debug.injectBug(step.args.bug); return;
      case 'expect': for (const c of step.args.checks) this.expect(c); return;
    }
  }

  private access(step: Extract<ScenarioStep, { op: 'read' | 'write' | 'touch' }>): void {
    const a = step.args;
    const p = this.proc(a.process);
    const cpu = a.cpu !== undefined ? { cpu: a.cpu } : {};
    const where = `${a.process} @ ${this.describeAddr(a.addr)}`;
    if (step.op === 'read') {
      const r = p.read(this.addr(a.addr), cpu);
      this.outcomeCheck(step.pos, `read ${where}`, a.outcome, r, step.args.faults);
    } else if (step.op === 'write') {
      const r = p.write(this.addr(a.addr), step.args.tag, cpu);
      this.outcomeCheck(step.pos, `write ${where}`, a.outcome, r, step.args.faults);
    } else {
      const t = step.args;
      const r = p.touch(this.addr(a.addr), api(this.value(t.length)), t.mode, t.tag ?? 0, cpu);
      this.outcomeCheck(step.pos, `touch ${t.mode} ${where}`, a.outcome, r);
    }
  }

  private dirtyHelper(pos: Pos, a: StepArgs['dirty-helper']): void {
    const f = this.file(a.file);
    const base = { ...(a.walkOnSkip !== undefined ? { walkOnSkip: a.walkOnSkip } : {}) };
    const subject = `dirty-helper ${a.op} ${a.file} [${a.first}, ${a.first + a.nr})`;
    if (a.op === 'write-protect') {
      const count = this.stepped(pos, a.during, (onStep) => f.writeProtect(a.first, a.nr, onStep ? { ...base, onStep } : base));
      if (a.result) this.resultCheck(pos, subject, a.result, { count });
      return;
    }
    const r = this.stepped(pos, a.during, (onStep) => f.cleanRecord(a.first, a.nr, {
      ...base, ...(a.bitmapOffset !== undefined ? { bitmapOffset: a.bitmapOffset } : {}), ...(onStep ? { onStep } : {}),
    }));
    const bytes = new Uint8Array(r.bitmap.buffer, r.bitmap.byteOffset, r.bitmap.byteLength);
    const bits: number[] = [];
    bytes.forEach((b, i) => { for (let k = 0; k < 8; k++) if (b & (1 << k)) bits.push(i * 8 + k); });
    if (a.result) this.resultCheck(pos, subject, a.result, { cleaned: r.cleaned, bits, start: r.start, end: r.end });
  }

  private resultCheck(pos: Pos, subject: string, want: Record<string, Want>, found: Record<string, unknown>): void {
    const diff = this.compare(want, found);
    this.record({ pos, kind: 'result', subject, passed: diff.length === 0, diff });
  }

  /**
   * Runs a stepped kernel operation with its `during` clauses: each fires at
   * its nth matching yield point and runs its steps there. A clause that
   * never fires is a failed check: the interleaving it describes did not happen.
   */
  private stepped<T>(pos: Pos, during: During[] | undefined, run: (onStep: ((s: Step) => void) | undefined) => T): T {
    if (!during || during.length === 0) return run(undefined);
    const seen = during.map(() => 0);
    const fired = during.map(() => false);
    const onStep = (s: Step): void => {
      during.forEach((d, i) => {
        if (fired[i] || d.at !== s.kind) return;
        if (d.process !== undefined && this.proc(d.process).pid !== s.pid) return;
        if (d.addr !== undefined) {
          const a = this.value(d.addr);
          if (a < BigInt(s.start) || a >= BigInt(s.end)) return;
        }
        if (++seen[i]! < d.nth) return;
        fired[i] = true;
        for (const st of d.steps) this.step(st);
      });
    };
    const r = run(onStep);
    during.forEach((d, i) => {
      const subject = `at ${d.at}${d.addr ? ` holding ${this.describeAddr(d.addr)}` : ''}${d.nth > 1 ? ` (#${d.nth})` : ''}`;
      this.record({
        pos: d.pos, kind: 'during', subject, passed: fired[i]!, diff: fired[i] ? [] : [{ path: 'yield points matched', expected: d.nth, found: seen[i]! }],
        ...(fired[i] ? {} : { message: 'the operation never reached this yield point, so its steps did not run' }),
      });
    });
    return r;
  }

  // ---- expect ----

  private expect(c: Expectation): void {
    let outcome: Omit<CheckOutcome, 'pos' | 'kind'>;
    try {
      outcome = this.evaluate(c);
    } catch (e) {
      if (e instanceof StopRun) throw e;
      outcome = { subject: this.subjectText(c), passed: false, diff: [], message: `could not check: ${e instanceof Error ? e.message : String(e)}` };
    }
    this.record({ pos: c.pos, kind: c.kind, ...outcome });
  }

  private subjectText(c: Expectation): string {
    const s = c.subject;
    const parts: string[] = [];
    if (s.device !== undefined) parts.push(s.device);
    if (s.process !== undefined) parts.push(s.process);
    if (s.file !== undefined) parts.push(s.file);
    if (s.uffd !== undefined) parts.push(s.uffd);
    if (s.name !== undefined) parts.push(s.name);
    let t = parts.join(' ');
    try {
      if (s.addr !== undefined) t += ` @ ${this.describeAddr(s.addr)}`;
      if (s.length !== undefined) t += ` +${s.length.text}`;
    } catch { /* an address that does not resolve is reported by the check itself */ }
    if (s.pgoff !== undefined) t += ` pgoff ${s.pgoff}`;
    if (s.page !== undefined) t += ` page ${s.page}`;
    return t || (c.kind === 'stats' ? 'machine' : '');
  }

  private evaluate(c: Expectation): Omit<CheckOutcome, 'pos' | 'kind'> {
    const s = c.subject;
    const subject = this.subjectText(c);
    const done = (found: Record<string, unknown>, message?: string): Omit<CheckOutcome, 'pos' | 'kind'> => {
      const diff = this.compare(c.want, found);
      return { subject, passed: diff.length === 0 && message === undefined, diff, ...(message ? { message } : {}) };
    };
    switch (c.kind) {
      case 'pagemap': {
        const p = this.proc(s.process!);
        if (s.length === undefined) return done({ ...p.pagemap(this.addr(s.addr!)) });
        const start = this.value(s.addr!) & ~0xfffn;
        const raws = p.pagemapRange(api(start), api(this.value(s.length)));
        let bad = 0, first: { found: Record<string, unknown>; diff: DiffLine[]; at: bigint } | undefined;
        raws.forEach((raw, i) => {
          const found = { ...decodeBits(raw) };
          const diff = this.compare(c.want, found);
          if (diff.length > 0) { bad++; first ??= { found, diff, at: start + BigInt(i) * 4096n }; }
        });
        if (!first) return { subject, passed: true, diff: [] };
        return { subject, passed: false, diff: first.diff, message: `${bad} of ${raws.length} pages differ; the first at ${hex(first.at)}` };
      }
      case 'entry': {
        const e = this.proc(s.process!).entry(this.addr(s.addr!));
        return done({ ...e, markers: e.markers ?? [] });
      }
      case 'frame': {
        let pfn: number;
        if (s.file !== undefined) {
          const slot = this.file(s.file).lookup(s.pgoff!);
          if (slot.state !== 'page') return done({}, `page-cache slot ${s.pgoff} is ${slot.state}: no frame to check`);
          pfn = slot.pfn;
        } else {
          const pm = this.proc(s.process!).pagemap(this.addr(s.addr!));
          if (!pm.present || pm.pfn === undefined) return done({}, `the page is not present${pm.swapped ? ' (swapped or a marker)' : ''}: no frame to check`);
          pfn = pm.pfn;
        }
        return done({ ...this.m.frame(pfn) });
      }
      case 'read': {
        const r = this.proc(s.process!).read(this.addr(s.addr!), s.cpu !== undefined ? { cpu: s.cpu } : {});
        const want = s.outcome ?? 'ok';
        const diff = this.compare(c.want, r.ok ? { tag: r.tag } : {});
        if (!outcomeMatches(want, r)) diff.unshift({ path: 'outcome', expected: want, found: describeOutcome(r) });
        return { subject, passed: diff.length === 0, diff };
      }
      case 'stats': return done(this.stats(c));
      case 'vmas': return done({ list: this.proc(s.process!).vmas });
      case 'events': {
        const msgs = this.uffd(s.uffd!).events();
        msgs.forEach((msg, i) => {
          const bind = s.bind?.[i];
          if (msg.type === 'fork' && bind !== undefined) this.world.uffds.set(bind, msg.uffd);
        });
        return done({ messages: msgs.map((msg) => (msg.type === 'fork' ? { type: 'fork' } : { ...msg })) });
      }
      case 'mirror': {
        const key = `${s.device}/${s.process}`;
        const mir = this.world.mirrors.get(key);
        if (!mir) return done({}, `device ${s.device} has no mirror of ${s.process} (no device step made one)`);
        return done({ ...mir.lookup(this.addr(s.addr!)) });
      }
      case 'contpte': return done(this.m.kernel.contScan(this.proc(s.process!), this.addr(s.addr!), this.addr(s.length!)));
      case 'pin': {
        const pin = this.get(this.world.pins, s.name!, 'pin');
        const found: Record<string, unknown> = { fastPages: pin.fastPages, pages: pin.frames.length, released: pin.released };
        if ('tag' in c.want) found.tag = pin.dmaRead(s.page ?? 0);
        return done(found);
      }
      case 'cache': return done({ ...this.file(s.file!).lookup(s.pgoff!) });
      case 'check': {
        const problems = this.m.check();
        if (problems.length === 0) return { subject: 'm.check()', passed: true, diff: [] };
        const shown = problems.slice(0, 5).map((p) => `${p.kind}: ${p.message}`).join('; ');
        return {
          subject: 'm.check()', passed: false, diff: [{ path: 'problems', expected: [], found: problems.slice(0, 5).map((p) => `${p.kind}: ${p.message}`) }],
          message: `${problems.length} problem${problems.length > 1 ? 's' : ''}: ${shown}${problems.length > 5 ? '; ...' : ''}`,
        };
      }
    }
  }

  /** The counters a stats check names, as a flat record of dotted paths. */
  private stats(c: Expectation): Record<string, unknown> {
    const s = c.subject;
    const out: Record<string, unknown> = {};
    const put = (prefix: string, o: object): void => {
      for (const [k, v] of Object.entries(o)) {
        if (v !== null && typeof v === 'object' && !Array.isArray(v)) put(`${prefix}${k}.`, v as object);
        else out[`${prefix}${k}`] = v;
      }
    };
    switch (statsSubject(s)) {
      case 'machine': put('', { ...this.m.stats, warnings: this.m.warnings.length, processes: this.m.procs.length }); break;
      case 'process': {
        const p = this.proc(s.process!);
        if (p.exited) { out.exited = true; break; }
        put('', { rss: p.rss, faults: p.faults, pageTableBytes: p.pageTableBytes, hasPinned: p.hasPinned, lastFork: p.lastFork, vmas: p.vmas.length, exited: false });
        break;
      }
      case 'file': { const f = this.file(s.file!); put('', { ...f.stats, size: f.size }); break; }
      case 'device': put('', this.m.device(s.device!).memory); break;
      case 'mirror': {
        const mir = this.world.mirrors.get(`${s.device}/${s.process}`);
        if (!mir) throw new Error(`device ${s.device} has no mirror of ${s.process}`);
        put('', mir.stats);
        break;
      }
    }
    return out;
  }
}

/** The pagemap bits a range check compares (no pfn: each page has its own). */
function decodeBits(raw: bigint): Record<string, unknown> {
  return {
    present: (raw >> 63n & 1n) === 1n, swapped: (raw >> 62n & 1n) === 1n, file: (raw >> 61n & 1n) === 1n, uffdWp: (raw >> 57n & 1n) === 1n,
    exclusive: (raw >> 56n & 1n) === 1n, softDirty: (raw >> 55n & 1n) === 1n, guard: (raw >> 58n & 1n) === 1n,
    pfn: (raw >> 63n & 1n) === 1n ? Number(raw & ((1n << 55n) - 1n)) : undefined,
  };
}

function describeOutcome(r: AccessResult | TouchResult): string {
  if (r.ok) return 'ok';
  if (r.blocked !== undefined) return `blocked (${r.blocked}) at ${hex(r.addr)}`;
  return `${r.signal} ${r.code} at ${hex(r.addr)}`;
}

function outcomeMatches(want: OutcomeName, r: AccessResult | TouchResult): boolean {
  switch (want) {
    case 'any': return true;
    case 'ok': return r.ok;
    case 'SIGSEGV': case 'SIGBUS': return !r.ok && r.signal === want;
    case 'blocked': return !r.ok && r.blocked !== undefined;
    case 'userfaultfd': case 'page-mkwrite': case 'page-table-lock': return !r.ok && r.blocked === want;
    default: return !r.ok && r.code === want;
  }
}

/** Found values as JSON (bigints in hex, undefined as null). */
function json(v: unknown): JsonValue {
  if (v === undefined || v === null) return null;
  if (typeof v === 'bigint') return hex(v);
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'string') return v;
  if (isExpr(v)) return v.text;
  if (Array.isArray(v)) return v.map(json);
  if (typeof v === 'object') return Object.fromEntries(Object.entries(v as object).map(([k, x]) => [k, json(x)]));
  return String(v);
}
