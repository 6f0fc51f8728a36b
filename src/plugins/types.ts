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
}

/** The job's stdio as held by the daemon, for attachable jobs. */
export interface JobIo {
  /** Called with (stream, data) for output, then once with end() when all output is read. */
  onOutput(cb: (stream: number, data: Uint8Array) => void, end: () => void): void;
  write(data: Uint8Array): void;
  endInput(): void;
  resize?(cols: number, rows: number): void;
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
  /** Release what the plugin holds for a job that is being deleted (container state, ...). */
  cleanup?(job: JobRow, ctx: PluginContext): Promise<void>;
}
