// Stepping through a kernel range operation: the core calls back at its
// yield points (assembly/step.ts) and the scenario acts there, typically by
// running CPU accesses: "C1 writes between the clean and the flush".

import type { Core } from './core.js';
import { EmuError, optionsArg } from './errors.js';

/** A yield point of a kernel range operation. */
export interface Step {
  /**
   * 'entry': an entry of [start, end) was just modified (its PTE table stays
   * locked: an access that needs a fault there reports `blocked`);
   * 'flush': a TLB flush of [start, end) is about to be issued;
   * 'vma-start' / 'vma-end': the operation enters / leaves a VMA's part [start, end).
   */
  kind: 'entry' | 'flush' | 'vma-start' | 'vma-end';
  /** The process whose page tables the step is about. */
  pid: number;
  start: number;
  end: number;
}

/** Options every stepped kernel range operation takes. */
export interface StepOptions {
  /**
   * Called at each yield point. Inside it, CPU accesses (p.write, cpu.access,
   * touch) and inspection may run; anything else throws EBUSY. If it throws,
   * the operation still completes (steps stop) and the error is thrown after.
   */
  onStep?: (step: Step) => void;
}

const KINDS = ['entry', 'flush', 'vma-start', 'vma-end'] as const;

/** Runs a core operation with its yield points delivered to onStep (none: no cost). */
export function stepped<T>(core: Core, opts: StepOptions | undefined, run: () => T): T {
  const onStep = optionsArg(opts)?.onStep;
  if (onStep === undefined) return run();
  if (typeof onStep !== 'function') throw new EmuError('EINVAL', 'onStep must be a function', 'onStep');
  if (core.stepHandler !== undefined) throw new EmuError('EBUSY', 'another stepped operation is in progress', 'onStep');
  core.stepHandler = (kind, pid, vpn, endVpn) => onStep({ kind: KINDS[kind]!, pid, start: vpn * 4096, end: endVpn * 4096 });
  core.x.stepMode(1);
  let result: T;
  try {
    result = run();
  } finally {
    core.x.stepMode(0);
    core.stepHandler = undefined;
  }
  core.takeHookError();
  return result;
}
