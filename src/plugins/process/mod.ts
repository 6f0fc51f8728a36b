// The `process` job type: plain Linux processes started by the daemon or adopted by PID.

import type { ManageProcessRequest, RunProcessRequest } from "../../api/types.ts";
import { invalidArgument, notFound } from "../../errors.ts";
import { isRunning, isValidPid, readCmdline, readCwd, readStat, unmanageable } from "../../proc/mod.ts";
import type { JobRow } from "../../daemon/db.ts";
import type { JobPlugin, PluginContext, StartedJob } from "../types.ts";
import { checkCwd, resolveExecutable, spawnToLog, spawnWithPipes, spawnWithPty } from "./spawn.ts";

export function defaultLogPath(outputDir: string, jid: string): string {
  return `${outputDir.replace(/\/+$/, "")}/cedana-output-${jid}.log`;
}

function run(req: RunProcessRequest, ctx: PluginContext): StartedJob {
  if (!req.args?.length) throw invalidArgument("no command given (usage: cedana run process -- CMD ARGS...)");
  checkCwd(req.cwd);
  const spec = {
    exe: resolveExecutable(req.args[0], req.env.PATH, req.cwd),
    args: req.args,
    cwd: req.cwd,
    env: req.env,
  };
  let log: string | null = null;
  const spawned = req.attachable || req.tty
    ? req.tty ? spawnWithPty(spec, req.cols, req.rows) : spawnWithPipes(spec)
    : spawnToLog(spec, log = req.log ?? defaultLogPath(ctx.config.output_dir, ctx.jid));
  // starttime is fixed at fork, so reading it before the exec completes is still right.
  const stat = readStat(spawned.pid);
  return {
    pid: spawned.pid,
    startTime: stat?.startTime ?? 0,
    cmdline: req.args,
    cwd: req.cwd,
    log,
    exited: spawned.exited,
    io: spawned.io,
    details: spawned.keep ? { ioKeepers: spawned.keep } : undefined,
  };
}

function manage(req: ManageProcessRequest, _ctx: PluginContext): StartedJob {
  if (!isValidPid(req.pid)) throw invalidArgument(`invalid PID ${req.pid}`);
  const why = unmanageable(req.pid, "manage");
  if (why) throw invalidArgument(why);
  const stat = readStat(req.pid);
  if (!isRunning(stat)) {
    throw notFound(`no running process with PID ${req.pid}`);
  }
  return {
    pid: req.pid,
    startTime: stat.startTime,
    cmdline: readCmdline(req.pid) ?? [stat.comm],
    cwd: readCwd(req.pid) ?? "",
    log: null,
  };
}

function signal(job: JobRow, sig: Deno.Signal): void {
  const stat = readStat(job.pid!);
  // A job that leads its process group gets the whole group signalled, like a shell's kill %1.
  if (stat && stat.pgrp === job.pid && !job.adopted) {
    try {
      Deno.kill(-job.pid!, sig);
      return;
    } catch { /* fall through to the single process */ }
  }
  Deno.kill(job.pid!, sig);
}

export const processPlugin: JobPlugin<RunProcessRequest, ManageProcessRequest> = {
  type: "process",
  run,
  manage,
  signal,
};
