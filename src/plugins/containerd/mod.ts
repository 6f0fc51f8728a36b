// The `containerd` job type: containers of a containerd (1.6+) instance. We talk to containerd the
// way its users do: `ctr` for everything it can do (run, task list/kill/checkpoint, container
// create/remove), and containerd's gRPC API for the one thing ctr 1.6 cannot: creating a task from
// CRIU images in a directory (restore). The container's output goes to its log through the shim
// (`--log-uri file://`), so it never depends on the daemon.

import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import type { ManageContainerdRequest, RunContainerdRequest } from "../../api/types.ts";
import {
  alreadyExists,
  CedanaError,
  failedPrecondition,
  invalidArgument,
  notFound,
  unavailable,
} from "../../errors.ts";
import type { JobRow } from "../../daemon/db.ts";
import { readStat, startTimeToDate } from "../../proc/mod.ts";
import { criuLogFileErrors } from "../../criu/run.ts";
import { rootfsState } from "../../checkpoint/manifest.ts";
import { runCommand, TIMED_OUT, trackSpawn } from "../../sys/mod.ts";
import { spawn } from "node:child_process";
import { signalName } from "../../daemon/signals.ts";
import { defaultLogPath } from "../process/mod.ts";
import type {
  CheckpointContext,
  ExitStatus,
  JobPlugin,
  PluginContext,
  RecoverContext,
  RestoreContext,
  Restored,
  StartedJob,
} from "../types.ts";
import type { Config } from "../../config/mod.ts";

interface CtrDetails {
  id: string;
  address: string;
  namespace: string;
  image: string;
  args: string[];
  env: string[];
  /** A managed container's creation time (it has no label of ours): that it is still the same one. */
  createdAt?: string;
}

const details = (row: JobRow) => row.details as unknown as CtrDetails;

function target(cfg: Config, address?: string, namespace?: string) {
  return { address: address ?? cfg.containerd.address, namespace: namespace ?? cfg.containerd.namespace };
}

async function ctr(t: { address: string; namespace: string }, args: string[], what: string) {
  // a down containerd should fail fast, not after ctr's long default dial
  const r = await runCommand("ctr", [
    "--connect-timeout",
    "3s",
    "--address",
    t.address,
    "--namespace",
    t.namespace,
    ...args,
  ]);
  if (!r.success) {
    const msg = (r.stderr || r.stdout).trim().split("\n").slice(-3);
    if (
      msg.some((l) =>
        /connection refused|no such file or directory.*sock|failed to dial|deadline exceeded/i.test(l)
      )
    ) {
      throw unavailable(`containerd is not reachable at ${t.address} (${msg.at(-1)})`);
    }
    // (an image or container is looked up in one namespace: a wrong --namespace reads as "not found")
    if (msg.some((l) => /not found/i.test(l))) {
      throw notFound(`${what}: ${msg.at(-1)} (containerd namespace ${t.namespace})`);
    }
    throw failedPrecondition(`${what} failed`, msg);
  }
  return r.stdout;
}

/** PID and status of a container's task (from `ctr task ls`). */
async function task(
  t: { address: string; namespace: string },
  id: string,
): Promise<{ pid: number; status: string }> {
  const out = await ctr(t, ["task", "ls"], "ctr task ls");
  for (const line of out.split("\n").slice(1)) {
    const [tid, pid, status] = line.trim().split(/\s+/);
    if (tid === id) return { pid: Number(pid), status };
  }
  throw notFound(`container ${id} has no task in containerd (namespace ${t.namespace})`);
}

async function run(req: RunContainerdRequest, ctx: PluginContext): Promise<StartedJob> {
  if (!req.image) throw invalidArgument("an image is required (cedana run containerd IMAGE [CMD...])");
  const t = target(ctx.config, req.address, req.namespace);
  const id = req.id ?? ctx.jid;
  checkContainerId(id);
  const log = req.log ? resolve(req.log) : defaultLogPath(ctx.config.output_dir, ctx.jid);
  const env = req.env ?? [];
  for (const e of env) if (!e.includes("=")) throw invalidArgument(`--env wants KEY=VALUE, got "${e}"`);
  const args = [
    "run",
    "-d",
    "--label",
    `${JOB_LABEL}=${ctx.jid}`,
    "--log-uri",
    `file://${log}`,
    ...env.flatMap((e) => ["--env", e]),
    req.image,
    id,
  ];
  // (ctr run takes the command as it is; `ctr containers create` needs a "--" before it)
  if (req.args?.length) args.push(...req.args);
  try {
    await ctr(t, args, `ctr run ${id}`);
  } catch (e) {
    if (
      /already exists/i.test((e as Error).message + ((e as { details?: string[] }).details ?? []).join(" "))
    ) {
      throw alreadyExists(`container ${id} already exists in containerd`);
    }
    // ctr makes the container before its task: a task that failed to start leaves it behind
    await ctr(t, ["containers", "rm", id], `ctr containers rm ${id}`).catch(() => {});
    throw e;
  }
  const { pid } = await task(t, id);
  const d: CtrDetails = { id, ...t, image: req.image, args: req.args ?? [], env };
  return {
    pid,
    startTime: readStat(pid)?.startTime ?? 0,
    cmdline: req.args?.length ? req.args : [req.image],
    cwd: "/",
    log,
    details: d as unknown as Record<string, unknown>,
  };
}

async function manage(req: ManageContainerdRequest, ctx: PluginContext): Promise<StartedJob> {
  if (!req.id) throw invalidArgument("a container ID is required");
  checkContainerId(req.id);
  const t = target(ctx.config, req.address, req.namespace);
  const { pid, status } = await task(t, req.id);
  if (status !== "RUNNING") {
    throw failedPrecondition(`container ${req.id} is ${status.toLowerCase()}, not running`);
  }
  const info = JSON.parse(await ctr(t, ["containers", "info", req.id], `ctr containers info ${req.id}`));
  const d: CtrDetails = {
    id: req.id,
    ...t,
    image: info.Image ?? "",
    args: info.Spec?.process?.args ?? [],
    env: [],
    createdAt: info.CreatedAt,
  };
  return {
    pid,
    startTime: readStat(pid)?.startTime ?? 0,
    cmdline: d.args,
    cwd: "/",
    log: null,
    details: d as unknown as Record<string, unknown>,
  };
}

function signal(job: JobRow, sig: Deno.Signal): void {
  const d = details(job);
  const child = spawn("ctr", [
    "--connect-timeout",
    "3s",
    "--address",
    d.address,
    "--namespace",
    d.namespace,
    "task",
    "kill",
    "-s",
    sig,
    d.id,
  ], {
    stdio: "ignore",
  });
  trackSpawn(child.pid, new Promise((r) => child.once("exit", r)));
  // containerd down (or ctr missing): the signal still reaches the container's init, here on this
  // host; its shim records the exit
  const direct = () => {
    try {
      Deno.kill(job.pid!, sig);
    } catch { /* already gone */ }
  };
  child.once("error", direct);
  child.once("exit", (code) => code !== 0 && direct());
}

/**
 * The task's exit status, which only containerd knows (the container's init is its shim's child):
 * deleting the stopped task returns it.
 */
async function exitStatus(job: JobRow): Promise<ExitStatus | null> {
  if (job.adopted) return null; // someone else's container: its stopped task is theirs to delete
  const d = details(job);
  const { ContainerdApi } = await import("./grpc.ts");
  const api = await ContainerdApi.connect(d.address, d.namespace);
  try {
    for (let i = 0;; i++) {
      try {
        const code = await api.deleteTask(d.id);
        // (containerd reports the end by a signal as 128+N)
        return code > 128 && code < 160
          ? { code: null, signal: signalName(code - 128) }
          : { code, signal: null };
      } catch (e) {
        // the shim may not have collected the exit yet: the task is still "running" for a moment
        if (!/running|must be stopped/i.test(String(e)) || i >= 30) return null;
        await new Promise((ok) => setTimeout(ok, 100));
      }
    }
  } finally {
    api.close();
  }
}

async function removeTask(d: CtrDetails) {
  // (a forced rm of a task that never started can hang in containerd: bounded, not forever)
  const r = await runCommand(
    "ctr",
    ["--connect-timeout", "3s", "--address", d.address, "--namespace", d.namespace, "task", "rm", "-f", d.id],
    undefined,
    30_000,
  );
  if (r.code === TIMED_OUT) {
    throw unavailable(`ctr task rm ${d.id} did not return in 30 s (containerd busy?)`);
  }
}

/** Containers cedana creates carry the job's ID: a container is a job's if so, or if its task is the job's process. */
const JOB_LABEL = "io.cedana.jid";

async function owns(job: JobRow): Promise<boolean | null> {
  const d = details(job);
  let info: { Labels?: Record<string, string>; CreatedAt?: string };
  try {
    info = JSON.parse(await ctr(d, ["containers", "info", d.id], `ctr containers info ${d.id}`));
  } catch (e) {
    if (e instanceof CedanaError && e.code === "not_found") return null;
    throw e;
  }
  if (info.Labels?.[JOB_LABEL] !== undefined) return info.Labels[JOB_LABEL] === job.jid;
  // (a managed one: the container it was, whatever became of its task; a restored task that ended
  // is gone, and the container was taken for someone else's and left behind)
  if (d.createdAt) return info.CreatedAt === d.createdAt;
  const tk = await task(d, d.id).catch(() => null);
  return tk !== null && tk.pid === job.pid;
}

async function cleanup(job: JobRow): Promise<void> {
  const d = details(job);
  await removeTask(d);
  await ctr(d, ["containers", "rm", d.id], `removing container ${d.id}`).catch((e) => {
    if (!(e instanceof CedanaError && e.code === "not_found")) throw e;
  });
}

async function checkpoint(c: CheckpointContext): Promise<void> {
  const d = details(c.row);
  const args = ["task", "checkpoint", "--image-path", c.imagesDir, "--work-path", c.workDir];
  if (!c.leaveRunning) args.push("--exit");
  try {
    await ctr(d, [...args, d.id], `ctr task checkpoint ${d.id}`);
  } catch (e) {
    (e as { details?: string[] }).details?.push(...criuLogFileErrors(join(c.workDir, "dump.log")));
    throw e;
  }
  // the task stays behind as STOPPED: remove it, so a restore can create it again
  if (!c.leaveRunning) await removeTask(d);
  if (!c.ignoreRootfs) await saveRootfsChanges(d, c.imagesDir);
}

/** The container's file changes, kept with the images so that a copy (a new container) gets them. */
const ROOTFS_DIFF = "rootfs-diff.tar";

/**
 * Where the container's own files are on the host: an overlay snapshot's upper dir (what changed
 * from the image; whiteouts and opaque dirs included), or a bind-mounted snapshot's whole dir.
 * Null when containerd cannot say (a snapshot not keyed by the container's ID, another kind).
 */
async function snapshotDir(t: { address: string; namespace: string }, id: string): Promise<string | null> {
  const { ContainerdApi } = await import("./grpc.ts");
  const api = await ContainerdApi.connect(t.address, t.namespace);
  try {
    const m = (await api.mounts(id))[0];
    if (m?.type === "overlay") {
      return m.options.find((o) => o.startsWith("upperdir="))?.slice("upperdir=".length) ?? null;
    }
    return m?.type === "bind" ? m.source : null;
  } catch {
    return null;
  } finally {
    api.close();
  }
}

// trusted.overlay.* marks opaque directories: kept, so a deleted directory stays deleted
const TAR_XATTRS = ["--xattrs", "--xattrs-include=trusted.*", "--numeric-owner"];

async function saveRootfsChanges(d: CtrDetails, imagesDir: string): Promise<void> {
  const dir = await snapshotDir(d, d.id);
  if (!dir) return; // (a snapshotter whose files are not found here: the dump goes on without them)
  // (written aside and renamed: a tar cut short is never taken for the container's changes)
  const tmp = join(imagesDir, `.${ROOTFS_DIFF}.tmp`);
  const r = await runCommand("tar", [...TAR_XATTRS, "-C", dir, "-cf", tmp, "."]);
  // (1: a file changed while read, as in a container left running: the archive is still whole)
  if (r.code > 1) {
    try {
      Deno.removeSync(tmp);
    } catch { /* none written */ }
    throw failedPrecondition(
      "saving the container's file changes failed",
      r.stderr.trim().split("\n").slice(-3),
    );
  }
  Deno.renameSync(tmp, join(imagesDir, ROOTFS_DIFF));
}

/** Into a new container's snapshot, before its task exists: the dumped container's changes. */
async function applyRootfsChanges(t: { address: string; namespace: string }, id: string, imagesDir: string) {
  const tar = join(imagesDir, ROOTFS_DIFF);
  try {
    Deno.statSync(tar);
  } catch {
    if (rootfsState(imagesDir) === "not saved") {
      throw failedPrecondition(
        "the checkpoint lacks the container's file changes (the daemon stopped during its dump, before it " +
          "saved them): restore the job into its own container (cedana restore job), which still has them",
      );
    }
    return; // dumped with --ignore-rootfs, or by an older cedana
  }
  const dir = await snapshotDir(t, id);
  if (!dir) throw failedPrecondition(`cannot find container ${id}'s snapshot to put the dumped files into`);
  const r = await runCommand("tar", [...TAR_XATTRS, "-C", dir, "-xpf", tar]);
  if (!r.success) {
    throw failedPrecondition(
      "restoring the container's file changes failed",
      r.stderr.trim().split("\n").slice(-3),
    );
  }
}

/** containerd's rule for identifiers, checked before ctr is asked (its error is a regex). */
function checkContainerId(id: string): void {
  if (id.length > 76 || !/^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$/.test(id)) {
    throw invalidArgument(
      `invalid container ID ${
        JSON.stringify(id)
      }: letters and digits, joined by single . _ or - (at most 76)`,
    );
  }
}

/** containerd's CreatedAt (RFC 3339, nanoseconds) is before `t`; unknown either way: false. */
function createdBefore(createdAt: string | undefined, t: number): boolean {
  const created = createdAt ? Date.parse(createdAt.replace(/(\.\d{3})\d+/, "$1")) : NaN;
  return !Number.isNaN(created) && !Number.isNaN(t) && created <= t;
}

async function restore(c: RestoreContext): Promise<Restored> {
  if (c.options.attachable) {
    throw invalidArgument(
      "containerd jobs are not attachable: their output goes to the log through containerd's shim",
    );
  }
  const dumped = c.dumped as unknown as Partial<CtrDetails>;
  const t = target(c.config, c.options.address ?? dumped.address, c.options.namespace ?? dumped.namespace);
  const id = c.options.id ?? dumped.id ?? c.jid;
  checkContainerId(id);
  const log = c.row.log ?? defaultLogPath(c.config.output_dir, c.jid);
  // (`restore job` has no --id: name the command that has)
  const elsewhere = c.isNew
    ? "restore under another ID (--id)"
    : `restore it as a new job under another ID: cedana restore containerd --path ${c.imagesDir} --id NEW_ID`;
  // the container (and its snapshot) must exist; a new ID gets a new container from the image
  const exists = await runCommand("ctr", [
    "--connect-timeout",
    "3s",
    "--address",
    t.address,
    "--namespace",
    t.namespace,
    "containers",
    "info",
    id,
  ]);
  // a container this restore makes goes again if the restore fails (a retry would find it in the way)
  let created = false;
  const undoCreate = async () => {
    if (!created) return;
    // (a task that never started: a plain rm removes it, a forced one can hang in containerd)
    await ctr(t, ["task", "rm", id], `ctr task rm ${id}`).catch(() => {});
    await ctr(t, ["containers", "rm", id], `ctr containers rm ${id}`).catch(() => {});
  };
  if (!exists.success) {
    if (!dumped.image) throw invalidArgument("the checkpoint does not say which image its container used");
    const args = [
      "containers",
      "create",
      "--label",
      `${JOB_LABEL}=${c.jid}`,
      ...(dumped.env ?? []).flatMap((e) => ["--env", e]),
      dumped.image,
      id,
    ];
    if (dumped.args?.length) args.push("--", ...dumped.args);
    await ctr(t, args, `ctr containers create ${id}`);
    created = true;
    // (the dumped container's own snapshot, if it still exists, has its changes already)
    await applyRootfsChanges(t, id, c.imagesDir).catch(async (e) => {
      await undoCreate();
      throw e;
    });
  } else {
    // the job's own container (its dump ended the task) or one made for this job; anyone else's is
    // refused, never taken over
    const info = JSON.parse(exists.stdout) as { Labels?: Record<string, string>; CreatedAt?: string };
    const label = info.Labels?.[JOB_LABEL];
    // (no label: a container the job adopted. It is still the job's only if it existed before the
    // checkpoint was taken; one made since under that ID is someone else's)
    const own = label !== undefined
      ? label === c.jid
      : !c.isNew && id === dumped.id && createdBefore(info.CreatedAt, c.dumpedAt);
    const tk = await task(t, id).catch(() => null);
    if (tk && (tk.status === "RUNNING" || tk.status === "PAUSED")) {
      throw alreadyExists(`container ${id} is ${tk.status.toLowerCase()}: ${elsewhere}`);
    }
    if (!own) {
      throw alreadyExists(`container ${id} already exists in containerd: ${elsewhere}`);
    }
    if (tk) await removeTask({ ...(dumped as CtrDetails), ...t, id });
  }
  const { ContainerdApi } = await import("./grpc.ts");
  let api;
  try {
    api = await ContainerdApi.connect(t.address, t.namespace);
  } catch (e) {
    await undoCreate();
    throw unavailable(`cannot talk to containerd at ${t.address}: ${(e as Error).message}`);
  }
  let pid: number;
  try {
    pid = await api.restoreTask({ id, imagesDir: c.imagesDir, workDir: c.workDir, log });
  } catch (e) {
    await undoCreate();
    throw failedPrecondition(
      `containerd restore of ${id} failed: ${(e as Error).message.split("\n")[0]}`,
      criuLogFileErrors(join(c.workDir, "restore.log")),
    );
  } finally {
    api.close();
  }
  return {
    pid,
    io: null,
    reap: false,
    details: { ...dumped, id, ...t } as Record<string, unknown>,
    attachable: false,
    log,
  };
}

/**
 * A restore the previous daemon did not see end: containerd went on, and a task it restored since
 * runs as the job (its shim writes the output to the job's log).
 */
async function recoverRestore(c: RecoverContext) {
  const dumped = c.dumped as unknown as Partial<CtrDetails>;
  const t = target(c.config, c.options.address ?? dumped.address, c.options.namespace ?? dumped.namespace);
  const id = c.options.id ?? dumped.id ?? c.jid;
  const tk = await task(t, id).catch(() => null);
  const st = tk?.status === "RUNNING" ? readStat(tk.pid) : null;
  if (!st || startTimeToDate(st.startTime).getTime() < c.since) return null;
  return { pid: tk!.pid, details: { ...dumped, id, ...t } as Record<string, unknown> };
}

export const containerdPlugin: JobPlugin<RunContainerdRequest, ManageContainerdRequest> = {
  type: "containerd",
  run,
  manage,
  signal,
  owns,
  cleanup,
  noCriuOpts: "containerd's shim starts runc, which starts CRIU: put CRIU options into /etc/criu/runc.conf",
  keepRootfs: async (row, imagesDir) => {
    await saveRootfsChanges(details(row), imagesDir);
    if (!existsSync(join(imagesDir, ROOTFS_DIFF))) {
      throw failedPrecondition("the container's snapshot is gone");
    }
  },
  checkpoint,
  restore,
  recoverRestore,
  exitStatus,
};
