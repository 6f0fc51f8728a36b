// Fault injection for the crash tests: `CEDANA_FAULT=<point>` makes the daemon SIGKILL itself at
// that point, so a test can stop it in a window too short to hit from outside (like CRIU's own
// fault injection). Read once; unset in production, where every call is a no-op.

const FAULT = Deno.env.get("CEDANA_FAULT") ?? "";

/**
 * Points: `restore-criu-started` (CRIU restores on, without the daemon),
 * `restore-io-ready` (a restore made the job's pipes and their keepers, CRIU has not run),
 * `restore-before-record` (CRIU resumed the tasks, the job is not recorded yet),
 * `restore-before-gpu` (CRIU restored a GPU job; its GPU state is not back yet),
 * `restore-runtime-done` (runc restored the container; its pipes are not wired yet),
 * `dump-after-gpu-checkpoint` (a GPU job's state is in host memory, CRIU has not run),
 * `dump-container-frozen` (cedana froze a runc container's cgroup, runc has not started).
 */
export function faultPoint(point: string): void {
  if (FAULT === point) Deno.kill(Deno.pid, "SIGKILL");
}

/**
 * `point` once `ready()` holds (checked every ms, for at most 10 s). The daemon is blocked
 * meanwhile, so nothing it would do in between happens (as if it had died there).
 * Points: `restore-criu-holding` (CRIU restored the tasks; the checksums' verdict is not given).
 */
export function faultPointWhen(point: string, ready: () => boolean): void {
  if (FAULT !== point) return;
  const tick = new Int32Array(new SharedArrayBuffer(4));
  for (const until = Date.now() + 10_000; !ready() && Date.now() < until;) Atomics.wait(tick, 0, 0, 1);
  Deno.kill(Deno.pid, "SIGKILL");
}

/**
 * Throws at `point` instead (a step that fails, not a daemon that dies). Points:
 * `finish-cut-restore` (finishing a restore the previous daemon was cut off in).
 */
export function faultThrow(point: string): void {
  if (FAULT === point) throw new Error(`fault injected at ${point}`);
}

/**
 * Whether `point` is the fault asked for, for a fault that slows a step down rather than ending
 * the daemon. Points: `slow-checksums` (a restore's checksums take 2 s more than CRIU).
 */
export function faultActive(point: string): boolean {
  return FAULT === point;
}
