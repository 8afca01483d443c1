/**
 * Interleaved timing of several implementations of the same operations in
 * one process: warm-up rounds (V8 tiers up the WASM and the JavaScript),
 * then rounds in which every subject runs every operation once, so that the
 * machine's drift hits all of them alike. Each run returns its own ns per
 * unit (setup untimed, results checked by the subject).
 */

export interface Subject<Op extends string> {
  label: string;
  run: Record<Op, () => number>;
}

export interface Timing { best: number; median: number }

export function median(xs: readonly number[]): number {
  return [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
}

/** Best and median per subject (by label) and operation. */
export function interleave<Op extends string>(subjects: readonly Subject<Op>[], ops: readonly Op[], rounds: number, warmups = 1): Map<string, Record<Op, Timing>> {
  for (let r = 0; r < warmups; r++) for (const s of subjects) for (const op of ops) s.run[op]();
  const samples = subjects.map(() => new Map<Op, number[]>(ops.map((op) => [op, []])));
  for (let r = 0; r < rounds; r++) subjects.forEach((s, i) => { for (const op of ops) samples[i]!.get(op)!.push(s.run[op]()); });
  const results = new Map<string, Record<Op, Timing>>();
  subjects.forEach((s, i) => {
    const row = {} as Record<Op, Timing>;
    for (const op of ops) { const xs = samples[i]!.get(op)!; row[op] = { best: Math.min(...xs), median: median(xs) }; }
    results.set(s.label, row);
  });
  return results;
}

/** A peer measured elsewhere (the C peer's medians): best and median are the same number. */
export function single<Op extends string>(values: Record<Op, number>): Record<Op, Timing> {
  const row = {} as Record<Op, Timing>;
  for (const op of Object.keys(values) as Op[]) row[op] = { best: values[op], median: values[op] };
  return row;
}
