// Watches many processes for their exit with ONE poll loop over their pidfds, instead of one
// blocked thread per job (a daemon with a thousand jobs would otherwise hold a thousand threads).

import { closeFd, pidfdOpen, pollReadable } from "./libc.ts";

/** How long a newly added pidfd may wait before the running poll picks it up. */
const SLICE_MS = 200;

export class ExitWatcher {
  readonly #waiting = new Map<number, () => void>(); // pidfd -> callback
  #running = false;

  /**
   * Calls `onExit` once when `pid` exits. Returns a cancel function, or null when there is no
   * such process. `verify` runs after the pidfd is open: it pins the process, so checking its
   * identity (start time) then is race-free.
   */
  watch(pid: number, onExit: () => void, verify: () => boolean = () => true): (() => void) | null {
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
    this.#waiting.set(fd, onExit);
    this.#loop();
    return () => {
      if (this.#waiting.delete(fd)) closeFd(fd);
    };
  }

  get size(): number {
    return this.#waiting.size;
  }

  async #loop() {
    if (this.#running) return;
    this.#running = true;
    try {
      while (this.#waiting.size) {
        const fds = [...this.#waiting.keys()];
        const ready = await pollReadable(fds, SLICE_MS);
        for (const fd of ready) {
          const cb = this.#waiting.get(fd);
          if (!cb) continue; // cancelled while polling
          this.#waiting.delete(fd);
          closeFd(fd);
          cb();
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
