// Copies a container's output from its pipes into the job's log file (the daemon writes the log:
// a container's stdio must stay pipes to be checkpointable). splice(2) moves the bytes inside the
// kernel, so a daemon stopped or killed at any moment loses no output: what it has not moved is
// still in the pipes, which the keepers hold open for the next daemon.
import {
  closeFd,
  EAGAIN,
  EINVAL,
  openAppend,
  pollReadable,
  readFd,
  spliceToEnd,
  writeAtEnd,
} from "../../sys/mod.ts";

/** More than a pipe holds (64 KiB by default): one call empties it. */
const CHUNK = 1 << 20;

/**
 * Opens the log (without O_APPEND, which splice refuses) and pumps `fds` into it; resolves once
 * every writer of them is gone (the fds and the log closed).
 */
export function logPump(fds: number[], log: string): Promise<void> {
  const logFd = openAppend(log, false, false);
  return pump(fds, logFd).finally(() => closeFd(logFd));
}

/** Pumps `fds` into `logFd` until EOF on all of them, closing each; exported for its test. */
export async function pump(fds: number[], logFd: number): Promise<void> {
  const open = new Set(fds);
  const state = { splice: true, buf: new Uint8Array(65536) };
  while (open.size) {
    // one poll for both pipes: the moves then run in turn on the event loop, never two at once
    // into the same file position
    for (const fd of await pollReadable([...open], -1)) {
      if (!(await moveOnce(fd, logFd, state))) {
        open.delete(fd);
        closeFd(fd);
      }
    }
  }
}

/** Moves what `fd` holds into the log; false at EOF. */
async function moveOnce(fd: number, logFd: number, state: { splice: boolean; buf: Uint8Array }) {
  if (state.splice) {
    const n = spliceToEnd(fd, logFd, CHUNK);
    if (n > 0 || n === -EAGAIN) return true;
    if (n === 0) return false;
    // a log splice cannot write to (a terminal, a socket): copy from now on
    if (n === -EINVAL) state.splice = false;
    // otherwise (disk full, log gone bad) drain below anyway: a full pipe would block the container
  }
  const n = await readFd(fd, state.buf);
  if (n <= 0) return false;
  try {
    writeAtEnd(logFd, state.buf.subarray(0, n));
  } catch { /* disk full or log removed: keep draining so the container never blocks */ }
  return true;
}
