// JobIo over raw fds held by the daemon: a pty master, or the daemon's ends of fresh pipes that a
// restored job inherited (CRIU --inherit-fd). Reads run on Deno's blocking pool through FFI.

import { STREAM_STDERR, STREAM_STDOUT } from "../../api/types.ts";
import { closeFd, readFd, setWindowSize, writeFd } from "../../sys/mod.ts";
import type { JobIo } from "../types.ts";

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
export function pipesIo(stdin: number | null, stdout: number, stderr: number | null): JobIo {
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
    },
  };
}
