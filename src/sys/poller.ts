// One poll loop for every stream the daemon moves bytes through (jobs' pipes and ptys, runc's
// output pipes). A blocked read() or poll() per stream each held a thread of Deno's blocking pool,
// and that pool is small (its threads stopped at 36 on a 2-core machine): from ~16 attachable
// jobs on, the streams of newer jobs were never served (attach hung, a container's log stayed
// empty). Now one thread waits in poll(2) for all of them; the fds are non-blocking, and the
// handlers read or write on the event loop until EAGAIN. Watching or unwatching an fd wakes the
// poll (a byte on a pipe), so the next poll has the new set.

import {
  closeFd,
  EAGAIN,
  pipe,
  POLLERR,
  pollEvents,
  POLLHUP,
  POLLIN,
  POLLNVAL,
  POLLOUT,
  readNow,
  setNonBlocking,
  setPipeSize,
  writeNow,
} from "./libc.ts";

/** The poller's pause after a round in which streams moved (see #loop). */
const BREATH_MS = 1;
/** The pipes it reads are grown to this (the usual pipe-max-size; 64 KiB by default). */
const PIPE_BYTES = 1 << 20;

/** Every reader reads into this one (handlers run one at a time, and get a copy). */
const READ_BUF = new Uint8Array(256 << 10);

type Direction = "in" | "out";
interface Watch {
  fn: () => void;
  /** Its writer can wait a breath (a pipe grown to PIPE_BYTES): see #loop. */
  batch: boolean;
}
interface Entry {
  in?: Watch;
  out?: Watch;
}

export class Poller {
  readonly #entries = new Map<number, Entry>();
  #wake: { read: number; write: number } | null = null;
  #running = false;

  /**
   * Calls `fn` whenever `fd` is readable ("in": data, end of file or an error to read) or
   * writable ("out"), until the returned function is called. `fd` is made non-blocking; `fn` must
   * read or write until EAGAIN (or unwatch), or it is called again at once. One watch per fd and
   * direction.
   */
  watch(fd: number, dir: Direction, fn: () => void, batch = false): () => void {
    setNonBlocking(fd);
    const w: Watch = { fn, batch };
    const e = this.#entries.get(fd) ?? {};
    e[dir] = w;
    this.#entries.set(fd, e);
    this.#kick();
    this.#loop();
    return () => {
      const cur = this.#entries.get(fd);
      if (cur?.[dir] !== w) return;
      delete cur[dir];
      if (!cur.in && !cur.out) this.#entries.delete(fd);
      this.#kick();
    };
  }

  /** How many fds are watched (for tests). */
  get size(): number {
    return this.#entries.size;
  }

  #kick(): void {
    if (!this.#running) return; // (the loop starts with the current set anyway)
    writeNow(this.#wakeFds().write, new Uint8Array(1)); // (EAGAIN: a wake-up is pending already)
  }

  #wakeFds(): { read: number; write: number } {
    if (!this.#wake) {
      this.#wake = pipe();
      setNonBlocking(this.#wake.read);
      setNonBlocking(this.#wake.write);
    }
    return this.#wake;
  }

  async #loop(): Promise<void> {
    if (this.#running) return;
    this.#running = true;
    const wake = this.#wakeFds();
    const drain = new Uint8Array(64);
    try {
      while (this.#entries.size) {
        const polled = [...this.#entries].map(([fd, e]) => ({ fd, in: e.in, out: e.out }));
        const revents = await pollEvents(
          [wake.read, ...polled.map((p) => p.fd)],
          [POLLIN, ...polled.map((p) => (p.in ? POLLIN : 0) | (p.out ? POLLOUT : 0))],
          -1,
        );
        if (revents[0]) { while (readNow(wake.read, drain) > 0) { /* emptied */ } }
        let batched = false, eager = false;
        polled.forEach((p, i) => {
          const r = revents[i + 1];
          if (!r) return;
          if (p.in?.batch && !p.out) batched = true;
          else eager = true;
          // Only watches that are still the ones polled: an fd unwatched (and maybe closed, its
          // number reused) meanwhile may have meant another file when poll ran.
          const cur = this.#entries.get(p.fd);
          const fail = r & (POLLERR | POLLHUP | POLLNVAL);
          if (p.in && cur?.in === p.in && (r & POLLIN || fail)) run(p.in);
          if (p.out && cur?.out === p.out && (r & POLLOUT || fail)) run(p.out);
        });
        // A breath after a round that read big pipes only: a job printing at full speed then hands
        // over big batches instead of a wake-up per write (`yes` to an unattached job cost the
        // daemon 93% of a core, 14% now; attached, 300 MB came through faster). Not after a pty
        // (its buffer is ~4 KiB: a breath per read cut a terminal job's output tenfold) or a write.
        if (batched && !eager) await new Promise((r) => setTimeout(r, BREATH_MS));
      }
    } finally {
      this.#running = false;
    }
  }
}

function run(w: Watch): void {
  try {
    w.fn();
  } catch (e) {
    // a handler's bug must not stop every other stream
    console.error(`poller: a stream handler failed: ${(e as Error).stack ?? e}`);
  }
}

/** The daemon's one poller. */
export const poller: Poller = new Poller();

/** readAll's promise, which can also stop reading for a while (the writer then waits). */
export type Reading = Promise<void> & { pause(): void; resume(): void };

/**
 * Reads `fd` as its data comes (through the poller) until end of file or an error (EIO: a pty
 * whose last slave closed); resolves then. `onData` gets a copy it may keep (and may pause the
 * reading from inside). The caller closes.
 */
export function readAll(fd: number, onData: (d: Uint8Array) => void, p: Poller = poller): Reading {
  // (room for what a fast writer makes between two rounds of the poller; a pty keeps its own)
  const batch = setPipeSize(fd, PIPE_BYTES);
  const buf = READ_BUF;
  let stop: (() => void) | null = null;
  let paused = false, ended = false;
  let resolve = () => {};
  const done = new Promise<void>((r) => resolve = r);
  const ready = () => {
    // (a few reads at most per turn: the other streams get theirs)
    for (let i = 0; i < 8 && !paused; i++) {
      const n = readNow(fd, buf);
      if (n === -EAGAIN) return;
      if (n <= 0) {
        stop?.();
        stop = null;
        ended = true;
        resolve();
        return;
      }
      onData(buf.slice(0, n));
    }
  };
  stop = p.watch(fd, "in", ready, batch);
  return Object.assign(done, {
    pause() {
      if (paused || ended) return;
      paused = true;
      stop?.();
      stop = null;
    },
    resume() {
      if (!paused || ended) return;
      paused = false;
      stop = p.watch(fd, "in", ready, batch);
    },
  });
}

/**
 * Ordered writes to `fd` through the poller: what does not fit now waits for the fd to take it.
 * A write error (EPIPE, EIO: the reader is gone) drops everything after it. `close` runs after
 * the writes queued before it, so an fd is never closed (and its number reused) under a write.
 */
export function queuedWriter(fd: number, p: Poller = poller) {
  const queue: { data: Uint8Array; done?: () => void }[] = [];
  let failed = false;
  let stop: (() => void) | null = null; // waiting for the fd to be writable
  let closing: (() => void) | null = null;
  let closed = false;
  let holds = 0; // (while held, nothing is written: see hold())
  const finish = () => {
    if (!closing) return;
    try {
      closeFd(fd);
    } catch { /* closed */ }
    closed = true;
    closing();
    closing = null;
  };
  const flush = () => {
    if (holds) return;
    while (queue.length && !failed) {
      const n = writeNow(fd, queue[0].data);
      if (n === -EAGAIN) {
        stop ??= p.watch(fd, "out", () => {
          stop!();
          stop = null;
          flush();
        });
        return;
      }
      if (n < 0) {
        failed = true; // the job stopped reading: drop further input
        for (const q of queue.splice(0)) q.done?.();
        break;
      }
      queue[0].data = queue[0].data.subarray(n);
      if (!queue[0].data.length) queue.shift()!.done?.();
    }
    finish();
  };
  setNonBlocking(fd);
  return {
    /** `done`: called once `data` is written, or dropped. */
    write(data: Uint8Array, done?: () => void): void {
      if (failed || closing || closed) return done?.();
      queue.push({ data: data.slice(), done }); // (the caller may reuse its buffer)
      if (!stop) flush();
    },
    /**
     * Writes nothing until the returned function is called (queuing what comes meanwhile): what is
     * queued stays put, e.g. while the reader is checkpointed.
     */
    hold(): () => void {
      holds++;
      let released = false;
      return () => {
        if (released) return;
        released = true;
        if (--holds === 0 && !stop) flush();
      };
    },
    /** What is queued and not written yet (a copy). */
    queued(): Uint8Array {
      const out = new Uint8Array(queue.reduce((n, q) => n + q.data.length, 0));
      let at = 0;
      for (const q of queue) {
        out.set(q.data, at);
        at += q.data.length;
      }
      return out;
    },
    close(): Promise<void> {
      if (closing || closed) return Promise.resolve();
      return new Promise<void>((resolve) => {
        closing = resolve;
        if (!stop) flush();
      });
    },
  };
}
