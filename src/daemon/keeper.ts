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

export function startKeeper(fds: number[]): KeeperRef {
  const child = spawn("sleep", ["infinity"], {
    detached: true,
    stdio: ["ignore", "ignore", "ignore", ...fds],
  });
  const pid = child.pid!;
  trackSpawn(pid, new Promise((r) => child.once("exit", r)));
  child.unref();
  return { pid, startTime: readStat(pid)?.startTime ?? 0, count: fds.length };
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
