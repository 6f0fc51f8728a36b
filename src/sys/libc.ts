/**
 * Thin FFI bindings to glibc (`libc.so.6`) for the few syscalls Deno does not expose:
 * ptys, pidfds, waitid(P_PIDFD), the child-subreaper flag and sysconf.
 *
 * The library is opened lazily on first use so that CLI commands which merely import this
 * module do not pay for dlopen (and do not need --allow-ffi unless they actually call in).
 *
 * Nothing here ever waits on "any child" (waitpid(-1) and friends): Deno reaps its own
 * `Deno.Command` children and must keep doing so.
 */

const SYMBOLS = {
  openpty: { parameters: ["buffer", "buffer", "pointer", "pointer", "pointer"], result: "i32" },
  ptsname_r: { parameters: ["i32", "buffer", "usize"], result: "i32" },
  // fcntl/ioctl/syscall are variadic in C; passing the extra arguments as fixed integer/pointer
  // parameters is ABI-compatible on x86_64 and aarch64 Linux.
  fcntl: { parameters: ["i32", "i32", "i32"], result: "i32" },
  ioctl: { parameters: ["i32", "u64", "buffer"], result: "i32" },
  syscall: { parameters: ["i64", "i64", "i64"], result: "i64" },
  syscall3: { name: "syscall", parameters: ["i64", "i64", "i64", "i64"], result: "i64" },
  syscall5: { name: "syscall", parameters: ["i64", "i64", "i64", "i64", "i64", "i64"], result: "i64" },
  // A blocking poll must not stall the event loop, so it runs on Deno's blocking thread pool.
  poll: { parameters: ["buffer", "u64", "i32"], result: "i32", nonblocking: true },
  // On a non-blocking fd that poll saw ready (see poller.ts): returns at once, on the event loop.
  read_now: { name: "read", parameters: ["i32", "buffer", "usize"], result: "isize" },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  pipe2: { parameters: ["buffer", "i32"], result: "i32" },
  // Nonblocking on the pipe side (SPLICE_F_NONBLOCK): called only once poll saw data.
  splice: { parameters: ["i32", "pointer", "i32", "pointer", "usize", "u32"], result: "isize" },
  lseek: { parameters: ["i32", "i64", "i32"], result: "i64" },
  open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
  mkfifo: { parameters: ["buffer", "u32"], result: "i32" },
  waitid: { parameters: ["i32", "u32", "buffer", "i32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  flock: { parameters: ["i32", "i32"], result: "i32" },
  prctl: { parameters: ["i32", "u64", "u64", "u64", "u64"], result: "i32" },
  sysconf: { parameters: ["i32"], result: "i64" },
  __errno_location: { parameters: [], result: "pointer" },
  strerror: { parameters: ["i32"], result: "pointer" },
} as const;

type Libc = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

let libc: Libc | null = null;

/** Opens libc once; the handle is kept for the life of the process (never closed). */
function lib(): Libc {
  libc ??= Deno.dlopen("libc.so.6", SYMBOLS).symbols;
  return libc;
}

// Constants from the Linux/glibc headers (identical on x86_64 and aarch64).
const F_GETFD = 1;
const F_SETFD = 2;
const FD_CLOEXEC = 1;
const TIOCSWINSZ = 0x5414;
const SYS_PIDFD_OPEN = 434;
const SYS_PIDFD_GETFD = 438;
export const POLLIN = 0x1;
export const POLLOUT = 0x4;
export const POLLERR = 0x8;
export const POLLHUP = 0x10;
export const POLLNVAL = 0x20;
const P_PIDFD = 3;
const WNOHANG = 1;
const WEXITED = 4;
const CLD_EXITED = 1;
const CLD_KILLED = 2;
const CLD_DUMPED = 3;
const PR_SET_CHILD_SUBREAPER = 36;
const SC_CLK_TCK = 2;
const SIGINFO_SIZE = 128;
/** Bounded so an AbortSignal is noticed within this long even if the process never exits. */
const POLL_SLICE_MS = 1000;

export const ESRCH = 3;
const EBADF = 9;
export const EINTR = 4;
export const ECHILD = 10;
export const EAGAIN = 11;
export const EINVAL = 22;

/** A failed libc call; `errno` lets callers branch on the cause (e.g. ESRCH) without parsing text. */
export class ErrnoError extends Error {
  constructor(readonly call: string, readonly errno: number) {
    super(`${call}: ${describeErrno(errno)} (errno ${errno})`);
    this.name = "ErrnoError";
  }
}

function describeErrno(errno: number): string {
  const ptr = lib().strerror(errno);
  return ptr === null ? "unknown error" : new Deno.UnsafePointerView(ptr).getCString();
}

/**
 * errno is thread-local; this must be read right after the failing call on the same (main)
 * thread, so it is only meaningful for synchronous symbols, never for `poll`.
 */
function lastErrno(): number {
  const ptr = lib().__errno_location();
  return ptr === null ? 0 : new Deno.UnsafePointerView(ptr).getInt32(0);
}

function check(call: string, rc: number): number {
  if (rc < 0) throw new ErrnoError(call, lastErrno());
  return rc;
}

/**
 * Marks every fd above 2 close-on-exec. Deno clears the flag on fds it hands to a child as stdio
 * (and on fds the daemon inherited), so without this a job would inherit the daemon's ends of
 * other jobs' pipes (and then never see EOF), its log file twice, or the daemon's own log.
 */
export function cloexecAll(): void {
  let fds: number[];
  try {
    fds = [...Deno.readDirSync("/proc/self/fd")].map((e) => Number(e.name)).filter((fd) => fd > 2);
  } catch {
    return;
  }
  for (const fd of fds) {
    const flags = lib().fcntl(fd, F_GETFD, 0);
    if (flags >= 0 && !(flags & FD_CLOEXEC)) lib().fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
  }
}

function setCloexec(fd: number): void {
  const flags = check("fcntl(F_GETFD)", lib().fcntl(fd, F_GETFD, 0));
  check("fcntl(F_SETFD)", lib().fcntl(fd, F_SETFD, flags | FD_CLOEXEC));
}

function ptsName(master: number): string {
  const buf = new Uint8Array(128);
  const rc = lib().ptsname_r(master, buf, BigInt(buf.length));
  // ptsname_r returns the error number itself rather than setting errno.
  if (rc !== 0) throw new ErrnoError("ptsname_r", rc);
  return new TextDecoder().decode(buf.subarray(0, buf.indexOf(0)));
}

/**
 * Allocates a pseudo-terminal pair. Both ends are close-on-exec: the master must never leak
 * into jobs (it would keep the terminal alive), and the slave is meant to be handed to a child
 * by path or via dup2 onto stdio, which clears the flag on the duplicate anyway.
 */
export function openpty(): { master: number; slave: number; slavePath: string } {
  const masterBuf = new Int32Array(1);
  const slaveBuf = new Int32Array(1);
  check("openpty", lib().openpty(masterBuf, slaveBuf, null, null, null));
  const master = masterBuf[0];
  const slave = slaveBuf[0];
  try {
    setCloexec(master);
    setCloexec(slave);
    return { master, slave, slavePath: ptsName(master) };
  } catch (err) {
    closeFd(master);
    closeFd(slave);
    throw err;
  }
}

/**
 * Opens `path` for appending as a raw fd (created 0644 if missing), close-on-exec, for a job to
 * write its log into. Throws a clear error otherwise.
 */
export function openAppend(path: string): number {
  return openForLog(path, 0o2000 /* O_APPEND */);
}

/** Opens `path` write-only (not appending) at offset `pos`, as a raw fd: a file a job wrote at an offset. */
export function openWriteAt(path: string, pos: number): number {
  const fd = openForLog(path, 0);
  lib().lseek(fd, BigInt(pos), 0 /* SEEK_SET */);
  return fd;
}

/**
 * Opens a job's log for the daemon to write, without O_APPEND: splice(2) refuses such files, so
 * the writer seeks to the end itself.
 */
export function openLog(path: string): number {
  return openForLog(path, 0);
}

/**
 * A log as a raw fd (created 0644), close-on-exec. Opened non-blocking, so a FIFO with no reader
 * fails at once instead of stalling the daemon; the flag is then cleared, so a write to a FIFO or
 * terminal that nobody reads blocks only the thread (or the job) that makes it.
 */
function openForLog(path: string, flags: number): number {
  const O_WRONLY = 1, O_CREAT = 0o100, O_NONBLOCK = 0o4000, O_CLOEXEC = 0o2000000, ENXIO = 6;
  const F_GETFL = 3, F_SETFL = 4;
  const fd = lib().open(
    new TextEncoder().encode(path + "\0"),
    O_WRONLY | O_CREAT | O_NONBLOCK | O_CLOEXEC | flags,
    0o644,
  );
  if (fd < 0) {
    const errno = lastErrno();
    if (errno === ENXIO) throw new Error(`cannot open log file ${path}: a FIFO with no reader`);
    throw new Error(`cannot open log file ${path}: ${new ErrnoError(`open(${path})`, errno).message}`);
  }
  lib().fcntl(fd, F_SETFL, lib().fcntl(fd, F_GETFL, 0) & ~O_NONBLOCK);
  return fd;
}

/**
 * Opens (creating, 0600) `path` and takes an exclusive flock on it without waiting. Returns the fd,
 * which holds the lock until it is closed or this process ends (close-on-exec: children never
 * inherit it), or null when another process holds the lock.
 */
export function tryLockFile(path: string): number | null {
  const O_RDWR = 2, O_CREAT = 0o100, O_CLOEXEC = 0o2000000, LOCK_EX = 2, LOCK_NB = 4, EWOULDBLOCK = 11;
  const fd = lib().open(new TextEncoder().encode(path + "\0"), O_RDWR | O_CREAT | O_CLOEXEC, 0o600);
  if (fd < 0) throw new ErrnoError(`open(${path})`, lastErrno());
  if (lib().flock(fd, LOCK_EX | LOCK_NB) === 0) return fd;
  const errno = lastErrno();
  closeFd(fd);
  if (errno === EWOULDBLOCK) return null;
  throw new ErrnoError(`flock(${path})`, errno);
}

/**
 * Makes a FIFO at `path` (0600) and opens it read-write, close-on-exec: that never blocks, and the
 * FIFO has a writer for as long as this process holds the fd (a reader waits for data until then).
 */
export function openFifo(path: string): number {
  const O_RDWR = 2, O_CLOEXEC = 0o2000000;
  const name = new TextEncoder().encode(path + "\0");
  if (lib().mkfifo(name, 0o600) !== 0) throw new ErrnoError(`mkfifo(${path})`, lastErrno());
  return check(`open(${path})`, lib().open(name, O_RDWR | O_CLOEXEC, 0));
}

/** Bytes waiting to be read in a pipe or FIFO (FIONREAD). */
export function pendingBytes(fd: number): number {
  const n = new Int32Array(1);
  check("ioctl(FIONREAD)", lib().ioctl(fd, 0x541bn, /* FIONREAD */ new Uint8Array(n.buffer)));
  return n[0];
}

/** A pipe as raw fds, both ends close-on-exec (children get them only through explicit stdio). */
export function pipe(): { read: number; write: number } {
  const fds = new Int32Array(2);
  check("pipe2", lib().pipe2(fds, 0o2000000 /* O_CLOEXEC */));
  return { read: fds[0], write: fds[1] };
}

/** A second fd for `fd`'s open file, close-on-exec. */
export function dupFd(fd: number): number {
  const F_DUPFD_CLOEXEC = 1030;
  return check("fcntl(F_DUPFD_CLOEXEC)", lib().fcntl(fd, F_DUPFD_CLOEXEC, 0));
}

/** Grows a pipe's buffer to `bytes` (up to the system's pipe-max-size); false when `fd` is no pipe. */
export function setPipeSize(fd: number, bytes: number): boolean {
  const F_SETPIPE_SZ = 1031;
  return lib().fcntl(fd, F_SETPIPE_SZ, bytes) >= 0;
}

/** O_NONBLOCK on `fd`'s open file description (its copies share it). */
export function setNonBlocking(fd: number): void {
  const F_GETFL = 3, F_SETFL = 4, O_NONBLOCK = 0o4000;
  const flags = check("fcntl(F_GETFL)", lib().fcntl(fd, F_GETFL, 0));
  if (!(flags & O_NONBLOCK)) check("fcntl(F_SETFL)", lib().fcntl(fd, F_SETFL, flags | O_NONBLOCK));
}

/** One read(2) on the event loop (for a non-blocking fd): the count (0: end of file) or -errno. */
export function readNow(fd: number, buf: Uint8Array): number {
  for (;;) {
    const n = Number(lib().read_now(fd, buf, BigInt(buf.length)));
    if (n >= 0) return n;
    const errno = lastErrno();
    if (errno !== EINTR) return -errno;
  }
}

/** One write(2) on the event loop (for a non-blocking fd): the count written, or -errno. */
export function writeNow(fd: number, data: Uint8Array): number {
  for (;;) {
    const n = Number(lib().write(fd, data, BigInt(data.length)));
    if (n >= 0) return n;
    const errno = lastErrno();
    if (errno !== EINTR) return -errno;
  }
}

/** Writes all of `data` to a raw fd (a pty master); throws ErrnoError on failure. */
export function writeFd(fd: number, data: Uint8Array): void {
  let off = 0;
  while (off < data.length) {
    const n = Number(lib().write(fd, data.subarray(off), BigInt(data.length - off)));
    if (n < 0) {
      const errno = lastErrno();
      if (errno === EINTR) continue;
      throw new ErrnoError(`write(${fd})`, errno);
    }
    off += n;
  }
}

/**
 * Moves up to `max` bytes from pipe `from` to the end of file `to` inside the kernel (splice(2)).
 * The bytes leave the pipe only as they are written, so a process killed at any moment loses
 * none (read+write loses what was read and not yet written). Seeks to the end first: the file
 * has no O_APPEND and may have been truncated (logrotate's copytruncate). Returns the count (0:
 * the pipe's writers are gone) or -errno (EAGAIN: nothing there; EINVAL: `to` cannot be spliced
 * to, e.g. a file opened O_APPEND or on a file system without splice support).
 */
export function spliceToEnd(from: number, to: number, max: number): number {
  const SEEK_END = 2, SPLICE_F_MOVE = 1, SPLICE_F_NONBLOCK = 2;
  lib().lseek(to, 0n, SEEK_END); // ESPIPE on a pipe or device: nothing to seek there
  for (;;) {
    const n = Number(lib().splice(from, null, to, null, BigInt(max), SPLICE_F_MOVE | SPLICE_F_NONBLOCK));
    if (n >= 0) return n;
    const errno = lastErrno();
    if (errno !== EINTR) return -errno;
  }
}

/** Writes `data` at the end of `fd` (the fallback of spliceToEnd for a target splice refuses). */
export function writeAtEnd(fd: number, data: Uint8Array): void {
  lib().lseek(fd, 0n, 2 /* SEEK_END */);
  writeFd(fd, data);
}

/**
 * One poll over many fds (POLLIN), on the blocking pool; resolves the fds that are readable
 * (or invalid) when it returns. Used to watch every job's pidfd with a single thread.
 */
export async function pollReadable(fds: number[], timeoutMs: number): Promise<number[]> {
  if (!fds.length) return [];
  const revents = await pollEvents(fds, fds.map(() => POLLIN), timeoutMs);
  return fds.filter((_, i) => revents[i] !== 0);
}

/**
 * One poll over `fds` with their `events` (POLLIN, POLLOUT), on the blocking pool; resolves each
 * fd's revents (0: not ready) when it returns.
 */
export async function pollEvents(fds: number[], events: number[], timeoutMs: number): Promise<number[]> {
  const view = new DataView(new ArrayBuffer(8 * fds.length));
  fds.forEach((fd, i) => {
    view.setInt32(8 * i, fd, true);
    view.setInt16(8 * i + 4, events[i], true);
  });
  const rc = await lib().poll(new Uint8Array(view.buffer), BigInt(fds.length), timeoutMs);
  return fds.map((_, i) => rc > 0 ? view.getInt16(8 * i + 6, true) : 0);
}

/** Sets the terminal size (struct winsize: u16 rows, cols, xpixel, ypixel) via TIOCSWINSZ. */
export function setWindowSize(fd: number, cols: number, rows: number): void {
  const winsize = new Uint16Array([rows, cols, 0, 0]);
  check("ioctl(TIOCSWINSZ)", lib().ioctl(fd, BigInt(TIOCSWINSZ), new Uint8Array(winsize.buffer)));
}

/**
 * A duplicate of another process's fd `targetFd` (pidfd_getfd, Linux >= 5.6, needs ptrace rights:
 * root). How a restarted daemon takes back the I/O of attachable jobs from their keepers.
 */
export function pidfdGetfd(pidfd: number, targetFd: number): number {
  const rc = Number(lib().syscall3(BigInt(SYS_PIDFD_GETFD), BigInt(pidfd), BigInt(targetFd), 0n));
  return check(`pidfd_getfd(${targetFd})`, rc);
}

/**
 * Whether fd `a` of process `pa` and fd `b` of `pb` are one open file (kcmp KCMP_FILE: dup'ed or
 * inherited), not two opens of the same path; null when either is gone (exited, fd closed).
 * Needs ptrace rights over both (root).
 */
export function sameOpenFile(pa: number, a: number, pb: number, b: number): boolean | null {
  const SYS_KCMP = Deno.build.arch === "aarch64" ? 272 : 312, KCMP_FILE = 0;
  const rc = Number(
    lib().syscall5(BigInt(SYS_KCMP), BigInt(pa), BigInt(pb), BigInt(KCMP_FILE), BigInt(a), BigInt(b)),
  );
  // (a process of a tree listed a moment ago may have exited, or closed the fd, since)
  if (rc < 0 && (lastErrno() === ESRCH || lastErrno() === EBADF)) return null;
  return check("kcmp", rc) === 0;
}

/** Returns a pidfd for `pid`; throws ErrnoError (errno ESRCH when there is no such process). */
export function pidfdOpen(pid: number): number {
  const rc = Number(lib().syscall(BigInt(SYS_PIDFD_OPEN), BigInt(pid), 0n));
  return check(`pidfd_open(${pid})`, rc);
}

function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException("Aborted", "AbortError");
}

/** One bounded poll; resolves true once the pidfd is readable, i.e. the process has exited. */
async function pollOnce(pidfd: number): Promise<boolean> {
  const pollfd = new DataView(new ArrayBuffer(8)); // struct pollfd { int fd; short events, revents; }
  pollfd.setInt32(0, pidfd, true);
  pollfd.setInt16(4, POLLIN, true);
  const rc = await lib().poll(new Uint8Array(pollfd.buffer), 1n, POLL_SLICE_MS);
  // errno of a nonblocking call lives on a pool thread; a failure here is almost always EINTR,
  // so just try again on the next slice.
  if (rc <= 0) return false;
  const revents = pollfd.getInt16(6, true);
  if (revents & POLLNVAL) throw new ErrnoError(`poll(pidfd ${pidfd})`, EINVAL);
  return true;
}

/**
 * Resolves when the process behind `pidfd` exits (it may still be an unreaped zombie).
 * Works for any process, not only our children. Rejects with `signal.reason` on abort; an
 * in-flight poll slice then finishes in the background within POLL_SLICE_MS.
 *
 * Each pending call occupies one thread of Deno's blocking pool while it polls.
 */
export async function waitForExit(pidfd: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) throw abortReason(signal);
  let onAbort = () => {};
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(abortReason(signal!));
    signal?.addEventListener("abort", onAbort, { once: true });
  });
  aborted.catch(() => {}); // observed via Promise.race below; avoid an unhandled rejection
  try {
    while (!(await Promise.race([pollOnce(pidfd), aborted]))) {
      // timed out this slice; loop so an abort is noticed
    }
  } finally {
    signal?.removeEventListener("abort", onAbort);
  }
}

/** Exit status as reported by waitid: exactly one of the fields is non-null. */
export interface ExitStatus {
  code: number | null;
  signal: number | null;
}

/**
 * Reaps the process behind `pidfd` if it has exited and is our child (including orphans we
 * adopted as child subreaper). Returns null when it has not exited yet or is not our child
 * (ECHILD), e.g. because Deno already reaped its own `Deno.Command` child.
 *
 * Never use this on a child whose status Deno is awaiting: the reaping would race Deno's.
 */
export function waitidPidfd(pidfd: number): ExitStatus | null {
  const info = new Uint8Array(SIGINFO_SIZE); // zeroed: si_pid stays 0 if nothing was waitable
  const rc = lib().waitid(P_PIDFD, pidfd, info, WEXITED | WNOHANG);
  if (rc < 0) {
    const errno = lastErrno();
    if (errno === ECHILD) return null;
    throw new ErrnoError(`waitid(P_PIDFD, ${pidfd})`, errno);
  }
  return decodeSiginfo(new DataView(info.buffer));
}

function decodeSiginfo(view: DataView): ExitStatus | null {
  const siPid = view.getInt32(16, true);
  if (siPid === 0) return null; // WNOHANG and still running
  const siCode = view.getInt32(8, true);
  const siStatus = view.getInt32(24, true);
  if (siCode === CLD_EXITED) return { code: siStatus, signal: null };
  if (siCode === CLD_KILLED || siCode === CLD_DUMPED) return { code: null, signal: siStatus };
  return null; // stop/continue events cannot appear with WEXITED alone
}

export function closeFd(fd: number): void {
  check(`close(${fd})`, lib().close(fd));
}

/**
 * Marks this process as child subreaper, so jobs that daemonize (double-fork) are re-parented
 * to us instead of init and stay waitable through waitidPidfd.
 */
export function setChildSubreaper(on = true): void {
  check("prctl(PR_SET_CHILD_SUBREAPER)", lib().prctl(PR_SET_CHILD_SUBREAPER, on ? 1n : 0n, 0n, 0n, 0n));
}

/** Clock ticks per second (USER_HZ), the unit of /proc/PID/stat times. */
export function getClockTicks(): number {
  return check("sysconf(_SC_CLK_TCK)", Number(lib().sysconf(SC_CLK_TCK)));
}
