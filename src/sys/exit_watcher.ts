// Watches many processes for their exit with ONE poll loop over their pidfds, instead of one
// blocked thread per job (a daemon with a thousand jobs would otherwise hold a thousand threads).

import { closeFd, pidfdOpen, pollReadable, waitidPidfd } from "./libc.ts";

/** How long a newly added pidfd may wait before the running poll picks it up. */
const SLICE_MS = 200;

/** Exit status from waitid: a code, or a signal number; null when not ours to reap. */
export type RawExit = { code: number | null; signal: number | null } | null;

interface Entry {
  pid: number;
  reap: boolean;
  onExit: (status: RawExit) => void;
}

export class ExitWatcher {
  readonly #waiting = new Map<number, Entry>(); // pidfd -> entry
  #running = false;

  /** `poll`: which of the fds are readable within the time (a test can stand in for poll(2)). */
  constructor(readonly poll: (fds: number[], timeoutMs: number) => Promise<number[]> = pollReadable) {}

  /**
   * Calls `onExit` once when `pid` exits. With `reap`, the process must be our child that no one
   * else waits for (e.g. a task CRIU restored as our sibling): it is reaped and its exit status
   * passed on. Returns a cancel function, or null when there is no such process. `verify` runs
   * after the pidfd is open: it pins the process, so checking identity then is race-free.
   */
  watch(
    pid: number,
    onExit: (status: RawExit) => void,
    verify: () => boolean = () => true,
    reap = false,
  ): (() => void) | null {
    let fd: number;
    try {
      fd = pidfdOpen(pid);
    } catch {
      return null;
    }
    if (!verify()) {
      closeFd(fd);
      return null;
    }
    this.#waiting.set(fd, { pid, reap, onExit });
    this.#loop();
    return () => {
      if (this.#waiting.delete(fd)) closeFd(fd);
    };
  }

  /** True when `pid` is reaped by this watcher (an orphan reaper must leave it alone). */
  reaps(pid: number): boolean {
    for (const e of this.#waiting.values()) if (e.reap && e.pid === pid) return true;
    return false;
  }

  get size(): number {
    return this.#waiting.size;
  }

  async #loop() {
    if (this.#running) return;
    this.#running = true;
    try {
      while (this.#waiting.size) {
        const polled = new Map(this.#waiting);
        const ready = await this.poll([...polled.keys()], SLICE_MS);
        for (const fd of ready) {
          const e = this.#waiting.get(fd);
          // Cancelled while polling, or cancelled and its number given to another watch since: the
          // number may have meant another file when poll ran (seen once: a dump's unwatch/rewatch
          // reused it, and a live job was recorded as exited).
          if (!e || e !== polled.get(fd)) continue;
          this.#waiting.delete(fd);
          let status: RawExit = null;
          if (e.reap) {
            try {
              status = waitidPidfd(fd);
            } catch { /* not waitable: report without a status */ }
          }
          closeFd(fd);
          e.onExit(status);
        }
      }
    } finally {
      this.#running = false;
    }
  }

  close() {
    for (const fd of this.#waiting.keys()) closeFd(fd);
    this.#waiting.clear();
  }
}
