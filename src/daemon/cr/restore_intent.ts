// A restore cut short by the daemon's death. CRIU can finish and resume the restored tasks in the
// moment between its exit and the daemon recording them: the job would stay "halted" while it
// runs, and a second `restore job` would start a duplicate writing into the same log. So, right
// before CRIU runs, the restore writes what it is about to record (the intent) into its work dir;
// a daemon that finds the work dir on start adopts the restored tasks under that record when they
// resumed (and were verified), and kills them when they did not.

import { existsSync } from "node:fs";
import { basename, join } from "node:path";
import { type IoKeep, reclaimIo, releaseIo } from "../../plugins/process/io.ts";
import {
  children,
  descendants,
  killAll,
  readCmdline,
  readFds,
  readStat,
  startTimeToDate,
} from "../../proc/mod.ts";
import type { JobRow } from "../db.ts";
import { plugin } from "../../plugins/mod.ts";
import type { JobIo, RestoreContext } from "../../plugins/types.ts";
import { defaultLogPath } from "../../plugins/process/mod.ts";
import type { CrHost } from "./host.ts";
import { gpuBack } from "./gpu.ts";
import { faultThrow } from "../fault.ts";

const INTENT = "job.json";
/** CRIU's --pidfile (a restore outside a new PID namespace). */
export const PID_FILE = "restore.pid";
/** Written by the gate (see restore.ts' action script). */
export const GATE_DIR = "gate";

export interface Intent {
  /** The job's record as the restore would write it (minus the process). */
  row: JobRow;
  /** A container's restore: what its plugin needs to find the container (see recoverRestore). */
  options?: RestoreContext["options"];
  dumped?: Record<string, unknown>;
  /** A process job's CUDA processes (its PIDs stay): their GPU state comes back after CRIU's restore. */
  gpuPids?: number[];
  /** A container's restored init, once its runtime is done (`row` is then the job's complete record). */
  pid?: number;
  /** Checksums gate the resume: without gate/ok the tasks must not run. */
  gated: boolean;
  checkpoint: string;
  time: number;
}

/** (`time`: when the restore began; kept when the intent is completed) */
export function writeIntent(workDir: string, intent: Omit<Intent, "time"> & { time?: number }): void {
  // (renamed into place: a daemon killed mid-write leaves the previous intent, never half of one)
  const tmp = join(workDir, `${INTENT}.tmp`);
  Deno.writeTextFileSync(tmp, JSON.stringify({ time: Date.now(), ...intent }));
  Deno.renameSync(tmp, join(workDir, INTENT));
}

export function readIntent(workDir: string): Intent | null {
  try {
    return JSON.parse(Deno.readTextFileSync(join(workDir, INTENT)));
  } catch {
    return null;
  }
}

/** The restored root, when it exists and was born during this restore (not a reused PID). */
/** `init`: in a new PID namespace, `unshare` and the CRIU that is the namespace's init. */
function restoredRoot(workDir: string, since: number): { pid: number; ns: boolean; init: number[] } | null {
  let pid = 0, ns = false, init: number[] = [];
  try {
    pid = Number(Deno.readTextFileSync(join(workDir, PID_FILE)).trim());
  } catch {
    // In a new PID namespace: `unshare` -> CRIU (the namespace's init) -> the restored root.
    for (const e of Deno.readDirSync("/proc")) {
      if (!/^\d+$/.test(e.name)) continue;
      const argv = readCmdline(Number(e.name)) ?? [];
      if (argv[0]?.endsWith("unshare") && argv.some((a) => a.startsWith(workDir))) {
        const criu = children(Number(e.name))[0];
        pid = criu ? children(criu)[0] ?? 0 : 0;
        ns = true;
        init = [Number(e.name), criu];
        break;
      }
    }
  }
  // (start times count in ticks from a boot time known to the second)
  return pid > 0 && bornSince(pid, since - 1500) ? { pid, ns, init } : null;
}

function bornSince(pid: number, since: number): boolean {
  const st = readStat(pid);
  return !!st && !["Z", "X", "x"].includes(st.state) && startTimeToDate(st.startTime).getTime() >= since;
}

/** The container runtimes' checkpoint/restore commands, which do not die with the daemon. */
export const RUNTIMES = new Set(["runc", "crun", "ctr"]);

/**
 * What a restore cut short by the daemon's death left in `path` (its work dir): CRIU (it outlives
 * the daemon), its action script, and tasks restored but never resumed (they still hold CRIU's
 * log there). Not a runtime's restore.
 */
function restoreLeftovers(path: string): number[] {
  const out: number[] = [];
  const inside = (p: string) => p === path || p.startsWith(`${path}/`);
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name) || Number(e.name) === Deno.pid) continue;
    try {
      const argv = Deno.readTextFileSync(`/proc/${e.name}/cmdline`).split("\0");
      if (RUNTIMES.has(basename(argv[0]))) continue;
      let hit = argv.some((a) => a.includes(path));
      for (const fd of hit ? [] : Deno.readDirSync(`/proc/${e.name}/fd`)) {
        try {
          if (inside(Deno.readLinkSync(`/proc/${e.name}/fd/${fd.name}`))) {
            hit = true;
            break;
          }
        } catch { /* closed meanwhile */ }
      }
      if (hit) out.push(Number(e.name));
    } catch { /* gone, or a kernel thread */ }
  }
  return out;
}

/** Kills what a cut restore left in `path`, but for `spare`. */
export function killLeftovers(host: CrHost, path: string, spare: number[]): void {
  const pids = restoreLeftovers(path).filter((p) => !spare.includes(p));
  killAll(pids);
  if (pids.length) {
    host.log.warn("killed what a restore the previous daemon did not finish left behind", { path, pids });
  }
}

/** Processes that name the work dir in their argv: CRIU (or `unshare` running it) and its script. */
function criuOf(path: string): number[] {
  const out: number[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name) || Number(e.name) === Deno.pid) continue;
    if ((readCmdline(Number(e.name)) ?? []).some((a) => a.includes(path))) out.push(Number(e.name));
  }
  return out;
}

/**
 * CRIU may still be restoring when the next daemon starts: judged before it ends, tasks it then
 * resumes would run on unrecorded. It ends on its own (a held restore's gate sees the daemon is
 * gone and kills the tasks); in a new PID namespace it stays as init once the tasks resumed.
 */
async function untilCriuDone(path: string): Promise<void> {
  for (const until = Date.now() + 600_000; Date.now() < until;) {
    if (existsSync(join(path, GATE_DIR, "resumed")) || !criuOf(path).length) return;
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * On daemon start, for a process restore's work dir the previous daemon left (once its CRIU is
 * done): the restored tasks that resumed (and were verified) are recorded as the job's, with
 * their I/O back from the keepers; those that did not are killed, with whatever else the restore
 * left.
 */
export async function finishCutRestore(host: CrHost, workDir: string, intent: Intent): Promise<void> {
  await untilCriuDone(workDir);
  faultThrow("finish-cut-restore");
  const root = restoredRoot(workDir, intent.time);
  const keep = intent.row.details.ioKeepers as IoKeep | undefined;
  const resumed = root && (root.ns ? existsSync(join(workDir, GATE_DIR, "resumed")) : true) &&
    (!intent.gated || existsSync(join(workDir, GATE_DIR, "ok"))) &&
    // tasks CRIU still holds keep its log open: not resumed
    !readFds(root.pid).some((f) => f.target.startsWith(`${workDir}/`));
  if (!root || !resumed) {
    if (root) {
      killAll([...descendants(root.pid), root.pid]);
      host.log.warn("killed the tasks of a restore the previous daemon did not finish", {
        jid: intent.row.jid,
        pid: root.pid,
      });
    }
    killLeftovers(host, workDir, []);
    // (a job restored earlier than this may hold keepers of its own: only this restore's go)
    const recorded = host.db.getJob(intent.row.jid)?.details.ioKeepers as IoKeep | undefined;
    if (keep && keep.out.pid !== recorded?.out.pid) releaseIo(keep);
    return;
  }
  killLeftovers(host, workDir, [...root.init, root.pid, ...descendants(root.pid)]);
  const row = adopt(host, intent, root.pid, {
    // no longer the child of a daemon: its exit code is lost
    adopted: true,
    details: { ...intent.row.details, pidNamespace: root.ns || undefined },
  }, () => keep ? reclaimIo(keep) : null);
  if (!row) return;
  if (intent.gpuPids?.length) await gpuBack(host, row, intent.gpuPids, true);
}

/**
 * When finishing a cut restore failed for good: nothing of it may run on unrecorded (a later
 * `restore job` would start a second copy on the same log); the job stays halted with its
 * checkpoint, to be restored again.
 */
export function abandonCutRestore(host: CrHost, workDir: string, intent: Intent): void {
  let spare: number[] = [];
  try {
    const root = restoredRoot(workDir, intent.time);
    const now = host.db.getJob(intent.row.jid);
    if (root && now?.state === "running" && now.pid === root.pid) {
      // recorded after all: it and (in a new PID namespace) the CRIU that is its init stay
      spare = [...root.init, root.pid, ...descendants(root.pid)];
    } else if (root) {
      killAll([...descendants(root.pid), root.pid]);
      host.log.warn("killed the tasks of a restore that could not be recorded", {
        jid: intent.row.jid,
        pid: root.pid,
      });
    }
  } catch { /* (best effort: the leftovers below are found another way) */ }
  try {
    killLeftovers(host, workDir, spare);
  } catch { /* as above */ }
}

/**
 * A container's restore the previous daemon did not see end (the runtime went on without it, and
 * has finished now): the plugin says whether the container runs as the job (containerd's shim
 * keeps its output going), and removes one that cannot (runc's pipes died with the daemon), so
 * that the job restores again.
 */
export async function recoverContainerRestore(host: CrHost, intent: Intent): Promise<void> {
  const p = plugin(intent.row.type);
  const since = intent.time - 1500;
  const ctx = { config: host.config, log: host.log, jid: intent.row.jid };
  let r: { pid: number; details: Record<string, unknown> } | null = null;
  if (intent.pid && bornSince(intent.pid, since)) {
    // the runtime had finished: the record was complete but for the writing
    r = { pid: intent.pid, details: {} };
  } else {
    // (keepers made for a container that is not there, or not adopted, hold nothing of use)
    if (intent.pid) releaseIo(intent.row.details.ioKeepers as IoKeep | undefined);
    r = await p.recoverRestore?.({
      ...ctx,
      row: intent.row,
      options: intent.options ?? {},
      dumped: intent.dumped ?? {},
      since,
    }) ?? null;
  }
  if (!r) return;
  adopt(host, intent, r.pid, {
    // (the runtime knows how it ends)
    adopted: false,
    log: intent.row.log ?? defaultLogPath(host.config.output_dir, intent.row.jid),
    details: { ...intent.row.details, ...r.details },
  }, (row) => p.reattach?.(row, ctx) ?? null);
}

/**
 * Records the process a cut restore left running as its job (unless the dead daemon had recorded
 * it already: then reconcile has it), with its I/O back. The row, or null when there is nothing to do.
 */
function adopt(
  host: CrHost,
  intent: Intent,
  pid: number,
  patch: Partial<JobRow>,
  io: (row: JobRow) => JobIo | null,
): JobRow | null {
  const st = readStat(pid);
  if (!st) return null;
  const now = host.db.getJob(intent.row.jid);
  if (now?.state === "running" && now.pid === pid && now.startTime === st.startTime) return null;
  const row: JobRow = {
    ...intent.row,
    ...patch,
    pid,
    startTime: st.startTime,
    state: "running",
    exitCode: null,
    exitSignal: null,
    details: { ...patch.details, restoredFrom: intent.checkpoint, haltedBy: undefined },
    updatedAt: Date.now(),
  };
  host.restored(row, io(row), false);
  host.log.warn("a restore finished as the previous daemon died: its job is running again", {
    jid: row.jid,
    pid,
    from: intent.checkpoint,
  });
  return row;
}
