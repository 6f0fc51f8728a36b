// Running CRIU: spawned with the daemon-death signal set (if the daemon dies mid-dump, CRIU dies
// too and the frozen job resumes instead of being killed with no checkpoint recorded), extra fds
// handed over for --inherit-fd, and on failure the `Error` lines of its log quoted back.

import { spawn } from "node:child_process";
import { failedPrecondition } from "../errors.ts";
import { trackSpawn } from "../sys/reaper.ts";

/**
 * What to do about CRIU errors that users meet and CRIU's words do not explain (each seen here or
 * on a GPU machine), as `hint:` lines after the errors.
 */
const HINTS: [RegExp, string][] = [
  [
    /sk-unix\.c.*Can't bind .*Address already in use/,
    "hint: a unix socket of the checkpoint is bound by a running process, often the original still running " +
    "(abstract names, such as CUDA's @cuda-uvmfd-..., are one set per network namespace): stop it, or give " +
    "the restored job its own network namespace",
  ],
  [
    /Can't dump ghost file .* increase limit/,
    "hint: a deleted file the job holds open is larger than CRIU's ghost-limit (1 MiB by default): raise it, " +
    `e.g. --criu-opts '{"ghost-limit":"64M"}' (containerd jobs: ghost-limit in /etc/criu/runc.conf)`,
  ],
  [
    /mnt: .*unsupported id/,
    "hint: the container has a mount of a file system CRIU cannot dump (often under a recursive bind): " +
    "bind that directory by itself in the container's config (runc hands config bind mounts to CRIU as " +
    "external mounts)",
  ],
  [
    /Can't lookup mount=-?\d+ for fd=\d+ path=/,
    "hint: a process holds open a file that is not under any mount of its mount namespace, typically a " +
    "container's output sent to a file on the host by whoever started it (`runc run -d ... > file`): CRIU " +
    "cannot dump that; start it through cedana (`cedana run runc`: its output goes to a pipe the daemon " +
    "keeps), or send its output to a file inside the container",
  ],
  [
    /Can't dump half of stream unix connection/,
    "hint: a process of the job has a unix stream socket connected to a process outside the job (an " +
    "adopted service's output to journald, say): CRIU cannot checkpoint half a connection; start it with " +
    "its output to a file or pipe (cedana run process), or include the peer in the job",
  ],
  [
    /Can't (bind inet socket|connect inet socket back).*(Address already in use|Cannot assign requested address)/,
    "hint: the job's TCP port or connection is held by another process, often the original still running " +
    "(a copy restored beside it): stop that process, or restore once it is gone",
  ],
  [
    /File .* has bad size \d+ \(expect \d+\)/,
    "hint: a file the job had open changed size since the dump (CRIU restores only the file it saw): often " +
    "a log the original, left running, wrote on; restore once the file is as it was, or without that file " +
    "open in the job",
  ],
  [
    /SEIZE \d+: unsupported stop signal (21|22)\b/,
    "hint: a process of the job is stopped by its terminal (SIGTTIN/SIGTTOU: a background job that read " +
    "from or wrote to it): bring it to the foreground (fg) or send it SIGCONT, then dump",
  ],
];

/** The `Error (...)` lines of a CRIU log, minus the harmless RLIMIT_NOFILE one, then any hints. */
export function criuErrorLines(log: string): string[] {
  const errors = log.split("\n")
    .filter((l) => /\bError \(/.test(l) && !l.includes("RLIMIT_NOFILE"))
    .map((l) => l.replace(/^\(\s*[\d.]+\)\s*/, "").trim());
  const hints = HINTS.filter(([re]) => errors.some((l) => re.test(l))).map(([, hint]) => hint);
  return [...errors, ...hints];
}

/**
 * What CRIU printed itself when it has no log to show (a bad option: its complaint comes first,
 * then the whole usage text): the lines that say what is wrong, else the first few.
 */
export function outputErrorLines(output: string): string[] {
  const lines = output.split("\n").map((l) => l.trim()).filter(Boolean);
  const bad = lines.filter((l) =>
    /unrecognized|invalid|unknown|error|can't|cannot|not supported|requires/i.test(l)
  );
  return (bad.length ? bad : lines).slice(0, 5);
}

/** criuErrorLines of a log file; [] when there is none. */
export function criuLogFileErrors(path: string, last = 10): string[] {
  try {
    const lines = criuErrorLines(Deno.readTextFileSync(path));
    const hints = lines.filter((l) => l.startsWith("hint: "));
    return [...lines.filter((l) => !l.startsWith("hint: ")).slice(-last), ...hints];
  } catch {
    return [];
  }
}

export interface CriuRun {
  code: number | null;
  signal: string | null;
  ms: number;
}

export interface RunCriuOptions {
  /** fds given to CRIU as fd 3, 4, ... (for --inherit-fd fd[N]). */
  extraFds?: number[];
  /** Wrap the command (e.g. unshare for a new PID namespace). */
  wrapper?: string[];
  /** Called with the child's pid once spawned. */
  onSpawn?: (pid: number) => void;
  /** Kill CRIU when the daemon dies (default true): a dump then aborts and the job resumes. */
  pdeathsig?: boolean;
  env?: Record<string, string>;
}

const launchers = new Map<string, string[]>();

/**
 * How to exec `bin`. The CRIU that cedana installs (scripts/setup.sh, the bundle) is a small sh
 * wrapper that runs `criu.real` with its own loader and libraries; that wrapper costs a shell and
 * three helper processes (~3.5 ms of every dump and restore), so cedana execs the loader itself.
 * Any other criu runs as is.
 */
export function criuLauncher(bin: string): string[] {
  let argv = launchers.get(bin);
  if (argv) return argv;
  argv = [bin];
  try {
    const real = Deno.realPathSync(bin);
    const binDir = real.slice(0, real.lastIndexOf("/"));
    const prefix = binDir.slice(0, binDir.lastIndexOf("/"));
    const loader = `${prefix}/lib/ld-linux-x86-64.so.2`;
    const buf = new Uint8Array(512);
    using f = Deno.openSync(real);
    const head = new TextDecoder().decode(buf.subarray(0, f.readSync(buf) ?? 0));
    if (
      head.startsWith("#!") && head.includes('"$P/bin/criu.real"') && Deno.statSync(loader).isFile &&
      Deno.statSync(`${binDir}/criu.real`).isFile
    ) {
      argv = [loader, "--library-path", `${prefix}/lib`, `${binDir}/criu.real`];
    }
  } catch { /* not our wrapper: run bin itself */ }
  launchers.set(bin, argv);
  return argv;
}

export function spawnCriu(bin: string, args: string[], opts: RunCriuOptions = {}) {
  const cmd = [...(opts.wrapper ?? []), ...criuLauncher(bin), ...args];
  const argv = opts.pdeathsig === false ? cmd : ["setpriv", "--pdeathsig", "KILL", "--", ...cmd];
  const child = spawn(argv[0], argv.slice(1), {
    // CRIU leads its own session: a shell job restored with -j takes the restorer's session, and
    // where the daemon's session leader is outside its PID namespace (`kubectl exec`, a CI
    // sandbox) the job's next dump would fail ("A session leader of P is outside of its pid
    // namespace"). It also keeps a terminal's Ctrl-C on a foreground daemon from reaching CRIU.
    detached: true,
    stdio: ["ignore", "pipe", "pipe", ...(opts.extraFds ?? [])],
    env: { ...Deno.env.toObject(), ...opts.env },
  });
  opts.onSpawn?.(child.pid!);
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  trackSpawn(child.pid, exited);
  let out = "";
  child.stdout!.on("data", (d) => out += d);
  child.stderr!.on("data", (d) => out += d);
  const t0 = performance.now();
  const done = new Promise<CriuRun & { output: string }>((resolve) => {
    child.once(
      "exit",
      (code, signal) =>
        resolve({ code, signal: signal as string | null, ms: performance.now() - t0, output: out }),
    );
  });
  return { pid: child.pid!, done };
}

export async function runCriu(
  bin: string,
  args: string[],
  logPath: string,
  what: string,
  opts: RunCriuOptions = {},
): Promise<CriuRun> {
  return criuOutcome(await spawnCriu(bin, args, opts).done, logPath, what);
}

/** A finished CRIU run, or the error that quotes its log when it failed. */
export function criuOutcome(r: CriuRun & { output: string }, logPath: string, what: string): CriuRun {
  if (r.code !== 0) {
    let log: string | null = null;
    try {
      log = Deno.readTextFileSync(logPath);
    } catch { /* CRIU stopped before it opened its log (e.g. at its command line) */ }
    const lines = criuErrorLines(log ?? "");
    if (!lines.length) lines.push(...outputErrorLines(r.output));
    throw failedPrecondition(
      `${what} failed (criu exit ${r.code ?? r.signal})${log !== null ? `; CRIU log: ${logPath}` : ""}`,
      lines.slice(-15),
    );
  }
  return r;
}
