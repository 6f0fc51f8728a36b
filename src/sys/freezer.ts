// A container's cgroup frozen before its runtime checkpoints it. runc hands CRIU the container's
// cgroup to freeze; CRIU writes the freezer state, looks once, and if the tasks are not all frozen
// yet sleeps a fixed 100 ms before it looks again (criu/seize.c, freeze_processes). On this VM that
// happened in about half the dumps of a 512 MiB runc container (CRIU's log: "FREEZING" then
// "FROZEN" 100 ms later), for cedana and raw runc alike. A cgroup CRIU finds already frozen is
// seized at once; so cedana freezes it first and watches it in 1 ms steps. cgroup v1 (freezer.state)
// and v2 (cgroup.freeze, cgroup.events), whichever runc uses; anything unexpected leaves the
// freezing to CRIU as before.

import { existsSync } from "node:fs";

const ROOT = "/sys/fs/cgroup";
/** Written into the dump's work dir before freezing: a daemon killed mid-dump thaws it next start. */
export const FROZEN_MARK = "frozen-cgroup";

/** A freezer cgroup as runc and CRIU use it: v2 (cgroup.freeze) or v1's freezer controller. */
export interface Freezer {
  dir: string;
  v2: boolean;
}

// (runc uses v2 only where /sys/fs/cgroup itself is cgroup2; a hybrid host freezes through v1)
const isV2 = () => existsSync(`${ROOT}/cgroup.controllers`);

/**
 * The cgroup runc has CRIU freeze, from runc's state (`cgroup_paths` in <root>/<id>/state.json):
 * the container's own cgroup, wherever its processes moved inside it. Null when there is none here,
 * or when it is the root or holds the daemon.
 */
export function runcFreezer(cgroupPaths: Record<string, string> | undefined): Freezer | null {
  const v2 = isV2();
  const dir = v2 ? cgroupPaths?.[""] : cgroupPaths?.freezer;
  if (typeof dir !== "string" || !dir.startsWith(`${ROOT}/`) || dir.includes("/..") || dir.endsWith("/")) {
    return null;
  }
  // never freeze the daemon with the job: not the cgroup it is in, nor one above it
  const ours = ownPath(v2);
  if (ours === null) return null;
  for (let p = ours; p !== "/" && p !== ""; p = p.slice(0, p.lastIndexOf("/")) || "/") {
    if (dir.endsWith(p)) return null;
  }
  if (dir === ROOT || (!v2 && dir.split("/").length <= 5)) return null; // (a hierarchy's root)
  return { dir, v2 };
}

/** This process's cgroup path in the hierarchy that freezes (as /proc/self/cgroup has it). */
function ownPath(v2: boolean): string | null {
  const re = v2 ? /^0::(\/.*)$/m : /^\d+:(?:[^:]*,)?freezer(?:,[^:]*)?:(\/.*)$/m;
  try {
    return re.exec(Deno.readTextFileSync("/proc/self/cgroup"))?.[1] ?? null;
  } catch {
    return null;
  }
}

/** Whether `pid`'s cgroup is frozen (`runc pause`, a freezer): its /proc state says only "sleeping". */
export function processFrozen(pid: number): boolean {
  try {
    const v2 = isV2();
    const re = v2 ? /^0::(\/.*)$/m : /^\d+:(?:[^:]*,)?freezer(?:,[^:]*)?:(\/.*)$/m;
    const path = re.exec(Deno.readTextFileSync(`/proc/${pid}/cgroup`))?.[1];
    if (!path || path === "/") return false;
    return v2
      ? /^frozen 1$/m.test(Deno.readTextFileSync(`${ROOT}${path}/cgroup.events`))
      : Deno.readTextFileSync(`${ROOT}/freezer${path}/freezer.state`).trim() === "FROZEN";
  } catch {
    return false; // (gone, or no freezer here)
  }
}

type State = "thawed" | "freezing" | "frozen";

function state(f: Freezer): State {
  if (!f.v2) return Deno.readTextFileSync(`${f.dir}/freezer.state`).trim().toLowerCase() as State;
  if (Deno.readTextFileSync(`${f.dir}/cgroup.freeze`).trim() === "0") return "thawed";
  return /^frozen 1$/m.test(Deno.readTextFileSync(`${f.dir}/cgroup.events`)) ? "frozen" : "freezing";
}

function write(f: Freezer, frozen: boolean): void {
  Deno.writeTextFileSync(
    `${f.dir}/${f.v2 ? "cgroup.freeze" : "freezer.state"}`,
    f.v2 ? (frozen ? "1" : "0") : (frozen ? "FROZEN" : "THAWED"),
  );
}

/** Thaws f; a cgroup already gone (the dumped container ended) is fine. */
export function thaw(f: Freezer): void {
  try {
    write(f, false);
  } catch { /* gone */ }
}

/**
 * Freezes the cgroup and waits (at most limitMs) until every task in it is frozen. Returns the
 * frozen cgroup (the caller thaws it when the runtime is done, whatever happened), or null where it
 * left the cgroup as it was: not freezable here, already frozen by someone else (a paused
 * container stays paused), or not frozen in time.
 */
export async function freezeCgroup(
  f: Freezer | null,
  mark: string | null,
  limitMs = 50,
): Promise<Freezer | null> {
  if (!f) return null;
  try {
    if (state(f) !== "thawed") return null;
    if (mark) Deno.writeTextFileSync(mark, JSON.stringify(f));
    write(f, true);
  } catch {
    return null;
  }
  for (const until = performance.now() + limitMs;;) {
    try {
      if (state(f) === "frozen") return f;
    } catch {
      break;
    }
    if (performance.now() > until) break;
    await new Promise((r) => setTimeout(r, 1));
  }
  thaw(f); // (a task stuck in the kernel: CRIU copes with that itself)
  return null;
}

/** After a daemon died mid-dump: thaw what that dump froze (the mark in its work dir). */
export function thawMarked(mark: string): void {
  try {
    const f = JSON.parse(Deno.readTextFileSync(mark)) as Freezer;
    if (typeof f.dir === "string" && f.dir.startsWith(`${ROOT}/`)) thaw({ dir: f.dir, v2: !!f.v2 });
  } catch { /* no mark */ }
}

/**
 * argv that runs `cmd args...` and thaws f when it exits, as a shell that outlives the daemon: a
 * daemon killed while runc dumps a job left running would otherwise leave it frozen (CRIU freezes
 * again a cgroup it found frozen) until the next daemon start.
 */
export function thawAfter(f: Freezer, cmd: string, args: string[]): [string, string[]] {
  const file = `${f.dir}/${f.v2 ? "cgroup.freeze" : "freezer.state"}`;
  return ["sh", [
    "-c",
    `"$@"; rc=$?; printf %s '${f.v2 ? "0" : "THAWED"}' 2>/dev/null >'${
      file.replaceAll("'", "'\\''")
    }'; exit $rc`,
    "sh",
    cmd,
    ...args,
  ]];
}
