// JobIo over raw fds held by the daemon: a pty master, or the daemon's ends of fresh pipes that a
// restored job inherited (CRIU --inherit-fd). Bytes move through the daemon's one poll loop
// (sys/poller.ts), never a thread per stream.

import { STREAM_STDERR, STREAM_STDOUT } from "../../api/types.ts";
import { closeFd, queuedWriter, readAll, type Reading, setWindowSize } from "../../sys/mod.ts";
import type { JobIo } from "../types.ts";
import { type KeeperRef, reclaimFds, startKeeper, stopKeeper } from "../../daemon/keeper.ts";

export function ptyIo(master: number): JobIo {
  let closed = false;
  const w = queuedWriter(master);
  let reading: Reading | null = null;
  return {
    onOutput(cb, end) {
      reading = readAll(master, (d) => cb(STREAM_STDOUT, d));
      reading.then(() => {
        closed = true;
        w.close().then(end);
      });
    },
    pause: () => reading?.pause(),
    resume: () => reading?.resume(),
    write: (data, done) => {
      if (!closed) w.write(data, done);
      else done?.();
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
  const w = stdin === null ? null : queuedWriter(stdin);
  let inputOpen = w !== null;
  const readings: Reading[] = [];
  return {
    pause: () => readings.forEach((r) => r.pause()),
    resume: () => readings.forEach((r) => r.resume()),
    onOutput(cb, end) {
      const out = readAll(stdout, (d) => cb(STREAM_STDOUT, d));
      readings.push(out);
      const pumps = [out.then(() => closeFd(stdout))];
      if (stderr !== null) {
        const err = readAll(stderr, (d) => cb(STREAM_STDERR, d));
        readings.push(err);
        pumps.push(err.then(() => closeFd(stderr)));
      }
      // (the job is gone: its stdin end goes too, or every such job leaked an fd)
      Promise.all(pumps).then(() => {
        if (inputOpen) w!.close();
        inputOpen = false;
      }).then(end);
    },
    write: (data, done) => {
      if (inputOpen) w!.write(data, done);
      else done?.();
    },
    endInput: () => {
      if (inputOpen) w!.close();
      inputOpen = false;
      onEndInput();
    },
    queuedInput: () => w?.queued() ?? new Uint8Array(),
    holdInput: () => w?.hold() ?? (() => {}),
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
