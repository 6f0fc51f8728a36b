// Copies a container's output from its pipes into the job's log file (the daemon writes the log:
// a container's stdio must stay pipes to be checkpointable). Into a regular file, splice(2) moves
// the bytes inside the kernel, so a daemon stopped or killed at any moment loses no output: what it
// has not moved is still in the pipes, which the keepers hold open for the next daemon. Into
// anything else (a terminal, a FIFO), the bytes are copied, non-blocking: one nobody reads stalls
// that job's output, never the daemon. The pipes (and such a log, while it is full) are watched by
// the daemon's one poll loop (sys/poller.ts), never a thread per job: Deno's blocking pool has 32.
import {
  closeFd,
  EAGAIN,
  ErrnoError,
  openLog,
  type Poller,
  poller,
  readNow,
  setNonBlocking,
  spliceToEnd,
  writeAtEnd,
  writeNow,
} from "../../sys/mod.ts";

/** More than a pipe holds (64 KiB by default): one call empties it. */
const CHUNK = 1 << 20;
/** How often the log's path is looked at for a rotated or removed file. */
const REFRESH_MS = 200;

/** Where the pump says that a job's output is being dropped, and that it reaches its log again. */
export interface PumpLog {
  warn(msg: string, fields: Record<string, unknown>): void;
  info(msg: string, fields: Record<string, unknown>): void;
}

/**
 * The log as the pump writes it. The path is looked up again now and then: after logrotate's
 * `create` mode (or an rm) the output goes to the new file at the path, not the renamed one.
 */
export class LogTarget {
  fd: number | null = null;
  regular = false;
  #id = "";
  #checked = 0;
  #openError = "";
  #dropping = false;

  /** `fd`: the log opened already (a run checks it before the container starts); null: open it. */
  constructor(
    readonly path: string,
    fd: number | null = null,
    readonly owner: { log?: PumpLog; jid?: string } = {},
  ) {
    if (fd !== null) this.#use(fd);
    else this.refresh(Date.now());
  }

  /** Output could not be written: said once, until it can be again. */
  dropped(reason: string = this.#openError): void {
    if (this.#dropping) return;
    this.#dropping = true;
    this.owner.log?.warn("a job's output is dropped: its log cannot be written", {
      jid: this.owner.jid,
      log: this.path,
      reason,
    });
  }

  written(): void {
    if (!this.#dropping) return;
    this.#dropping = false;
    this.owner.log?.info("a job's output reaches its log again", { jid: this.owner.jid, log: this.path });
  }

  #use(fd: number): void {
    const st = Deno.statSync(`/proc/self/fd/${fd}`);
    this.fd = fd;
    this.regular = st.isFile;
    // (our own open of a FIFO or terminal: written only when it takes the bytes, see pump)
    if (!st.isFile) setNonBlocking(fd);
    this.#id = `${st.dev}:${st.ino}`;
  }

  /** Reopens the path when it is no longer the file written to (or could not be opened before). */
  refresh(now: number): void {
    if (now - this.#checked < REFRESH_MS) return;
    this.#checked = now;
    if (this.fd !== null && !this.regular) return; // a terminal or FIFO stays what it is
    if (this.fd !== null) {
      try {
        const st = Deno.statSync(this.path);
        if (`${st.dev}:${st.ino}` === this.#id) return;
      } catch { /* removed: made again below */ }
    }
    try {
      const fd = openLog(this.path);
      this.close();
      this.#use(fd);
    } catch (e) {
      // (its directory gone, a FIFO with no reader): write where we were, or nowhere
      this.#openError = (e as Error).message;
    }
  }

  close(): void {
    if (this.fd !== null) closeFd(this.fd);
    this.fd = null;
  }
}

/** Pumps `fds` into the log until every writer of them is gone (the fds and the log closed). */
export function logPump(fds: number[], log: LogTarget, p: Poller = poller): Promise<void> {
  return pump(fds, log, p).finally(() => log.close());
}

function pump(fds: number[], log: LogTarget, p: Poller): Promise<void> {
  return new Promise((resolve) => {
    const buf = new Uint8Array(65536);
    const open = new Map<number, (() => void) | null>(); // fd -> unwatch (null: paused)
    const watch = (fd: number) => open.set(fd, p.watch(fd, "in", () => ready(fd)));
    // A chunk on its way to a FIFO or terminal that does not take it now: neither pipe is read
    // until it is out (their pipes fill, the container waits), and the poller waits for the log
    // to take it, so a slow reader stalls this job's output, nothing else.
    let pending: Uint8Array | null = null;
    let waiting: (() => void) | null = null;
    const flush = () => {
      while (pending?.length) {
        const n = writeNow(log.fd!, pending);
        if (n === -EAGAIN) {
          waiting ??= p.watch(log.fd!, "out", () => {
            waiting!();
            waiting = null;
            flush();
          });
          return;
        }
        if (n < 0) {
          log.dropped(new ErrnoError("write", -n).message); // a FIFO's reader gone: the container goes on
          break;
        }
        pending = pending.subarray(n);
      }
      if (pending && !pending.length) log.written();
      pending = null;
      for (const [fd, stop] of open) if (!stop) watch(fd);
    };
    const ready = (fd: number) => {
      // (the poller runs one handler at a time: the moves of both pipes never overlap in the file)
      const r = moveNow(fd, log, buf);
      if (r === "eof") {
        open.get(fd)?.();
        open.delete(fd);
        closeFd(fd);
        if (!open.size) resolve();
      } else if (r !== "more") {
        for (const [f, stop] of open) {
          stop?.();
          open.set(f, null);
        }
        pending = r;
        flush();
      }
    };
    for (const fd of fds) watch(fd);
  });
}

/**
 * Moves what `fd` holds into the log: "more" until the pipe's writers are gone ("eof"); for a
 * log that is not a regular file, the bytes read, for the caller to write.
 */
function moveNow(fd: number, log: LogTarget, buf: Uint8Array): "more" | "eof" | Uint8Array {
  log.refresh(Date.now());
  if (log.fd !== null && log.regular) {
    const n = spliceToEnd(fd, log.fd, CHUNK);
    if (n > 0) log.written();
    if (n > 0 || n === -EAGAIN) return "more";
    if (n === 0) return "eof";
    // a file system splice cannot write to (EINVAL), disk full: copy below, or drop, but drain:
    // a full pipe would block the container
  }
  const n = readNow(fd, buf);
  if (n === -EAGAIN) return "more";
  if (n <= 0) return "eof";
  if (log.fd === null) {
    log.dropped();
    return "more";
  }
  if (!log.regular) return buf.slice(0, n);
  try {
    writeAtEnd(log.fd, buf.subarray(0, n));
    log.written();
  } catch (e) {
    log.dropped((e as Error).message); // disk full: the container goes on
  }
  return "more";
}
