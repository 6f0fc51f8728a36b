// Starting a process job. A log-mode job writes straight into its log file (opened for
// appending and handed over as stdout/stderr), so it never depends on the daemon staying up.
// An attachable job gets pipes or a pseudo-terminal held by the daemon.

import { type ChildProcess, spawn } from "node:child_process";
import { failedPrecondition, invalidArgument } from "../../errors.ts";
import {
  closeFd,
  openAppend,
  openpty,
  pipe,
  setWindowSize,
  trackSpawn,
  untrackSpawn,
} from "../../sys/mod.ts";
import { type IoKeep, keptPipes, keptPty } from "./io.ts";
import { signalName, SIGNALS } from "../../daemon/signals.ts";
import type { ExitStatus, JobIo } from "../types.ts";

/** Finds the executable like execvp does, using the job's own PATH. */
export function resolveExecutable(cmd: string, path: string | undefined, cwd: string): string {
  const isExec = (p: string) => {
    try {
      const st = Deno.statSync(p);
      return st.isFile && ((st.mode ?? 0) & 0o111) !== 0;
    } catch {
      return false;
    }
  };
  if (cmd.includes("/")) {
    const full = cmd.startsWith("/") ? cmd : `${cwd}/${cmd}`;
    if (!isExec(full)) throw invalidArgument(`${cmd}: no such executable file`);
    return full;
  }
  for (const dir of (path ?? "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin").split(":")) {
    const full = `${dir || "."}/${cmd}`;
    if (isExec(full)) return full;
  }
  throw invalidArgument(`${cmd}: executable file not found in $PATH`);
}

export function checkCwd(cwd: string): void {
  let st: Deno.FileInfo;
  try {
    st = Deno.statSync(cwd);
  } catch {
    throw invalidArgument(`working directory ${cwd} does not exist`);
  }
  if (!st.isDirectory) throw invalidArgument(`working directory ${cwd} is not a directory`);
}

/** The job's log for it to append to (a FIFO with no reader is refused at once, not waited on). */
export function openLog(path: string): number {
  try {
    return openAppend(path);
  } catch (e) {
    throw failedPrecondition((e as Error).message);
  }
}

function exitPromise(child: ChildProcess): Promise<ExitStatus> {
  trackSpawn(child.pid);
  return new Promise((resolve) => {
    child.once("exit", (code, sig) => {
      untrackSpawn(child.pid!);
      resolve({ code: code ?? null, signal: sig ? (sig in SIGNALS ? sig : signalName(Number(sig))) : null });
    });
  });
}

/**
 * A job starts through bash, which closes every fd above 2 and execs the command (same PID):
 * the copies Deno leaves of the fds it passed as stdio must not end up in the job (CRIU would
 * checkpoint them, and a stray pipe end keeps another job's stdin from seeing EOF).
 */
// (No redirection around the loop: bash would keep fd 2 in a saved copy that the loop closes.)
const CLOSE_FDS = 'for f in /proc/self/fd/*; do n=${f##*/}; [ "$n" -gt 2 ] && eval "exec $n>&-"; done; ' +
  'exec -a "$0" "$@"';

function cleanExec(argv0: string, exe: string, args: string[]): [string, string[]] {
  return ["bash", ["-c", CLOSE_FDS, argv0, exe, ...args]];
}

export interface SpawnSpec {
  exe: string;
  args: string[];
  cwd: string;
  env: Record<string, string>;
}

export interface Spawned {
  pid: number;
  exited: Promise<ExitStatus>;
  io?: JobIo;
  keep?: IoKeep;
}

function spawnError(e: unknown): never {
  throw failedPrecondition(`cannot start process: ${(e as Error).message}`);
}

/** The job leads its own session (detached) so it is immune to the daemon's terminal and signals. */
export function spawnToLog(spec: SpawnSpec, logPath: string): Spawned {
  const fd = openLog(logPath);
  try {
    const child = spawn(...cleanExec(spec.args[0], spec.exe, spec.args.slice(1)), {
      cwd: spec.cwd,
      env: spec.env,
      detached: true,
      stdio: ["ignore", fd, fd],
    });
    if (child.pid === undefined) spawnError(new Error("no pid"));
    child.unref();
    return { pid: child.pid!, exited: exitPromise(child) };
  } catch (e) {
    spawnError(e);
  } finally {
    closeFd(fd);
  }
}

/** Raw pipes (not node streams): the daemon's ends must be shareable with keepers. */
export function spawnWithPipes(spec: SpawnSpec): Spawned {
  const [i, o, e] = [pipe(), pipe(), pipe()];
  let child: ChildProcess;
  try {
    child = spawn(...cleanExec(spec.args[0], spec.exe, spec.args.slice(1)), {
      cwd: spec.cwd,
      env: spec.env,
      detached: true,
      stdio: [i.read, o.write, e.write],
    });
  } catch (err) {
    for (const fd of [i.write, o.read, e.read]) closeFd(fd);
    spawnError(err);
  } finally {
    for (const fd of [i.read, o.write, e.write]) closeFd(fd);
  }
  if (child.pid === undefined) spawnError(new Error("no pid"));
  const exited = exitPromise(child);
  const { io, keep } = keptPipes(i.write, o.read, e.read);
  child.unref();
  return { pid: child.pid!, exited, io, keep };
}

/**
 * A pty job: `setsid -c` makes the job a session leader with the slave as its controlling
 * terminal (so job control and Ctrl+C work inside it); it execs, so the pid is the job's.
 */
export function spawnWithPty(spec: SpawnSpec, cols = 80, rows = 24): Spawned {
  const pty = openpty();
  let child: ChildProcess;
  try {
    setWindowSize(pty.master, cols, rows);
    child = spawn(...cleanExec("setsid", "setsid", ["-c", "--", spec.exe, ...spec.args.slice(1)]), {
      cwd: spec.cwd,
      env: { TERM: "xterm-256color", ...spec.env },
      stdio: [pty.slave, pty.slave, pty.slave],
    });
  } catch (e) {
    closeFd(pty.master);
    spawnError(e);
  } finally {
    closeFd(pty.slave);
  }
  if (child.pid === undefined) spawnError(new Error("no pid"));
  const exited = exitPromise(child);
  const { io, keep } = keptPty(pty.master);
  child.unref();
  return { pid: child.pid!, exited, io, keep };
}
