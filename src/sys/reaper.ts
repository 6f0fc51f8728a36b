// The daemon is a child subreaper: when a job's process dies, its orphaned children come to us
// instead of to PID 1, which on some machines reaps lazily (seconds to a minute). Their zombies
// would keep the PIDs that a restore needs. We reap those orphans promptly ourselves, and never
// touch the children that Deno itself waits for (the ones we spawned).

import { children, readStat } from "../proc/mod.ts";
import { cloexecAll, closeFd, pidfdOpen, setChildSubreaper, waitidPidfd } from "./libc.ts";

const spawned = new Set<number>();

/** Record a child spawned through Deno/node APIs: Deno reaps it, so must we not. */
export function trackSpawn(pid: number | undefined, exited?: Promise<unknown>): void {
  // Every spawn passes through here right after it: restore close-on-exec on what it cleared.
  cloexecAll();
  if (pid === undefined) return;
  spawned.add(pid);
  exited?.finally(() => spawned.delete(pid));
}

export function untrackSpawn(pid: number): void {
  spawned.delete(pid);
}

export class OrphanReaper {
  #timer: ReturnType<typeof setInterval> | undefined;
  #pending = false;

  constructor(readonly skip: (pid: number) => boolean = () => false) {}

  start(): void {
    setChildSubreaper();
    cloexecAll(); // fds the daemon inherited must not reach its jobs
    const schedule = () => {
      if (this.#pending) return;
      this.#pending = true;
      setTimeout(() => {
        this.#pending = false;
        this.reap();
      }, 10);
    };
    try {
      Deno.addSignalListener("SIGCHLD", schedule);
    } catch { /* fall back to the timer alone */ }
    this.#timer = setInterval(() => this.reap(), 1000);
  }

  /** Reaps every zombie child that nobody else waits for; returns their PIDs. */
  reap(): number[] {
    const out: number[] = [];
    for (const pid of children(Deno.pid)) {
      if (spawned.has(pid) || this.skip(pid)) continue;
      if (readStat(pid)?.state !== "Z") continue;
      let fd: number;
      try {
        fd = pidfdOpen(pid);
      } catch {
        continue;
      }
      try {
        if (waitidPidfd(fd)) out.push(pid);
      } catch {
        /* raced with someone else */
      } finally {
        closeFd(fd);
      }
    }
    return out;
  }

  stop(): void {
    clearInterval(this.#timer);
  }
}
