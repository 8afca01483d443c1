/**
 * benchmark.js plumbing: turns operation specs into Benchmark instances,
 * runs them as one suite and summarises each as nanoseconds per page.
 *
 * Two kinds of operation:
 *
 *  - Repeatable ones (walk, mprotect toggling RO/RW) leave the range in a
 *    state where the next call does the same work, so they are ordinary
 *    synchronous tests and benchmark.js picks how many calls make a sample.
 *
 *  - Consuming ones (fault-in, dontneed) destroy their own precondition: a
 *    second fault-in in a row finds every page present and does almost
 *    nothing. Timing a fault-in + dontneed pair would only give the sum, so
 *    each timed loop is made exactly one call, preceded by an untimed
 *    restore in benchmark.js's `setup`:
 *      * `setup` runs before every clocked loop of `count` calls, inside the
 *        same generated function but before the timer starts;
 *      * `minTime` is tiny, so the first clocked call (milliseconds over a
 *        large range) already satisfies it and `count` stays at 1: every
 *        sample is one call on a freshly restored range;
 *      * benchmark.js also runs each clock once untimed as a "pretest";
 *        that run has its own `setup`, so it costs time but cannot leave
 *        the timed call a consumed range;
 *      * the test checks `ready()` first, so a call made in the wrong state
 *        fails the run instead of timing a no-op.
 *    benchmark.js inlines the source of `setup` and the test into a
 *    generated function where closures do not resolve, so both are source
 *    strings calling methods stored on the benchmark (`this` there). The
 *    fixed cost left in a timed call is a few µs (an empty call measured
 *    3-6 µs), against milliseconds of work at the default sizes. A
 *    deferred test would avoid the strings, but its timer also covers
 *    lazily compiling benchmark.js's generated code on every sample:
 *    30-50 µs, enough to skew smaller ranges.
 */
import Benchmark from 'benchmark';

export interface OpSpec {
  /** Unique benchmark name, e.g. "WASM fault-in". */
  name: string;
  /** Pages the operation covers, to turn seconds per call into ns per page. */
  pages: number;
  /** Untimed, once before the benchmark: bring the range into the state `fn` needs. */
  prepare?: () => void;
  /** The timed call: one operation over the whole range. */
  fn: () => void;
  /**
   * Consuming operations only: whether the range is in the state `fn`
   * needs, and how to bring it back there (untimed, before every call).
   */
  consuming?: { restore: () => void; ready: () => boolean };
  /** Untimed, once after the benchmark. */
  finish?: () => void;
}

export interface SampleSettings {
  minSamples: number;
  /** Seconds benchmark.js may spend sampling one operation (after minSamples). */
  maxTime: number;
}

export interface Timing {
  /** Median over samples of the time per call, divided by pages. */
  nsPerPage: number;
  /** Mean, for comparison with the median (GC pauses pull it up). */
  meanNsPerPage: number;
  /** benchmark.js relative margin of error of the mean, in percent. */
  rme: number;
  samples: number;
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Full GC between benchmarks, so one peer's garbage is not collected on another's clock. */
function collectGarbage(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

/** Arguments for Suite#add: the test (function or source) and its options. */
function benchmarkArgs(spec: OpSpec, settings: SampleSettings): [fn: Function | string, options: Benchmark.Options] {
  const common = {
    minSamples: settings.minSamples,
    maxTime: settings.maxTime,
    onStart: () => {
      collectGarbage();
      spec.prepare?.();
    },
    onComplete: () => spec.finish?.(),
  };
  const consuming = spec.consuming;
  if (consuming === undefined) {
    return [spec.fn, common];
  }
  // Unknown options become properties of the benchmark, functions kept as they are.
  const methods = {
    ptemuRestore: () => {
      if (!consuming.ready()) {
        consuming.restore();
      }
    },
    ptemuCall: () => {
      if (!consuming.ready()) {
        throw new Error(`${spec.name}: called without its state restored; the timing would be meaningless`);
      }
      spec.fn();
    },
  };
  const options = { ...common, ...methods, setup: 'this.ptemuRestore()', minTime: Number.MIN_VALUE };
  return ['this.ptemuCall()', options as Benchmark.Options];
}

/**
 * Run every spec in one benchmark.js suite. Progress goes to stderr so that
 * stdout carries only the report.
 */
export function runSuite(specs: readonly OpSpec[], settings: SampleSettings): Promise<Map<string, Timing>> {
  return new Promise((resolve, reject) => {
    const suite = new Benchmark.Suite();
    const pagesOf = new Map<string, number>();
    for (const spec of specs) {
      pagesOf.set(spec.name, spec.pages);
      suite.add(spec.name, ...benchmarkArgs(spec, settings));
    }
    const results = new Map<string, Timing>();
    let failure: unknown = null;
    suite.on('cycle', (event: Benchmark.Event) => {
      const bench = event.target as unknown as Benchmark;
      const name = String(bench.name);
      if (bench.error) {
        failure ??= bench.error;
        return;
      }
      const pages = pagesOf.get(name)!;
      const sample = bench.stats.sample;
      const timing: Timing = {
        nsPerPage: (median(sample) * 1e9) / pages,
        meanNsPerPage: (bench.stats.mean * 1e9) / pages,
        rme: bench.stats.rme,
        samples: sample.length,
      };
      results.set(name, timing);
      process.stderr.write(
        `  ${name.padEnd(22)} ${timing.nsPerPage.toFixed(2).padStart(9)} ns/page  ±${timing.rme.toFixed(1)}%  (${timing.samples} samples)\n`,
      );
    });
    suite.on('complete', () => (failure === null ? resolve(results) : reject(failure)));
    suite.run({ async: true });
  });
}
