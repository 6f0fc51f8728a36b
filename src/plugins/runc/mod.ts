// The `runc` job type: OCI containers run with runc. The container's stdio are pipes held by the
// daemon (files and terminals would make it impossible to checkpoint), copied to the job's log, or
// broadcast to attached clients. Keepers hold copies of the pipes so a container never gets
// SIGPIPE when the daemon restarts. Checkpoint/restore go through `runc checkpoint/restore`, which
// takes care of the container's mounts, namespaces and cgroups around CRIU.

import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import type { ManageRuncRequest, RunRuncRequest } from "../../api/types.ts";
import { alreadyExists, failedPrecondition, invalidArgument } from "../../errors.ts";
import type { JobRow } from "../../daemon/db.ts";
import { readStat, startTimeToDate } from "../../proc/mod.ts";
import { criuLogFileErrors } from "../../criu/run.ts";
import { rootfsState } from "../../checkpoint/manifest.ts";
import { writeCheckedCriuConfig } from "../../criu/check_opts.ts";
import { closeFd, openLog, pipe, runCommand, trackSpawn } from "../../sys/mod.ts";
import { freezeCgroup, FROZEN_MARK, runcFreezer, thaw, thawAfter } from "../../sys/freezer.ts";
import { type IoKeep, keepPipes, keptPipes, reclaimIo, reclaimOutput, releaseIo } from "../process/io.ts";
import { logPump, LogTarget } from "./log_pump.ts";
import { faultPoint } from "../../daemon/fault.ts";
import type { Logger } from "../../daemon/log.ts";
import type {
  CheckpointContext,
  JobIo,
  JobPlugin,
  PluginContext,
  RecoverContext,
  RestoreContext,
  Restored,
  StartedJob,
} from "../types.ts";
import { DEFAULT_ROOT, isJobsContainer, runc, runcArgs, runcLogErrors, runcState } from "./runc.ts";
import { defaultLogPath } from "../process/mod.ts";

interface RuncDetails {
  id: string;
  root: string;
  bundle: string;
  systemdCgroup?: boolean;
  /** run with --no-pivot (a ramdisk root): its restore needs it too */
  noPivot?: boolean;
  ioKeepers?: IoKeep;
}

const details = (row: JobRow) => row.details as unknown as RuncDetails;

function readBundle(bundle: string): { terminal: boolean } {
  let cfg: { process?: { terminal?: boolean } };
  try {
    cfg = JSON.parse(Deno.readTextFileSync(join(bundle, "config.json")));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw invalidArgument(`bundle ${bundle} has no config.json`);
    throw invalidArgument(`bundle ${bundle}: config.json is not valid JSON`);
  }
  return { terminal: !!cfg.process?.terminal };
}

/**
 * Starts `runc <args>` with fresh stdio pipes for the container; waits for runc itself to exit
 * (detached mode) and returns the daemon's ends.
 */
async function withPipes(
  root: string,
  args: string[],
  what: string,
  opts: { attachable: boolean; systemdCgroup?: boolean; workDir: string; criu?: string },
): Promise<{ stdin: number | null; stdout: number; stderr: number }> {
  const i = opts.attachable ? pipe() : null, o = pipe(), e = pipe();
  const runcLog = join(opts.workDir, `runc-${crypto.randomUUID().slice(0, 8)}.log`);
  let code: number | null;
  try {
    const child = spawn("runc", runcArgs(root, args, { ...opts, log: runcLog }), {
      stdio: [i ? i.read : "ignore", o.write, e.write],
    });
    const exited = new Promise<number | null>((r) => child.once("exit", (c) => r(c)));
    trackSpawn(child.pid, exited);
    code = await exited;
  } catch (err) {
    for (const fd of [i?.write, o.read, e.read]) if (fd !== undefined) closeFd(fd);
    throw failedPrecondition(`${what} failed: ${(err as Error).message}`);
  } finally {
    for (const fd of [i?.read, o.write, e.write]) if (fd !== undefined) closeFd(fd);
  }
  // (its error lines go into the error; a failed `run runc` left the file behind)
  const errs = code !== 0 ? runcLogErrors(runcLog) : [];
  try {
    Deno.removeSync(runcLog);
  } catch { /* none */ }
  if (code !== 0) {
    for (const fd of [i?.write, o.read, e.read]) if (fd !== undefined) closeFd(fd);
    throw failedPrecondition(`${what} failed (runc exit ${code})`, errs);
  }
  return { stdin: i?.write ?? null, stdout: o.read, stderr: e.read };
}

/** Wire the container's pipes: broadcast (attachable) or copied into the log. */
function wire(fds: { stdin: number | null; stdout: number; stderr: number }, log: LogTarget | null) {
  if (!log) return keptPipes(fds.stdin, fds.stdout, fds.stderr);
  const keep = keepPipes(fds.stdin, fds.stdout, fds.stderr);
  logPump([fds.stdout, fds.stderr], log);
  return { io: null, keep };
}

/**
 * The job's log, opened before its container exists (a bad path fails early) and kept open for the
 * pump: opening a FIFO twice would end its reader's input in between.
 */
function openTarget(path: string | null, owner: { log: Logger; jid: string }): LogTarget | null {
  if (!path) return null;
  try {
    return new LogTarget(path, openLog(path), owner);
  } catch (e) {
    throw failedPrecondition((e as Error).message);
  }
}

async function run(req: RunRuncRequest, ctx: PluginContext): Promise<StartedJob> {
  if (!req.bundle) throw invalidArgument("--bundle is required");
  const bundle = resolve(req.bundle);
  try {
    if (!Deno.statSync(bundle).isDirectory) throw new Error();
  } catch {
    throw invalidArgument(`bundle ${bundle} does not exist`);
  }
  if (readBundle(bundle).terminal) {
    throw invalidArgument(`bundle ${bundle} asks for a terminal (process.terminal): set it to false`);
  }
  const root = req.root ?? DEFAULT_ROOT;
  const id = req.id ?? ctx.jid;
  checkContainerId(id);
  try {
    Deno.statSync(join(root, id));
    throw alreadyExists(`container ${id} already exists (runc root ${root}): choose another --id`);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  const log = req.attachable ? null : (req.log ?? defaultLogPath(ctx.config.output_dir, ctx.jid));
  const target = openTarget(log, { log: ctx.log, jid: ctx.jid });
  // --pid-file: the init's PID even when it has ended by the time runc returns (`runc state`
  // then says "stopped", pid 0; the daemon keeps it as a zombie for its exit code)
  const pidFile = join(ctx.config.checkpoint.dir, `runc-${crypto.randomUUID().slice(0, 8)}.pid`);
  const args = [
    "run",
    "-d",
    "--bundle",
    bundle,
    "--pid-file",
    pidFile,
    ...(req.noPivot ? ["--no-pivot"] : []),
    id,
  ];
  let pid: number;
  const fds = await withPipes(root, args, `runc run ${id}`, {
    attachable: !!req.attachable,
    systemdCgroup: req.systemdCgroup,
    workDir: ctx.config.checkpoint.dir,
  }).catch((e) => {
    target?.close();
    throw e;
  });
  try {
    pid = Number(Deno.readTextFileSync(pidFile).trim());
  } finally {
    try {
      Deno.removeSync(pidFile);
    } catch { /* not written */ }
  }
  const { io, keep } = wire(fds, target);
  const d: RuncDetails = {
    id,
    root,
    bundle,
    systemdCgroup: req.systemdCgroup,
    noPivot: req.noPivot || undefined,
    ioKeepers: keep,
  };
  return {
    pid,
    startTime: readStat(pid)?.startTime ?? 0,
    cmdline: readProcess(bundle).args,
    cwd: readProcess(bundle).cwd,
    log,
    io: io ?? undefined,
    details: d as unknown as Record<string, unknown>,
    reap: true,
  };
}

/** The container's command and working directory (inside the container) from config.json. */
function readProcess(bundle: string): { args: string[]; cwd: string } {
  try {
    const p = JSON.parse(Deno.readTextFileSync(join(bundle, "config.json"))).process ?? {};
    return { args: p.args ?? [], cwd: p.cwd ?? "/" };
  } catch {
    return { args: [], cwd: "/" };
  }
}

async function manage(req: ManageRuncRequest, _ctx: PluginContext): Promise<StartedJob> {
  if (!req.id) throw invalidArgument("a container ID is required");
  checkContainerId(req.id);
  const root = req.root ?? DEFAULT_ROOT;
  const st = await runcState(root, req.id);
  if (st.status !== "running") throw failedPrecondition(`container ${req.id} is ${st.status}, not running`);
  const bundle = req.bundle ? resolve(req.bundle) : st.bundle;
  return {
    pid: st.pid,
    startTime: readStat(st.pid)?.startTime ?? 0,
    cmdline: readProcess(bundle).args,
    cwd: readProcess(bundle).cwd,
    log: null,
    details: { id: req.id, root, bundle } as unknown as Record<string, unknown>,
  };
}

function signal(job: JobRow, sig: Deno.Signal): void {
  const d = details(job);
  // runc kill is asynchronous here (we do not wait): fall back to the PID if runc is missing.
  const child = spawn("runc", runcArgs(d.root, ["kill", d.id, sig]), { stdio: "ignore" });
  trackSpawn(child.pid, new Promise((r) => child.once("exit", r)));
  child.once("error", () => Deno.kill(job.pid!, sig));
}

/** (the ID may have been taken again since: a new run, a restore under it) */
function owns(job: JobRow): boolean | null {
  const d = details(job);
  return isJobsContainer(d.root, d.id, job.pid, job.startTime);
}

async function cleanup(job: JobRow): Promise<void> {
  const d = details(job);
  const r = await runCommand("runc", runcArgs(d.root, ["delete", "--force", d.id]));
  if (!r.success && !/does not exist|not found/i.test(r.stderr)) {
    throw failedPrecondition(`runc delete ${d.id} failed: ${r.stderr.trim()}`);
  }
}

function reattach(job: JobRow, ctx: PluginContext): JobIo | null {
  const keep = details(job).ioKeepers;
  if (!keep) return null;
  if (job.log && !job.attachable) {
    const fds = reclaimOutput(keep);
    // (a log that cannot be opened now is tried again while the output is drained)
    if (fds) logPump(fds, new LogTarget(job.log, null, { log: ctx.log, jid: job.jid }));
    return null;
  }
  return reclaimIo(keep);
}

function released(job: JobRow): void {
  releaseIo(details(job).ioKeepers);
}

const FLAG_ARGS: Record<string, string> = {
  tcpEstablished: "--tcp-established",
  fileLocks: "--file-locks",
  extUnixSk: "--ext-unix-sk",
  shellJob: "--shell-job",
};

async function checkpoint(c: CheckpointContext): Promise<void> {
  const d = details(c.row);
  const args = ["checkpoint", "--image-path", c.imagesDir, "--work-path", c.workDir];
  if (c.leaveRunning) args.push("--leave-running");
  for (const [k, flag] of Object.entries(FLAG_ARGS)) {
    if ((c.flags as Record<string, boolean>)[k]) args.push(flag);
  }
  const env = c.extra.length ? await criuOptsFile(c) : undefined;
  // (see src/sys/freezer.ts: CRIU's own freeze waits 100 ms whenever its first look is too early.
  // A job left running is frozen from here until CRIU starts, runc's ~35 ms: less than it saves.)
  const frozen = await freezeCgroup(runcFreezer(runcCgroups(d.root, d.id)), join(c.workDir, FROZEN_MARK));
  faultPoint("dump-container-frozen");
  const argv = runcArgs(d.root, [...args, d.id], { log: join(c.workDir, "runc.log"), criu: c.criu });
  let r;
  try {
    const [cmd, cmdArgs] = frozen ? thawAfter(frozen, "runc", argv) : ["runc", argv];
    r = await runCommand(cmd, cmdArgs, env);
  } finally {
    // CRIU puts a cgroup it found frozen back as it was: a job left running (or a failed dump) runs on
    if (frozen) thaw(frozen);
  }
  if (!r.success) {
    const lines = [
      ...criuLogFileErrors(join(c.workDir, "dump.log")),
      ...runcLogErrors(join(c.workDir, "runc.log")),
    ];
    // (the work dir goes away: name CRIU's log only if there is one; the dump moves it next to the images)
    const log = join(c.workDir, "dump.log");
    const where = lines.length && existsSync(log) ? `; CRIU log: ${log}` : "";
    // (runc names CRIU's log too: once is enough)
    const shown = where ? lines.filter((l) => !l.startsWith("log file: ")) : lines;
    throw failedPrecondition(`runc checkpoint ${d.id} failed${where}`, shown.slice(-15));
  }
  if (!c.ignoreRootfs) await saveRootfs(d.bundle, c.imagesDir);
}

/**
 * runc (1.1) restores a network namespace it makes itself with its loopback down, so CRIU cannot
 * bring a TCP connection back into it (`Can't connect inet socket back: Network is unreachable`)
 * and the container, already ended by the dump, is lost. A namespace the bundle joins by path
 * outlives the container and keeps its links: that one restores.
 */
function dumpRefusal(row: JobRow, found: { tcpEstablished: boolean; leaveRunning: boolean }): string | null {
  if (!found.tcpEstablished) return null;
  let nss: { type?: string; path?: string }[] = [];
  try {
    nss = JSON.parse(Deno.readTextFileSync(join(details(row).bundle, "config.json"))).linux?.namespaces ?? [];
  } catch {
    return null; // (the bundle is gone: runc's own checkpoint says what it can)
  }
  if (!nss.some((n) => n.type === "network" && !n.path)) return null;
  const loss = found.leaveRunning
    ? "a checkpoint of it could not be restored"
    : "the container would be lost";
  return `container ${details(row).id} has open TCP connections in a network namespace of its own, which ` +
    `runc restores with its loopback down: the connections could not come back, and ${loss}. Close them ` +
    `first, or run the container in a network namespace it joins by path ` +
    `(linux.namespaces: {"type": "network", "path": ...})`;
}

/** runc's cgroup paths for the container (its state.json), or undefined. */
function runcCgroups(root: string, id: string): Record<string, string> | undefined {
  try {
    return JSON.parse(Deno.readTextFileSync(join(root, id, "state.json"))).cgroup_paths;
  } catch {
    return undefined;
  }
}

/**
 * --criu-opts for the CRIU that runc starts: runc has no flag for them, but CRIU reads the file
 * named by CRIU_CONFIG_FILE. Checked first with `criu --version`, which parses it too: through runc
 * a bad option only shows as "CRIU version check failed".
 */
async function criuOptsFile(c: CheckpointContext): Promise<Record<string, string>> {
  const path = join(c.workDir, "criu-opts.conf");
  await writeCheckedCriuConfig(c.criu, path, c.extra);
  return { CRIU_CONFIG_FILE: path };
}

/** The container's filesystem as it was at the dump, so a restore elsewhere gets its changes. */
async function saveRootfs(bundle: string, imagesDir: string): Promise<void> {
  const rootfs = rootfsOf(bundle);
  // (written aside and renamed: a tar cut short is never taken for the container's files)
  const tar = join(imagesDir, "rootfs.tar"), tmp = join(imagesDir, ".rootfs.tar.tmp");
  const r = await runCommand("tar", [
    "-C",
    rootfs,
    "--exclude=./proc/*",
    "--exclude=./sys/*",
    "-cf",
    tmp,
    ".",
  ]);
  // (exit 1: a file changed while it was read, as a --leave-running container writes on: kept as read)
  if (!r.success && r.code !== 1) {
    try {
      Deno.removeSync(tmp);
    } catch { /* none written */ }
    throw failedPrecondition(`saving the container's rootfs failed`, r.stderr.trim().split("\n").slice(-3));
  }
  Deno.renameSync(tmp, tar);
}

function rootfsOf(bundle: string): string {
  try {
    const p = JSON.parse(Deno.readTextFileSync(join(bundle, "config.json"))).root?.path ?? "rootfs";
    return p.startsWith("/") ? p : join(bundle, p);
  } catch {
    return join(bundle, "rootfs");
  }
}

async function restore(c: RestoreContext): Promise<Restored> {
  const dumped = c.dumped as unknown as Partial<RuncDetails>;
  const bundle = resolve(c.options.bundle ?? dumped.bundle ?? "");
  if (!c.options.bundle && !dumped.bundle) {
    throw invalidArgument("--bundle is required to restore a runc checkpoint");
  }
  try {
    Deno.statSync(join(bundle, "config.json"));
  } catch {
    const other = c.isNew
      ? ""
      : `; restore it with another: cedana restore runc --path ${c.imagesDir} --bundle DIR`;
    throw invalidArgument(`bundle ${bundle} does not exist (or has no config.json)${other}`);
  }
  const root = c.options.root ?? dumped.root ?? DEFAULT_ROOT;
  const id = c.options.id ?? dumped.id ?? c.jid;
  checkContainerId(id);
  // (`restore job` has no --id: name the command that has)
  const elsewhere = c.isNew
    ? "restore under another ID (--id)"
    : `restore it as a new job under another ID: cedana restore runc --path ${c.imagesDir} --bundle ${bundle} --id NEW_ID`;
  await freeContainerId(root, id, c.row, elsewhere);
  await restoreRootfs(bundle, c.imagesDir);
  // --pid-file: the restored init's PID without another `runc state` call
  const pidFile = join(c.workDir, "init.pid");
  const args = [
    "restore",
    "-d",
    "--image-path",
    c.imagesDir,
    "--work-path",
    c.workDir,
    "--bundle",
    bundle,
    "--pid-file",
    pidFile,
    ...(dumped.noPivot ? ["--no-pivot"] : []),
  ];
  for (const [k, flag] of Object.entries(FLAG_ARGS)) if (c.flags[k]) args.push(flag);
  const attachable = c.options.attachable ?? c.row.attachable;
  const log = attachable ? null : c.row.log ?? defaultLogPath(c.config.output_dir, c.jid);
  const target = openTarget(log, { log: c.log, jid: c.jid });
  let fds;
  try {
    fds = await withPipes(root, [...args, id], `runc restore ${id}`, {
      attachable,
      systemdCgroup: dumped.systemdCgroup,
      workDir: c.workDir,
      criu: c.criu,
    });
  } catch (e) {
    target?.close();
    (e as { details: string[] }).details?.unshift(
      ...criuLogFileErrors(join(c.workDir, "restore.log")).slice(-10),
    );
    throw e;
  }
  faultPoint("restore-runtime-done");
  const pid = Number(Deno.readTextFileSync(pidFile).trim());
  const { io, keep } = wire(fds, target);
  return {
    pid,
    io,
    reap: true,
    details: {
      id,
      root,
      bundle,
      systemdCgroup: dumped.systemdCgroup,
      noPivot: dumped.noPivot,
      ioKeepers: keep,
    },
    attachable,
    log,
  };
}

/**
 * A restore the previous daemon did not see end: runc went on and made the container, but its
 * stdio pipes were the dead daemon's (its next write fails), so it is removed and the job, halted
 * with its checkpoint intact, restores again. Only a container made since the restore began.
 */
async function recoverRestore(c: RecoverContext): Promise<null> {
  const dumped = c.dumped as unknown as Partial<RuncDetails>;
  const root = c.options.root ?? dumped.root ?? DEFAULT_ROOT;
  const id = c.options.id ?? dumped.id ?? c.jid;
  const st = await runcState(root, id).catch(() => null);
  if (!st || !(Date.parse(st.created ?? "") >= c.since)) return null;
  const init = st.pid ? readStat(st.pid) : null;
  if (init && startTimeToDate(init.startTime).getTime() < c.since) return null; // (not this restore's)
  await runc(root, ["delete", "--force", id], `runc delete ${id}`);
  c.log.warn("removed the container of a restore the previous daemon did not finish; restore the job again", {
    jid: c.jid,
    id,
  });
  return null;
}

/** runc's own rule for container IDs, checked before runc is asked. */
function checkContainerId(id: string): void {
  if (!/^[\w+.-]+$/.test(id)) {
    throw invalidArgument(`invalid container ID ${JSON.stringify(id)}: letters, digits, _ + - . only`);
  }
}

/**
 * The job's own stopped container keeps its ID in runc's state: removed. Any other container with
 * that ID (running or not: a user's, another job's) is refused, never deleted.
 */
async function freeContainerId(root: string, id: string, job: JobRow, elsewhere: string): Promise<void> {
  // runc keeps a container's state in <root>/<id>: none, no container (and no runc call)
  const own = isJobsContainer(root, id, job.pid, job.startTime);
  if (own === null) return;
  if (!own) {
    const status = (await runcState(root, id).catch(() => null))?.status;
    const what = status === "running" || status === "paused"
      ? `is ${status}`
      : `already exists (runc root ${root})`;
    throw alreadyExists(`container ${id} ${what}: ${elsewhere}`);
  }
  let st;
  try {
    st = await runcState(root, id);
  } catch {
    return; // no such container: the ID is free
  }
  if (st.status === "running" || st.status === "paused") {
    throw alreadyExists(`container ${id} is ${st.status}: ${elsewhere}`);
  }
  await runc(root, ["delete", "--force", id], `runc delete ${id}`);
}

/** Only into an empty rootfs: the dumped files are the container's, not the bundle owner's. */
async function restoreRootfs(bundle: string, imagesDir: string): Promise<void> {
  const tar = join(imagesDir, "rootfs.tar");
  const rootfs = rootfsOf(bundle);
  let empty = true;
  try {
    for (const _ of Deno.readDirSync(rootfs)) {
      empty = false;
      break;
    }
  } catch { /* none: made below, if there is a tar to fill it */ }
  if (!existsSync(tar)) {
    // (CRIU would fail on the first file the container holds, far from the reason)
    if (empty) {
      const why = rootfsState(imagesDir) === "not saved"
        ? "the daemon stopped during the dump, before it saved the container's files"
        : "dumped with --ignore-rootfs";
      throw failedPrecondition(
        `the checkpoint holds no file system (${why}) and the bundle's rootfs ${rootfs} is empty: restore with a bundle that has the container's files`,
      );
    }
    return;
  }
  if (!empty) return;
  Deno.mkdirSync(rootfs, { recursive: true });
  const r = await runCommand("tar", ["-C", rootfs, "-xf", tar]);
  if (!r.success) {
    throw failedPrecondition(
      "unpacking the container's rootfs failed",
      r.stderr.trim().split("\n").slice(-3),
    );
  }
}

export const runcPlugin: JobPlugin<RunRuncRequest, ManageRuncRequest> = {
  type: "runc",
  run,
  manage,
  signal,
  owns,
  cleanup,
  reattach,
  released,
  dumpRefusal,
  keepRootfs: (row, imagesDir) => saveRootfs(details(row).bundle, imagesDir),
  checkpoint,
  restore,
  recoverRestore,
};
