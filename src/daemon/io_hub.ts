// Fan-out of an attachable job's I/O: a bounded replay buffer of recent output, any number of
// attached clients (stdout/stderr broadcast to all), stdin from any of them, and the exit status
// once the job has ended and all its output was read.

import type { ExitStatus, JobIo } from "../plugins/mod.ts";

export interface Subscriber {
  output(stream: number, data: Uint8Array): void;
  exit(status: ExitStatus): void;
}

const REPLAY_LIMIT = 1 << 20;
/** How long a held job waits for its first client before its output flows into the replay buffer. */
const HOLD_MS = 10_000;

export class IoHub {
  #chunks: { offset: number; stream: number; data: Uint8Array }[] = [];
  #buffered = 0;
  #written = 0;
  #subs = new Set<Subscriber>();
  #outputEnded = false;
  #exit: ExitStatus | null = null;
  #final: ExitStatus | null = null;
  #reading = false;
  #hold: ReturnType<typeof setTimeout> | undefined;
  /** Whether processes the job left in its group live on (see exited). */
  #lingering: () => boolean = () => false;
  /** Clients holding the output up (see pause). */
  #pauses = 0;

  /**
   * `hold`: read nothing until the first client attaches (or HOLD_MS passed): the job blocks on a
   * full pipe meanwhile, so `run --attach` sees all of a fast job's output, as `docker run` does,
   * not only the last MiB the replay buffer keeps.
   */
  constructor(readonly io: JobIo, opts: { hold?: boolean } = {}) {
    if (opts.hold) this.#hold = setTimeout(() => this.#read(), HOLD_MS);
    else this.#read();
  }

  #read() {
    if (this.#reading) return;
    this.#reading = true;
    clearTimeout(this.#hold);
    this.io.onOutput((stream, data) => this.#push(stream, data), () => {
      this.#outputEnded = true;
      this.#maybeFinish();
    });
    if (this.#exit) this.#fallback();
  }

  /** Bytes of output seen so far: a client attaching with `since` = this gets only new output. */
  get offset(): number {
    return this.#written;
  }

  get finished(): ExitStatus | null {
    return this.#final;
  }

  #push(stream: number, data: Uint8Array) {
    this.#chunks.push({ offset: this.#written, stream, data });
    this.#written += data.length;
    this.#buffered += data.length;
    while (this.#buffered > REPLAY_LIMIT && this.#chunks.length > 1) {
      this.#buffered -= this.#chunks.shift()!.data.length;
    }
    for (const s of this.#subs) s.output(stream, data);
  }

  /**
   * The job's process has exited; clients hear of it once its remaining output is drained.
   * `lingering`: whether processes of the job's group live on (their output is the job's too).
   */
  exited(status: ExitStatus, lingering: () => boolean = () => false) {
    this.#exit = status;
    this.#lingering = lingering;
    this.#maybeFinish();
    if (this.#reading) this.#fallback(); // (held output: once it is being read)
  }

  /**
   * The output may never end: something outside the job's group can hold its pty's slave or its
   * pipe open (a daemon it started). So: while the job's own processes live on, their output is
   * waited for (`(sleep 4; echo late) &`); after that, 2 s at most.
   */
  #fallback() {
    // (not while a client holds the output up: what is still in the pipe would be lost)
    let quiet = 0;
    const tick = () => {
      if (this.#final || this.#outputEnded) return;
      if (this.#lingering() || this.#pauses > 0) quiet = 0;
      else if (!quiet) quiet = Date.now();
      else if (Date.now() - quiet >= 2000) {
        this.#outputEnded = true;
        this.#maybeFinish();
        return;
      }
      setTimeout(tick, 250);
    };
    tick();
  }

  #maybeFinish() {
    if (!this.#exit || !this.#outputEnded || this.#final) return;
    this.#final = this.#exit;
    for (const s of this.#subs) s.exit(this.#final);
    this.#subs.clear();
    // A client that comes right after the end still gets the tail (`restore --attach` of a job that
    // ends at once); after that, nobody can attach to an ended job: the buffer goes.
    const t = setTimeout(() => {
      this.#chunks = [];
      this.#buffered = 0;
    }, 60_000);
    Deno.unrefTimer(t);
  }

  /** Attach a client; replays buffered output from byte `since` (default: only new output). */
  attach(sub: Subscriber, since = this.#written): () => void {
    for (const c of this.#chunks) {
      if (c.offset + c.data.length <= since) continue;
      sub.output(c.stream, c.offset >= since ? c.data : c.data.subarray(since - c.offset));
    }
    if (this.#final) {
      sub.exit(this.#final);
      return () => {};
    }
    this.#subs.add(sub);
    this.#read();
    return () => this.#subs.delete(sub);
  }

  /** `done`: once the job took it (or it was dropped: the job has ended, or stopped reading). */
  input(data: Uint8Array, done?: () => void) {
    if (!this.#final) this.io.write(data, done);
    else done?.();
  }

  endInput() {
    if (!this.#final) this.io.endInput();
  }

  resize(cols: number, rows: number) {
    this.io.resize?.(cols, rows);
  }

  /** A client is behind: stop reading the job's output until it caught up (see server.ts). */
  pause() {
    if (this.#pauses++ === 0) this.io.pause?.();
  }

  resume() {
    if (this.#pauses > 0 && --this.#pauses === 0) this.io.resume?.();
  }
}
