// Keepers let attachable jobs outlive the daemon. The daemon holds its ends of a job's pipes or
// pty; if it died with them, the job would get SIGPIPE (or SIGHUP from its terminal) on its next
// write. A keeper is a `sleep infinity` in its own session holding copies of those ends. A new
// daemon takes them back with pidfd_getfd, so the job's I/O is attachable again after a restart.

import { spawn } from "node:child_process";
import { isSameProcess, readStat } from "../proc/mod.ts";
import { closeFd, pidfdGetfd, pidfdOpen, trackSpawn } from "../sys/mod.ts";

export interface KeeperRef {
  pid: number;
  startTime: number;
  /** How many fds it holds, as its fds 3, 4, ... */
  count: number;
}

// Keepers carry KEEPER_ENV=<tag> (the daemon's DB path) in their environment. A daemon killed
// between starting a keeper and recording it leaves one that nothing refers to; the next daemon
// finds those by the tag (another daemon's keepers have another) and stops them.
const KEEPER_ENV = "CEDANA_KEEPER";
let tag = "";

export function setKeeperTag(t: string): void {
  tag = t;
}

export function startKeeper(fds: number[]): KeeperRef {
  const child = spawn("sleep", ["infinity"], {
    detached: true,
    stdio: ["ignore", "ignore", "ignore", ...fds],
    env: { ...Deno.env.toObject(), [KEEPER_ENV]: tag },
  });
  const pid = child.pid!;
  trackSpawn(pid, new Promise((r) => child.once("exit", r)));
  child.unref();
  return { pid, startTime: readStat(pid)?.startTime ?? 0, count: fds.length };
}

/**
 * A keeper that leads a session of its own with `tty` (a pty slave) as its controlling terminal,
 * and runs `argv` in it first (see cr/session.ts). Once argv exits, its status goes into
 * `statusFile`; on success the keeper becomes a `sleep infinity` (same PID, shown as
 * cedana-session-keeper) holding only the terminal, on failure it exits with that status. Bash,
 * not sh: dash cannot close fds above 9.
 */
export function startSessionKeeper(
  tty: number,
  argv: string[],
  extraFds: number[],
  statusFile: string,
): { ref: KeeperRef; exited: Promise<void> } {
  const script = `"$@"; s=$?; echo $s > "$0.tmp" && mv "$0.tmp" "$0"; [ $s -eq 0 ] || exit $s; ` +
    'for f in /proc/self/fd/*; do n=${f##*/}; [ "$n" -gt 2 ] && eval "exec $n>&-"; done; ' +
    // (named: `ps` shows what it is; killing it hangs up the job, as closing a terminal does)
    "exec -a cedana-session-keeper sleep infinity";
  // (not detached: setsid would fork if it led a process group already, and the PID would change)
  const child = spawn("setsid", ["--ctty", "bash", "-c", script, statusFile, ...argv], {
    stdio: [tty, "ignore", "ignore", ...extraFds],
    env: { ...Deno.env.toObject(), [KEEPER_ENV]: tag },
  });
  const pid = child.pid!;
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  trackSpawn(pid, exited);
  child.unref();
  return { ref: { pid, startTime: readStat(pid)?.startTime ?? 0, count: 0 }, exited };
}

/** The keeper's fds, duplicated into this process; null when the keeper is gone. */
export function reclaimFds(ref: KeeperRef): number[] | null {
  let pidfd: number;
  try {
    pidfd = pidfdOpen(ref.pid);
  } catch {
    return null;
  }
  try {
    // identity checked after the pidfd pins the process: never take fds from a reused PID
    if (!isSameProcess(ref.pid, ref.startTime)) return null;
    return Array.from({ length: ref.count }, (_, i) => pidfdGetfd(pidfd, 3 + i));
  } catch {
    return null;
  } finally {
    closeFd(pidfd);
  }
}

export function stopKeeper(ref: KeeperRef | undefined): void {
  if (!ref || !isSameProcess(ref.pid, ref.startTime)) return;
  try {
    Deno.kill(ref.pid, "SIGKILL");
  } catch { /* gone */ }
}

/** This daemon's keepers that none of `referenced` (PIDs) names: stopped; their PIDs. */
export function stopStrayKeepers(referenced: Set<number>): number[] {
  if (!tag) return [];
  const mark = `\0${KEEPER_ENV}=${tag}\0`;
  const out: number[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    const pid = Number(e.name);
    if (!(pid > 0) || referenced.has(pid)) continue;
    try {
      if (!`\0${Deno.readTextFileSync(`/proc/${pid}/environ`)}`.includes(mark)) continue;
      Deno.kill(pid, "SIGKILL");
      out.push(pid);
    } catch { /* gone, or not readable */ }
  }
  return out;
}
