// JobIo over raw fds held by the daemon: a pty master, or the daemon's ends of fresh pipes that a
// restored job inherited (CRIU --inherit-fd). Reads run on Deno's blocking pool through FFI.

import { STREAM_STDERR, STREAM_STDOUT } from "../../api/types.ts";
import { closeFd, readFd, setWindowSize, writeFdAsync } from "../../sys/mod.ts";
import type { JobIo } from "../types.ts";
import { type KeeperRef, reclaimFds, startKeeper, stopKeeper } from "../../daemon/keeper.ts";

/** Reads until EOF (or EIO from a pty master once the last slave fd is closed); the caller closes. */
async function pump(fd: number, onData: (d: Uint8Array) => void): Promise<void> {
  for (;;) {
    const buf = new Uint8Array(16384);
    const n = await readFd(fd, buf);
    if (n <= 0) break;
    onData(buf.subarray(0, n));
  }
}

/**
 * Ordered writes off the event loop. `close` runs after the writes queued before it, so an fd is
 * never closed (and its number reused) under a write still in flight.
 */
function writer(fd: number) {
  let chain: Promise<void> = Promise.resolve();
  let failed = false;
  return {
    write(data: Uint8Array) {
      const copy = data.slice(); // the caller may reuse its buffer
      chain = chain.then(() => failed ? undefined : writeFdAsync(fd, copy)).catch(() => {
        failed = true; // EPIPE/EIO: the job stopped reading; drop further input
      });
    },
    close(): Promise<void> {
      return chain = chain.then(() => closeFd(fd)).catch(() => {});
    },
  };
}

export function ptyIo(master: number): JobIo {
  let closed = false;
  const w = writer(master);
  return {
    onOutput(cb, end) {
      pump(master, (d) => cb(STREAM_STDOUT, d)).then(() => {
        closed = true;
        w.close().then(end);
      });
    },
    write: (data) => {
      if (!closed) w.write(data);
    },
    // Ctrl+D (VEOF) at the start of a line is how a terminal says end of input.
    endInput: () => {
      if (!closed) w.write(new Uint8Array([4]));
    },
    resize: (c, r) => {
      try {
        if (!closed) setWindowSize(master, c, r);
      } catch { /* the terminal is gone */ }
    },
  };
}

/** stdin: the write end we keep; stdout/stderr: the read ends we keep (null: the job has none). */
export function pipesIo(
  stdin: number | null,
  stdout: number,
  stderr: number | null,
  onEndInput: () => void = () => {},
): JobIo {
  const w = stdin === null ? null : writer(stdin);
  let inputOpen = w !== null;
  return {
    onOutput(cb, end) {
      const pumps = [pump(stdout, (d) => cb(STREAM_STDOUT, d)).then(() => closeFd(stdout))];
      if (stderr !== null) pumps.push(pump(stderr, (d) => cb(STREAM_STDERR, d)).then(() => closeFd(stderr)));
      Promise.all(pumps).then(end);
    },
    write: (data) => {
      if (inputOpen) w!.write(data);
    },
    endInput: () => {
      if (inputOpen) w!.close();
      inputOpen = false;
      onEndInput();
    },
  };
}

/** Where copies of an attachable job's I/O ends are kept (stored with the job). */
export interface IoKeep {
  kind: "pipes" | "pty";
  out: KeeperRef;
  /** The stdin write end, kept apart: ending input must drop every copy of it. */
  input?: KeeperRef;
  /** The leader of the session whose terminal the job has (a shell job restored: cr/session.ts). */
  session?: KeeperRef;
}

/** Keepers for a job's pipes, so they outlive this daemon. */
export function keepPipes(stdin: number | null, stdout: number, stderr: number | null): IoKeep {
  const out = startKeeper(stderr === null ? [stdout] : [stdout, stderr]);
  const input = stdin === null ? undefined : startKeeper([stdin]);
  return { kind: "pipes", out, input };
}

export function keptPipes(
  stdin: number | null,
  stdout: number,
  stderr: number | null,
): { io: JobIo; keep: IoKeep } {
  const keep = keepPipes(stdin, stdout, stderr);
  return { io: pipesIo(stdin, stdout, stderr, () => stopKeeper(keep.input)), keep };
}

export function keptPty(master: number): { io: JobIo; keep: IoKeep } {
  return { io: ptyIo(master), keep: { kind: "pty", out: startKeeper([master]) } };
}

/** After a daemon restart: the job's I/O back from its keepers (null when they are gone). */
export function reclaimIo(keep: IoKeep): JobIo | null {
  const out = reclaimFds(keep.out);
  if (!out) return null;
  if (keep.kind === "pty") return ptyIo(out[0]);
  const input = keep.input ? reclaimFds(keep.input) : null;
  return pipesIo(input?.[0] ?? null, out[0], out[1] ?? null, () => stopKeeper(keep.input));
}

/** After a daemon restart: the job's output fds back from its keepers (null when they are gone). */
export function reclaimOutput(keep: IoKeep): number[] | null {
  return reclaimFds(keep.out);
}

export function releaseIo(keep: IoKeep | undefined): void {
  stopKeeper(keep?.out);
  stopKeeper(keep?.input);
  stopKeeper(keep?.session);
}
