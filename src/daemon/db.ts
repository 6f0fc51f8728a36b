// The job DB: SQLite through node:sqlite, WAL, schema versioned by PRAGMA user_version.
// Only the daemon opens it; every job and checkpoint record lives here.

import { DatabaseSync } from "node:sqlite";
import type { JobType } from "../api/types.ts";

/** Each entry moves the schema from version i to i+1. Never edit a released one: append. */
const MIGRATIONS: string[] = [
  `CREATE TABLE jobs (
     jid         TEXT PRIMARY KEY,
     type        TEXT NOT NULL,
     pid         INTEGER,
     start_time  INTEGER,          -- /proc/PID/stat starttime (ticks): tells a reused PID apart
     state       TEXT NOT NULL,    -- 'running' or 'halted'
     exit_code   INTEGER,
     exit_signal TEXT,
     adopted     INTEGER NOT NULL DEFAULT 0,
     log         TEXT,
     attachable  INTEGER NOT NULL DEFAULT 0,
     tty         INTEGER NOT NULL DEFAULT 0,
     gpu         INTEGER NOT NULL DEFAULT 0,
     cmdline     TEXT NOT NULL DEFAULT '[]',
     cwd         TEXT NOT NULL DEFAULT '',
     details     TEXT NOT NULL DEFAULT '{}',
     created_at  INTEGER NOT NULL,
     updated_at  INTEGER NOT NULL
   ) STRICT`,
  `CREATE TABLE checkpoints (
     id         TEXT PRIMARY KEY,
     jid        TEXT,
     path       TEXT NOT NULL,
     time       INTEGER NOT NULL,
     size       INTEGER NOT NULL,
     manifest   TEXT NOT NULL DEFAULT '{}'
   ) STRICT;
   CREATE INDEX checkpoints_jid_time ON checkpoints (jid, time)`,
  // The temporary dirs this daemon made (wherever --dir put them): a daemon killed mid-operation
  // finds them at its next start, to salvage a dump's finished images or to remove them, and it
  // never touches another daemon's.
  `CREATE TABLE temp_paths (
     path  TEXT PRIMARY KEY,
     kind  TEXT NOT NULL,   -- 'dump' (a dump's images) or 'work' (scratch)
     final TEXT,            -- dump: where its checkpoint goes on commit
     jid   TEXT             -- dump: the job dumped
   ) STRICT`,
];

export interface JobRow {
  jid: string;
  type: JobType;
  pid: number | null;
  startTime: number | null;
  state: "running" | "halted";
  exitCode: number | null;
  exitSignal: string | null;
  adopted: boolean;
  log: string | null;
  attachable: boolean;
  tty: boolean;
  gpu: boolean;
  cmdline: string[];
  cwd: string;
  details: Record<string, unknown>;
  createdAt: number;
  updatedAt: number;
}

export interface CheckpointRow {
  id: string;
  jid: string | null;
  path: string;
  time: number;
  size: number;
  manifest: Record<string, unknown>;
}

type Raw = Record<string, unknown>;

function toJob(r: Raw): JobRow {
  return {
    jid: r.jid as string,
    type: r.type as JobType,
    pid: r.pid as number | null,
    startTime: r.start_time as number | null,
    state: r.state as "running" | "halted",
    exitCode: r.exit_code as number | null,
    exitSignal: r.exit_signal as string | null,
    adopted: r.adopted === 1,
    log: r.log as string | null,
    attachable: r.attachable === 1,
    tty: r.tty === 1,
    gpu: r.gpu === 1,
    cmdline: JSON.parse(r.cmdline as string),
    cwd: r.cwd as string,
    details: JSON.parse(r.details as string),
    createdAt: r.created_at as number,
    updatedAt: r.updated_at as number,
  };
}

function toCheckpoint(r: Raw): CheckpointRow {
  return {
    id: r.id as string,
    jid: r.jid as string | null,
    path: r.path as string,
    time: r.time as number,
    size: r.size as number,
    manifest: JSON.parse(r.manifest as string),
  };
}

const JOB_COLUMNS: Record<keyof Omit<JobRow, "jid" | "createdAt">, string> = {
  type: "type",
  pid: "pid",
  startTime: "start_time",
  state: "state",
  exitCode: "exit_code",
  exitSignal: "exit_signal",
  adopted: "adopted",
  log: "log",
  attachable: "attachable",
  tty: "tty",
  gpu: "gpu",
  cmdline: "cmdline",
  cwd: "cwd",
  details: "details",
  updatedAt: "updated_at",
};

function toSql(v: unknown): string | number | null {
  if (typeof v === "boolean") return v ? 1 : 0;
  if (Array.isArray(v) || (typeof v === "object" && v !== null)) return JSON.stringify(v);
  return v as string | number | null;
}

export class JobDb {
  readonly #db: DatabaseSync;

  constructor(readonly path: string) {
    this.#db = new DatabaseSync(path);
    try {
      Deno.chmodSync(path, 0o600); // job command lines, environments' effects, paths: root's business
    } catch { /* not ours to change (e.g. :memory:) */ }
    this.#db.exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;");
    this.#migrate();
  }

  #migrate() {
    const { user_version: have } = this.#db.prepare("PRAGMA user_version").get() as { user_version: number };
    if (have > MIGRATIONS.length) {
      throw new Error(
        `${this.path} has schema version ${have}, newer than this cedana knows (${MIGRATIONS.length})`,
      );
    }
    for (let v = have; v < MIGRATIONS.length; v++) {
      this.#db.exec("BEGIN");
      try {
        this.#db.exec(MIGRATIONS[v]);
        this.#db.exec(`PRAGMA user_version = ${v + 1}`);
        this.#db.exec("COMMIT");
      } catch (e) {
        this.#db.exec("ROLLBACK");
        throw e;
      }
    }
  }

  get schemaVersion(): number {
    return (this.#db.prepare("PRAGMA user_version").get() as { user_version: number }).user_version;
  }

  insertJob(j: JobRow): void {
    this.#db.prepare(
      `INSERT INTO jobs (jid, type, pid, start_time, state, exit_code, exit_signal, adopted, log, attachable,
         tty, gpu, cmdline, cwd, details, created_at, updated_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ).run(
      j.jid,
      j.type,
      j.pid,
      j.startTime,
      j.state,
      j.exitCode,
      j.exitSignal,
      toSql(j.adopted),
      j.log,
      toSql(j.attachable),
      toSql(j.tty),
      toSql(j.gpu),
      toSql(j.cmdline),
      j.cwd,
      toSql(j.details),
      j.createdAt,
      j.updatedAt,
    );
  }

  getJob(jid: string): JobRow | null {
    const r = this.#db.prepare("SELECT * FROM jobs WHERE jid = ?").get(jid) as Raw | undefined;
    return r ? toJob(r) : null;
  }

  listJobs(): JobRow[] {
    return (this.#db.prepare("SELECT * FROM jobs ORDER BY created_at, jid").all() as Raw[]).map(toJob);
  }

  updateJob(jid: string, patch: Partial<Omit<JobRow, "jid" | "createdAt">>): void {
    const entries = Object.entries({ ...patch, updatedAt: patch.updatedAt ?? Date.now() }) as [
      keyof typeof JOB_COLUMNS,
      unknown,
    ][];
    const sets = entries.map(([k]) => `${JOB_COLUMNS[k]} = ?`).join(", ");
    this.#db.prepare(`UPDATE jobs SET ${sets} WHERE jid = ?`).run(...entries.map(([, v]) => toSql(v)), jid);
  }

  /** The job's checkpoints stay (restorable by path) but no longer belong to any job: a later job
   * with the same JID must not inherit them. */
  deleteJob(jid: string): void {
    this.transaction(() => {
      this.#db.prepare("UPDATE checkpoints SET jid = NULL WHERE jid = ?").run(jid);
      this.#db.prepare("DELETE FROM jobs WHERE jid = ?").run(jid);
    });
  }

  insertCheckpoint(c: CheckpointRow): void {
    this.#db.prepare(
      "INSERT INTO checkpoints (id, jid, path, time, size, manifest) VALUES (?, ?, ?, ?, ?, ?)",
    )
      .run(c.id, c.jid, c.path, c.time, c.size, toSql(c.manifest));
  }

  listCheckpoints(jid: string): CheckpointRow[] {
    return (this.#db.prepare("SELECT * FROM checkpoints WHERE jid = ? ORDER BY time DESC, id DESC").all(
      jid,
    ) as Raw[])
      .map(toCheckpoint);
  }

  /** Latest checkpoint of every job, in one query (for `cedana ps`). */
  latestCheckpoints(): Map<string, CheckpointRow> {
    const rows = this.#db.prepare(
      `SELECT c.* FROM checkpoints c
         JOIN (SELECT jid, MAX(time) AS t FROM checkpoints GROUP BY jid) m ON c.jid = m.jid AND c.time = m.t`,
    ).all() as Raw[];
    return new Map(rows.map((r) => [r.jid as string, toCheckpoint(r)]));
  }

  getCheckpoint(id: string): CheckpointRow | null {
    const r = this.#db.prepare("SELECT * FROM checkpoints WHERE id = ?").get(id) as Raw | undefined;
    return r ? toCheckpoint(r) : null;
  }

  updateCheckpointManifest(id: string, manifest: Record<string, unknown>): void {
    this.#db.prepare("UPDATE checkpoints SET manifest = ? WHERE id = ?").run(toSql(manifest), id);
  }

  /** The record of the checkpoint stored at `path`, if any (the newest when several). */
  checkpointByPath(path: string): CheckpointRow | null {
    const r = this.#db.prepare("SELECT * FROM checkpoints WHERE path = ? ORDER BY time DESC LIMIT 1").get(
      path,
    ) as
      | Raw
      | undefined;
    return r ? toCheckpoint(r) : null;
  }

  allCheckpoints(): CheckpointRow[] {
    return (this.#db.prepare("SELECT * FROM checkpoints").all() as Raw[]).map(toCheckpoint);
  }

  addTemp(path: string, kind: "dump" | "work", final: string | null = null, jid: string | null = null): void {
    this.#db.prepare("INSERT OR REPLACE INTO temp_paths (path, kind, final, jid) VALUES (?, ?, ?, ?)")
      .run(path, kind, final, jid);
  }

  removeTemp(path: string): void {
    this.#db.prepare("DELETE FROM temp_paths WHERE path = ?").run(path);
  }

  temps(): { path: string; kind: "dump" | "work"; final: string | null; jid: string | null }[] {
    return this.#db.prepare("SELECT path, kind, final, jid FROM temp_paths").all() as {
      path: string;
      kind: "dump" | "work";
      final: string | null;
      jid: string | null;
    }[];
  }

  deleteCheckpoint(id: string): void {
    this.#db.prepare("DELETE FROM checkpoints WHERE id = ?").run(id);
  }

  transaction<T>(fn: () => T): T {
    this.#db.exec("BEGIN IMMEDIATE");
    try {
      const out = fn();
      this.#db.exec("COMMIT");
      return out;
    } catch (e) {
      this.#db.exec("ROLLBACK");
      throw e;
    }
  }

  close(): void {
    this.#db.close();
  }
}
