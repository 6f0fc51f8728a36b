// The job service: every job operation the API offers, over the DB and the plugins. It is the
// only writer of job records, and it watches every live job so an exit is recorded promptly.

import type {
  DeleteRequest,
  DeleteResult,
  Job,
  JobInspect,
  JobStatus,
  JobType,
  KillRequest,
  KillResult,
  ManageProcessRequest,
  RunProcessRequest,
} from "../api/types.ts";
import type { Config } from "../config/mod.ts";
import { alreadyExists, failedPrecondition, invalidArgument, notFound } from "../errors.ts";
import { plugin, type PluginContext, type StartedJob } from "../plugins/mod.ts";
import { descendants, readFds, readStat, startTimeToDate, statusWord } from "../proc/mod.ts";
import { ExitWatcher } from "../sys/mod.ts";
import type { JobDb, JobRow } from "./db.ts";
import { IoHub } from "./io_hub.ts";
import type { Logger } from "./log.ts";
import { JID_PATTERN, randomJid } from "./names.ts";
import { parseSignal } from "./signals.ts";

export class JobService {
  readonly #hubs = new Map<string, IoHub>();
  /** Cancels the exit watch of each job being watched. */
  readonly #watchers = new Map<string, () => void>();
  readonly #exits = new ExitWatcher();

  constructor(readonly db: JobDb, readonly config: Config, readonly log: Logger) {}

  #ctx(jid: string): PluginContext {
    return { config: this.config, log: this.log, jid };
  }

  #newJid(requested?: string): string {
    if (requested === undefined || requested === "") return randomJid((j) => this.db.getJob(j) !== null);
    if (!JID_PATTERN.test(requested)) {
      throw invalidArgument(`invalid job ID "${requested}": use letters, digits, '_', '.', '-' (max 128)`);
    }
    if (this.db.getJob(requested)) throw alreadyExists(`job ${requested} already exists`);
    return requested;
  }

  #get(jid: string): JobRow {
    const row = this.db.getJob(jid);
    if (!row) throw notFound(`job ${jid} not found`);
    return row;
  }

  // ---- lifecycle ---------------------------------------------------------------------------

  async run(type: JobType, req: RunProcessRequest): Promise<Job> {
    const p = plugin(type);
    if (!p.run) throw invalidArgument(`job type ${type} cannot be run`);
    const jid = this.#newJid(req.jid);
    const started = await p.run(req, this.#ctx(jid));
    const row = this.#record(jid, type, started, {
      attachable: !!(req.attachable || req.tty),
      tty: !!req.tty,
      gpu: !!req.gpu,
      adopted: false,
    });
    if (req.pidFile) {
      try {
        Deno.writeTextFileSync(req.pidFile, `${started.pid}\n`);
      } catch (e) {
        this.log.warn("cannot write pid file", { jid, path: req.pidFile, error: (e as Error).message });
      }
    }
    return this.#toJob(row);
  }

  async manage(type: JobType, req: ManageProcessRequest): Promise<Job> {
    const p = plugin(type);
    if (!p.manage) throw invalidArgument(`job type ${type} cannot be managed`);
    const existing = this.db.listJobs().find((j) => j.state === "running" && j.pid === req.pid);
    if (existing && this.#alive(existing)) {
      throw alreadyExists(`PID ${req.pid} is already managed as job ${existing.jid}`);
    }
    const jid = this.#newJid(req.jid);
    const started = await p.manage(req, this.#ctx(jid));
    const row = this.#record(jid, type, started, {
      attachable: false,
      tty: false,
      gpu: !!req.gpu,
      adopted: true,
    });
    return this.#toJob(row);
  }

  #record(
    jid: string,
    type: JobType,
    s: StartedJob,
    flags: Pick<JobRow, "attachable" | "tty" | "gpu" | "adopted">,
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
    if (s.io) this.#hubs.set(jid, new IoHub(s.io));
    this.#watch(row, s.exited);
    this.log.info("job started", { jid, type, pid: s.pid, adopted: flags.adopted });
    return row;
  }

  /**
   * Records the job's end when its process exits. The daemon's own children report their exit
   * status; any other process (adopted, or left running by an earlier daemon) is watched through
   * a pidfd, which says when it ends but not how.
   */
  #watch(row: JobRow, exited?: Promise<{ code: number | null; signal: string | null }>) {
    const { jid, pid } = row;
    if (pid === null) return;
    this.#watchers.get(jid)?.();
    let cancelled = false;
    const finish = (code: number | null, signal: string | null) => {
      if (cancelled) return;
      this.#watchers.delete(jid);
      const cur = this.db.getJob(jid);
      // The job may have been deleted, or restored under a new PID meanwhile.
      if (!cur || cur.pid !== pid || cur.state !== "running") return;
      this.db.updateJob(jid, { state: "halted", exitCode: code, exitSignal: signal });
      this.#hubs.get(jid)?.exited({ code, signal });
      this.log.info("job exited", { jid, pid, code, signal });
    };
    if (exited) {
      this.#watchers.set(jid, () => cancelled = true);
      exited.then((s) => finish(s.code, s.signal));
      return;
    }
    const cancel = this.#exits.watch(pid, () => finish(null, null), () => this.#alive(row));
    if (!cancel) return finish(null, null);
    this.#watchers.set(jid, () => {
      cancelled = true;
      cancel();
    });
  }

  #alive(row: JobRow): boolean {
    if (row.pid === null) return false;
    const st = readStat(row.pid);
    return !!st && st.startTime === row.startTime && st.state !== "X";
  }

  /** On daemon start: every job the DB says is running is checked against /proc. */
  reconcile(): { running: number; halted: number } {
    let running = 0, halted = 0;
    for (const row of this.db.listJobs()) {
      if (row.state !== "running") continue;
      const st = row.pid !== null ? readStat(row.pid) : null;
      if (st && st.startTime === row.startTime && st.state !== "Z" && st.state !== "X") {
        running++;
        this.#watch(row);
      } else {
        halted++;
        this.db.updateJob(row.jid, { state: "halted" });
        this.log.info("job no longer running", { jid: row.jid, pid: row.pid });
      }
    }
    return { running, halted };
  }

  // ---- queries -----------------------------------------------------------------------------

  #status(row: JobRow): JobStatus {
    if (row.state === "halted" || row.pid === null) return "halted";
    const st = readStat(row.pid);
    if (!st || st.startTime !== row.startTime) return "halted";
    const w = statusWord(st.state);
    return w === "dead" ? "halted" : w;
  }

  #toJob(row: JobRow, latest = this.db.listCheckpoints(row.jid)[0]): Job {
    return {
      jid: row.jid,
      type: row.type,
      pid: row.pid,
      status: this.#status(row),
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
    return this.db.listJobs().map((r) => this.#toJob(r, latest.get(r.jid)));
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
    if (all) return this.db.listJobs();
    if (!jids?.length) throw invalidArgument("no job given (name one or more JIDs, or use --all)");
    return jids.map((j) => this.#get(j));
  }

  kill(req: KillRequest): KillResult {
    const sig = parseSignal(req.signal ?? "SIGKILL");
    const rows = this.#select(req.jids, req.all);
    const out: KillResult = { signal: sig, killed: [], skipped: [] };
    for (const row of rows) {
      // Re-checked right before signalling: a reused PID must never be signalled.
      if (this.#status(row) === "halted") {
        if (req.all) out.skipped.push(row.jid);
        else throw failedPrecondition(`job ${row.jid} is not running`);
        continue;
      }
      plugin(row.type).signal(row, sig);
      out.killed.push(row.jid);
      this.log.info("job signalled", { jid: row.jid, signal: sig });
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
      await plugin(row.type).cleanup?.(row, this.#ctx(row.jid));
      this.#watchers.get(row.jid)?.();
      this.#watchers.delete(row.jid);
      this.#hubs.delete(row.jid);
      this.db.deleteJob(row.jid);
      out.deleted.push(row.jid);
    }
    return out;
  }

  shutdown(): void {
    for (const cancel of this.#watchers.values()) cancel();
    this.#watchers.clear();
    this.#exits.close();
  }
}
