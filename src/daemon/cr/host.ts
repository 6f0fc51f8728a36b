// What the dump/restore steps need from the job service, and nothing more.
import type { Config } from "../../config/mod.ts";
import type { JobIo } from "../../plugins/mod.ts";
import type { JobDb, JobRow } from "../db.ts";
import type { Logger } from "../log.ts";
import type { Checksums } from "./checksums.ts";
import type { WarmDumps } from "./warm_dump.ts";
import type { WarmRestores } from "./warm_restore.ts";

export interface CrHost {
  db: JobDb;
  config: Config;
  log: Logger;
  checksums: Checksums;
  /** CRIUs started ahead for the restores of jobs a dump ended. */
  warm: WarmRestores;
  /** CRIUs started ahead for the dumps of running jobs. */
  warmDumps: WarmDumps;
  /** Stop recording the job's exit (CRIU is about to kill it on purpose). */
  unwatch(jid: string): void;
  /** Watch the job's current process again (after a failed or leave-running dump). */
  rewatch(jid: string): void;
  /** The dump ended the job: tell attached clients, keep the record. */
  /** `checkpoint`: the one that ended the job (a restore must not silently use an older one). */
  dumped(jid: string, checkpoint?: string): void;
  /** Input clients sent the job that is still queued in the daemon (not in its pipe yet). */
  queuedInput(jid: string): Uint8Array | null;
  /** No input goes into the job's pipe until the returned function is called. */
  holdInput(jid: string): () => void;
  /** Record a restored process for a job and start watching it. */
  restored(row: JobRow, io: JobIo | null, reap: boolean, holdOutput?: boolean): void;
  /** Leave zombie orphans alone until the returned function is called (see JobService). */
  pauseReaping(): () => void;
  /** Reap zombie orphans now (their PIDs may be what a restore needs). */
  reapOrphans(): void;
  /** The job is busy (refuses dumps and restores) until `done` settles. */
  busyUntil(jid: string | null, op: string, done: Promise<unknown>): void;
  /** Where a long operation is (for `GET /v1/jobs/:jid/progress`); `dir` is measured for bytes. */
  progress(jid: string, op: "dump" | "restore", step: string, dir?: string): void;
}
