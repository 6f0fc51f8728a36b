// JobIo over raw fds held by the daemon: a pty master, or the daemon's ends of fresh pipes that a
// restored job inherited (CRIU --inherit-fd). Reads run on Deno's blocking pool through FFI.

import { STREAM_STDERR, STREAM_STDOUT } from "../../api/types.ts";
import { closeFd, readFd, setWindowSize, writeFd } from "../../sys/mod.ts";
import type { JobIo } from "../types.ts";
import { type KeeperRef, reclaimFds, startKeeper, stopKeeper } from "../../daemon/keeper.ts";

async function pump(fd: number, onData: (d: Uint8Array) => void): Promise<void> {
  for (;;) {
    const buf = new Uint8Array(16384);
    const n = await readFd(fd, buf);
    if (n <= 0) break; // EOF, or EIO from a pty master once the last slave fd is closed
    onData(buf.subarray(0, n));
  }
  closeFd(fd);
}

export function ptyIo(master: number): JobIo {
  let closed = false;
  return {
    onOutput(cb, end) {
      pump(master, (d) => cb(STREAM_STDOUT, d)).then(() => {
        closed = true;
        end();
      });
    },
    write: (data) => {
      if (!closed) writeFd(master, data);
    },
    // Ctrl+D (VEOF) at the start of a line is how a terminal says end of input.
    endInput: () => {
      if (!closed) writeFd(master, new Uint8Array([4]));
    },
    resize: (c, r) => {
      if (!closed) setWindowSize(master, c, r);
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
  let inputOpen = stdin !== null;
  return {
    onOutput(cb, end) {
      const pumps = [pump(stdout, (d) => cb(STREAM_STDOUT, d))];
      if (stderr !== null) pumps.push(pump(stderr, (d) => cb(STREAM_STDERR, d)));
      Promise.all(pumps).then(end);
    },
    write: (data) => {
      if (!inputOpen) return;
      try {
        writeFd(stdin!, data);
      } catch {
        // EPIPE: the job closed its stdin; stop writing rather than fail the attached client.
        inputOpen = false;
      }
    },
    endInput: () => {
      if (inputOpen) closeFd(stdin!);
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
}

export function keptPipes(
  stdin: number | null,
  stdout: number,
  stderr: number | null,
): { io: JobIo; keep: IoKeep } {
  const out = startKeeper(stderr === null ? [stdout] : [stdout, stderr]);
  const input = stdin === null ? undefined : startKeeper([stdin]);
  return { io: pipesIo(stdin, stdout, stderr, () => stopKeeper(input)), keep: { kind: "pipes", out, input } };
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

export function releaseIo(keep: IoKeep | undefined): void {
  stopKeeper(keep?.out);
  stopKeeper(keep?.input);
}
