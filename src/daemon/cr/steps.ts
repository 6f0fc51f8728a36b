// Dump and restore are an explicit, ordered list of small named steps (like Cedana's adapter
// chain). Each step may register an undo; when a step fails, the undos run in reverse order, so
// a failed dump leaves the job as it was. Every step is timed for the breakdown users see.

import type { Timings } from "../../api/types.ts";

export interface Step<C> {
  name: string;
  /** Skip the step when this returns false. */
  when?: (c: C) => boolean;
  run: (c: C, undo: (fn: () => void | Promise<void>) => void) => void | Promise<void>;
}

export async function runSteps<C>(
  steps: Step<C>[],
  ctx: C,
  timings: Timings,
  onStep: (name: string) => void = () => {},
): Promise<void> {
  const undos: (() => void | Promise<void>)[] = [];
  const t0 = performance.now();
  try {
    for (const s of steps) {
      if (s.when && !s.when(ctx)) continue;
      const t = performance.now();
      onStep(s.name);
      await s.run(ctx, (fn) => undos.push(fn));
      timings[s.name] = +(performance.now() - t).toFixed(1);
    }
  } catch (e) {
    for (const u of undos.reverse()) {
      try {
        await u();
      } catch { /* keep undoing */ }
    }
    throw e;
  } finally {
    timings.total = +(performance.now() - t0).toFixed(1);
  }
}
