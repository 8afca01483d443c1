// Runs a fuzzer operation list (ops.ts) against a Machine and the reference
// model (model.ts), checking after EVERY operation that m.check() finds
// nothing and that every read returns what the model says; optionally
// records the steps as a `ptemu run` scenario (scenario.ts prints it).
//
// Expected failures are predicted by the model and asserted: a write to a
// read-only page is SIGSEGV, an mprotect over a hole is ENOMEM, and so on.
// What the model cannot predict exactly is tolerated, and only that: a write
// blocked by a sync userfaultfd on a page that may be write-protected (one
// message must be waiting), an access that ends in OOM, and the EmuError
// codes listed in TOLERATED (ops.ts) for arguments that are legitimately
// unlucky (a device fault over PROT_NONE, a migration of a shared page, ...).

import {
  Machine, EmuError, type MachineOptions, type Process, type File, type Pin, type Userfaultfd, type Mirror,
  type AccessResult, type TouchResult, type ErrnoCode, type PagemapScanOptions, type Step, type InjectableBug,
} from '../../src/index.js';
import { Model, ProcModel, FileModel, PAGE, type RegionModel, type Expected } from './model.js';
import { TOLERATED, UFFD_FEATURES, SCAN_MASKS, type Op, type OpKind, type Target, type Race } from './ops.js';

/** A step of the `ptemu run` language (one key: the step's name), or a comment for what has no step. */
export type ScenarioItem = { step: Record<string, unknown> } | { comment: string };

export interface ExecOptions {
  /** Called after each operation that passed its checks. */
  onStep?: (info: { index: number; op: Op; machine: Machine; skipped: boolean }) => void;
  /** A wrong kernel to run (m.debug.injectBug), as the scenario's first step. */
  bug?: InjectableBug;
  /** Record the scenario steps (scenario.ts turns them into YAML). Default false. */
  log?: boolean;
  /** Read every mapped page back at the end, then unpin and exit everything and check. Default true. */
  finish?: boolean;
}

export interface ExecResult {
  /** Operations run (skipped ones included) and skipped. */
  ops: number;
  skipped: number;
  /** Per operation kind, how many ran. */
  counts: Record<string, number>;
  /** Tolerated outcomes, "op:CODE". */
  tolerated: Record<string, number>;
  items: ScenarioItem[];
}

/** A check failed: which operation (-1: the final read-back or teardown), why, and the scenario so far. */
export class FuzzFailure extends Error {
  constructor(message: string, readonly opIndex: number, readonly op: Op | undefined, readonly result: ExecResult) {
    super(message);
    this.name = 'FuzzFailure';
  }
}

interface ProcState {
  name: string;
  p: Process;
  model: ProcModel;
  uffd?: { u: Userfaultfd; name: string; mode: 'sync' | 'async' };
  mirror?: Mirror;
}
interface FileState { name: string; f: File; model: FileModel; regular: boolean }

const MAX_PROCS = 4, MAX_FILES = 4, MAX_PINS = 8, SWEEP_PAGES = 2048;
const kib = (pages: number): string => `${pages * 4}KiB`;
const hex = (v: number): string => `0x${v.toString(16)}`;

type Outcome = 'ok' | 'SEGV_MAPERR' | 'SEGV_ACCERR' | 'BUS_ADRERR' | 'BUS_MCEERR_AR' | 'OOM' | 'userfaultfd' | 'page-mkwrite' | 'page-table-lock';
function outcomeOf(r: AccessResult | TouchResult): Outcome {
  if (r.ok) return 'ok';
  if (r.blocked !== undefined) return r.blocked;
  return r.code;
}
function expectedOutcome(e: Expected): Outcome { return e.ok ? 'ok' : e.code; }

class Check extends Error {}

class Runner {
  readonly model = new Model();
  readonly procs: ProcState[] = [];
  readonly files: FileState[] = [];
  readonly pins: { pin: Pin; name: string }[] = [];
  readonly res: ExecResult = { ops: 0, skipped: 0, counts: {}, tolerated: {}, items: [] };
  private names = { p: 0, f: 0, m: 0, pin: 0, u: 0 };
  private deviceMemory = false;
  private where = '';

  constructor(readonly m: Machine, readonly opts: MachineOptions, private readonly logging: boolean) {}

  // ---- bookkeeping ----

  private emit(step: Record<string, unknown>): void { if (this.logging) this.res.items.push({ step }); }
  private comment(text: string): void { if (this.logging) this.res.items.push({ comment: text }); }
  private count(what: string): void { this.res.counts[what] = (this.res.counts[what] ?? 0) + 1; }
  private tolerate(what: string): void { this.res.tolerated[what] = (this.res.tolerated[what] ?? 0) + 1; }
  private fail(msg: string): never { throw new Check(`${this.where}: ${msg}`); }
  private expect(cond: boolean, msg: () => string): void { if (!cond) this.fail(msg()); }

  private cpu(c: number): number { return c % this.m.options.cpus; }
  private addrOf(reg: RegionModel, addr: number): string {
    const off = addr - reg.start;
    return off === 0 ? reg.name : `${reg.name}+${off % 1024 === 0 ? kib(off / PAGE) : hex(off)}`;
  }

  injectBug(bug: InjectableBug): void {
    this.emit({ 'inject-bug': bug });
    this.m.debug.injectBug(bug);
  }

  spawn(): ProcState {
    const p = this.m.spawn();
    const name = `p${this.names.p++}`;
    const ps: ProcState = { name, p, model: new ProcModel(name) };
    this.procs.push(ps);
    this.model.procs.push(ps.model);
    this.emit({ spawn: name });
    return ps;
  }

  private proc(i: number): ProcState | undefined { return this.procs.length ? this.procs[i % this.procs.length] : undefined; }

  /** The process (among those with mappings), mapping and pages an operation acts on. */
  private target(o: Target & { n?: number }, maxN = Infinity): { ps: ProcState; reg: RegionModel; addr: number; n: number } | undefined {
    const candidates = this.procs.filter((x) => x.model.regions.length > 0);
    if (candidates.length === 0) return undefined;
    const ps = candidates[o.proc % candidates.length]!;
    const reg = ps.model.regions[o.region % ps.model.regions.length]!;
    const from = o.page % reg.pages;
    const n = Math.max(1, Math.min(o.n ?? 1, reg.pages - from, maxN));
    return { ps, reg, addr: reg.start + from * PAGE, n };
  }

  /** Runs fn; an EmuError with a code in `allowed` is returned, anything else propagates. */
  private attempt<T>(fn: () => T, allowed: readonly ErrnoCode[]): { ok: true; v: T } | { ok: false; code: ErrnoCode; message: string } {
    try {
      return { ok: true, v: fn() };
    } catch (e) {
      if (e instanceof EmuError && allowed.includes(e.code)) return { ok: false, code: e.code, message: e.message };
      throw e;
    }
  }

  /** An operation whose only legitimate errors are `predicted` (asserted) and the op kind's tolerated ones. */
  private call<T>(kind: OpKind, predicted: ErrnoCode | null, fn: () => T, step?: Record<string, unknown>): { ok: true; v: T } | { ok: false; code: ErrnoCode } {
    const tol = TOLERATED[kind] ?? [];
    let r: { ok: true; v: T } | { ok: false; code: ErrnoCode; message: string };
    try {
      r = this.attempt(fn, predicted ? [predicted, ...tol] : tol);
    } catch (e) {
      if (step) this.emit(step);   // an unexpected throw: the scenario's step throws it too
      throw e;
    }
    if (step) {
      const inner = Object.values(step)[0] as Record<string, unknown>;
      // The scenario step fails the same way: with the predicted error, or the tolerated one that happened.
      if (predicted) inner.error = predicted;
      else if (!r.ok) inner.error = r.code;
      this.emit(step);
    }
    if (predicted) this.expect(!r.ok && r.code === predicted, () => `expected ${predicted}, ${r.ok ? 'it succeeded' : `got ${r.code}`}`);
    else if (!r.ok) this.tolerate(`${kind}:${r.code}`);
    return r;
  }

  /**
   * The uffd messages after a blocked access: exactly one, for this page and
   * access; a write-protect fault (returned true) only for a write to a page
   * that may be write-protected, a missing fault only where it is registered.
   */
  private drainBlocked(ps: ProcState, addr: number, write: boolean): boolean {
    const msgs = ps.uffd!.u.events();
    const m = msgs[0];
    const pg = ps.model.page(addr);
    const wp = m?.type === 'pagefault' && m.wp;
    this.emit({ expect: { events: { uffd: ps.uffd!.name, messages: [{ type: 'pagefault', address: hex(addr), write, wp }] } } });
    this.expect(msgs.length === 1 && m!.type === 'pagefault' && m!.address === addr && m!.write === write && (wp ? write && pg!.wp : pg!.missing),
      () => `a blocked ${write ? 'write' : 'read'} at ${hex(addr)} left messages ${JSON.stringify(msgs.map((x) => ({ ...x, uffd: undefined })))}`);
    return wp;
  }

  /** After a failed or blocked fault-in (pin, device fault, a write waiting on a userfaultfd): pages it COW-broke are private copies now. */
  private adoptCows(ps: ProcState, addr: number, n: number): void {
    for (let i = 0; i < n; i++) {
      const a = addr + i * PAGE;
      const pg = ps.model.page(a);
      if (!pg || pg.reg.kind !== 'file-private' || pg.priv !== undefined) continue;
      const pm = ps.p.pagemap(a);
      if (pm.present && !pm.file) ps.model.breakCow(a);
    }
  }

  /** May an access to addr wait on a userfaultfd: a write to a page a sync context may protect, any access to one registered for missing faults? */
  private mayBlock(ps: ProcState, addr: number, write: boolean): boolean {
    const pg = ps.model.page(addr);
    if (!ps.uffd || pg === undefined) return false;
    return pg.missing || (write && ps.uffd.mode === 'sync' && pg.uffd && pg.wp);
  }

  /**
   * Judges one access against the model; applies a write that landed.
   * `inStep`: inside a stepped operation, where waiting on the page-table lock is legitimate.
   * Returns the outcome to write in the scenario.
   */
  private judge(ps: ProcState, addr: number, write: boolean, tagW: number, r: AccessResult, inStep = false): Outcome {
    const exp = ps.model.access(addr, write);
    const got = outcomeOf(r);
    const what = `${write ? 'write' : 'read'} ${ps.name} ${hex(addr)}`;
    if (got === 'OOM') { this.tolerate(`${write ? 'write' : 'read'}:OOM`); return got; }
    if (got === 'page-table-lock' && inStep) { this.tolerate('race:page-table-lock'); return got; }
    if (got === 'userfaultfd') {
      this.expect(exp.ok && this.mayBlock(ps, addr, write), () => `${what}: blocked on a userfaultfd, but the page is neither registered for missing faults nor write-protected by a sync context (expected ${expectedOutcome(exp)})`);
      this.tolerate(`${write ? 'write' : 'read'}:userfaultfd`);
      // A write to a private file page behind a uffd-wp marker COWs first (the copy installed protected), then waits.
      if (write) this.adoptCows(ps, addr, 1);
      return got;
    }
    this.expect(got === expectedOutcome(exp), () => `${what}: expected ${expectedOutcome(exp)}, got ${got}`);
    if (exp.ok && r.ok) {
      if (write) ps.model.write(addr, tagW);
      else this.expect(r.tag === exp.tag, () => `${what}: tag ${r.tag} (0x${r.tag.toString(16)}), the model says ${exp.tag} (0x${exp.tag.toString(16)})`);
    }
    return got;
  }

  /** A read, logged as an `expect: read` with the model's tag (or the outcome the model expects). */
  private read(ps: ProcState, reg: RegionModel, addr: number, cpu: number, emit = true): void {
    const exp = ps.model.access(addr, false);
    const r = ps.p.read(addr, { cpu });
    const base = { process: ps.name, addr: this.addrOf(reg, addr), ...(cpu ? { cpu } : {}) };
    const logIt = (): void => {
      if (!emit) return;
      if (r.ok === false && (r.code === 'OOM' || r.blocked === 'userfaultfd')) this.emit({ read: { ...base, outcome: r.blocked ?? 'OOM' } });
      else if (exp.ok) this.emit({ expect: { read: { ...base, tag: exp.tag } } });
      else this.emit({ read: { ...base, outcome: exp.code } });
    };
    let got: Outcome;
    try {
      got = this.judge(ps, addr, false, 0, r);
    } catch (e) {
      logIt();
      throw e;
    }
    logIt();
    // A missing fault: the message, then left unresolved (the page stays unpopulated).
    if (got === 'userfaultfd') this.drainBlocked(ps, addr, false);
  }

  /** A write; a sync userfaultfd block is checked (one message) and, with `resolve`, resolved and the write run again. */
  private write(ps: ProcState, reg: RegionModel, addr: number, tag: number, cpu: number, resolve: boolean): void {
    const exp = ps.model.access(addr, true);
    const r = ps.p.write(addr, tag, { cpu });
    const base = { process: ps.name, addr: this.addrOf(reg, addr), tag, ...(cpu ? { cpu } : {}) };
    let got: Outcome;
    try {
      got = this.judge(ps, addr, true, tag, r);
    } catch (e) {
      this.emit({ write: { ...base, outcome: expectedOutcome(exp) } });
      throw e;
    }
    this.emit({ write: { ...base, outcome: got } });
    if (got !== 'userfaultfd') return;
    const wp = this.drainBlocked(ps, addr, true);
    if (!resolve) return;
    const u = ps.uffd!;
    const range = { uffd: u.name, addr: this.addrOf(reg, addr), length: '4KiB' };
    if (wp) {
      // The monitor write-unprotects the page (UFFDIO_WRITEPROTECT off)...
      const rr = this.call('uffd', null, () => u.u.writeProtect(addr, PAGE, false), { 'uffd-wp': { ...range, enable: false } });
      if (!rr.ok) return;
      ps.model.page(addr)!.wp = false;
      this.count('resolve: unprotect');
    } else {
      // ...or fills the missing page (UFFDIO_COPY) with what the write brings.
      const rr = this.call('uffd', null, () => u.u.copy(addr, PAGE, tag), { 'uffd-copy': { ...range, tag } });
      if (!rr.ok) return;
      ps.model.write(addr, tag);
      this.count('resolve: copy');
    }
    this.write(ps, reg, addr, tag, cpu, false);
  }

  // ---- operations ----

  run(op: Op, index: number): boolean {
    if (index >= 0) this.where = `op ${index} ${JSON.stringify(op)}`;
    switch (op.t) {
      case 'spawn': {
        if (this.procs.length >= MAX_PROCS) return false;
        // No memory for the new mm's top table: the step cannot say so (`spawn: p` has no error form).
        const r = this.attempt(() => this.spawn(), TOLERATED.spawn ?? []);
        if (!r.ok) { this.comment(`spawn failed: ${r.message}`); this.tolerate(`spawn:${r.code}`); }
        return true;
      }
      case 'fork': {
        const ps = this.proc(op.proc);
        if (!ps || this.procs.length >= MAX_PROCS) return false;
        const name = `p${this.names.p++}`;
        const r = this.call('fork', null, () => ps.p.fork(), { fork: { process: ps.name, child: name } });
        if (!r.ok) return true;
        const child: ProcState = { name, p: r.v, model: ps.model.fork(name) };
        this.procs.push(child);
        this.model.procs.push(child.model);
        return true;
      }
      case 'exit': {
        const ps = this.proc(op.proc);
        if (!ps) return false;
        this.emit({ exit: ps.name });
        ps.p.exit();
        this.procs.splice(this.procs.indexOf(ps), 1);
        this.model.procs.splice(this.model.procs.indexOf(ps.model), 1);
        return true;
      }
      case 'memfd': {
        if (this.files.length >= MAX_FILES) return false;
        const name = `f${this.names.f++}`;
        const size = op.pages * PAGE;
        const r = op.regular
          ? this.call('memfd', null, () => this.m.file({ size, pageMkwrite: op.mkwrite }), { file: { name, size: kib(op.pages), ...(op.mkwrite ? { pageMkwrite: true } : {}) } })
          : this.call('memfd', null, () => this.m.memfd({ size, huge: op.huge }), { memfd: { name, size: kib(op.pages), ...(op.huge ? { huge: true } : {}) } });
        if (!r.ok) return true;
        const fm = new FileModel(name, op.pages, op.regular ? 'file' : 'memfd', !op.regular && op.huge);
        this.files.push({ name, f: r.v, model: fm, regular: op.regular });
        this.model.files.push(fm);
        return true;
      }
      case 'truncate': {
        if (this.files.length === 0) return false;
        const fs = this.files[op.file % this.files.length]!;
        this.emit({ truncate: { file: fs.name, size: kib(op.pages) } });
        fs.f.truncate(op.pages * PAGE);
        this.model.truncate(fs.model, op.pages);
        return true;
      }
      case 'mmap': return this.mmap(op);
      case 'munmap': {
        const t = this.target(op);
        if (!t) return false;
        const r = this.call('munmap', null, () => t.ps.p.munmap(t.addr, t.n * PAGE), { munmap: { process: t.ps.name, addr: this.addrOf(t.reg, t.addr), length: kib(t.n) } });
        if (r.ok) t.ps.model.munmap(t.addr, t.n);
        return true;
      }
      case 'mprotect': {
        const t = this.target(op);
        if (!t) return false;
        const probe = this.clonePages(t.ps, t.addr, t.n);
        const predicted = t.ps.model.mprotect(t.addr, t.n, op.prot);
        const r = this.call('mprotect', predicted, () => t.ps.p.mprotect(t.addr, t.n * PAGE, op.prot), { mprotect: { process: t.ps.name, addr: this.addrOf(t.reg, t.addr), length: kib(t.n), prot: op.prot } });
        if (!r.ok && !predicted) this.restorePages(t.ps, probe);
        return true;
      }
      case 'madvise': {
        const t = this.target(op);
        if (!t) return false;
        const probe = this.clonePages(t.ps, t.addr, t.n);
        const files = new Map([...new Set([...probe.values()].filter((pg) => pg?.reg.file).map((pg) => pg!.reg.file!))].map((f) => [f, new Map(f.data)]));
        const predicted = t.ps.model.madvise(t.addr, t.n, op.advice);
        const r = this.call('madvise', predicted, () => t.ps.p.madvise(t.addr, t.n * PAGE, op.advice), { madvise: { process: t.ps.name, addr: this.addrOf(t.reg, t.addr), length: kib(t.n), advice: op.advice } });
        if (!r.ok && !predicted) {
          this.restorePages(t.ps, probe);
          for (const [f, data] of files) { f.data.clear(); for (const [k, v] of data) f.data.set(k, v); }
        }
        return true;
      }
      case 'read': {
        const t = this.target(op);
        if (!t) return false;
        this.read(t.ps, t.reg, t.addr, this.cpu(op.cpu));
        return true;
      }
      case 'write': {
        const t = this.target(op);
        if (!t) return false;
        this.write(t.ps, t.reg, t.addr, op.tag, this.cpu(op.cpu), op.resolve);
        return true;
      }
      case 'touch': return this.touch(op);
      case 'pageout': {
        const t = this.target(op, 32);
        if (!t) return false;
        const predicted = t.ps.model.madvise(t.addr, t.n, 'pageout');
        const r = this.call('pageout', predicted, () => t.ps.p.madvise(t.addr, t.n * PAGE, 'pageout'), { madvise: { process: t.ps.name, addr: this.addrOf(t.reg, t.addr), length: kib(t.n), advice: 'pageout' } });
        if (!r.ok) return true;
        for (let i = 0; i < t.n; i++) this.read(t.ps, t.reg, t.addr + i * PAGE, this.cpu(op.cpu + i));
        return true;
      }
      case 'pin': return this.pin(op);
      case 'unpin': {
        if (this.pins.length === 0) return false;
        const [x] = this.pins.splice(op.pin % this.pins.length, 1);
        this.emit({ unpin: x!.name });
        x!.pin.unpin();
        return true;
      }
      case 'dirty': return this.dirty(op);
      case 'clear-refs': {
        const ps = this.proc(op.proc);
        if (!ps) return false;
        this.emit({ 'clear-refs': { process: ps.name, what: op.what } });
        ps.p.clearRefs(op.what);
        return true;
      }
      case 'uffd': return this.uffd(op);
      case 'scan': return this.scan(op);
      case 'device-fault': return this.deviceFault(op);
      case 'migrate': {
        const t = this.target(op);
        if (!t) return false;
        const mir = this.mirrorOf(t.ps);
        if (!this.deviceMemory) {
          this.deviceMemory = true;
          this.call('migrate', null, () => this.m.device('gpu').addMemory(64), { 'device-memory': { device: 'gpu', pages: 64 } });
        }
        this.call('migrate', null, () => mir.migrateToDevice(t.addr, t.n), { 'device-migrate': { device: 'gpu', process: t.ps.name, addr: this.addrOf(t.reg, t.addr), pages: t.n } });
        return true;
      }
      case 'invalidate': {
        const t = this.target(op);
        if (!t) return false;
        this.comment(`kernel.invalidateRange(${t.ps.name}, ${this.addrOf(t.reg, t.addr)}, +${kib(t.n)}, '${op.event}') (no scenario step)`);
        this.m.kernel.invalidateRange(t.ps.p, t.addr, t.addr + t.n * PAGE, op.event);
        return true;
      }
      case 'kprim': return this.kprim(op);
    }
  }

  private clonePages(ps: ProcState, addr: number, n: number): Map<number, ReturnType<ProcModel['page']>> {
    const out = new Map<number, ReturnType<ProcModel['page']>>();
    for (let i = 0; i < n; i++) { const pg = ps.model.page(addr + i * PAGE); out.set(addr + i * PAGE, pg ? { ...pg } : undefined); }
    return out;
  }
  private restorePages(ps: ProcState, saved: Map<number, ReturnType<ProcModel['page']>>): void {
    for (const [a, pg] of saved) { if (pg) ps.model.pages.set(a, pg); else ps.model.pages.delete(a); }
  }

  private mmap(op: Extract<Op, { t: 'mmap' }>): boolean {
    const ps = this.proc(op.proc);
    if (!ps) return false;
    const fileKind = op.kind === 'file-shared' || op.kind === 'file-private';
    // A file mapping with no file yet makes one first: a memfd covering the mapping.
    if (fileKind && this.files.length === 0) this.run({ t: 'memfd', pages: op.pgoff + op.pages, huge: false, regular: false, mkwrite: false }, -1);
    if (fileKind && this.files.length === 0) return true;
    const fs = fileKind ? this.files[op.file % this.files.length]! : undefined;
    const base = op.high && this.m.options.levels === 5 ? 2 ** 52 : 0x4000_0000;
    const start = base + op.slot * 2 * 1024 * 1024 + op.off * PAGE;
    const shared = op.kind === 'file-shared' || op.kind === 'anon-shared';
    const rdonly = fileKind && op.rdonly;
    const name = `m${this.names.m++}`;
    const step = {
      mmap: {
        process: ps.name, name, addr: hex(start), length: kib(op.pages), prot: op.prot, ...(shared ? { shared: true } : {}),
        ...(fs ? { file: fs.name } : {}), ...(fs && op.pgoff ? { offset: kib(op.pgoff) } : {}), ...(op.fixed ? { fixed: true } : {}),
        ...(rdonly ? { openMode: 'rdonly' } : {}),
      },
    };
    if (rdonly && shared && op.prot === 'rw') {
      this.call('mmap', 'EACCES', () => ps.p.mmap({ addr: start, length: op.pages * PAGE, prot: op.prot, shared, file: fs!.f, offset: op.pgoff * PAGE, fixed: op.fixed, openMode: 'rdonly' }), step);
      return true;
    }
    const reg: RegionModel = {
      name, start, pages: op.pages, kind: op.kind, pgoff: fileKind ? op.pgoff : 0, maywrite: !(rdonly && shared),
      ...(fs ? { file: fs.model } : op.kind === 'anon-shared' ? { file: new FileModel(`${name}.shmem`, op.pages, 'shmem') } : {}),
    };
    const saved = this.clonePages(ps, start, op.pages);
    const fits = ps.model.mmap(reg, op.prot, op.fixed);
    const r = this.call('mmap', fits ? null : 'EEXIST', () => ps.p.mmap({
      addr: start, length: op.pages * PAGE, prot: op.prot, shared, fixed: op.fixed,
      ...(fs ? { file: fs.f, offset: op.pgoff * PAGE } : {}), ...(rdonly ? { openMode: 'rdonly' as const } : {}),
    }), step);
    if (r.ok) {
      this.expect(r.v.start === start && r.v.length === op.pages * PAGE, () => `mmap placed ${hex(r.v.start)}+${hex(r.v.length)}`);
    } else if (fits) {
      this.restorePages(ps, saved);
      ps.model.regions.pop();
    }
    return true;
  }

  private touch(op: Extract<Op, { t: 'touch' }>): boolean {
    const t = this.target(op, 1024);
    if (!t) return false;
    const { ps, reg, addr, n } = t;
    const cpu = this.cpu(op.cpu);
    const tag = op.write ? op.tag : 0;
    let first = n;   // the first page the model says must fail
    for (let i = 0; i < n; i++) if (!ps.model.access(addr + i * PAGE, op.write).ok) { first = i; break; }
    const r = ps.p.touch(addr, n * PAGE, op.write ? 'w' : 'r', tag, { cpu });
    const got = outcomeOf(r);
    const step = { process: ps.name, addr: this.addrOf(reg, addr), length: kib(n), mode: op.write ? 'w' : 'r', ...(op.write ? { tag } : {}), ...(cpu ? { cpu } : {}) };
    const expOutcome = first < n ? expectedOutcome(ps.model.access(addr + first * PAGE, op.write)) : 'ok';
    const done = r.pages;
    try {
      if (got === 'ok') {
        this.expect(first === n && done === n, () => `touch succeeded over ${done} pages; the model says page ${first} fails (${expOutcome})`);
      } else {
        this.expect(done <= first, () => `touch stopped at page ${done} with ${got}; the model says pages up to ${first} succeed`);
        if (got === 'OOM') this.tolerate('touch:OOM');
        else if (got === 'userfaultfd') {
          this.expect(this.mayBlock(ps, addr + done * PAGE, op.write), () => `touch blocked on a userfaultfd at page ${done}, which is neither registered for missing faults nor write-protected by a sync context`);
          this.tolerate('touch:userfaultfd');
          if (op.write) this.adoptCows(ps, addr + done * PAGE, 1);
        } else {
          this.expect(done === first && got === expOutcome, () => `touch ended at page ${done} with ${got}; the model says page ${first} with ${expOutcome}`);
        }
      }
    } catch (e) {
      this.emit({ touch: { ...step, outcome: expOutcome } });
      throw e;
    }
    this.emit({ touch: { ...step, outcome: got } });
    if (op.write) for (let i = 0; i < done; i++) ps.model.write(addr + i * PAGE, tag);
    if (got === 'userfaultfd') this.drainBlocked(ps, addr + done * PAGE, op.write);
    return true;
  }

  private pin(op: Extract<Op, { t: 'pin' }>): boolean {
    const t = this.target(op, 16);
    if (!t) return false;
    if (this.pins.length >= MAX_PINS) return false;
    const { ps, reg, addr, n } = t;
    const longterm = op.longterm && !op.get;
    let allowed = true;
    for (let i = 0; i < n; i++) if (!ps.model.access(addr + i * PAGE, op.write).ok) allowed = false;
    let mayBlock = false;
    for (let i = 0; i < n; i++) if (this.mayBlock(ps, addr + i * PAGE, op.write)) mayBlock = true;
    const name = `pin${this.names.pin}`;
    const step = {
      pin: {
        process: ps.name, addr: this.addrOf(reg, addr), pages: n, name, ...(op.get ? { kind: 'get' } : {}),
        ...(op.write ? { write: true } : {}), ...(longterm ? { longterm: true } : {}), ...(op.fast ? { fast: true } : {}),
      },
    };
    const o = { write: op.write, fast: op.fast, longterm };
    this.names.pin++;
    let r: ReturnType<typeof this.attempt<Pin>>;
    try {
      r = this.attempt(() => (op.get ? this.m.get(ps.p, addr, n, o) : this.m.pin(ps.p, addr, n, o)), ['EFAULT', 'EAGAIN', ...(TOLERATED.pin ?? [])]);
    } catch (e) {
      this.emit(step);
      throw e;
    }
    if (!r.ok) {
      (step.pin as Record<string, unknown>).error = r.code;
      this.emit(step);
      if (r.code === 'EAGAIN') {
        this.expect(mayBlock, () => `${op.get ? 'get' : 'pin'} waited on a userfaultfd, but no page of it is registered for missing faults or may be write-protected by a sync context`);
        const msgs = ps.uffd!.u.events();
        const m = msgs[0];
        this.expect(msgs.length === 1 && m!.type === 'pagefault' && m!.address >= addr && m!.address < addr + n * PAGE && m!.write === op.write,
          () => `a pin's blocked fault left messages ${JSON.stringify(msgs.map((x) => ({ ...x, uffd: undefined })))}`);
        this.tolerate('pin:userfaultfd');
      } else if (r.code === 'EFAULT') {
        this.expect(!allowed, () => `${op.get ? 'get' : 'pin'} failed with EFAULT over pages the model says it may ${op.write ? 'write' : 'read'}`);
      } else {
        this.tolerate(`pin:${r.code}`);
      }
      if (op.write) this.adoptCows(ps, addr, n);
      return true;
    }
    this.emit(step);
    const pin = r.v;
    this.pins.push({ pin, name });
    this.expect(allowed, () => `${op.get ? 'get' : 'pin'} succeeded over pages the model says it may not ${op.write ? 'write' : 'read'}`);
    if (op.write || longterm) for (let i = 0; i < n; i++) ps.model.breakCow(addr + i * PAGE);
    for (let i = 0; i < n; i++) {
      const want = ps.model.content(addr + i * PAGE);
      const got = pin.dmaRead(i);
      if (got !== want) this.emit({ expect: { pin: { name, page: i, tag: want } } });
      this.expect(got === want, () => `${name} page ${i} (${hex(addr + i * PAGE)}): the device reads ${got}, the model says ${want}`);
    }
    if (op.write && op.dma !== 0) {
      this.emit({ 'dma-write': { pin: name, tag: op.dma } });
      pin.dmaWrite(0, op.dma);
      ps.model.write(addr, op.dma);
    }
    return true;
  }

  private dirty(op: Extract<Op, { t: 'dirty' }>): boolean {
    if (this.files.length === 0) return false;
    const fs = this.files[op.file % this.files.length]!;
    const size = Math.max(1, fs.model.size);
    const first = op.first % size, nr = 1 + ((op.nr - 1) % (size - first));
    let entries = 0;
    const fired: { race: Race; step: Record<string, unknown> }[] = [];
    const blocked: { ps: ProcState; addr: number }[] = [];
    const onStep = (s: Step): void => {
      if (s.kind !== 'entry') return;
      entries++;
      for (const race of op.races) {
        if (race.nth !== entries) continue;
        const t = this.target(race);
        if (!t) continue;
        const cpu = this.cpu(race.cpu);
        const r = t.ps.p.write(t.addr, race.tag, { cpu });
        const got = this.judge(t.ps, t.addr, true, race.tag, r, true);
        fired.push({ race, step: { write: { process: t.ps.name, addr: this.addrOf(t.reg, t.addr), tag: race.tag, ...(cpu ? { cpu } : {}), outcome: got } } });
        if (got === 'userfaultfd') blocked.push({ ps: t.ps, addr: t.addr });
      }
    };
    const emitStep = (): void => {
      const during = [...new Set(fired.map((f) => f.race.nth))].map((nth) => ({ at: 'entry', nth, steps: fired.filter((f) => f.race.nth === nth).map((f) => f.step) }));
      this.emit({
        'dirty-helper': {
          file: fs.name, op: op.clean ? 'clean-record' : 'write-protect', first, nr, ...(op.walkOnSkip ? { walkOnSkip: true } : {}),
          ...(op.clean ? { bitmapOffset: first } : {}), ...(during.length ? { during } : {}),
        },
      });
    };
    try {
      if (op.clean) fs.f.cleanRecord(first, nr, { onStep, bitmapOffset: first, walkOnSkip: op.walkOnSkip });
      else fs.f.writeProtect(first, nr, { onStep, walkOnSkip: op.walkOnSkip });
    } catch (e) {
      emitStep();
      throw e;
    }
    emitStep();
    for (const b of blocked) this.drainBlocked(b.ps, b.addr, true);
    return true;
  }

  private uffd(op: Extract<Op, { t: 'uffd' }>): boolean {
    const t = this.target(op);
    if (!t) return false;
    const { ps, reg, addr, n } = t;
    if (!ps.uffd) {
      const set = UFFD_FEATURES[op.features % UFFD_FEATURES.length]!;
      const name = `u${this.names.u++}`;
      this.emit({ userfaultfd: { process: ps.name, name, features: set.features } });
      ps.uffd = { u: ps.p.userfaultfd({ features: set.features }), name, mode: set.mode };
    }
    const u = ps.uffd;
    const range = { uffd: u.name, addr: this.addrOf(reg, addr), length: kib(n) };
    const pages = Array.from({ length: n }, (_, i) => ps.model.page(addr + i * PAGE));
    const setWp = (enable: boolean): void => {
      // Every page must be registered (holes included): ENOENT before anything changes otherwise.
      const ok = pages.every((pg) => pg?.uffd);
      const r = this.call('uffd', ok ? null : 'ENOENT', () => u.u.writeProtect(addr, n * PAGE, enable), { 'uffd-wp': { ...range, ...(enable ? {} : { enable: false }) } });
      // A protect that ran out of memory may have protected some VMAs: maybe protected.
      for (const pg of pages) if (pg?.uffd && (enable || r.ok)) pg.wp = enable;
    };
    switch (op.action) {
      case 'register': case 'register-wp': case 'register-missing': {
        // Anonymous memory and shmem (memfds, MAP_SHARED|MAP_ANONYMOUS) can be registered; regular files and holes cannot.
        const ok = pages.every((pg) => pg !== undefined && (pg.reg.kind === 'anon' || pg.reg.kind === 'anon-shared' || pg.reg.file?.kind === 'memfd'));
        // A new registration replaces the modes of the old one (the PTEs' uffd-wp bits stay, ignored without VM_UFFD_WP).
        const missing = op.action === 'register-missing';
        const r = this.call('uffd', ok ? null : 'EINVAL', () => u.u.register(addr, n * PAGE, missing ? { missing: true } : { wp: true }),
          { 'uffd-register': missing ? { ...range, missing: true, wp: false } : range });
        if (!r.ok) return true;
        for (const pg of pages) { pg!.uffd = !missing; pg!.missing = missing; }
        // register-wp protects what it registered.
        if (op.action === 'register-wp') setWp(true);
        return true;
      }
      case 'wp': setWp(true); return true;
      case 'unwp': setWp(false); return true;
      case 'unregister': {
        const r = this.call('uffd', null, () => u.u.unregister(addr, n * PAGE), { 'uffd-unregister': range });
        if (r.ok) for (const pg of pages) if (pg) { pg.uffd = false; pg.missing = false; pg.wp = false; }
        return true;
      }
    }
  }

  private scan(op: Extract<Op, { t: 'scan' }>): boolean {
    const t = this.target(op);
    if (!t) return false;
    const { ps, reg, addr, n } = t;
    const args: PagemapScanOptions = { start: addr, end: addr + n * PAGE, ...SCAN_MASKS[op.mask % SCAN_MASKS.length]!, ...(op.wp ? { wpMatching: true } : {}), ...(op.maxPages ? { maxPages: op.maxPages } : {}) };
    this.comment(`pagemapScan(${ps.name}, ${this.addrOf(reg, addr)}, +${kib(n)}, ${JSON.stringify({ ...args, start: undefined, end: undefined })}) (no scenario step)`);
    const r = this.call('scan', null, () => ps.p.pagemapScan(args));
    if (op.wp) for (let i = 0; i < n; i++) { const pg = ps.model.page(addr + i * PAGE); if (pg?.uffd) pg.wp = true; }
    if (!r.ok) return true;
    const { regions, walkEnd } = r.v;
    this.expect(walkEnd >= addr && walkEnd <= addr + n * PAGE, () => `pagemapScan walkEnd ${hex(walkEnd)} outside [${hex(addr)}, ${hex(addr + n * PAGE)})`);
    let prev = addr;
    for (const g of regions) {
      this.expect(g.start >= prev && g.end > g.start && g.end <= walkEnd, () => `pagemapScan region ${hex(g.start)}-${hex(g.end)} out of order or outside the walk (${hex(addr)}..${hex(walkEnd)})`);
      prev = g.end;
    }
    return true;
  }

  private mirrorOf(ps: ProcState): Mirror {
    ps.mirror ??= this.m.device('gpu').mirror(ps.p);
    return ps.mirror;
  }

  private deviceFault(op: Extract<Op, { t: 'device-fault' }>): boolean {
    const t = this.target(op, 64);
    if (!t) return false;
    const { ps, reg, addr, n } = t;
    const mir = this.mirrorOf(ps);
    let allowed = true, mayBlock = false;
    for (let i = 0; i < n; i++) {
      if (!ps.model.access(addr + i * PAGE, op.write).ok) allowed = false;
      if (this.mayBlock(ps, addr + i * PAGE, op.write)) mayBlock = true;
    }
    const step = { 'device-fault': { device: 'gpu', process: ps.name, addr: this.addrOf(reg, addr), pages: n, mode: op.write ? 'w' : 'r' } };
    let r: ReturnType<typeof this.attempt<ReturnType<Mirror['fault']>>>;
    try {
      r = this.attempt(() => mir.fault(addr, n, op.write ? 'w' : 'r'), TOLERATED['device-fault'] ?? []);
    } catch (e) {
      this.emit(step);
      throw e;
    }
    if (!r.ok) {
      (step['device-fault'] as Record<string, unknown>).error = r.code;
      this.emit(step);
      // A CPU fault a sync userfaultfd would handle fails the device fault (no FAULT_FLAG_ALLOW_RETRY): EFAULT, no message.
      if (r.code !== 'ENOMEM') this.expect(!allowed || mayBlock, () => `device fault failed with ${r.code} over pages the model says it may ${op.write ? 'write' : 'read'}`);
      if (ps.uffd) {
        const msgs = ps.uffd.u.events();
        this.expect(msgs.length === 0, () => `a failed device fault queued userfaultfd messages ${JSON.stringify(msgs.map((x) => ({ ...x, uffd: undefined })))}`);
      }
      this.tolerate(`device-fault:${r.code}`);
      if (op.write) this.adoptCows(ps, addr, n);
      return true;
    }
    this.emit(step);
    this.expect(allowed, () => `a device ${op.write ? 'write' : 'read'} fault succeeded over pages the model says it may not access`);
    if (op.write) for (let i = 0; i < n; i++) ps.model.breakCow(addr + i * PAGE);
    // What the device sees through its entries is what the process holds.
    for (let i = 0; i < Math.min(n, 16); i++) {
      const a = addr + i * PAGE;
      const e = mir.lookup(a);
      if (!e.valid) continue;
      const got = this.m.frame(e.pfn).tag, want = ps.model.content(a);
      this.expect(got === want, () => `mirror entry for ${hex(a)} maps pfn ${hex(e.pfn)} holding ${got}, the model says ${want}`);
    }
    if (op.write && op.tag !== 0) {
      const e = mir.lookup(addr);
      if (e.valid && e.write) {
        this.emit({ 'device-write': { device: 'gpu', process: ps.name, addr: this.addrOf(reg, addr), tag: op.tag } });
        mir.deviceWrite(addr, op.tag);
        ps.model.write(addr, op.tag);
      }
    }
    return true;
  }

  private kprim(op: Extract<Op, { t: 'kprim' }>): boolean {
    const t = this.target(op);
    if (!t) return false;
    const { ps, reg } = t;
    const block = op.prim === 'wrprotect-block' || op.prim === 'clear-young-block';
    const start = block ? Math.floor(t.addr / (16 * PAGE)) * 16 * PAGE : t.addr;
    const nr = block ? 16 : 1;
    const k = this.m.kernel;
    // Only on present PTEs (what the kernel's callers hold): never a swap entry, marker or none.
    for (let i = 0; i < nr; i++) {
      const e = this.m.arch.decode(k.ptepGetRaw(ps.p, start + i * PAGE), 'pte');
      if (e.kind !== 'present' || e.protnone) return false;
    }
    const text = `kernel.${op.prim}(${ps.name}, ${this.addrOf(reg, start)}${block ? ', 16' : ''}) (no scenario step)`;
    this.comment(text);
    this.call('kprim', null, () => {
      switch (op.prim) {
        case 'young': k.ptepTestAndClearYoung(ps.p, start); break;
        case 'flush-young': k.ptepClearFlushYoung(ps.p, start); break;
        case 'clear-young-block': k.clearYoungDirtyPtes(ps.p, start, 16, { young: true }); break;
        case 'unfold': k.unfoldRange(ps.p, start, 16 * PAGE); break;
        case 'wrprotect': case 'wrprotect-block':
          // As a kernel caller does it: notifiers first (device mirrors drop write access), then the PTEs, then the flush.
          k.invalidateRange(ps.p, start, start + nr * PAGE, 'protection-page');
          k.wrprotectPtes(ps.p, start, nr);
          k.flushTlbRange(ps.p, start, start + nr * PAGE);
          break;
      }
    });
    return true;
  }

  // ---- the end: read everything back, tear down ----

  sweep(): void {
    this.where = 'final read-back';
    let budget = SWEEP_PAGES;
    let clean = 0;
    for (const ps of this.procs) {
      const pages = [...ps.model.pages.entries()].filter(([a]) => ps.model.access(a, false).ok).sort((x, y) => x[0] - y[0]);
      // Pages with content first, then the rest while the budget lasts.
      const withContent = pages.filter(([a]) => ps.model.content(a) !== 0), zero = pages.filter(([a]) => ps.model.content(a) === 0);
      for (const [a, pg] of [...withContent, ...zero]) {
        if (budget-- <= 0) break;
        const exp = ps.model.access(a, false) as { ok: true; tag: number };
        const r = ps.p.read(a);
        if (r.ok && r.tag === exp.tag) { clean++; continue; }
        if (!r.ok && r.code === 'OOM') {
          // No memory to fault it in: the content is still checked, looked up where it lives.
          const got = this.contentWithoutFault(ps, pg, a);
          if (got === undefined) { this.tolerate('read:OOM'); continue; }
          this.expect(got === exp.tag, () => `read ${ps.name} ${hex(a)} (out of memory, so looked up): ${got}, the model says ${exp.tag}`);
          clean++;
          continue;
        }
        if (!r.ok && r.blocked === 'userfaultfd' && pg.missing) {
          this.emit({ read: { process: ps.name, addr: this.addrOf(pg.reg, a), outcome: 'userfaultfd' } });
          this.drainBlocked(ps, a, false);
          this.tolerate('read:userfaultfd');
          continue;
        }
        this.comment(`final read-back: ${clean} pages read back as the model says before this one`);
        this.emit({ expect: { read: { process: ps.name, addr: this.addrOf(pg.reg, a), tag: exp.tag } } });
        this.fail(`read ${ps.name} ${hex(a)}: ${r.ok ? `tag ${r.tag} (0x${r.tag.toString(16)})` : outcomeOf(r)}, the model says ${exp.tag} (0x${exp.tag.toString(16)})`);
      }
    }
    this.comment(`final read-back: ${clean} pages read back as the model says`);
  }

  /**
   * What a read of addr would return, found without faulting: the mapped
   * frame, the swap slot (or its swap-cache page), the file's page-cache
   * page or swap slot, or 0 for an anonymous page that is not there.
   * undefined where it cannot tell (a device-private or migration entry).
   */
  private contentWithoutFault(ps: ProcState, pg: NonNullable<ReturnType<ProcModel['page']>>, addr: number): number | undefined {
    const fromSlot = (slot: number): number => {
      const s = this.m.swapSlot(slot);
      return s.cachedPfn !== 0 ? this.m.frame(s.cachedPfn).tag : s.tag;
    };
    const pm = ps.p.pagemap(addr);
    if (pm.present) return pm.pfn === undefined ? undefined : this.m.frame(pm.pfn).tag;
    if (pm.swapped) return pm.swapType !== undefined && pm.swapType < 24 && pm.swapOffset !== undefined ? fromSlot(pm.swapOffset) : undefined;
    const file = pg.reg.file;
    if (file === undefined || pg.priv !== undefined) return pg.priv === undefined ? 0 : undefined;
    const fs = this.files.find((x) => x.model === file);
    if (!fs) return undefined;   // the shmem behind MAP_SHARED|MAP_ANONYMOUS has no File object
    const slot = fs.f.lookup(ps.model.pgoffOf(pg, addr));
    return slot.state === 'page' ? this.m.frame(slot.pfn).tag : slot.state === 'swapped' ? fromSlot(slot.slot) : 0;
  }

  teardown(): void {
    this.where = 'teardown';
    for (const x of this.pins.splice(0)) { this.emit({ unpin: x.name }); x.pin.unpin(); }
    for (const ps of this.procs.splice(0)) { this.emit({ exit: ps.name }); ps.p.exit(); }
    const problems = this.m.check();
    this.emit({ expect: { check: 'clean' } });
    if (problems.length > 0) this.fail(`m.check() after teardown: ${problems.slice(0, 6).map((p) => `${p.kind}: ${p.message}`).join('; ')}`);
  }

  checkMachine(): void {
    const problems = this.m.check();
    if (problems.length === 0) return;
    this.emit({ expect: { check: 'clean' } });
    this.fail(`m.check(): ${problems.slice(0, 6).map((p) => `${p.kind}: ${p.message}`).join('; ')}${problems.length > 6 ? `; ... (${problems.length})` : ''}`);
  }
}

/**
 * Runs `ops` on a new machine with `machineOpts`, against the model, checking
 * after every operation. Throws FuzzFailure (with the scenario so far when
 * `log`) on the first check that fails; returns what ran.
 */
export async function execute(machineOpts: MachineOptions, ops: readonly Op[], opts: ExecOptions = {}): Promise<ExecResult> {
  const m = await Machine.create(machineOpts);
  const r = new Runner(m, machineOpts, opts.log === true);
  if (opts.bug) r.injectBug(opts.bug);
  r.spawn();
  let i = 0;
  try {
    for (; i < ops.length; i++) {
      const op = ops[i]!;
      const ran = r.run(op, i);
      r.res.ops++;
      if (!ran) { r.res.skipped++; opts.onStep?.({ index: i, op, machine: m, skipped: true }); continue; }
      r.res.counts[op.t] = (r.res.counts[op.t] ?? 0) + 1;
      r.checkMachine();
      opts.onStep?.({ index: i, op, machine: m, skipped: false });
    }
    i = -1;
    if (opts.finish !== false) {
      r.sweep();
      r.teardown();
    }
  } catch (e) {
    const op = i >= 0 ? ops[i] : undefined;
    if (e instanceof Check) throw new FuzzFailure(e.message, i, op, r.res);
    const msg = e instanceof Error ? e.message : String(e);
    throw new FuzzFailure(`${i >= 0 ? `op ${i} ${JSON.stringify(op)}` : 'final read-back / teardown'}: threw ${e instanceof EmuError ? `EmuError ${e.code}` : (e as Error)?.name ?? 'a non-error'}: ${msg}`, i, op, r.res);
  }
  return r.res;
}
