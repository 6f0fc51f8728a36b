// Benchmark: checkpoint/restore with cedana vs raw CRIU, for a process holding random memory.
//
//   deno run -A bench/cr_bench.ts        (as root, with criu on PATH)
//
// Env: SIZES (MiB, default "64,512,2048"), RUNS (default 3), CSIZE (MiB for the compression table,
// default 512; 0 skips it), COMPRESSIONS (default "none,tar,gzip,lz4,zstd"), RAW_V4 (1: also time
// raw CRIU with -v4, as cedana passes it; default 1), RAW_HASH (1: also time raw CRIU plus cedana's
// SHA-256 work, see below; default 1), VERIFY (1: after each restore, SIGUSR1 the workload and expect
// "verify ok", untimed; default 1), WARMUP (1: one untimed 64 MiB round first; default 1),
// KEEP_TEST_DIRS=1 keeps the temp dir.
//
// For each size and run, on fresh identical processes (tests/workloads/workload.py `memory N`: own
// session, stdin /dev/null, stdout/stderr appended to a log file):
//   a. cedana: `cedana dump job JID --json`, then `cedana restore job JID --json`: wall time of the
//      whole CLI, and the daemon's timings (total and per step) with CRIU's own statistics.
//   b. raw CRIU, on a process the bench starts itself: `criu dump -t PID -D DIR -o dump.log` plus the
//      flags/externals cedana used (its manifest.json's criu.flags / criu.external), then, once the
//      PIDs are gone from /proc, `criu restore -D DIR -o restore.log -d --inherit-fd fd[3]:LOG` with
//      the log open for append as fd 3 (the log grew since the dump). Default verbosity ("raw"), and
//      with RAW_V4 also `-v4` ("raw -v4"). With RAW_HASH, "raw+sha" is the default-verbosity raw run
//      plus what cedana adds around CRIU: the dump runs with src/checkpoint/hasher.ts's DirHasher
//      following the page images (in the bench process, as in the daemon) and finishing after CRIU
//      exits; the restore hashes every image (largest first, like verifyHashes) while CRIU restores
//      and counts until both are done (cedana holds the tasks before they resume until the checksums
//      match). The plain raw round also times hashing its images alone, for scale.
//   c. for CSIZE MiB: `cedana dump job --leave-running --compression X --json` per compression, then
//      (job killed, its PIDs gone) `cedana restore job JID --path P --json`.
// Images go to the daemon's checkpoint dir (under /tmp) for all of them. The page cache stays warm;
// `sync` runs (untimed) before each timed operation so earlier writeback does not overlap it.
// Checkpoints are deleted after each round. Kills everything it started and stops the daemon.

import { spawn } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import type { DumpResult, RestoreResult } from "../src/api/types.ts";
import { DirHasher, hashFile } from "../src/checkpoint/hasher.ts";
import { readDumpStats, readRestoreStats } from "../src/criu/stats.ts";
import {
  HAVE_CRIU,
  lastTick,
  PYTHON,
  readLog,
  startWorkload,
  waitTicks,
  WORKLOAD,
} from "../tests/cr_helpers.ts";
import { waitFor } from "../tests/helpers.ts";
import { intEnv, machine, MAIN, startDaemon, stats, type TestDaemon } from "./common.ts";

const SIZES = (Deno.env.get("SIZES") ?? "64,512,2048").split(",").map(Number).filter((n) => n > 0);
const RUNS = intEnv("RUNS", 3);
const CSIZE = intEnv("CSIZE", 512);
const COMPRESSIONS = (Deno.env.get("COMPRESSIONS") ?? "none,tar,gzip,lz4,zstd").split(",");
const RAW_V4 = intEnv("RAW_V4", 1) === 1;
const RAW_HASH = intEnv("RAW_HASH", 1) === 1;
const VERIFY = intEnv("VERIFY", 1) === 1;
const WARMUP = intEnv("WARMUP", 1) === 1;
const GOAL = 1.10;

if (!HAVE_CRIU) {
  console.error("cr_bench needs root and criu on PATH");
  Deno.exit(2);
}

// ---- processes ------------------------------------------------------------------------------

// Raw `criu restore -d` leaves the restored tree without a parent; as child subreaper the bench
// adopts it and reaps it (PID 1 on this VM does not reap), so killed trees do not stay zombies.
const libc = Deno.dlopen("libc.so.6", {
  prctl: { parameters: ["i32", "u64", "u64", "u64", "u64"], result: "i32" },
  waitpid: { parameters: ["i32", "buffer", "i32"], result: "i32" },
});
libc.symbols.prctl(36, /* PR_SET_CHILD_SUBREAPER */ 1n, 0n, 0n, 0n);
const WNOHANG = 1;

/** Processes this bench started (raw workloads, restored trees, job processes): killed at the end. */
const started = new Set<number>();

function procExists(pid: number): boolean {
  try {
    Deno.statSync(`/proc/${pid}`);
    return true;
  } catch {
    return false;
  }
}

function tids(pid: number): number[] {
  try {
    return [...Deno.readDirSync(`/proc/${pid}/task`)].map((e) => Number(e.name));
  } catch {
    return [pid];
  }
}

/** Waits until none of `pids` is in /proc (reaping the ones we adopted). */
async function waitGone(pids: number[], what: string) {
  const status = new Uint8Array(4);
  await waitFor(
    () => {
      for (const p of pids) libc.symbols.waitpid(p, status, WNOHANG);
      return !pids.some(procExists);
    },
    `${what}: PIDs ${pids.join(",")} gone from /proc`,
    30_000,
  );
}

async function sync() {
  await new Deno.Command("sync").output();
}

async function run(
  argv: string[],
  opts: { env?: Record<string, string>; cwd?: string; extraFds?: number[] } = {},
): Promise<{ ms: number; code: number | null; out: string; err: string }> {
  const t0 = performance.now();
  const child = spawn(argv[0], argv.slice(1), {
    stdio: ["ignore", "pipe", "pipe", ...(opts.extraFds ?? [])],
    env: opts.env ?? Deno.env.toObject(),
    cwd: opts.cwd,
  });
  let out = "", err = "";
  child.stdout!.on("data", (b) => out += b);
  child.stderr!.on("data", (b) => err += b);
  const code = await new Promise<number | null>((res) => child.once("close", (c) => res(c)));
  return { ms: performance.now() - t0, code, out, err };
}

/** One whole CLI invocation (`deno run -A main.ts ... --json`): wall time and parsed output. */
async function cliJson<T>(d: TestDaemon, ...args: string[]): Promise<{ ms: number; data: T }> {
  const r = await run([Deno.execPath(), "run", "-A", "--quiet", MAIN, ...args, "--json"], {
    env: d.env,
    cwd: d.dir,
  });
  if (r.code !== 0) throw new Error(`cedana ${args.join(" ")} failed (${r.code}): ${r.err}${r.out}`);
  return { ms: r.ms, data: JSON.parse(r.out) as T };
}

/** Sends SIGUSR1 and expects the workload's `verify ok` (its memory checksum still matches). */
async function verifyLog(pid: number, log: string) {
  if (!VERIFY) return;
  const before = readLog(log).filter((l) => l.startsWith("verify")).length;
  Deno.kill(pid, "SIGUSR1");
  const line = await waitFor(
    () => readLog(log).filter((l) => l.startsWith("verify"))[before],
    `verify in ${log}`,
    60_000,
  );
  if (line !== "verify ok") throw new Error(`${log}: ${line}`);
}

/** After a restore: the counter goes on from where it was (and the memory checks out). */
async function assertRestored(pid: number, log: string, tickAtDump: number) {
  await waitTicks(log, tickAtDump + 2);
  const ready = readLog(log).filter((l) => l.startsWith("ready")).length;
  if (ready !== 1) throw new Error(`${log}: the workload was restarted, not restored`);
  await verifyLog(pid, log);
}

function logTail(path: string): string {
  try {
    return Deno.readTextFileSync(path).split("\n").filter((l) => /Error/.test(l)).slice(-8).join("\n");
  } catch {
    return "(no log)";
  }
}

// ---- rounds ---------------------------------------------------------------------------------

interface Sample {
  dumpMs: number;
  restoreMs: number;
  /** cedana: the daemon's step timings. */
  dumpT?: Record<string, number>;
  restoreT?: Record<string, number>;
  dumpStats?: Record<string, number> | null;
  restoreStats?: Record<string, number> | null;
  size: number;
  /** raw: bytes of dump.log + restore.log. */
  logBytes?: number;
  /** raw: SHA-256 of all its images, alone (ms). */
  hashMs?: number;
}

type CriuFlags = { flags: string[]; external: string[] };

/** CRIU flags as cedana passes them, from a manifest's criu.flags / criu.external. */
function criuFlags(m: { criu: { flags: Record<string, boolean>; external: string[] } }): CriuFlags {
  const names: Record<string, string> = {
    shellJob: "--shell-job",
    tcpEstablished: "--tcp-established",
    fileLocks: "--file-locks",
    extUnixSk: "--ext-unix-sk",
    linkRemap: "--link-remap",
  };
  return {
    flags: Object.entries(m.criu.flags).filter(([, v]) => v).map(([k]) => names[k]).filter(Boolean),
    external: m.criu.external ?? [],
  };
}

let seq = 0;

async function cedanaRound(d: TestDaemon, mib: number): Promise<Sample & { flags: CriuFlags }> {
  const jid = `c${mib}-${++seq}`;
  const job = await startWorkload(d, jid, "memory", String(mib));
  const log = job.log!;
  const pid = job.pid!;
  started.add(pid);
  const pids = tids(pid);
  await sync();
  const tick = lastTick(readLog(log));
  const dump = await cliJson<DumpResult>(d, "dump", "job", jid);
  const cp = dump.data.checkpoint;
  const manifest = JSON.parse(Deno.readTextFileSync(`${cp.path}/manifest.json`));
  await waitGone(pids, `cedana dump of ${jid}`);
  started.delete(pid);
  await sync();
  const restore = await cliJson<RestoreResult>(d, "restore", "job", jid);
  const rpid = restore.data.job.pid!;
  started.add(rpid);
  if (restore.data.pidNamespace) throw new Error(`${jid} was restored in a new PID namespace`);
  await assertRestored(rpid, log, tick);
  await d.ok("job", "kill", jid, "--signal", "KILL");
  await waitGone(tids(rpid), `killing ${jid}`);
  started.delete(rpid);
  await d.ok("job", "checkpoint", "delete", cp.id);
  await d.ok("job", "delete", jid);
  Deno.removeSync(log);
  return {
    dumpMs: dump.ms,
    restoreMs: restore.ms,
    dumpT: dump.data.timings,
    restoreT: restore.data.timings,
    dumpStats: dump.data.criuStats as Record<string, number> | null,
    restoreStats: restore.data.criuStats as Record<string, number> | null,
    size: cp.size,
    flags: criuFlags(manifest),
  };
}

/** Starts the workload like a cedana log-mode job: own session, stdin /dev/null, output appended. */
async function startRaw(d: TestDaemon, mib: number, log: string) {
  const fd = openSync(log, "a", 0o644);
  const child = spawn(PYTHON, [WORKLOAD, "memory", String(mib)], {
    detached: true,
    stdio: ["ignore", fd, fd],
    cwd: d.dir,
    env: Deno.env.toObject(),
  });
  closeSync(fd);
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  started.add(child.pid!);
  await waitTicks(log, 2, 60_000);
  return { pid: child.pid!, exited };
}

type RawMode = "raw" | "raw4" | "rawh";

async function rawRound(d: TestDaemon, mib: number, mode: RawMode, cf: CriuFlags): Promise<Sample> {
  const name = `${mode}-${mib}-${++seq}`;
  const log = `${d.dir}/logs/${name}.log`;
  const dir = `${d.dir}/checkpoints/${name}`;
  const { pid, exited } = await startRaw(d, mib, log);
  const pids = tids(pid);
  Deno.mkdirSync(dir);
  const common = [
    "-D",
    dir,
    ...(mode === "raw4" ? ["-v4"] : []),
    ...cf.flags,
    ...cf.external.flatMap((e) => ["--external", e]),
  ];
  await sync();
  const tick = lastTick(readLog(log));

  const t0 = performance.now();
  const hasher = mode === "rawh" ? new DirHasher(dir, new Set(["dump.log"])) : null;
  hasher?.start();
  const dump = await run(["criu", "dump", "-t", String(pid), "-o", "dump.log", ...common]);
  if (dump.code !== 0) throw new Error(`raw criu dump failed (${dump.code}): ${logTail(`${dir}/dump.log`)}`);
  if (hasher) await hasher.finish();
  const dumpMs = performance.now() - t0;

  await exited; // our child: reaped by Deno
  started.delete(pid);
  await waitGone(pids, `raw dump of ${name}`);
  const images = [...Deno.readDirSync(dir)].map((e) => `${dir}/${e.name}`).filter((f) => !f.endsWith(".log"))
    .map((f) => ({ f, size: Deno.statSync(f).size })).sort((a, b) => b.size - a.size);
  const hashAll = async () => {
    for (const { f } of images) await hashFile(f);
  };
  await sync();

  const logFd = openSync(log, "a");
  const t1 = performance.now();
  const hashed = mode === "rawh" ? hashAll() : null;
  const restore = await run(
    ["criu", "restore", "-o", "restore.log", "-d", ...common, "--inherit-fd", `fd[3]:${log.slice(1)}`],
    { extraFds: [logFd] },
  );
  closeSync(logFd);
  if (restore.code !== 0) {
    throw new Error(`raw criu restore failed (${restore.code}): ${logTail(`${dir}/restore.log`)}`);
  }
  started.add(pid);
  if (hashed) await hashed;
  const restoreMs = performance.now() - t1;

  await assertRestored(pid, log, tick);
  let hashMs: number | undefined;
  if (mode === "raw") {
    const t = performance.now();
    await hashAll();
    hashMs = performance.now() - t;
  }
  const s: Sample = {
    dumpMs,
    restoreMs,
    dumpStats: readDumpStats(dir) as unknown as Record<string, number> | null,
    restoreStats: readRestoreStats(dir) as unknown as Record<string, number> | null,
    size: images.reduce((a, i) => a + i.size, 0),
    logBytes: Deno.statSync(`${dir}/dump.log`).size + Deno.statSync(`${dir}/restore.log`).size,
    hashMs,
  };
  Deno.kill(pid, "SIGKILL");
  await waitGone(tids(pid).concat(pids), `killing ${name}`);
  started.delete(pid);
  Deno.removeSync(dir, { recursive: true });
  Deno.removeSync(log);
  return s;
}

interface CSample {
  dumpMs: number;
  restoreMs: number;
  dumpT: Record<string, number>;
  restoreT: Record<string, number>;
  size: number;
}

async function compressionRounds(d: TestDaemon, mib: number): Promise<Map<string, CSample[]>> {
  const out = new Map<string, CSample[]>(COMPRESSIONS.map((c) => [c, []]));
  const jid = `z${mib}`;
  const job = await startWorkload(d, jid, "memory", String(mib));
  const log = job.log!;
  let pid = job.pid!;
  started.add(pid);
  for (let r = 0; r < RUNS; r++) {
    for (const c of COMPRESSIONS) {
      await sync();
      const dump = await cliJson<DumpResult>(d, "dump", "job", jid, "--leave-running", "--compression", c);
      const cp = dump.data.checkpoint;
      const tick = lastTick(readLog(log));
      await d.ok("job", "kill", jid, "--signal", "KILL");
      await waitGone(tids(pid), `killing ${jid}`);
      started.delete(pid);
      await waitFor(async () => {
        const j = (await d.json<{ jid: string; status: string }[]>("ps")).find((j) => j.jid === jid);
        return j?.status === "halted";
      }, `${jid} halted`);
      await sync();
      const restore = await cliJson<RestoreResult>(d, "restore", "job", jid, "--path", cp.path);
      pid = restore.data.job.pid!;
      started.add(pid);
      if (restore.data.pidNamespace) throw new Error(`${jid} was restored in a new PID namespace`);
      await assertRestored(pid, log, tick);
      await d.ok("job", "checkpoint", "delete", cp.id);
      out.get(c)!.push({
        dumpMs: dump.ms,
        restoreMs: restore.ms,
        dumpT: dump.data.timings,
        restoreT: restore.data.timings,
        size: cp.size,
      });
      console.error(
        `  ${c.padEnd(5)} run ${r + 1}: ${(cp.size / 2 ** 20).toFixed(1)} MiB, dump ${
          dump.ms.toFixed(0)
        } ms, restore ${restore.ms.toFixed(0)} ms`,
      );
    }
  }
  await d.ok("job", "kill", jid, "--signal", "KILL");
  await waitGone(tids(pid), `killing ${jid}`);
  started.delete(pid);
  return out;
}

// ---- main -----------------------------------------------------------------------------------

const dfOut = new TextDecoder().decode(
  (await new Deno.Command("df", { args: ["-B1", "--output=avail", "/tmp"] }).output()).stdout,
);
const free = Number(dfOut.trim().split("\n").pop());
const need = (Math.max(...SIZES, CSIZE) * 2 + 1024) * 2 ** 20; // one checkpoint (+ unpacked copy) at a time
if (!(free >= need)) {
  console.error(`not enough space on /tmp: ${free >> 20} MiB free, ${need >> 20} MiB needed`);
  Deno.exit(1);
}

const memKb = /MemTotal:\s*(\d+)/.exec(Deno.readTextFileSync("/proc/meminfo"))![1];
const criuV = /Version: (\S+)/.exec((await run(["criu", "--version"])).out)?.[1];
console.log(`machine: ${machine()}, ${(Number(memKb) / 2 ** 20).toFixed(1)} GiB RAM, criu ${criuV}`);
console.log(
  `date: ${new Date().toISOString()}; runs: ${RUNS}; sizes: ${SIZES.join(", ")} MiB; /tmp free: ${
    (free / 2 ** 30).toFixed(0)
  } GiB`,
);

type Variant = "ced" | RawMode;
const variants: Variant[] = [
  "ced",
  "raw",
  ...(RAW_V4 ? ["raw4" as const] : []),
  ...(RAW_HASH ? ["rawh" as const] : []),
];
const results = new Map<number, { s: Record<Variant, Sample[]>; flags: CriuFlags }>();
let comp: Map<string, CSample[]> | null = null;
const d = await startDaemon();
let failed = false;
try {
  if (WARMUP) {
    console.error("warm-up (64 MiB, untimed)");
    const w = await cedanaRound(d, 64);
    await rawRound(d, 64, "raw", w.flags);
  }
  for (const size of SIZES) {
    const r = {
      s: { ced: [], raw: [], raw4: [], rawh: [] } as Record<Variant, Sample[]>,
      flags: null! as CriuFlags,
    };
    results.set(size, r);
    for (let i = 0; i < RUNS; i++) {
      // Rotate the order so that no variant always goes first; run 1 starts with cedana, whose
      // manifest gives the CRIU flags for the raw runs.
      const order = [...variants.slice(i % variants.length), ...variants.slice(0, i % variants.length)];
      for (const v of order) {
        const s = v === "ced" ? await cedanaRound(d, size) : await rawRound(d, size, v, r.flags);
        if ("flags" in s) r.flags ??= s.flags as CriuFlags;
        r.s[v].push(s);
        console.error(
          `${size} MiB run ${i + 1} ${v.padEnd(4)}: dump ${s.dumpMs.toFixed(0)} ms${
            s.dumpT ? ` (daemon ${s.dumpT.total})` : ""
          }, restore ${s.restoreMs.toFixed(0)} ms${s.restoreT ? ` (daemon ${s.restoreT.total})` : ""}${
            s.hashMs ? `, sha256 alone ${s.hashMs.toFixed(0)} ms` : ""
          }`,
        );
      }
    }
  }
  if (CSIZE > 0) {
    console.error(`compression (${CSIZE} MiB)`);
    comp = await compressionRounds(d, CSIZE);
  }
} catch (e) {
  failed = true;
  console.error(`--- daemon log (${d.dir}) ---\n${d.daemonLog.split("\n").slice(-30).join("\n")}`);
  throw e;
} finally {
  for (const pid of started) {
    try {
      Deno.kill(pid, "SIGKILL");
    } catch { /* gone */ }
  }
  await waitGone([...started], "cleanup").catch(() => {});
  await d.cleanup();
  libc.close();
  if (failed) console.error("cleaned up after the failure");
}

// ---- report ---------------------------------------------------------------------------------

const med = (xs: (number | undefined)[]) => {
  const v = xs.filter((x): x is number => typeof x === "number" && !Number.isNaN(x));
  return v.length ? stats(v).median : NaN;
};
const fms = (v: number) =>
  Number.isNaN(v) ? "-" : v >= 1000 ? `${(v / 1000).toFixed(2)} s` : `${v.toFixed(0)} ms`;
const fx = (a: number, b: number) => Number.isNaN(a / b) ? "-" : (a / b).toFixed(2);
const fmib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;

function table(head: string[], rows: string[][]): string {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) => `| ${r.map((c, i) => c.padEnd(w[i])).join(" | ")} |`;
  return [line(head), `| ${w.map((n) => "-".repeat(n)).join(" | ")} |`, ...rows.map(line)].join("\n");
}

const flags = [...results.values()][0]?.flags;
const flagText = flags && (flags.flags.length || flags.external.length)
  ? ` ${[...flags.flags, ...flags.external.map((e) => `--external ${e}`)].join(" ")}`
  : "";
console.log(`\nflags cedana used (from manifest.json), also given to raw CRIU:${flagText || " none"}`);

for (const phase of ["dump", "restore"] as const) {
  const key = phase === "dump" ? "dumpMs" : "restoreMs";
  const tkey = phase === "dump" ? "dumpT" : "restoreT";
  const rows: string[][] = [];
  for (const [size, { s }] of results) {
    const cli = med(s.ced.map((x) => x[key]));
    const total = med(s.ced.map((x) => x[tkey]!.total));
    const raw = med(s.raw.map((x) => x[key]));
    const goal = size < 512 ? "" : cli / raw <= GOAL ? " (met)" : " (missed)";
    rows.push([
      `${size} MiB`,
      fms(cli),
      fms(total),
      fms(raw),
      fms(med(s.raw4.map((x) => x[key]))),
      fms(med(s.rawh.map((x) => x[key]))),
      fx(cli, raw) + goal,
      fx(total, raw),
      fx(total, med(s.raw4.map((x) => x[key]))),
      fx(total, med(s.rawh.map((x) => x[key]))),
    ]);
  }
  console.log(`\n${phase} (medians of ${RUNS}; goal cedana CLI / raw <= ${GOAL} from 512 MiB)\n`);
  console.log(table(
    [
      "size",
      "cedana CLI",
      "daemon total",
      "raw",
      "raw -v4",
      "raw+sha",
      "CLI/raw",
      "total/raw",
      "total/raw -v4",
      "total/raw+sha",
    ],
    rows,
  ));
}

const statCol = (s: Record<Variant, Sample[]>, which: "dumpStats" | "restoreStats", k: string) =>
  variants.map((v) =>
    fms(med(s[v].map((x) => x[which]?.[k] !== undefined ? x[which]![k] / 1000 : undefined)))
  )
    .join(" / ");
const dumpSteps: string[][] = [], restoreSteps: string[][] = [];
for (const [size, { s }] of results) {
  const t = (tk: "dumpT" | "restoreT", k: string) => fms(med(s.ced.map((x) => x[tk]![k])));
  dumpSteps.push([
    `${size} MiB`,
    t("dumpT", "inspect"),
    t("dumpT", "criu_dump"),
    t("dumpT", "manifest"),
    t("dumpT", "commit"),
    t("dumpT", "total"),
    statCol(s, "dumpStats", "frozenTimeUs"),
    statCol(s, "dumpStats", "memwriteTimeUs"),
    fmib(med(s.ced.map((x) => x.size))),
  ]);
  restoreSteps.push([
    `${size} MiB`,
    t("restoreT", "verify"),
    t("restoreT", "pids"),
    t("restoreT", "io"),
    t("restoreT", "criu_restore"),
    t("restoreT", "total"),
    statCol(s, "restoreStats", "restoreTimeUs"),
    fms(med(s.raw.map((x) => x.hashMs))),
    `${(med(s.raw.map((x) => x.logBytes)) / 1024).toFixed(0)} / ${
      (med(s.raw4.map((x) => x.logBytes)) / 1024).toFixed(0)
    } KiB`,
  ]);
}
const vs = variants.map((v) => ({ ced: "cedana", raw: "raw", raw4: "raw -v4", rawh: "raw+sha" })[v]).join(
  " / ",
);
console.log(`\ncedana dump steps (medians); CRIU's own stats: ${vs}\n`);
console.log(table(
  ["size", "inspect", "criu_dump", "manifest", "commit", "total", "CRIU frozen", "CRIU memwrite", "images"],
  dumpSteps,
));
console.log(`\ncedana restore steps (medians); CRIU's own stats: ${vs}\n`);
console.log(table(
  [
    "size",
    "verify",
    "pids",
    "io",
    "criu_restore",
    "total",
    "CRIU restore time",
    "sha256 of images alone",
    "raw logs default / -v4",
  ],
  restoreSteps,
));

if (comp) {
  const rows: string[][] = [];
  for (const [c, xs] of comp) {
    const t = (k: string) => fms(med(xs.map((s) => s.dumpT[k])));
    const rt = (k: string) => fms(med(xs.map((s) => s.restoreT[k])));
    rows.push([
      c,
      fmib(med(xs.map((s) => s.size))),
      fms(med(xs.map((s) => s.dumpMs))),
      t("total"),
      t("compress"),
      fms(med(xs.map((s) => s.restoreMs))),
      rt("total"),
      rt("unpack"),
      rt("criu_restore"),
    ]);
  }
  console.log(
    `\ncompression: ${CSIZE} MiB of random data, dump --leave-running, restore job --path (medians of ${RUNS})\n`,
  );
  console.log(table(
    [
      "compression",
      "size",
      "dump CLI",
      "dump total",
      "compress",
      "restore CLI",
      "restore total",
      "unpack",
      "criu_restore",
    ],
    rows,
  ));
}
