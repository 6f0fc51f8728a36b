// The job service: every job operation the API offers, over the DB and the plugins. It is the
// only writer of job records, and it watches every live job so an exit is recorded promptly.

import { existsSync } from "node:fs";
import { join } from "node:path";
import { MANIFEST, type Manifest, readManifest } from "../checkpoint/manifest.ts";
import type {
  CheckpointInfo,
  CheckpointInspect,
  CompressionName,
  DeleteRequest,
  DeleteResult,
  DumpRequest,
  DumpResult,
  Job,
  JobInspect,
  JobStatus,
  JobType,
  KillRequest,
  KillResult,
  ManageProcessRequest,
  ManageRuncRequest,
  RestoreRequest,
  RestoreResult,
  RunProcessRequest,
  RunRuncRequest,
} from "../api/types.ts";
import type { Config } from "../config/mod.ts";
import {
  alreadyExists,
  CedanaError,
  failedPrecondition,
  invalidArgument,
  notFound,
  osReason,
} from "../errors.ts";
import { type ExitStatus, type JobIo, plugin, type PluginContext, type StartedJob } from "../plugins/mod.ts";
import {
  adoptedOf,
  descendants,
  isRunning,
  jobProcess,
  readFds,
  startTimeToDate,
  statusWord,
} from "../proc/mod.ts";
import { ExitWatcher, OrphanReaper } from "../sys/mod.ts";
import { processFrozen } from "../sys/freezer.ts";
import type { CheckpointRow, JobDb, JobRow } from "./db.ts";
import { detectCompression } from "../checkpoint/archive.ts";
import type { CrHost } from "./cr/host.ts";
import { dump as runDump, plainDumpArgs, requireCriu } from "./cr/dump.ts";
import { clearTemps, keeperPids } from "./cr/salvage.ts";
import { setKeeperTag, stopStrayKeepers } from "./keeper.ts";
import { type IoKeep, reclaimIo, releaseIo } from "../plugins/process/io.ts";
import { restore as runRestore, warmCriuArgs } from "./cr/restore.ts";
import { WarmRestores } from "./cr/warm_restore.ts";
import { WarmDumps } from "./cr/warm_dump.ts";
import { Checksums } from "./cr/checksums.ts";
import { CudaDriver, findCudaPids } from "../gpu/mod.ts";
import { IoHub } from "./io_hub.ts";
import type { Logger } from "./log.ts";
import { JID_PATTERN, randomJid } from "./names.ts";
import { parseSignal, signalName } from "./signals.ts";

/** The driver is loaded only for GPU jobs, and only when asked. */
/** A PID file must be writable before the job starts; true when this made it (an empty file). */
function probePidFile(path: string): boolean {
  let existed = true;
  try {
    Deno.statSync(path);
  } catch {
    existed = false;
  }
  try {
    Deno.openSync(path, { write: true, create: true }).close();
  } catch (e) {
    throw invalidArgument(
      `cannot write the PID file ${path}: ${osReason(e)}`,
    );
  }
  return !existed;
}

/** Where a container job's container lives: [runc root] or [containerd socket, namespace]. */
function containerPlace(r: JobRow): string[] {
  return r.type === "runc"
    ? [String(r.details.root)]
    : [String(r.details.address), String(r.details.namespace)];
}

/** The flags of `dump runc|containerd CID` that name that place. */
function containerFlags(r: JobRow): string {
  const [a, b] = containerPlace(r);
  return r.type === "runc" ? `--root ${a}` : `--address ${a} --namespace ${b}`;
}

function cudaStates(pid: number): JobInspect["cuda"] {
  try {
    const driver = CudaDriver.load();
    return findCudaPids(pid).map((p) => ({ pid: p, state: String(driver.state(p)) }));
  } catch (e) {
    return { error: (e as Error).message };
  }
}

function checkpointInfo(c: CheckpointRow): CheckpointInfo {
  return {
    id: c.id,
    jid: c.jid,
    path: c.path,
    time: new Date(c.time).toISOString(),
    size: c.size,
    compression: (c.manifest.compression as CompressionName) ?? detectCompression(c.path),
    missing: existsSync(c.path) ? undefined : true,
  };
}

/** One finished dump or restore, for metrics. */
export interface OperationEvent {
  op: "dump" | "restore";
  type: string;
  ok: boolean;
  seconds: number;
  /** Bytes written (dump: checkpoint size). */
  bytes: number;
  /** Error code when it failed (not_found, failed_precondition, ...). */
  reason: string | null;
}

/** How long a job runs before the CRIU of its next dump is started (see #prepareDump). */
const WARM_DUMP_AFTER_MS = 1000;

export class JobService implements CrHost {
  readonly #hubs = new Map<string, IoHub>();
  /** Cancels the exit watch of each job being watched. */
  readonly #watchers = new Map<string, () => void>();
  /** Jobs this daemon sent SIGKILL, with the PID it went to (see #watch). */
  readonly #sigkilled = new Map<string, number>();
  readonly #exits = new ExitWatcher();
  /** How each live job's exit can be learned: its spawn's exit event, or reaping it ourselves. */
  readonly #sources = new Map<string, { pid: number; exited?: Promise<ExitStatus>; reap?: boolean }>();
  /** Jobs with a dump or restore in progress: a second operation is refused, never interleaved. */
  readonly #busy = new Map<string, string>();
  readonly #reaper = new OrphanReaper((pid) => this.#reapPauses > 0 || this.#exits.reaps(pid));
  /**
   * While a runtime starts or restores a container (runc run -d, runc restore -d), its init is
   * our orphan before the job is recorded: one that ends at once must stay a zombie until the
   * job's exit watcher reaps it (its exit code is the job's), not be reaped as a stray.
   */
  #reapPauses = 0;

  pauseReaping(): () => void {
    this.#reapPauses++;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.#reapPauses--;
    };
  }

  readonly checksums: Checksums;
  readonly warm: WarmRestores;
  readonly warmDumps: WarmDumps;

  constructor(readonly db: JobDb, readonly config: Config, readonly log: Logger) {
    this.checksums = new Checksums(db, log);
    this.warm = new WarmRestores(this, (m, a) => warmCriuArgs(m, a, config.criu.log_level));
    this.warmDumps = new WarmDumps(
      this,
      (row, dir) => plainDumpArgs(this, row, dir),
      () => this.#refillDumps(),
    );
    setKeeperTag(config.db.path);
  }

  #ctx(jid: string): PluginContext {
    return { config: this.config, log: this.log, jid };
  }

  /** JIDs handed out whose job is not recorded yet (a start can take a while: containers). */
  readonly #reserved = new Set<string>();

  #taken(jid: string): boolean {
    return this.#reserved.has(jid) || this.db.getJob(jid) !== null;
  }

  /** A new JID, reserved until `release`: two concurrent requests never get the same one. */
  #newJid(requested?: string): string {
    const jid = this.#pickJid(requested);
    this.#reserved.add(jid);
    return jid;
  }

  #pickJid(requested?: string): string {
    if (requested === undefined) return randomJid((j) => this.#taken(j));
    if (!JID_PATTERN.test(requested)) {
      throw invalidArgument(
        `invalid job ID ${
          JSON.stringify(requested.length > 140 ? requested.slice(0, 140) + "..." : requested)
        }: ` +
          "up to 128 letters, digits, '_', '.', '-', starting with a letter or digit",
      );
    }
    if (this.#taken(requested)) throw alreadyExists(`job ${requested} already exists`);
    return requested;
  }

  #get(jid: string): JobRow {
    const row = this.db.getJob(jid);
    if (!row) throw notFound(`job ${JID_PATTERN.test(jid) ? jid : JSON.stringify(jid)} not found`);
    return row;
  }

  /**
   * The running job of a container, by its ID and (when given) where it lives: a runc root, a
   * containerd socket and namespace. Two jobs can have one container ID in different roots or
   * namespaces; then the request must say which (never the first one found).
   */
  #containerJob(c: NonNullable<DumpRequest["container"]>): JobRow | null {
    const where: [string, string | undefined][] = [["root", c.root], ["address", c.address], [
      "namespace",
      c.namespace,
    ]];
    const rows = this.db.listJobs().filter((r) =>
      r.type === c.type && r.details.id === c.id && this.#status(r) !== "halted" &&
      where.every(([k, v]) => v === undefined || r.details[k] === v)
    );
    if (rows.length <= 1) return rows[0] ?? null;
    const flag = c.type === "runc" ? "--root" : "--address/--namespace";
    throw invalidArgument(
      `jobs ${
        rows.map((r) => `${r.jid} (${containerPlace(r).join(" ")})`).join(", ")
      } each have a container ${c.id}: name one with ${flag}`,
    );
  }

  // ---- lifecycle ---------------------------------------------------------------------------

  async run(type: JobType, req: RunProcessRequest | RunRuncRequest): Promise<Job> {
    const p = plugin(type);
    if (!p.run) throw invalidArgument(`job type ${type} cannot be run`);
    const r = req as Partial<RunProcessRequest>;
    const pidFileMade = r.pidFile ? probePidFile(r.pidFile) : false; // before anything starts
    const jid = this.#newJid(req.jid);
    let started: StartedJob;
    const resume = this.pauseReaping();
    try {
      started = await p.run(req, this.#ctx(jid));
    } catch (e) {
      resume();
      if (pidFileMade) Deno.removeSync(r.pidFile!);
      throw e;
    } finally {
      this.#reserved.delete(jid); // recorded below, synchronously: no gap for another request
    }
    let row: JobRow;
    try {
      row = this.#record(jid, type, started, {
        attachable: !!(r.attachable || r.tty),
        tty: !!r.tty,
        gpu: !!r.gpu,
        adopted: false,
      }, !!r.waitForAttach);
    } finally {
      resume(); // (the job's exit watcher has its process now)
    }
    if (r.pidFile) {
      try {
        Deno.writeTextFileSync(r.pidFile, `${started.pid}\n`);
      } catch (e) {
        this.log.warn("cannot write pid file", { jid, path: r.pidFile, error: (e as Error).message });
      }
    }
    return this.#toJob(row);
  }

  async manage(type: JobType, req: ManageProcessRequest | ManageRuncRequest): Promise<Job> {
    const p = plugin(type);
    if (!p.manage) throw invalidArgument(`job type ${type} cannot be managed`);
    const jid = this.#newJid(req.jid);
    let started: StartedJob;
    try {
      started = await p.manage(req, this.#ctx(jid));
    } finally {
      this.#reserved.delete(jid);
    }
    const existing = this.db.listJobs().find((j) => j.state === "running" && j.pid === started.pid);
    if (existing && this.#alive(existing)) {
      throw alreadyExists(`PID ${started.pid} is already managed as job ${existing.jid}`);
    }
    const row = this.#record(jid, type, started, {
      attachable: false,
      tty: false,
      gpu: !!(req as ManageProcessRequest).gpu,
      adopted: true,
    });
    return this.#toJob(row);
  }

  #record(
    jid: string,
    type: JobType,
    s: StartedJob,
    flags: Pick<JobRow, "attachable" | "tty" | "gpu" | "adopted">,
    holdOutput = false,
  ): JobRow {
    const now = Date.now();
    const row: JobRow = {
      jid,
      type,
      pid: s.pid,
      startTime: s.startTime,
      state: "running",
      exitCode: null,
      exitSignal: null,
      log: s.log,
      cmdline: s.cmdline,
      cwd: s.cwd,
      details: s.details ?? {},
      createdAt: now,
      updatedAt: now,
      ...flags,
    };
    this.db.insertJob(row);
    if (s.io) this.#hubs.set(jid, new IoHub(s.io, { hold: holdOutput }));
    this.#sources.set(jid, { pid: s.pid, exited: s.exited, reap: s.reap });
    this.#watch(row);
    this.log.info("job started", { jid, type, pid: s.pid, adopted: flags.adopted });
    return row;
  }

  /**
   * Records the job's end when its process exits. The daemon's own children report their exit
   * status; any other process (adopted, or left running by an earlier daemon) is watched through
   * a pidfd, which says when it ends but not how.
   */
  #watch(row: JobRow) {
    const { jid, pid } = row;
    if (pid === null) return;
    this.#watchers.get(jid)?.();
    this.#prepareDump(jid, pid);
    const src = this.#sources.get(jid);
    const source = src?.pid === pid ? src : undefined;
    let cancelled = false;
    const finish = (code: number | null, signal: string | null, asked = false) => {
      if (cancelled) return;
      const ask = plugin(row.type).exitStatus;
      if (code === null && signal === null && ask && !asked) {
        // not our child: its runtime may know how it ended
        ask(row).catch(() => null).then((s) => finish(s?.code ?? null, s?.signal ?? null, true));
        return;
      }
      this.#watchers.delete(jid);
      this.warmDumps.drop(jid);
      if (this.#sources.get(jid)?.pid === pid) this.#sources.delete(jid);
      // Not our child, so its status is unknown; but SIGKILL cannot be caught: one this daemon
      // sent is what ended it (`job kill` of an adopted process or container).
      if (code === null && signal === null && this.#sigkilled.get(jid) === pid) signal = "SIGKILL";
      this.#sigkilled.delete(jid);
      try {
        const cur = this.db.getJob(jid);
        // The job may have been deleted, or restored under a new PID meanwhile.
        if (!cur || cur.pid !== pid || cur.state !== "running") return;
        this.db.updateJob(jid, { state: "halted", exitCode: code, exitSignal: signal });
        // (the job's group: what its process started and left behind, now the daemon's)
        this.#hubs.get(jid)?.exited(
          { code, signal },
          () => cur.type === "process" && adoptedOf(pid).length > 0,
        );
        releaseIo(cur.details.ioKeepers as IoKeep | undefined);
        this.log.info("job exited", { jid, pid, code, signal });
      } catch (e) {
        // (the DB locked by someone else, or a full disk: the exit is recorded once it can be)
        this.log.warn("cannot record a job's exit yet; retrying", { jid, error: String(e) });
        setTimeout(() => finish(code, signal, asked), 1000);
      }
    };
    if (source?.exited) {
      this.#watchers.set(jid, () => cancelled = true);
      source.exited.then((s) => finish(s.code, s.signal));
      return;
    }
    const cancel = this.#exits.watch(
      pid,
      (st) => finish(st?.code ?? null, st?.signal != null ? signalName(st.signal) : null),
      () => this.#alive(row),
      !!source?.reap,
    );
    if (!cancel) return finish(null, null);
    this.#watchers.set(jid, () => {
      cancelled = true;
      cancel();
    });
  }

  /**
   * Starts the CRIU of the job's next dump (warm_dump.ts) once it has run a moment: not while it
   * starts up, nor while the command that started or restored it is still printing and exiting.
   */
  #prepareDump(jid: string, pid: number): void {
    if (!this.config.checkpoint.warm || this.#stopping || this.#pendingDumps.has(jid)) return;
    this.#pendingDumps.add(jid);
    // (nothing here may throw out of the timer: an unhandled error would end the daemon)
    const t = setTimeout(async () => {
      this.#pendingDumps.delete(jid);
      try {
        const row = this.db.getJob(jid);
        if (!row || row.pid !== pid || row.state !== "running" || this.#busy.has(jid)) return;
        const { bin } = await requireCriu(this);
        if (this.#stopping) return;
        // (as it is now: it may have been deleted, restored or dumped meanwhile)
        const now = this.db.getJob(jid);
        if (now?.pid === pid && now.state === "running" && !this.#busy.has(jid) && this.#watchers.has(jid)) {
          this.warmDumps.prepare(now, bin);
        }
      } catch (e) {
        this.log.debug("no warm dump", { jid, error: String(e) });
      }
    }, WARM_DUMP_AFTER_MS);
    Deno.unrefTimer(t);
  }

  /** True once the daemon stops: no more warm CRIUs. */
  #stopping = false;
  /** Jobs whose warm dump is to be prepared (a timer runs). */
  readonly #pendingDumps = new Set<string>();

  /** A place for a warm dump came free: the next running process job without one gets it. */
  #refillDumps(): void {
    if (this.#stopping) return;
    try {
      // (as many as there are places, counting those already on their way)
      const rows = this.db.listJobs().filter((r) =>
        r.type === "process" && r.state === "running" && r.pid !== null && !r.gpu &&
        !r.details.pidNamespace &&
        this.warmDumps.wants(r) && !this.#pendingDumps.has(r.jid) && !this.#busy.has(r.jid) &&
        this.#watchers.has(r.jid)
      );
      const places = this.warmDumps.free - this.#pendingDumps.size;
      for (const r of rows.slice(0, Math.max(0, places))) this.#prepareDump(r.jid, r.pid!);
    } catch (e) {
      // (a microtask's error would end the daemon; the DB busy, say: no warm dump then)
      this.log.debug("no warm dump", { error: String(e) });
    }
  }

  /** Still to be watched: there, zombies included (their exit status is yet to be collected). */
  #alive(row: JobRow): boolean {
    return jobProcess(row.pid, row.startTime) !== null;
  }

  /** On daemon start: every job the DB says is running is checked against /proc. */
  /** running and halted jobs after the check; ended: how many of those ended while no daemon ran. */
  reconcile(): { running: number; halted: number; ended: number } {
    let running = 0, halted = 0, ended = 0;
    for (const row of this.db.listJobs()) {
      if (row.state !== "running") {
        halted++;
        // a job that ended while no daemon ran leaves its keepers behind: release them
        releaseIo(row.details.ioKeepers as IoKeep | undefined);
        continue;
      }
      if (isRunning(jobProcess(row.pid, row.startTime))) {
        running++;
        const keep = row.details.ioKeepers as IoKeep | undefined;
        const p = plugin(row.type);
        const io = p.reattach ? p.reattach(row, this.#ctx(row.jid)) : keep ? reclaimIo(keep) : null;
        if (io) this.#hubs.set(row.jid, new IoHub(io));
        else if (row.attachable || (keep && !io && !p.reattach)) {
          this.log.warn("job's I/O is gone", { jid: row.jid });
        }
        this.#watch(row);
      } else {
        halted++;
        ended++;
        releaseIo(row.details.ioKeepers as IoKeep | undefined);
        this.db.updateJob(row.jid, { state: "halted" });
        this.log.info("job no longer running", { jid: row.jid, pid: row.pid });
      }
    }
    return { running, halted, ended };
  }

  // ---- queries -----------------------------------------------------------------------------

  #status(row: JobRow): JobStatus {
    if (row.state === "halted") return "halted";
    const st = jobProcess(row.pid, row.startTime);
    const w = st ? statusWord(st.state) : "dead";
    if (w === "dead") return "halted";
    // (containers are what gets paused, `runc pause`: a process job's cgroup is not looked at, which
    // keeps `ps` of many jobs fast)
    const paused = row.type !== "process" && (w === "sleeping" || w === "running") && processFrozen(row.pid!);
    return paused ? "paused" : w;
  }

  /** `latest`: the job's newest checkpoint, null for none, undefined to look it up. */
  #toJob(row: JobRow, latestArg?: CheckpointRow | null): Job {
    const latest = latestArg === undefined ? this.db.listCheckpoints(row.jid)[0] : latestArg;
    return {
      jid: row.jid,
      type: row.type,
      pid: row.pid,
      status: this.#status(row),
      operation: this.#busy.get(row.jid),
      exitCode: row.exitCode,
      exitSignal: row.exitSignal,
      adopted: row.adopted,
      log: row.log,
      attachable: row.attachable,
      tty: row.tty,
      gpu: row.gpu,
      cmdline: row.cmdline,
      cwd: row.cwd,
      startedAt: row.startTime ? startTimeToDate(row.startTime).toISOString() : null,
      createdAt: new Date(row.createdAt).toISOString(),
      updatedAt: new Date(row.updatedAt).toISOString(),
      details: row.details,
      checkpoint: latest
        ? { id: latest.id, path: latest.path, time: new Date(latest.time).toISOString(), size: latest.size }
        : null,
    };
  }

  list(): Job[] {
    const latest = this.db.latestCheckpoints();
    return this.db.listJobs().map((r) => this.#toJob(r, latest.get(r.jid) ?? null));
  }

  get(jid: string): Job {
    return this.#toJob(this.#get(jid));
  }

  inspect(jid: string): JobInspect {
    const row = this.#get(jid);
    const job = this.#toJob(row);
    const live = job.status !== "halted" && row.pid !== null;
    return {
      ...job,
      fds: live ? readFds(row.pid!) : [],
      children: live ? descendants(row.pid!) : [],
      ioAvailable: this.#hubs.has(jid),
      // (not a dumped job's: its clients hear that it was checkpointed)
      outputOpen: !!this.#hubs.get(jid) && !this.#hubs.get(jid)!.finished && !row.details.haltedBy,
      cuda: row.gpu && live ? cudaStates(row.pid!) : undefined,
    };
  }

  byPid(pid: number): Job {
    const rows = this.db.listJobs().filter((r) => r.pid === pid);
    const row = rows.find((r) => this.#status(r) !== "halted") ?? rows.at(-1);
    if (!row) throw notFound(`no job with PID ${pid}`);
    return this.#toJob(row);
  }

  hub(jid: string): IoHub {
    const row = this.#get(jid);
    if (!row.attachable) {
      throw failedPrecondition(`job ${jid} is not attachable (start it with --attachable)`);
    }
    const hub = this.#hubs.get(jid);
    if (!hub) {
      throw failedPrecondition(
        `job ${jid}'s I/O is gone: it was held by a daemon that has since stopped (see its log, if any)`,
      );
    }
    return hub;
  }

  #select(jids: string[], all?: boolean): JobRow[] {
    if (all && jids?.length) throw invalidArgument("name jobs or use --all, not both");
    if (all) return this.db.listJobs();
    if (!jids?.length) throw invalidArgument("no job given (name one or more JIDs, or use --all)");
    return [...new Set(jids)].map((j) => this.#get(j)); // (a job named twice is acted on once)
  }

  kill(req: KillRequest): KillResult {
    const sig = parseSignal(req.signal ?? "SIGKILL");
    const all = this.#select(req.jids, req.all);
    // A signal under a dump makes CRIU fail (and the error blame CRIU); under a restore it would
    // reach a half-made process, or none. (--all passes them over, like delete does.)
    const busy = all.filter((r) => this.#busy.has(r.jid));
    if (busy.length && !req.all) {
      const r = busy[0];
      throw failedPrecondition(
        `job ${r.jid} is busy: a ${this.#busy.get(r.jid)} is in progress; signal it once that ends`,
      );
    }
    const rows = all.filter((r) => !busy.includes(r));
    // Every job is looked at before any is signalled: `job kill a b c` does all or, when one cannot
    // be, none (it stopped halfway, at the first job that was not running).
    const plan = rows.map((row) => {
      if (this.#status(row) !== "halted") return { row, rest: null };
      // Its main process is gone, but processes of its group may live on: their parent exited and
      // this daemon (a subreaper) adopted them. Only those: the job's PID may be another's by now.
      const rest = row.type === "process" && !row.adopted && row.pid ? adoptedOf(row.pid) : [];
      return { row, rest };
    });
    const idle = plan.filter((p) => p.rest !== null && !p.rest.length).map((p) => p.row.jid);
    if (idle.length && !req.all) {
      throw failedPrecondition(
        `job ${idle.join(", ")} ${idle.length > 1 ? "are" : "is"} not running (nothing was signalled)`,
      );
    }
    const out: KillResult = {
      signal: sig,
      killed: [],
      skipped: [...idle, ...busy.map((r) => r.jid)],
      busy: busy.map((r) => ({ jid: r.jid, op: this.#busy.get(r.jid)! })),
    };
    for (const { row, rest } of plan) {
      if (rest === null) {
        // re-checked right before signalling: a reused PID must never be signalled
        if (this.#status(row) === "halted") {
          out.skipped.push(row.jid);
          continue;
        }
        plugin(row.type).signal(row, sig);
        if (sig === "SIGKILL" && row.pid) this.#sigkilled.set(row.jid, row.pid);
        out.killed.push(row.jid);
        this.log.info("job signalled", { jid: row.jid, signal: sig });
      } else if (rest.length) {
        for (const p of rest) {
          try {
            Deno.kill(p, sig);
          } catch { /* gone meanwhile */ }
        }
        out.killed.push(row.jid);
        this.log.info("what was left of a job signalled", { jid: row.jid, signal: sig, pids: rest });
      }
    }
    return out;
  }

  async delete(req: DeleteRequest): Promise<DeleteResult> {
    const rows = this.#select(req.jids, req.all);
    const running = rows.filter((r) => this.#status(r) !== "halted");
    if (running.length && !req.all) {
      throw failedPrecondition(
        `job ${running.map((r) => r.jid).join(", ")} is still running: kill it first (cedana job kill)`,
      );
    }
    const out: DeleteResult = { deleted: [] };
    for (const row of rows) {
      if (running.includes(row)) continue;
      if (this.#busy.has(row.jid)) {
        if (req.all) continue;
        throw failedPrecondition(`job ${row.jid} is busy: a ${this.#busy.get(row.jid)} is in progress`);
      }
      const p = plugin(row.type);
      const own = p.owns ? await p.owns(row) : true;
      if (own === false) {
        this.log.info("job deleted; its container ID now names another container, left alone", {
          jid: row.jid,
        });
      } else if (own) await p.cleanup?.(row, this.#ctx(row.jid));
      this.#watchers.get(row.jid)?.();
      this.#watchers.delete(row.jid);
      this.#hubs.delete(row.jid);
      this.#sources.delete(row.jid);
      releaseIo(row.details.ioKeepers as IoKeep | undefined);
      this.warm.drop(row.jid);
      this.warmDumps.drop(row.jid);
      const kept = this.db.listCheckpoints(row.jid).length;
      this.db.deleteJob(row.jid);
      out.deleted.push(row.jid);
      if (kept) (out.checkpointsKept ??= {})[row.jid] = kept;
    }
    return out;
  }

  // ---- checkpoint/restore -------------------------------------------------------------------

  /**
   * Starts the orphan reaper and clears the temporary dirs a killed daemon left behind (the
   * images of a dump that CRIU finished are salvaged, not deleted: see salvage.ts).
   */
  start(): void {
    this.#reaper.start();
    this.checksums.resume();
    const referenced = new Set(clearTemps(this));
    for (const row of this.db.listJobs()) {
      for (const p of keeperPids(row.details.ioKeepers)) referenced.add(p);
    }
    const stray = stopStrayKeepers(referenced);
    if (stray.length) {
      this.log.warn("stopped I/O keepers a killed daemon started but never recorded", { pids: stray });
    }
  }

  unwatch(jid: string): void {
    this.#watchers.get(jid)?.();
    this.#watchers.delete(jid);
  }

  rewatch(jid: string): void {
    const row = this.db.getJob(jid);
    if (!row || row.state !== "running") return;
    // A process that ended while unwatched is noticed here: #watch checks it is still alive.
    this.#watch(row);
  }

  dumped(jid: string, checkpoint?: string): void {
    const row = this.db.getJob(jid);
    releaseIo(row?.details.ioKeepers as IoKeep | undefined);
    const details = { ...row?.details, haltedBy: checkpoint };
    this.db.updateJob(jid, { state: "halted", exitCode: null, exitSignal: null, details });
    this.#sources.delete(jid);
    this.#hubs.get(jid)?.exited({ code: null, signal: null, checkpointed: true });
  }

  restored(row: JobRow, io: JobIo | null, reap: boolean, holdOutput = false): void {
    if (this.db.getJob(row.jid)) {
      const { jid: _j, createdAt: _c, ...patch } = row;
      this.db.updateJob(row.jid, patch);
    } else this.db.insertJob(row);
    if (io) this.#hubs.set(row.jid, new IoHub(io, { hold: holdOutput }));
    else this.#hubs.delete(row.jid);
    this.#sources.set(row.jid, { pid: row.pid!, reap });
    this.#watch(row);
  }

  reapOrphans(): void {
    this.#reaper.reap();
  }

  readonly #progress = new Map<string, { op: string; step: string; dir?: string; since: number }>();

  progress(jid: string, op: "dump" | "restore", step: string, dir?: string): void {
    const cur = this.#progress.get(jid);
    this.#progress.set(jid, { op, step, dir, since: cur?.op === op ? cur.since : Date.now() });
  }

  /** The running operation on a job: step, bytes written so far (dumps), seconds. */
  currentProgress(jid: string): { op: string; step: string; bytes: number | null; seconds: number } {
    const p = this.#progress.get(jid);
    if (!p || !this.#busy.has(jid)) throw notFound(`no operation in progress on job ${jid}`);
    let bytes: number | null = null;
    if (p.dir) {
      bytes = 0;
      try {
        for (const e of Deno.readDirSync(p.dir)) {
          if (e.isFile) bytes += Deno.statSync(`${p.dir}/${e.name}`).size;
        }
      } catch { /* renamed into place meanwhile */ }
    }
    return { op: p.op, step: p.step, bytes, seconds: (Date.now() - p.since) / 1000 };
  }

  queuedInput(jid: string): Uint8Array | null {
    return this.#hubs.get(jid)?.io.queuedInput?.() ?? null;
  }

  holdInput(jid: string): () => void {
    return this.#hubs.get(jid)?.io.holdInput?.() ?? (() => {});
  }

  /** The dumps and restores in progress, for a daemon asked to stop ("dump of job web"). */
  operations(): string[] {
    return [...this.#busy].map(([jid, op]) =>
      `${op} of ${jid.startsWith("pid:") ? `process ${jid.slice(4)}` : `job ${jid}`}`
    );
  }

  /** Resolves once no dump or restore is in progress (checked every 50 ms). */
  async idle(): Promise<void> {
    while (this.#busy.size) await new Promise((r) => setTimeout(r, 50));
  }

  busyUntil(jid: string | null, op: string, done: Promise<unknown>): void {
    if (jid === null || this.#busy.has(jid)) return;
    this.#busy.set(jid, op);
    done.catch(() => {}).finally(() => this.#busy.delete(jid));
  }

  async #exclusive<T>(jid: string | null, op: string, fn: () => Promise<T>): Promise<T> {
    if (jid === null) return await fn();
    const other = this.#busy.get(jid);
    if (other) throw failedPrecondition(`job ${jid} is busy: a ${other} is in progress`);
    this.#busy.set(jid, op);
    try {
      return await fn();
    } finally {
      this.#busy.delete(jid);
      this.#progress.delete(jid);
    }
  }

  /** Every dump request counts in the metrics, a refused one too (its reason is its error code). */
  dump(req: DumpRequest): Promise<DumpResult> {
    const type = req.container?.type ?? (req.jid !== undefined ? this.db.getJob(req.jid)?.type : undefined) ??
      "process";
    return this.#observed("dump", type, () => this.#dump(req), (r) => r.checkpoint.size);
  }

  async #dump(req: DumpRequest): Promise<DumpResult> {
    let row: JobRow | null = null;
    if (req.jid !== undefined) row = this.#get(req.jid);
    else if (req.container) {
      const c = req.container;
      const { type, id } = c;
      row = this.#containerJob(c);
      if (!row) {
        // a JID where a container ID belongs: say which is which
        const job = this.db.getJob(id);
        const cid = job?.type === type && job.details.id !== id
          ? job.details.id as string | undefined
          : undefined;
        const where = [
          c.root && `root ${c.root}`,
          c.address && `at ${c.address}`,
          c.namespace && `namespace ${c.namespace}`,
        ]
          .filter(Boolean).join(", ");
        // a running job with that container ID elsewhere (another root or namespace, another runtime)
        const other = this.db.listJobs().find((r) =>
          r.details.id === id && r.type !== "process" && this.#status(r) !== "halted"
        );
        const next = !other
          ? `manage it first: cedana manage ${type} ${id}`
          : other.type !== type
          ? `it is ${other.type} job ${other.jid}'s: cedana dump ${other.type} ${id}`
          : `job ${other.jid} has one: cedana dump ${type} ${id} ${containerFlags(other)}`;
        throw notFound(
          cid
            ? `${id} is a job, not a container ID: \`cedana dump job ${id}\`, or \`cedana dump ${type} ${cid}\``
            : `no running ${type} job for container ${id}${where ? ` (${where})` : ""} (${next})`,
        );
      }
    } else if (req.pid !== undefined) {
      row = this.db.listJobs().find((r) => r.pid === req.pid && this.#status(r) !== "halted") ?? null;
    } else throw invalidArgument("name a job (jid) or a process (pid) to dump");
    let r: DumpResult;
    try {
      r = await this.#exclusive(row?.jid ?? `pid:${req.pid}`, "dump", () => runDump(this, req, row));
    } catch (e) {
      // (a dump refused or failed may have taken the job's warm dump: the job runs on, it gets another)
      try {
        const now = row && this.db.getJob(row.jid);
        if (now?.state === "running" && now.pid !== null) this.#prepareDump(now.jid, now.pid);
      } catch { /* the DB busy: none then; the dump's own error is the one to tell */ }
      throw e;
    }
    if (row && !r.leftRunning && r.checkpoint.compression === "none") this.#prepareRestore(row.jid, r);
    return r;
  }

  /** Starts the CRIU for the next restore of a job its dump ended, once the answer is out (warm.ts). */
  #prepareRestore(jid: string, r: DumpResult): void {
    // (nothing here may throw out of the timer: an unhandled error would end the daemon)
    setTimeout(async () => {
      try {
        if (this.#stopping) return;
        const row = this.db.getJob(jid);
        if (!row || this.#busy.has(jid) || this.db.listCheckpoints(jid)[0]?.path !== r.checkpoint.path) {
          return;
        }
        const { bin } = await requireCriu(this);
        if (this.#stopping) return;
        // (as it is now: a restore may have come first, or the job been deleted)
        const now = this.db.getJob(jid);
        if (!now || now.state !== "halted" || this.#busy.has(jid)) return;
        this.warm.prepare(now, r.checkpoint.path, readManifest(r.checkpoint.path), bin);
      } catch (e) {
        this.log.debug("no warm restore", { jid, error: String(e) });
      }
    }, 0);
  }

  /** Reports every dump/restore (outcome, duration, bytes) to the listeners (metrics). */
  async #observed<T>(
    op: "dump" | "restore",
    type: string,
    fn: () => Promise<T>,
    bytes: (r: T) => number,
  ): Promise<T> {
    const t0 = performance.now();
    try {
      const r = await fn();
      this.#emit({
        op,
        type,
        ok: true,
        seconds: (performance.now() - t0) / 1000,
        bytes: bytes(r),
        reason: null,
      });
      return r;
    } catch (e) {
      const reason = e instanceof CedanaError ? e.code : "internal";
      this.#emit({ op, type, ok: false, seconds: (performance.now() - t0) / 1000, bytes: 0, reason });
      throw e;
    }
  }

  readonly #listeners: ((e: OperationEvent) => void)[] = [];

  /** Subscribe to dump/restore outcomes. */
  onOperation(fn: (e: OperationEvent) => void): void {
    this.#listeners.push(fn);
  }

  #emit(e: OperationEvent) {
    for (const l of this.#listeners) {
      try {
        l(e);
      } catch { /* a listener never breaks an operation */ }
    }
  }

  /** Every restore request counts in the metrics, a refused one too. */
  restore(req: RestoreRequest): Promise<RestoreResult> {
    const type = req.type ?? (req.jid !== undefined ? this.db.getJob(req.jid)?.type : undefined) ?? "process";
    const size = (r: RestoreResult) => this.db.checkpointByPath(r.checkpoint)?.size ?? 0;
    return this.#observed("restore", type, () => this.#restore(req), size);
  }

  async #restore(req: RestoreRequest): Promise<RestoreResult> {
    let row: JobRow, isNew: boolean, path: string;
    if (req.log && req.attachable) {
      throw invalidArgument("-o and --attach/--attachable do not go together: a log, or attached clients");
    }
    if (req.jid !== undefined) {
      row = this.#get(req.jid);
      if (!["halted", "zombie"].includes(this.#status(row))) { // a zombie has ended: restorable
        throw failedPrecondition(
          `job ${row.jid} is running (pid ${row.pid}): kill it first, or restore a copy with \`cedana restore ${
            row.type === "process" ? "process --path P" : `${row.type} --path P --id NEW_ID`
          }\``,
        );
      }
      const latest = this.db.listCheckpoints(row.jid)[0];
      const unfinished = row.details.incompleteDump as string | undefined;
      if (unfinished && !req.path) {
        throw failedPrecondition(
          `the last dump of job ${row.jid} was cut short after CRIU had ended the job: its images (no manifest) ` +
            `are in ${unfinished}; restore an older checkpoint with --path, or those images with criu restore -D`,
        );
      }
      const haltedBy = row.details.haltedBy as string | undefined;
      if (!req.path && haltedBy && latest?.id !== haltedBy) {
        // the dump that ended the job is gone: an older state would silently turn the job back
        throw failedPrecondition(
          `the checkpoint that ended job ${row.jid} (${haltedBy}) was deleted` +
            (latest
              ? `; restore an older one on purpose with: cedana restore job ${row.jid} --path ${latest.path}`
              : ""),
        );
      }
      path = req.path ?? latest?.path ?? "";
      if (!path) {
        throw notFound(`job ${row.jid} has no checkpoint (dump it first: cedana dump job ${row.jid})`);
      }
      isNew = false;
      if (req.log && row.tty) {
        throw invalidArgument(
          `job ${row.jid} has a terminal: its output goes to attached clients, not to a log (-o is for jobs without one)`,
        );
      }
      // (an attachable job restored with -o writes to that log from now on, as it did before a
      // restore --attach made it attachable)
      if (req.log) row = { ...row, log: req.log, attachable: false };
    } else {
      if (!req.path) throw invalidArgument("restore process needs --path");
      path = req.path;
      const jid = this.#newJid(req.newJid);
      const now = Date.now();
      // The rest (type, cmdline, stdio...) comes from the checkpoint's manifest during the restore.
      row = {
        jid,
        type: "process",
        pid: null,
        startTime: null,
        state: "halted",
        exitCode: null,
        exitSignal: null,
        adopted: false,
        log: req.log ?? null,
        attachable: false,
        tty: false,
        gpu: false,
        cmdline: [],
        cwd: "",
        details: {},
        createdAt: now,
        updatedAt: now,
      };
      isNew = true;
    }
    // (a restore of another job's checkpoint, or of any by --path, holds the checkpoint too)
    this.#reading.set(path, (this.#reading.get(path) ?? 0) + 1);
    try {
      return await this.#exclusive(row.jid, "restore", async () => {
        const r = await runRestore(this, req, { row, isNew, path });
        return { ...r, job: this.get(row.jid) };
      });
    } finally {
      if (isNew) this.#reserved.delete(row.jid); // recorded by then, or never
      const n = this.#reading.get(path)! - 1;
      if (n) this.#reading.set(path, n);
      else this.#reading.delete(path);
    }
  }

  /** Checkpoints (paths) restores are reading now: not to be deleted under them. */
  readonly #reading = new Map<string, number>();

  checkpoints(jid: string): CheckpointInfo[] {
    this.#get(jid);
    return this.db.listCheckpoints(jid).map(checkpointInfo);
  }

  /** Every checkpoint, newest first: also those of `dump process` and of deleted jobs. */
  allCheckpoints(): CheckpointInfo[] {
    return this.db.allCheckpoints().sort((a, b) => b.time - a.time || b.id.localeCompare(a.id)).map(
      checkpointInfo,
    );
  }

  /** Waits for background checksums, so the manifest shown is complete. */
  async checkpoint(id: string): Promise<CheckpointInspect> {
    const first = this.db.getCheckpoint(id);
    if (!first) throw notFound(`checkpoint ${id} not found`);
    await this.checksums.settled(first.path);
    const c = this.db.getCheckpoint(id) ?? first;
    return { ...checkpointInfo(c), manifest: c.manifest };
  }

  async deleteCheckpoint(id: string): Promise<CheckpointInfo> {
    const c = this.db.getCheckpoint(id);
    if (!c) throw notFound(`checkpoint ${id} not found`);
    if (c.jid && this.#busy.has(c.jid)) {
      throw failedPrecondition(`job ${c.jid} is busy: a ${this.#busy.get(c.jid)} is in progress`);
    }
    if (this.#reading.has(c.path)) {
      throw failedPrecondition(`checkpoint ${id} is being restored: delete it when that restore ends`);
    }
    await this.checksums.settled(c.path); // the background hasher must not read deleted files
    this.warm.dropPath(c.path);
    const kept = removeCheckpointFiles(c);
    this.db.deleteCheckpoint(id);
    if (kept) this.log.warn("checkpoint deleted; files at its path kept", { id, path: c.path, why: kept });
    return checkpointInfo(c);
  }

  shutdown(): void {
    this.#stopping = true;
    this.warm.dropAll();
    this.warmDumps.dropAll();
    for (const cancel of this.#watchers.values()) cancel();
    this.#watchers.clear();
    this.#exits.close();
    this.#reaper.stop();
  }
}

/**
 * Removes a checkpoint's own files, and nothing else: the path may have been reused since the dump
 * (another checkpoint nested in it, or a user's files). Returns why something was kept, or null.
 */
function removeCheckpointFiles(c: CheckpointRow): string | null {
  let st: Deno.FileInfo;
  try {
    st = Deno.statSync(c.path);
  } catch {
    return null; // gone already
  }
  if (st.isFile) {
    // an archive: the one recorded has this size
    if (st.size !== c.size) return `${c.path} is not the archive recorded (${st.size} bytes, not ${c.size})`;
    Deno.removeSync(c.path);
    return null;
  }
  let m: Manifest;
  try {
    m = readManifest(c.path);
  } catch {
    return `${c.path} has no readable ${MANIFEST}`;
  }
  if (m.id !== c.id) return `${c.path} holds checkpoint ${m.id} now`;
  for (const name of [...m.files.map((f) => f.name), MANIFEST]) {
    try {
      Deno.removeSync(join(c.path, name));
    } catch { /* gone */ }
  }
  try {
    Deno.removeSync(c.path); // only when empty: what else is in it stays
    return null;
  } catch {
    return `${c.path} holds other files`;
  }
}
