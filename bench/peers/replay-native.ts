/**
 * Runs the native C peer of the trace-replay benchmark (replay-native.c):
 * compiles it once with the system C compiler into a temporary directory,
 * then starts it once per benchmark in its command mode (serve=1), so that
 * the caller can interleave the peer's timed calls with its other subjects'
 * and a noisy host slows all of them alike.
 *
 * The peer is optional: when no compiler is installed or the build fails,
 * `build()` returns null and a note saying why, so the report can show the
 * gap instead of failing. A peer that builds but then fails or replies
 * something unexpected is an error: it means it left the core's path.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { COMPILERS, errorText, findCompiler, findSource, run } from './cc.js';


/** One TLB array as the core receives it: level, kind, size bits, sets, ways, policy. */
export interface NativeArray {
  level: number;
  kind: number;
  sizes: number;
  sets: number;
  ways: number;
  policy: number;
}

export interface NativeReplayArgs {
  mode: 'model' | 'functional';
  /** Start of the mapping; `mapPages` pages from there are mapped, the trace covers the first `tracePages`. */
  start: number;
  mapPages: number;
  tracePages: number;
  count: number;
  seed: number;
  writeRatio: number;
  asid: number;
  frames: number;
  arrays: readonly NativeArray[];
  walkCache: readonly [number, number, number, number];
  /** The core's frame for each mapped page, so that both reach the same frames. */
  pfns?: Uint32Array;
}

export interface NativeReplayResult {
  /** Replay calls made: warm-up, timed, and the verification call. */
  calls: number;
  /** Nanoseconds per access of each timed call, in order. */
  nsPerAccess: number[];
  completed: number;
  /** FNV-1a over the frame and kind of every access of the verification call. */
  accessHash: number;
  /** The core's per-CPU counter slots (assembly/cpu.ts ST_*), summed over every call. */
  stats: number[];
}

function isNumberArray(value: unknown): value is number[] {
  return Array.isArray(value) && value.every((v) => typeof v === 'number' && Number.isFinite(v));
}

function parseResult(text: string): NativeReplayResult | null {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof parsed !== 'object' || parsed === null) {
    return null;
  }
  const r = parsed as Record<string, unknown>;
  const numbers = ['calls', 'completed', 'accessHash'] as const;
  if (!numbers.every((k) => typeof r[k] === 'number' && Number.isFinite(r[k])) || !isNumberArray(r.nsPerAccess) || !isNumberArray(r.stats)) {
    return null;
  }
  return {
    calls: r.calls as number,
    nsPerAccess: r.nsPerAccess,
    completed: r.completed as number,
    accessHash: r.accessHash as number,
    stats: r.stats,
  };
}

export class NativeReplayPeer {
  private constructor(
    private readonly dir: string,
    private readonly exe: string,
    /** Compiler, flags and version, for the report. */
    readonly description: string,
  ) {}

  /** Compiles the peer; null (and why) when there is no working toolchain. */
  static async build(): Promise<{ peer: NativeReplayPeer | null; note: string }> {
    const source = await findSource('replay-native.c');
    if (source === null) {
      return { peer: null, note: 'replay-native.c not found' };
    }
    const compiler = await findCompiler();
    if (compiler === null) {
      return { peer: null, note: `no C compiler found (tried ${COMPILERS.join(', ')})` };
    }
    const dir = await mkdtemp(join(tmpdir(), 'ptemu-replay-'));
    const exe = join(dir, process.platform === 'win32' ? 'replay-native.exe' : 'replay-native');
    // Plain -O2 (no -march=native): what a default build of the same code gets.
    const flags = ['-O2', '-Wall', '-Wextra'];
    try {
      const { stderr } = await run(compiler.command, [...flags, '-o', exe, source]);
      const warnings = stderr.trim() === '' ? '' : `; compiler warnings: ${stderr.trim().split('\n')[0]}`;
      return { peer: new NativeReplayPeer(dir, exe, `${compiler.command} ${flags.join(' ')} (${compiler.version})${warnings}`), note: '' };
    } catch (error) {
      await rm(dir, { recursive: true, force: true });
      return { peer: null, note: `${compiler.command} failed to compile replay-native.c: ${errorText(error)}` };
    }
  }

  /** Starts the peer on one benchmark: it builds its tables and trace, then waits for commands. */
  async start(args: NativeReplayArgs): Promise<NativeReplaySession> {
    const argv = [
      'serve=1',
      `mode=${args.mode}`,
      `start=${args.start}`,
      `map=${args.mapPages}`,
      `pages=${args.tracePages}`,
      `count=${args.count}`,
      `seed=${args.seed}`,
      `writes=${args.writeRatio}`,
      `asid=${args.asid}`,
      `frames=${args.frames}`,
      `arrays=${args.arrays.map((a) => [a.level, a.kind, a.sizes, a.sets, a.ways, a.policy].join(':')).join(',')}`,
      `walk=${args.walkCache.join(',')}`,
    ];
    if (args.pfns !== undefined) {
      const file = join(this.dir, 'pfns.bin');
      await writeFile(file, new Uint8Array(args.pfns.buffer, args.pfns.byteOffset, args.pfns.byteLength));
      argv.push(`pfns=${file}`);
    }
    const session = new NativeReplaySession(spawn(this.exe, argv));
    const ready = await session.ask(null);
    if (ready !== 'ready') {
      session.kill();
      throw new Error(`C peer did not start: ${ready}`);
    }
    return session;
  }

  async dispose(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true });
  }
}

/**
 * One running peer. Each command is a line on its stdin and gets one line
 * back; the peer times its own calls, so the round trip is not measured.
 */
export class NativeReplaySession {
  private readonly replies: string[] = [];
  private waiting: { resolve: (line: string) => void; reject: (error: Error) => void } | null = null;
  private failure: Error | null = null;
  private stderr = '';

  constructor(private readonly child: ChildProcessWithoutNullStreams) {
    createInterface({ input: child.stdout }).on('line', (line) => {
      if (this.waiting !== null) {
        const { resolve } = this.waiting;
        this.waiting = null;
        resolve(line);
      } else {
        this.replies.push(line);
      }
    });
    child.stderr.on('data', (chunk: Buffer) => (this.stderr += chunk.toString()));
    const fail = (error: Error): void => {
      this.failure ??= error;
      this.waiting?.reject(this.failure);
      this.waiting = null;
    };
    child.on('error', fail);
    // 'close' (not 'exit'): only once stdout is drained, so no reply is lost.
    // Also on a clean exit: a reply still awaited then will never come.
    child.on('close', (code, signal) =>
      fail(new Error(`C peer ${code === 0 ? 'exited' : `failed (${signal ?? `exit ${code}`})`}: ${this.stderr.trim() || 'no message'}`)),
    );
  }

  /** Sends a command (null: none, just read the next line) and resolves with the reply. */
  ask(command: string | null): Promise<string> {
    if (command !== null && this.failure === null) this.child.stdin.write(`${command}\n`);
    const queued = this.replies.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    if (this.failure !== null) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => (this.waiting = { resolve, reject }));
  }

  /** `calls` untimed replay calls. */
  async warm(calls: number): Promise<void> {
    const reply = await this.ask(`warm ${calls}`);
    if (reply !== 'ok') throw new Error(`C peer: unexpected reply to warm: ${reply}`);
  }

  /** One timed replay call; resolves with its nanoseconds per access. */
  async timed(): Promise<number> {
    const reply = await this.ask('time');
    const ns = Number(reply);
    if (!Number.isFinite(ns) || ns <= 0) throw new Error(`C peer: unexpected reply to time: ${reply}`);
    return ns;
  }

  /** The verification call and the report; the peer exits afterwards. */
  async finish(): Promise<NativeReplayResult> {
    const reply = await this.ask('finish');
    this.child.stdin.end();
    const result = parseResult(reply);
    if (result === null) throw new Error(`C peer printed unexpected output: ${reply.slice(0, 200)}`);
    return result;
  }

  /** Stops the peer if it is still running (after a failure elsewhere). */
  kill(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill();
  }
}
