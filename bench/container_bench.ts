// Benchmark: checkpoint/restore of a runc container holding MIB MiB of memory: cedana vs raw runc vs
// podman, in the same run.
//
//   deno run -A bench/container_bench.ts        (as root; runc, criu, iptables, umoci, busybox; podman optional)
//
// Env: RUNS (default 3), MIB (default 512), WORKLOAD ("anon", default: the MiB are anonymous memory of a
// process in the container; "shm": a file of MIB MiB in the container's /dev/shm tmpfs, which CRIU saves
// as a gzipped tar, see README), PODMAN (1: also time podman when it works here; default 1), WARMUP (1: one
// untimed 64 MiB round of every variant first; default 1), RAW_HASH (1: also "runc+sha", see b; default 1),
// KEEP_TEST_DIRS=1 keeps the temp dirs.
//
// The container (busybox, own network namespace with only lo, stdio pipes) runs `sh -c SCRIPT`:
//   anon: `head -c N /dev/urandom | tee FIFO | dd bs=N+1 count=1 iflag=fullblock`: dd holds the N random
//         bytes in its buffer (anonymous memory) and waits for the last byte; md5sum of the FIFO prints
//         "sum-in MD5". A newline written to /tmp/go (through /proc/PID/root) ends dd's input: it then
//         prints "sum-out MD5" of what it held.
//   shm:  `dd if=/dev/urandom of=/dev/shm/x bs=1M count=MIB`, "sum-in MD5" of the file; /tmp/go makes it
//         print "sum-out MD5" of the file again.
//   both: a counter `tick N` every 0.1 s in the foreground.
// Each round starts a fresh container, waits for "sum-in" and two more ticks, then times:
//   a. cedana: `cedana run runc --bundle B --root R --jid J --id J` (untimed), `cedana dump job J --json`
//      and `cedana restore job J --json`: wall time of the whole CLI and the daemon's timings.
//   b. runc: `runc run -d` with stdio pipes (untimed), `runc --root R checkpoint --image-path I
//      --work-path W ID` and `runc --root R restore -d --image-path I --work-path W --bundle B ID` (stdio
//      pipes, timed until runc exits), on an identical bundle. "runc+sha" adds what cedana does around
//      runc: src/checkpoint/hasher.ts's DirHasher follows the images while runc checkpoints (cedana
//      finishes the checksums in the background, so the dump time stops when runc exits), and the
//      restore first waits for that hasher (cedana's restore waits for pending checksums) and then
//      runs runc restore.
//   c. podman (private --root/--runroot/--tmpdir, --runtime runc, cgroupfs, the same busybox image from
//      tests/containers/fixture.ts makeImageTar loaded with `podman load`, `--network none`):
//      "podman": `podman container checkpoint C` / `podman container restore C`;
//      "podman export": `podman container checkpoint --export=F.tar.gz C`, `podman rm C` (untimed),
//      `podman container restore --import=F.tar.gz`. Left out with WORKLOAD=shm (podman's /dev/shm is
//      a host tmpfs bind-mounted in, which CRIU does not save).
// After each restore the counter must go on (one "sum-in" only: not restarted) and "sum-out" must equal
// "sum-in" (the memory came back intact); every checkpoint must hold at least MIB MiB. `sync` runs
// (untimed) before each timed operation; images go to /tmp (the daemon's checkpoint dir, and the bench's
// temp dir for the others). The order of the variants rotates between runs. Kills every container it
// started, deletes the checkpoints, unmounts and removes its temp dirs (and what podman left in
// /var/lib/containers and the libpod_parent cgroups, when they were not there before), and the I/O
// keepers its daemon leaked (see killKeepers).

import { spawn } from "node:child_process";
import type { DumpResult, Job, RestoreResult } from "../src/api/types.ts";
import { DirHasher } from "../src/checkpoint/hasher.ts";
import { readDumpStats, readRestoreStats } from "../src/criu/stats.ts";
import {
  CONTAINER_PATH,
  findTool,
  hasContainerCRTools,
  makeBundle,
  makeImageTar,
  mountsUnder,
  spawnCapture,
} from "../tests/containers/fixture.ts";
import type { Capture } from "../tests/containers/fixture.ts";
import { waitFor } from "../tests/helpers.ts";
import { intEnv, machine, MAIN, startDaemon, stats, type TestDaemon } from "./common.ts";

const RUNS = intEnv("RUNS", 3);
const MIB = intEnv("MIB", 512);
const WORKLOAD = Deno.env.get("WORKLOAD") ?? "anon";
const PODMAN = intEnv("PODMAN", 1) === 1;
const RAW_HASH = intEnv("RAW_HASH", 1) === 1;
const WARMUP = intEnv("WARMUP", 1) === 1;
const KEEP = !!Deno.env.get("KEEP_TEST_DIRS");
const GOAL = 1.10;

if (!hasContainerCRTools()) {
  console.error("container_bench needs root, runc, containerd tools, umoci, busybox, criu and iptables");
  Deno.exit(2);
}
if (!["anon", "shm"].includes(WORKLOAD)) {
  console.error(`WORKLOAD must be anon or shm (got ${WORKLOAD})`);
  Deno.exit(2);
}
// CRIU 4.2 in /usr/local/bin first, for runc, podman (conmon) and the daemon alike.
Deno.env.set("PATH", `${CONTAINER_PATH}:${Deno.env.get("PATH") ?? ""}`);

// ---- helpers --------------------------------------------------------------------------------

interface RunResult {
  ms: number;
  code: number | null;
  out: string;
  err: string;
}

/** Runs argv; the time runs from spawn to the process's exit (not to EOF of its pipes). */
async function run(argv: string[], opts: { env?: Record<string, string>; cwd?: string } = {}) {
  const t0 = performance.now();
  const child = spawn(argv[0], argv.slice(1), {
    stdio: ["ignore", "pipe", "pipe"],
    env: opts.env ?? Deno.env.toObject(),
    cwd: opts.cwd,
  });
  let out = "", err = "";
  child.stdout!.on("data", (b) => out += b);
  child.stderr!.on("data", (b) => err += b);
  const closed = new Promise<void>((r) => child.once("close", () => r()));
  const code = await new Promise<number | null>((res) => {
    child.once("exit", (c) => res(c));
    child.once("error", (e) => {
      err += String(e);
      res(-1);
    });
  });
  const ms = performance.now() - t0;
  // A daemonizing child (conmon) may hold the pipes a little longer; do not wait for it.
  await Promise.race([closed, new Promise((r) => setTimeout(r, 2000))]);
  child.stdout!.destroy();
  child.stderr!.destroy();
  return { ms, code, out, err } as RunResult;
}

async function runOk(argv: string[], what = argv.slice(0, 4).join(" ")): Promise<RunResult> {
  const r = await run(argv);
  if (r.code !== 0) throw new Error(`${what} failed (${r.code}): ${r.err.trim()}${r.out.trim()}`);
  return r;
}

async function cliJson<T>(d: TestDaemon, ...args: string[]): Promise<{ ms: number; data: T }> {
  const r = await run([Deno.execPath(), "run", "-A", "--quiet", MAIN, ...args, "--json"], {
    env: { ...Deno.env.toObject(), ...d.env },
    cwd: d.dir,
  });
  if (r.code !== 0) throw new Error(`cedana ${args.join(" ")} failed (${r.code}): ${r.err}${r.out}`);
  return { ms: r.ms, data: JSON.parse(r.out) as T };
}

async function sync() {
  await new Deno.Command("sync").output();
}

function statOf(pid: number): { state: string; ppid: number } | null {
  try {
    const st = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const rest = st.slice(st.lastIndexOf(")") + 2).split(" ");
    return { state: rest[0], ppid: Number(rest[1]) };
  } catch {
    return null;
  }
}

/** `pid` and all its descendants. */
function tree(pid: number): number[] {
  const kids = new Map<number, number[]>();
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    const st = statOf(Number(e.name));
    if (st) kids.set(st.ppid, [...(kids.get(st.ppid) ?? []), Number(e.name)]);
  }
  const out: number[] = [];
  const walk = (p: number) => {
    out.push(p);
    for (const k of kids.get(p) ?? []) walk(k);
  };
  walk(pid);
  return out;
}

const gone = (pid: number) => {
  const st = statOf(pid);
  return st === null || st.state === "Z" || st.state === "X";
};

async function waitGone(pids: number[], what: string) {
  await waitFor(() => pids.every(gone), `${what}: PIDs ${pids.join(",")} gone`, 30_000);
}

function dirSize(dir: string): number {
  let n = 0;
  for (const e of Deno.readDirSync(dir)) {
    const p = `${dir}/${e.name}`;
    if (e.isDirectory) n += dirSize(p);
    else if (e.isFile) n += Deno.statSync(p).size;
  }
  return n;
}

function lastTick(lines: string[]): number {
  for (let i = lines.length - 1; i >= 0; i--) {
    const m = /^tick (\d+)$/.exec(lines[i]);
    if (m) return Number(m[1]);
  }
  return -1;
}

const sumOf = (lines: string[], tag: "sum-in" | "sum-out") =>
  lines.filter((l) => l.startsWith(`${tag} `)).map((l) => l.split(/\s+/)[1]);

function script(mib: number): string {
  const n = mib * 2 ** 20;
  const counter = 'i=0; while :; do echo "tick $i"; i=$((i+1)); sleep 0.1; done';
  if (WORKLOAD === "shm") {
    return [
      "rm -f /tmp/go; mkfifo /tmp/go",
      `dd if=/dev/urandom of=/dev/shm/x bs=1M count=${mib} 2>/dev/null`,
      'md5sum /dev/shm/x | sed "s/^/sum-in /"',
      '{ read -r x <>/tmp/go; md5sum /dev/shm/x | sed "s/^/sum-out /"; } &',
      counter,
    ].join("\n");
  }
  return [
    "rm -f /tmp/h /tmp/go; mkfifo /tmp/h /tmp/go",
    'md5sum < /tmp/h | sed "s/^/sum-in /" &',
    `{ head -c ${n} /dev/urandom | tee /tmp/h; read -r x <>/tmp/go; } | ` +
    `dd bs=${n + 1} count=1 iflag=fullblock 2>/dev/null | md5sum | sed "s/^/sum-out /" &`,
    counter,
  ].join("\n");
}

/** The container's output so far, as lines. */
type Lines = () => string[];

async function waitReady(lines: Lines, what: string): Promise<{ sum: string; tick: number }> {
  const sum = await waitFor(() => sumOf(lines(), "sum-in")[0], `${what}: sum-in`, 180_000);
  const t = lastTick(lines());
  await waitFor(() => lastTick(lines()) >= t + 2, `${what}: ticks after sum-in`, 30_000);
  return { sum, tick: lastTick(lines()) };
}

/** After a restore: the counter goes on, it was not restarted, and the memory is what it was. */
async function assertRestored(lines: Lines, pid: number, sumIn: string, tickAtDump: number, what: string) {
  await waitFor(() => lastTick(lines()) >= tickAtDump + 2, `${what}: ticks after the restore`, 30_000);
  const ins = sumOf(lines(), "sum-in");
  if (ins.length !== 1) throw new Error(`${what}: the container was restarted, not restored`);
  Deno.writeTextFileSync(`/proc/${pid}/root/tmp/go`, "\n");
  const out = await waitFor(() => sumOf(lines(), "sum-out")[0], `${what}: sum-out`, 60_000);
  if (out !== sumIn) throw new Error(`${what}: memory changed across dump/restore (${sumIn} -> ${out})`);
}

function checkSize(bytes: number, mib: number, what: string) {
  if (bytes < mib * 2 ** 20 * 0.98) {
    throw new Error(`${what}: checkpoint is ${(bytes / 2 ** 20).toFixed(1)} MiB, expected >= ${mib} MiB`);
  }
}

function fileLines(path: string): Lines {
  return () => {
    try {
      return Deno.readTextFileSync(path).split("\n");
    } catch {
      return [];
    }
  };
}

// ---- rounds ---------------------------------------------------------------------------------

interface Sample {
  dumpMs: number;
  restoreMs: number;
  dumpT?: Record<string, number>;
  restoreT?: Record<string, number>;
  /** cedana: the daemon's own duration of the POST /v1/dump and /v1/restore (its request log). */
  dumpReqMs?: number;
  restoreReqMs?: number;
  dumpStats?: Record<string, number> | null;
  restoreStats?: Record<string, number> | null;
  size: number;
}

type Variant = "cedana" | "runc" | "runc_sha" | "podman" | "podman_export";

let seq = 0;
const tmp = Deno.makeTempDirSync({ prefix: "cedana-cbench-" });
const bundles = new Map<number, { ced: string; raw: string }>();
/** runc containers the raw rounds started: killed and deleted at the end if still there. */
const rawIds = new Set<string>();
const captures = new Set<Capture>();

async function bundleFor(d: TestDaemon, mib: number) {
  let b = bundles.get(mib);
  if (b) return b;
  b = { ced: `${d.dir}/bundle-${mib}`, raw: `${tmp}/bundle-${mib}` };
  for (const dir of [b.ced, b.raw]) {
    await makeBundle(dir, ["sh", "-c", script(mib)]);
    const cfg = JSON.parse(Deno.readTextFileSync(`${dir}/config.json`));
    if (WORKLOAD === "shm") {
      for (const m of cfg.mounts) {
        if (m.destination !== "/dev/shm") continue;
        m.options = [...m.options.filter((o: string) => !o.startsWith("size=")), `size=${mib + 64}m`];
      }
    }
    Deno.writeTextFileSync(`${dir}/config.json`, JSON.stringify(cfg, null, 2));
  }
  bundles.set(mib, b);
  return b;
}

/** The `ms` of the daemon's last logged request to `path`. */
function requestMs(d: TestDaemon, path: string): number | undefined {
  const lines = d.daemonLog.split("\n").filter((l) =>
    l.includes('"msg":"request"') && l.includes(`"${path}"`)
  );
  try {
    return JSON.parse(lines.at(-1)!).ms;
  } catch {
    return undefined;
  }
}

async function cedanaRound(d: TestDaemon, mib: number): Promise<Sample> {
  const { ced: bundle } = await bundleFor(d, mib);
  const jid = `c${++seq}`;
  const job = await d.json<Job>(
    "run",
    "runc",
    "--bundle",
    bundle,
    "--root",
    `${d.dir}/runc`,
    "--jid",
    jid,
    "--id",
    jid,
  );
  const lines = fileLines(job.log!);
  const { sum } = await waitReady(lines, jid);
  const pids = tree(job.pid!);
  await sync();
  const tick = lastTick(lines());
  const dump = await cliJson<DumpResult>(d, "dump", "job", jid);
  const dumpReqMs = requestMs(d, "/v1/dump");
  const cp = dump.data.checkpoint;
  await waitGone(pids, `cedana dump of ${jid}`);
  checkSize(cp.size, mib, `cedana ${jid}`);
  await sync();
  const restore = await cliJson<RestoreResult>(d, "restore", "job", jid);
  const restoreReqMs = requestMs(d, "/v1/restore");
  const pid = restore.data.job.pid!;
  await assertRestored(lines, pid, sum, tick, `cedana ${jid}`);
  const rpids = tree(pid);
  await d.ok("job", "kill", jid, "--signal", "KILL");
  await waitGone(rpids, `killing ${jid}`);
  await waitFor(async () => {
    const j = (await d.json<{ jid: string; status: string }[]>("ps")).find((j) => j.jid === jid);
    return j?.status === "halted";
  }, `${jid} halted`);
  await d.ok("job", "checkpoint", "delete", cp.id);
  await d.ok("job", "delete", jid);
  Deno.removeSync(job.log!);
  return {
    dumpMs: dump.ms,
    restoreMs: restore.ms,
    dumpT: dump.data.timings,
    restoreT: restore.data.timings,
    dumpReqMs,
    restoreReqMs,
    dumpStats: dump.data.criuStats,
    restoreStats: restore.data.criuStats,
    size: cp.size,
  };
}

async function runcPid(root: string, id: string): Promise<number> {
  return JSON.parse((await runOk(["runc", "--root", root, "state", id])).out).pid;
}

async function runcRound(d: TestDaemon, mib: number, hash = false): Promise<Sample> {
  const { raw: bundle } = await bundleFor(d, mib);
  const id = `r${++seq}`;
  const root = `${tmp}/runc`;
  const dir = `${tmp}/${id}`;
  const images = `${dir}/images`, work = `${dir}/work`;
  Deno.mkdirSync(images, { recursive: true });
  Deno.mkdirSync(work);
  rawIds.add(id);
  const first = spawnCapture("runc", ["--root", root, "run", "-d", "--bundle", bundle, id]);
  captures.add(first);
  if ((await first.exited) !== 0) throw new Error(`runc run ${id} failed: ${first.stderr}`);
  let second: Capture | null = null;
  const lines: Lines = () => (first.stdout + (second?.stdout ?? "")).split("\n");
  const { sum } = await waitReady(lines, id);
  const pids = tree(await runcPid(root, id));
  await sync();
  const tick = lastTick(lines());
  const hasher = hash ? new DirHasher(images) : null;
  hasher?.start();
  const dump = await run([
    "runc",
    "--root",
    root,
    "checkpoint",
    "--image-path",
    images,
    "--work-path",
    work,
    id,
  ]);
  if (dump.code !== 0) throw new Error(`runc checkpoint ${id} failed (${dump.code}): ${dump.err}`);
  await waitGone(pids, `runc checkpoint of ${id}`);
  await first.closed;
  const size = dirSize(images);
  checkSize(size, mib, `runc ${id}`);
  await sync();
  const t0 = performance.now();
  await hasher?.finish();
  second = spawnCapture("runc", [
    "--root",
    root,
    "restore",
    "-d",
    "--image-path",
    images,
    "--work-path",
    work,
    "--bundle",
    bundle,
    id,
  ]);
  captures.add(second);
  const code = await second.exited;
  const restoreMs = performance.now() - t0;
  if (code !== 0) throw new Error(`runc restore ${id} failed (${code}): ${second.stderr}`);
  const pid = await runcPid(root, id);
  await assertRestored(lines, pid, sum, tick, `runc ${id}`);
  const s: Sample = {
    dumpMs: dump.ms,
    restoreMs,
    // runc points CRIU's work dir (logs, stats-dump, stats-restore) at --work-path
    dumpStats: readDumpStats(work) as unknown as Record<string, number> | null,
    restoreStats: readRestoreStats(work) as unknown as Record<string, number> | null,
    size,
  };
  const rpids = tree(pid);
  await runOk(["runc", "--root", root, "kill", id, "KILL"]);
  await waitGone(rpids, `killing ${id}`);
  await runOk(["runc", "--root", root, "delete", "--force", id]);
  rawIds.delete(id);
  await Promise.race([second.closed, new Promise((r) => setTimeout(r, 5000))]);
  for (const c of [first, second]) {
    c.destroy();
    captures.delete(c);
  }
  Deno.removeSync(dir, { recursive: true });
  return s;
}

// ---- podman ---------------------------------------------------------------------------------

const PM = `${tmp}/podman`;
const PODMAN_ARGS = [
  "--root",
  `${PM}/root`,
  "--runroot",
  `${PM}/run`,
  "--tmpdir",
  `${PM}/tmp`,
  "--storage-driver",
  "overlay",
  "--cgroup-manager",
  "cgroupfs",
  "--events-backend",
  "file",
  "--runtime",
  "runc",
];
const IMAGE = "localhost/cedana-bench:latest";
const pm = (...args: string[]) => ["podman", ...PODMAN_ARGS, ...args];
const hadVarLibContainers = exists("/var/lib/containers");
const hadLibpodCgroups = cgroupDirs().filter((p) => exists(p));

function exists(p: string): boolean {
  try {
    Deno.lstatSync(p);
    return true;
  } catch {
    return false;
  }
}

function cgroupDirs(): string[] {
  try {
    return [...Deno.readDirSync("/sys/fs/cgroup")].filter((e) => e.isDirectory)
      .flatMap((e) => [`/sys/fs/cgroup/${e.name}/libpod_parent`, `/sys/fs/cgroup/libpod_parent`]);
  } catch {
    return [];
  }
}

/** Loads the fixture's OCI image; returns null when podman works, else why not. */
async function podmanSetup(): Promise<string | null> {
  if (!findTool("podman")) return "podman is not installed";
  for (const t of ["conmon"]) if (!findTool(t)) return `${t} is not installed`;
  try {
    const tar = await makeImageTar(`${tmp}/image`, "cedana-bench");
    const load = await run(pm("load", "-i", tar));
    if (load.code !== 0) return `podman load -i ${tar}: ${load.err.trim()}`;
    const id = /Loaded image(?:\(s\))?: (?:sha256:)?([0-9a-f]{12,})/.exec(load.out)?.[1];
    if (!id) return `podman load printed no image ID: ${load.out.trim()}`;
    await runOk(pm("tag", id, IMAGE));
    // A quick start/stop, which also finds limits the container may not raise (see podmanRun).
    const r = await run(pm("run", "--rm", ...podmanRunFlags(64, null), IMAGE, "true"));
    if (r.code !== 0) return `podman run: ${r.err.trim()}`;
  } catch (e) {
    return (e as Error).message;
  }
  return null;
}

function hardLimit(name: string): string {
  const l = Deno.readTextFileSync("/proc/self/limits").split("\n").find((l) => l.startsWith(name));
  return l?.slice(26).trim().split(/\s+/)[1] ?? "unlimited";
}

/**
 * Flags of `podman run`. Podman asks for RLIMIT_NOFILE 1048576 and a high RLIMIT_NPROC; without
 * CAP_SYS_RESOURCE (this VM's root lacks it) runc init then fails with "error setting rlimit type 7
 * (6): operation not permitted", so both are set at or below what we have.
 */
function podmanRunFlags(mib: number, log: string | null): string[] {
  const nofile = hardLimit("Max open files");
  return [
    "--network",
    "none",
    "--ulimit",
    `nofile=${nofile}:${nofile}`,
    "--ulimit",
    "nproc=4096:4096",
    ...(WORKLOAD === "shm" ? ["--shm-size", `${mib + 64}m`] : []),
    ...(log ? ["--log-driver", "k8s-file", "--log-opt", `path=${log}`] : []),
  ];
}

/** k8s-file log lines: "TIME stdout F TEXT". */
function podmanLines(path: string): Lines {
  const f = fileLines(path);
  return () => f().map((l) => l.split(" ").slice(3).join(" "));
}

async function podmanPid(name: string): Promise<number> {
  return Number((await runOk(pm("inspect", "-f", "{{.State.Pid}}", name))).out.trim());
}

async function podmanRound(mib: number, exported: boolean): Promise<Sample> {
  const name = `p${++seq}`;
  const log = `${PM}/${name}.log`;
  await runOk(pm("run", "-d", "--name", name, ...podmanRunFlags(mib, log), IMAGE, "sh", "-c", script(mib)));
  // `restore --import` does not keep --log-opt path: the restored container logs to the default path.
  const logs = [podmanLines(log)];
  const lines: Lines = () => logs.flatMap((f) => f());
  const { sum } = await waitReady(lines, name);
  const pids = tree(await podmanPid(name));
  const ctrId = (await runOk(pm("inspect", "-f", "{{.Id}}", name))).out.trim();
  const archive = `${PM}/${name}.tar.gz`;
  await sync();
  const tick = lastTick(lines());
  const dump = await run(
    pm("container", "checkpoint", ...(exported ? [`--export=${archive}`] : []), name),
  );
  if (dump.code !== 0) throw new Error(`podman container checkpoint ${name} failed: ${dump.err}`);
  await waitGone(pids, `podman checkpoint of ${name}`);
  const size = exported
    ? Deno.statSync(archive).size
    : dirSize(`${PM}/root/overlay-containers/${ctrId}/userdata/checkpoint`);
  checkSize(size, mib, `podman ${name}`);
  if (exported) await runOk(pm("rm", name));
  await sync();
  const restore = await run(
    pm("container", "restore", ...(exported ? [`--import=${archive}`] : [name])),
  );
  if (restore.code !== 0) throw new Error(`podman container restore ${name} failed: ${restore.err}`);
  const pid = await podmanPid(name);
  const newLog = (await runOk(pm("inspect", "-f", "{{.HostConfig.LogConfig.Path}}", name))).out.trim();
  if (newLog !== log) logs.push(podmanLines(newLog));
  await assertRestored(lines, pid, sum, tick, `podman ${name}`);
  const rpids = tree(pid);
  await runOk(pm("rm", "--force", "--time", "0", name));
  await waitGone(rpids, `removing ${name}`);
  if (exported) Deno.removeSync(archive);
  try {
    Deno.removeSync(log);
  } catch { /* podman removed it */ }
  return { dumpMs: dump.ms, restoreMs: restore.ms, size };
}

async function podmanCleanup() {
  if (!exists(`${PM}/root`)) return;
  await run(pm("rm", "--all", "--force", "--time", "0"));
  await run(pm("rmi", "--all", "--force"));
  if (!hadVarLibContainers) Deno.removeSync("/var/lib/containers", { recursive: true });
  for (const cg of cgroupDirs()) {
    if (hadLibpodCgroups.includes(cg) || !exists(cg)) continue;
    const rmdirs = (p: string) => {
      for (const e of Deno.readDirSync(p)) if (e.isDirectory) rmdirs(`${p}/${e.name}`);
      try {
        Deno.removeSync(p);
      } catch { /* still in use */ }
    };
    rmdirs(cg);
  }
}

/**
 * The daemon's I/O keepers (`sleep infinity` holding copies of a job's pipes) that outlive their jobs:
 * at the time of writing, the keeper made by the restore of a runc job is not stopped when the job is
 * killed and deleted (restore.ts overwrites the plugin's `ioKeepers` with its own, undefined for
 * plugins). They carry the daemon's environment, so its temp dir tells which are ours.
 */
function killKeepers(dir: string) {
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      if (Deno.readTextFileSync(`/proc/${e.name}/comm`).trim() !== "sleep") continue;
      if (!Deno.readTextFileSync(`/proc/${e.name}/environ`).includes(`CEDANA_ADDRESS=${dir}/`)) continue;
      Deno.kill(Number(e.name), "SIGTERM");
    } catch { /* gone */ }
  }
}

// ---- small extras: where cedana's fixed costs come from --------------------------------------

async function medianOf(n: number, f: () => Promise<number>): Promise<number> {
  const xs: number[] = [];
  for (let i = 0; i < n; i++) xs.push(await f());
  return stats(xs).median;
}

async function extras(d: TestDaemon, mib: number) {
  const b = await bundleFor(d, mib);
  const out = `${tmp}/rootfs-probe.tar`;
  // the same command as the runc plugin's saveRootfs
  const tarMs = await medianOf(5, async () => {
    const r = await runOk([
      "tar",
      "-C",
      `${b.ced}/rootfs`,
      "--exclude=./proc/*",
      "--exclude=./sys/*",
      "-cf",
      out,
      ".",
    ]);
    return r.ms;
  });
  const tarBytes = Deno.statSync(out).size;
  Deno.removeSync(out);
  const versionMs = await medianOf(
    5,
    async () => (await runOk([Deno.execPath(), "run", "-A", "--quiet", MAIN, "--version"])).ms,
  );
  const stateMs = await medianOf(
    5,
    async () => (await run(["runc", "--root", `${tmp}/runc`, "state", "none"])).ms,
  );
  return { tarMs, tarBytes, versionMs, stateMs };
}

// ---- main -----------------------------------------------------------------------------------

const memKb = /MemTotal:\s*(\d+)/.exec(Deno.readTextFileSync("/proc/meminfo"))![1];
const ver = async (argv: string[], re: RegExp) => re.exec((await run(argv)).out)?.[1] ?? "?";
console.log(
  `machine: ${machine()}, ${(Number(memKb) / 2 ** 20).toFixed(1)} GiB RAM, criu ${await ver(
    ["criu", "--version"],
    /Version: (\S+)/,
  )}, runc ${await ver(["runc", "--version"], /runc version (\S+)/)}${
    findTool("podman") ? `, podman ${await ver(["podman", "--version"], /version (\S+)/)}` : ""
  }`,
);
console.log(`date: ${new Date().toISOString()}; runs: ${RUNS}; ${MIB} MiB, workload ${WORKLOAD}`);

const results: Record<Variant, Sample[]> = {
  cedana: [],
  runc: [],
  runc_sha: [],
  podman: [],
  podman_export: [],
};
let podmanWhy: string | null = "PODMAN=0";
let extra: Awaited<ReturnType<typeof extras>> | null = null;
const d = await startDaemon();
let failed = false;
try {
  if (PODMAN && WORKLOAD === "shm") {
    podmanWhy =
      "WORKLOAD=shm: podman bind-mounts the container's /dev/shm from a tmpfs on the host, which CRIU " +
      "treats as an external mount and leaves out of the checkpoint (0.3 MiB): not comparable";
  } else if (PODMAN) {
    podmanWhy = await podmanSetup();
    if (podmanWhy) console.error(`podman is left out: ${podmanWhy}`);
  }
  const variants: Variant[] = [
    "cedana",
    "runc",
    ...(RAW_HASH ? ["runc_sha"] as const : []),
    ...(podmanWhy ? [] : ["podman", "podman_export"] as const),
  ];
  const round = (v: Variant, mib: number) =>
    v === "cedana"
      ? cedanaRound(d, mib)
      : v === "runc" || v === "runc_sha"
      ? runcRound(d, mib, v === "runc_sha")
      : podmanRound(mib, v === "podman_export");
  if (WARMUP) {
    console.error("warm-up (64 MiB, untimed)");
    for (const v of variants) await round(v, 64);
  }
  for (let i = 0; i < RUNS; i++) {
    const order = [...variants.slice(i % variants.length), ...variants.slice(0, i % variants.length)];
    for (const v of order) {
      const s = await round(v, MIB);
      results[v].push(s);
      console.error(
        `run ${i + 1} ${v.padEnd(13)}: dump ${s.dumpMs.toFixed(0)} ms${
          s.dumpT ? ` (daemon ${s.dumpT.total})` : ""
        }, restore ${s.restoreMs.toFixed(0)} ms${s.restoreT ? ` (daemon ${s.restoreT.total})` : ""}, ${
          (s.size / 2 ** 20).toFixed(1)
        } MiB`,
      );
    }
  }
  extra = await extras(d, MIB);
} catch (e) {
  failed = true;
  console.error(`--- daemon log (${d.dir}) ---\n${d.daemonLog.split("\n").slice(-30).join("\n")}`);
  throw e;
} finally {
  for (const id of rawIds) {
    await run(["runc", "--root", `${tmp}/runc`, "kill", id, "KILL"]);
    await run(["runc", "--root", `${tmp}/runc`, "delete", "--force", id]);
  }
  for (const c of captures) c.destroy();
  await podmanCleanup().catch((e) => console.error(`podman cleanup: ${e}`));
  await d.cleanup();
  killKeepers(d.dir);
  for (const m of mountsUnder(tmp)) {
    if ((await run(["umount", m])).code !== 0) await run(["umount", "-l", m]);
  }
  if (!KEEP) {
    if (mountsUnder(tmp).length) console.error(`still mounted under ${tmp}: not removed`);
    else Deno.removeSync(tmp, { recursive: true });
  }
  if (failed) console.error("cleaned up after the failure");
}

// ---- report ---------------------------------------------------------------------------------

const med = (xs: (number | undefined | null)[]) => {
  const v = xs.filter((x): x is number => typeof x === "number" && !Number.isNaN(x));
  return v.length ? stats(v).median : NaN;
};
const fms = (v: number) =>
  Number.isNaN(v) ? "-" : v >= 1000 ? `${(v / 1000).toFixed(2)} s` : `${v.toFixed(0)} ms`;
const fx = (a: number, b: number) => Number.isNaN(a / b) ? "-" : (a / b).toFixed(2);
const fmib = (b: number) => Number.isNaN(b) ? "-" : `${(b / 2 ** 20).toFixed(1)} MiB`;

function table(head: string[], rows: string[][]): string {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) => `| ${r.map((c, i) => c.padEnd(w[i])).join(" | ")} |`;
  return [line(head), `| ${w.map((n) => "-".repeat(n)).join(" | ")} |`, ...rows.map(line)].join("\n");
}

const rows: string[][] = [];
const spread: string[] = [];
const pairedLines: string[] = [];
for (const phase of ["dump", "restore"] as const) {
  const key = phase === "dump" ? "dumpMs" : "restoreMs";
  const tkey = phase === "dump" ? "dumpT" : "restoreT";
  const cli = med(results.cedana.map((x) => x[key]));
  const total = med(results.cedana.map((x) => x[tkey]?.total));
  const raw = med(results.runc.map((x) => x[key]));
  const rawh = med(results.runc_sha.map((x) => x[key]));
  const pl = med(results.podman.map((x) => x[key]));
  const pe = med(results.podman_export.map((x) => x[key]));
  rows.push([
    phase,
    fms(cli),
    fms(total),
    fms(raw),
    fms(rawh),
    fms(pl),
    fms(pe),
    `${fx(cli, raw)} (${cli / raw <= GOAL ? "met" : "missed"})`,
    fx(total, raw),
    fx(total, rawh),
    fx(cli, pl),
    fx(cli, pe),
  ]);
  // cedana and runc ran next to each other in every run: the median of the per-run ratios
  const paired = (other: Sample[]) =>
    fx(med(results.cedana.map((x, i) => other[i] ? x[key] / other[i][key] : NaN)), 1);
  pairedLines.push(
    `${phase}: cedana CLI / runc ${paired(results.runc)}, cedana CLI / podman ${
      paired(results.podman)
    }; daemon request ${
      fms(med(results.cedana.map((x) => phase === "dump" ? x.dumpReqMs : x.restoreReqMs)))
    }` +
      ` (timings.total ${fms(total)}, whole CLI ${fms(cli)})`,
  );
  const range = (xs: number[]) =>
    xs.length ? `${fms(Math.min(...xs))}-${fms(Math.max(...xs))}`.replace(/ ms-/, "-") : "-";
  spread.push(
    `${phase}: ` + (Object.keys(results) as Variant[]).map((v) =>
      `${v} ${range(results[v].map((x) => x[key]))}`
    )
      .join(", ") +
      `, cedana daemon total ${range(results.cedana.map((x) => x[tkey]!.total))}`,
  );
}
console.log(`\nmedians of ${RUNS}, ${MIB} MiB (${WORKLOAD}); goal cedana CLI / runc <= ${GOAL}\n`);
console.log(table(
  [
    "phase",
    "cedana CLI",
    "daemon total",
    "runc",
    "runc+sha",
    "podman",
    "podman export",
    "CLI/runc",
    "total/runc",
    "total/runc+sha",
    "CLI/podman",
    "CLI/podman export",
  ],
  rows,
));
console.log(`\nmin-max: ${spread.join("; ")}`);
console.log(`\nmedian of per-run ratios and the daemon's request time: ${pairedLines.join("; ")}`);
if (podmanWhy) console.log(`\npodman left out: ${podmanWhy}`);

const c = results.cedana;
const stat = (xs: Sample[], which: "dumpStats" | "restoreStats", k: string) =>
  fms(med(xs.map((x) => x[which]?.[k] !== undefined ? x[which]![k] / 1000 : undefined)));
const stats3 = (which: "dumpStats" | "restoreStats", k: string) =>
  [c, results.runc, results.runc_sha].map((xs) => stat(xs, which, k)).join(" / ");
const t = (k: string, tk: "dumpT" | "restoreT") => fms(med(c.map((x) => x[tk]?.[k])));
console.log(
  "\ncedana steps (medians) and CRIU's own times, cedana / runc / runc+sha (cedana reports none for runc jobs)\n",
);
const dumpKeys = ["inspect", "prepare", "hold", "gpu_detect", "criu_dump", "manifest", "commit", "total"];
console.log(table(["dump step", "median"], [
  ...dumpKeys.map((k) => [k, t(k, "dumpT")]),
  ["CRIU frozen", stats3("dumpStats", "frozenTimeUs")],
  ["CRIU memwrite", stats3("dumpStats", "memwriteTimeUs")],
]));
console.log();
console.log(table(["restore step", "median"], [
  ...["verify", "plugin_restore", "total"].map((k) => [k, t(k, "restoreT")]),
  ["CRIU restore", stats3("restoreStats", "restoreTimeUs")],
]));
console.log(
  `\ncheckpoint sizes: cedana ${fmib(med(c.map((x) => x.size)))}, runc ${
    fmib(med(results.runc.map((x) => x.size)))
  }, podman ${fmib(med(results.podman.map((x) => x.size)))}, podman export ${
    fmib(med(results.podman_export.map((x) => x.size)))
  }`,
);
if (extra) {
  console.log(
    `alone: rootfs tar (saveRootfs' command) ${fms(extra.tarMs)} for ${fmib(extra.tarBytes)}; ` +
      `cedana --version (CLI start-up) ${fms(extra.versionMs)}; runc state ${fms(extra.stateMs)}`,
  );
}
