// Calling the runc binary. Its own errors go to a --log file (its stderr may be the container's).

import { join } from "node:path";
import { failedPrecondition, notFound } from "../../errors.ts";
import { runCommand } from "../../sys/mod.ts";

export const DEFAULT_ROOT = "/run/runc";

/**
 * runc would start whatever `criu` is first on PATH, maybe an older one than cedana checked. Its
 * real path, not a symlink: cedana's CRIU wrapper (scripts/setup.sh) then needs no helper process.
 */
function criuForRunc(bin: string): string {
  try {
    return Deno.realPathSync(bin);
  } catch {
    return bin;
  }
}

export interface RuncState {
  id: string;
  pid: number;
  status: string;
  bundle: string;
  rootfs: string;
  /** RFC 3339 */
  created?: string;
}

export function runcArgs(
  root: string,
  args: string[],
  opts: { systemdCgroup?: boolean; log?: string; criu?: string } = {},
) {
  const g = ["--root", root];
  if (opts.systemdCgroup) g.push("--systemd-cgroup");
  if (opts.criu) g.push("--criu", criuForRunc(opts.criu));
  if (opts.log) g.push("--log", opts.log, "--log-format", "json");
  return [...g, ...args];
}

/** The `msg` of error entries in a runc JSON log, most recent last. */
export function runcLogErrors(path: string): string[] {
  try {
    return Deno.readTextFileSync(path).split("\n").filter(Boolean).flatMap((l) => {
      try {
        const e = JSON.parse(l) as { level?: string; msg?: string };
        // (one message can hold several lines: "criu failed: ...\nlog file: ...")
        return e.level === "error" || e.level === "fatal" ? (e.msg ?? l).split("\n").filter(Boolean) : [];
      } catch {
        return [l];
      }
    }).slice(-10);
  } catch {
    return [];
  }
}

/**
 * Whether container `id` under `root` is the one whose init was `pid` started at `startTime` (a
 * job's): runc's state file keeps its init's PID and start time, also once it stopped. null: no
 * such container. Another with the same ID (a new run, a restore under that ID) is not the job's.
 */
export function isJobsContainer(
  root: string,
  id: string,
  pid: number | null,
  startTime: number | null,
): boolean | null {
  let st: { init_process_pid?: number; init_process_start?: number | string };
  try {
    st = JSON.parse(Deno.readTextFileSync(join(root, id, "state.json")));
  } catch (e) {
    return e instanceof Deno.errors.NotFound ? null : false;
  }
  return st.init_process_pid === pid && String(st.init_process_start) === String(startTime);
}

export async function runcState(root: string, id: string): Promise<RuncState> {
  const r = await runCommand("runc", runcArgs(root, ["state", id]));
  if (!r.success) {
    if (/does not exist|not found/i.test(r.stderr)) {
      throw notFound(`container ${id} not found (runc root ${root})`);
    }
    throw failedPrecondition(`runc state ${id} failed: ${r.stderr.trim().split("\n").at(-1)}`);
  }
  return JSON.parse(r.stdout) as RuncState;
}

export async function runc(
  root: string,
  args: string[],
  what: string,
  opts: { systemdCgroup?: boolean } = {},
) {
  const r = await runCommand("runc", runcArgs(root, args, opts));
  if (!r.success) throw failedPrecondition(`${what} failed`, r.stderr.trim().split("\n").slice(-5));
  return r;
}
