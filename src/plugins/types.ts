// The plugin interface every job type implements (process now; runc and containerd next).
// The job service owns the DB and the bookkeeping; a plugin only knows how to start, adopt and
// signal its kind of job.

import type { Config } from "../config/mod.ts";
import type { JobType } from "../api/types.ts";
import type { JobRow } from "../daemon/db.ts";
import type { Logger } from "../daemon/log.ts";

export interface ExitStatus {
  code: number | null;
  signal: string | null;
  /** The process ended because the job was checkpointed (dumped without --leave-running). */
  checkpointed?: boolean;
}

/** The job's stdio as held by the daemon, for attachable jobs. */
export interface JobIo {
  /** Called with (stream, data) for output, then once with end() when all output is read. */
  onOutput(cb: (stream: number, data: Uint8Array) => void, end: () => void): void;
  /** Input for the job; `done` once it is written (or dropped): clients wait for that (flow control). */
  write(data: Uint8Array, done?: () => void): void;
  endInput(): void;
  /** Input taken from clients and not in the job's pipe yet (it is not reading): a copy. */
  queuedInput?(): Uint8Array;
  /** Writes no input into the job's pipe until the returned function is called. */
  holdInput?(): () => void;
  resize?(cols: number, rows: number): void;
  /** Stop reading the job's output for now (a client is behind: the job waits on its pipe), and go on. */
  pause?(): void;
  resume?(): void;
}

export interface StartedJob {
  pid: number;
  startTime: number;
  cmdline: string[];
  cwd: string;
  log: string | null;
  details?: Record<string, unknown>;
  /** Set when the daemon is the job's parent: resolves with its exit status. */
  exited?: Promise<ExitStatus>;
  io?: JobIo;
  /** The process is (or becomes) our child through the subreaper: reap it for its exit code. */
  reap?: boolean;
}

/** The CRIU behaviours a dump asked for or detected; restored with the same. */
export interface CriuFlags {
  shellJob: boolean;
  tcpEstablished: boolean;
  fileLocks: boolean;
  extUnixSk: boolean;
  linkRemap: boolean;
}

/** A plugin's own way of writing a checkpoint's images (e.g. `runc checkpoint`). */
export interface CheckpointContext extends PluginContext {
  row: JobRow;
  imagesDir: string;
  /** Where logs and temporary files go (not part of the checkpoint). */
  workDir: string;
  leaveRunning: boolean;
  flags: {
    shellJob: boolean;
    tcpEstablished: boolean;
    fileLocks: boolean;
    extUnixSk: boolean;
    linkRemap: boolean;
  };
  extra: string[];
  ignoreRootfs: boolean;
  /** The CRIU cedana checked (>= 4.2): a runtime that starts CRIU itself is pointed at it. */
  criu: string;
}

export interface RestoreContext extends PluginContext {
  row: JobRow;
  imagesDir: string;
  workDir: string;
  flags: Record<string, boolean>;
  /** What the restore request asks for (container id, bundle, root, attachable). */
  options: {
    id?: string;
    bundle?: string;
    root?: string;
    attachable?: boolean;
    address?: string;
    namespace?: string;
  };
  /** The plugin's details recorded at dump time. */
  dumped: Record<string, unknown>;
  /** When the checkpoint was taken (its manifest's time, ms since the epoch). */
  dumpedAt: number;
  /** As in CheckpointContext. */
  criu: string;
  /** A new job (`restore TYPE --path`), not the restore of a job's own checkpoint. */
  isNew: boolean;
}

export interface RecoverContext extends PluginContext {
  row: JobRow;
  options: RestoreContext["options"];
  dumped: Record<string, unknown>;
  /** ms since the epoch: a process started before this is not the restore's. */
  since: number;
}

export interface Restored {
  pid: number;
  io: JobIo | null;
  /** Reap the restored root ourselves (it became our child) to learn its exit code. */
  reap: boolean;
  details: Record<string, unknown>;
  attachable: boolean;
  log: string | null;
}

export interface PluginContext {
  config: Config;
  log: Logger;
  jid: string;
}

export interface JobPlugin<RunReq = unknown, ManageReq = unknown> {
  readonly type: JobType;
  run?(req: RunReq, ctx: PluginContext): StartedJob | Promise<StartedJob>;
  manage?(req: ManageReq, ctx: PluginContext): StartedJob | Promise<StartedJob>;
  /** Send a signal to a live job (the caller has checked it is the same process). */
  signal(job: JobRow, signal: Deno.Signal): void;
  /**
   * Whether the runtime's object named in the job (a container ID) is still the job's: null when it
   * is gone, false when the name now means another's (cleanup is then skipped, never forced).
   */
  owns?(job: JobRow): boolean | null | Promise<boolean | null>;
  /** Release what the plugin holds for a job that is being deleted (container state, ...). */
  cleanup?(job: JobRow, ctx: PluginContext): Promise<void>;
  /** Rebuild the daemon's side of a live job's I/O after a daemon restart. */
  reattach?(job: JobRow, ctx: PluginContext): JobIo | null;
  /** Release the I/O keepers/pumps of a job that ended. */
  released?(job: JobRow): void;
  /** The exit status of a job whose process was not the daemon's child (a runtime knows it). */
  exitStatus?(job: JobRow): Promise<ExitStatus | null>;
  /**
   * Why this job cannot be dumped into a checkpoint that restores, from what the dump found in its
   * tree (null: it can). Asked before anything is frozen.
   */
  dumpRefusal?(job: JobRow, found: { tcpEstablished: boolean; leaveRunning: boolean }): string | null;
  /** Set when --criu-opts cannot reach the CRIU this runtime starts: why (refused up front). */
  readonly noCriuOpts?: string;
  /**
   * Save the container's file system into `imagesDir`, as `checkpoint` does after the runtime's
   * dump: for a dump the daemon did not live to finish (the next daemon salvages it).
   */
  keepRootfs?(job: JobRow, imagesDir: string): Promise<void>;
  /** Write the images of a checkpoint; default: CRIU dump of the job's process tree. */
  checkpoint?(c: CheckpointContext): Promise<void>;
  /** Restore from images; default: CRIU restore of a process tree. */
  restore?(c: RestoreContext): Promise<Restored>;
  /**
   * After a daemon restart, for a restore the previous daemon did not see end: the restored
   * container when it runs as the job should (born after `since`), else null, having removed
   * whatever of it cannot (so that the job restores again).
   */
  recoverRestore?(c: RecoverContext): Promise<{ pid: number; details: Record<string, unknown> } | null>;
}
