// What a process tree holds that changes how CRIU must be called. Cedana detects these itself
// rather than making the user guess flags: shell jobs, TCP connections, unix sockets, file locks,
// and the things CRIU cannot dump at all (io_uring).

import { descendants, readFds, readStat } from "../proc/mod.ts";

export interface TreeFacts {
  root: number;
  /** Every PID and TID in the tree (a restore checks that they are free). */
  pids: number[];
  sessionLeader: boolean;
  /** Its session's leader is outside this PID namespace (session 0 here): CRIU refuses such a tree. */
  sessionOutside: boolean;
  tcpEstablished: boolean;
  tcpListen: boolean;
  unixSockets: boolean;
  fileLocks: boolean;
  ioUring: boolean;
  /** fd -> link target for the root's stdin/stdout/stderr. */
  stdio: Record<number, string>;
  /** The tree's pipes, terminals and files: which process holds them, as what fd, opened how. */
  files: TreeFile[];
}

export interface TreeFile {
  pid: number;
  fd: number;
  target: string;
  /** open(2) flags from fdinfo (O_ACCMODE: 0 read, 1 write, 2 both). */
  flags: number;
}

/** Whether `f` is a terminal: a pty slave, or the caller's controlling terminal as /dev/tty. */
export const isTerminal = (target: string) => /^\/dev\/pts\/\d+$/.test(target) || target === "/dev/tty";

/** Lines of a /proc table, without its header line(s). */
function readLines(path: string, header = 1): string[] {
  try {
    return Deno.readTextFileSync(path).split("\n").slice(header).filter(Boolean);
  } catch {
    return [];
  }
}

function tasks(pid: number): number[] {
  try {
    return [...Deno.readDirSync(`/proc/${pid}/task`)].map((e) => Number(e.name));
  } catch {
    return [pid];
  }
}

export function inspectTree(root: number): TreeFacts {
  const procs = [root, ...descendants(root)];
  const sockets = new Set<string>();
  let ioUring = false;
  const stdio: Record<number, string> = {};
  let fileLocks = false;
  const files: TreeFile[] = [];
  for (const pid of procs) {
    for (const { fd, target } of readFds(pid)) {
      const m = /^socket:\[(\d+)\]$/.exec(target);
      if (m) sockets.add(m[1]);
      if (target.includes("io_uring")) ioUring = true;
      if (pid === root && fd <= 2) stdio[fd] = target;
      // Locks held through an fd are listed in its fdinfo ("lock:\t1: POSIX ..."). Not
      // /proc/locks: opening it takes a global lock that waits for an RCU grace period (7-11 ms).
      // (any fd: flock works on pipes too, and CRIU reads the fdinfo of every fd)
      const info = fdinfo(pid, fd);
      if (info === "") continue; // (closed, or its process gone, since the listing)
      if (info.includes("\nlock:")) fileLocks = true;
      if (target.startsWith("pipe:") || target.startsWith("/")) {
        files.push({ pid, fd, target, flags: parseInt(/^flags:\s*([0-7]+)/m.exec(info)?.[1] ?? "0", 8) });
      }
    }
  }
  let tcpEstablished = false, tcpListen = false;
  // (the /proc/net tables are slow to read: only when the tree has sockets at all)
  for (const f of sockets.size ? ["tcp", "tcp6"] : []) {
    for (const line of readLines(`/proc/${root}/net/${f}`)) {
      const cols = line.trim().split(/\s+/);
      if (!sockets.has(cols[9])) continue;
      if (cols[3] === "01") tcpEstablished = true;
      if (cols[3] === "0A") tcpListen = true;
    }
  }
  const unixSockets = sockets.size > 0 &&
    readLines(`/proc/${root}/net/unix`).some((l) => sockets.has(l.trim().split(/\s+/)[6]));
  const stat = readStat(root);
  return {
    root,
    pids: procs.flatMap(tasks),
    sessionLeader: stat?.session === root,
    sessionOutside: stat?.session === 0,
    tcpEstablished,
    tcpListen,
    unixSockets,
    fileLocks,
    ioUring,
    stdio,
    files,
  };
}

function fdinfo(pid: number, fd: number): string {
  try {
    return Deno.readTextFileSync(`/proc/${pid}/fdinfo/${fd}`);
  } catch {
    return ""; // closed meanwhile
  }
}

/**
 * The root's stdio pipe `target` leads out of the tree: no process in it holds the pipe's other
 * end (its read end for the root's stdout, its write end for stdin). CRIU would make it a pipe
 * with nobody at the other end: a `job | cat` restored dies of EPIPE at its next line.
 */
export function pipeLeavesTree(facts: TreeFacts, target: string): boolean {
  const ends = facts.files.filter((f) => f.target === target).map((f) => f.flags & 3);
  return !(ends.some((m) => m === 0 || m === 2) && ends.some((m) => m === 1 || m === 2));
}

/** CRIU's id for a tty: hex st_rdev and st_dev of the slave, e.g. "tty[8800:1a]". */
export function ttyExternalId(path: string): string {
  const st = Deno.statSync(path);
  return `tty[${(st.rdev ?? 0).toString(16)}:${(st.dev ?? 0).toString(16)}]`;
}
