// Fan-out of an attachable job's I/O: a bounded replay buffer of recent output, any number of
// attached clients (stdout/stderr broadcast to all), stdin from any of them, and the exit status
// once the job has ended and all its output was read.

import type { ExitStatus, JobIo } from "../plugins/mod.ts";

export interface Subscriber {
  output(stream: number, data: Uint8Array): void;
  exit(status: ExitStatus): void;
}

const REPLAY_LIMIT = 1 << 20;

export class IoHub {
  #chunks: { offset: number; stream: number; data: Uint8Array }[] = [];
  #buffered = 0;
  #written = 0;
  #subs = new Set<Subscriber>();
  #outputEnded = false;
  #exit: ExitStatus | null = null;
  #final: ExitStatus | null = null;

  constructor(readonly io: JobIo) {
    io.onOutput((stream, data) => this.#push(stream, data), () => {
      this.#outputEnded = true;
      this.#maybeFinish();
    });
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

  /** The job's process has exited; clients hear of it once its remaining output is drained. */
  exited(status: ExitStatus) {
    this.#exit = status;
    this.#maybeFinish();
    // A pty's master may never report the end of output (a grandchild can hold the slave open).
    setTimeout(() => {
      this.#outputEnded = true;
      this.#maybeFinish();
    }, 2000);
  }

  #maybeFinish() {
    if (!this.#exit || !this.#outputEnded || this.#final) return;
    this.#final = this.#exit;
    for (const s of this.#subs) s.exit(this.#final);
    this.#subs.clear();
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
    return () => this.#subs.delete(sub);
  }

  input(data: Uint8Array) {
    if (!this.#final) this.io.write(data);
  }

  endInput() {
    if (!this.#final) this.io.endInput();
  }

  resize(cols: number, rows: number) {
    this.io.resize?.(cols, rows);
  }
}
