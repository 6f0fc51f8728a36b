// Benchmark: checkpoint/restore with cedana vs raw CRIU, for a process holding random memory.
//
//   deno run -A bench/cr_bench.ts        (as root, with criu on PATH)
//
// Env: SIZES (MiB, default "64,512,2048"), RUNS (default 3), CSIZE (MiB for the compression table,
// default 512; 0 skips it), COMPRESSIONS (default "none,tar,gzip,lz4,zstd"), RAW_V4 (1: also time
// raw CRIU with -v4, like cedana; default 1), VERIFY (1: after each restore, SIGUSR1 the workload and
// expect "verify ok", untimed; default 1), WARMUP (1: one untimed 64 MiB round first; default 1),
// KEEP_TEST_DIRS=1 keeps the temp dir.
//
// For each size and run, on fresh identical processes (tests/workloads/workload.py `memory N`,
// stdout/stderr appended to a log file, stdin /dev/null, own session):
//   a. cedana: `cedana dump job JID --json` and `cedana restore job JID --json`: wall time of the whole
//      CLI and the daemon's timings (total and per step, CRIU's own statistics);
//   b. raw CRIU on a process the bench starts itself: `criu dump -t PID -D DIR -o dump.log` with the
//      flags/externals cedana used (from the checkpoint's manifest.json), then, once the PIDs are gone
//      from /proc, `criu restore -D DIR -o restore.log -d --inherit-fd fd[3]:LOG` with the log open
//      for append as fd 3. Default verbosity, and with RAW_V4 also `-v4` (what cedana passes).
//   c. for CSIZE MiB: `cedana dump job --leave-running --compression X --json` per compression, then
//      (job killed, PIDs free) `cedana restore job JID --path P --json`.
// Images go to the daemon's checkpoint dir (under /tmp) for both. The page cache is left warm; `sync`
// runs (untimed) before every timed operation so earlier writeback does not overlap it. Checkpoints
// are deleted after each round. Kills everything it started and stops the daemon at the end.

import { spawn } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import type { DumpResult, RestoreResult } from "../src/api/types.ts";
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
import { sleep, waitFor } from "../tests/helpers.ts";
import { intEnv, machine, MAIN, startDaemon, stats, type TestDaemon } from "./common.ts";

const SIZES = (Deno.env.get("SIZES") ?? "64,512,2048").split(",").map(Number).filter((n) => n > 0);
const RUNS = intEnv("RUNS", 3);
const CSIZE = intEnv("CSIZE", 512);
const COMPRESSIONS = (Deno.env.get("COMPRESSIONS") ?? "none,tar,gzip,lz4,zstd").split(",");
const RAW_V4 = intEnv("RAW_V4", 1) === 1;
const VERIFY = intEnv("VERIFY", 1) === 1;
const WARMUP = intEnv("WARMUP", 1) === 1;
const GOAL = 1.10;

if (!HAVE_CRIU) {
  console.error("cr_bench needs root and criu on PATH");
  Deno.exit(2);
}

// ---- processes ------------------------------------------------------------------------------

// Raw `criu restore -d` leaves the restored tree without a parent; as child subreaper the bench
// adopts it and reaps it (PID 1 here does not reap), so killed trees do not linger as zombies.
const libc = Deno.dlopen("libc.so.6", {
  prctl: { parameters: ["i32", "u64", "u64", "u64", "u64"], result: "i32" },
  waitpid: { parameters: ["i32", "buffer", "i32"], result: "i32" },
});
libc.symbols.prctl(36, /* PR_SET_CHILD_SUBREAPER */ 1n, 0n, 0n, 0n);
const WNOHANG = 1;

const started = new Set<number>(); // raw processes (and restored trees) to kill at the end

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

/** Waits until none of `pids` is in /proc (reaping adopted ones with waitpid). */
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

/** After a restore: the counter goes on (and the memory checks out). */
async function assertRestored(pid: number, log: string, tickAtDump: number) {
  await waitTicks(log, tickAtDump + 2);
  const ready = readLog(log).filter((l) => l.startsWith("ready")).length;
  if (ready !== 1) throw new Error(`${log}: the workload was restarted, not restored`);
  await verifyLog(pid, log);
}

// ---- measurements ---------------------------------------------------------------------------

interface Sample {
  dumpMs: number;
  restoreMs: number;
  dumpT?: Record<string, number>;
  restoreT?: Record<string, number>;
  dumpStats?: Record<string, number> | null;
  restoreStats?: Record<string, number> | null;
  size: number;
}

type CriuFlags = { flags: string[]; external: string[] };

/** CRIU flags as cedana passes them, from a manifest's criu.flags / criu.external. */
function criuFlags(manifest: { criu: { flags: Record<string, boolean>; external: string[] } }): CriuFlags {
  const names: Record<string, string> = {
    shellJob: "--shell-job",
    tcpEstablished: "--tcp-established",
    fileLocks: "--file-locks",
    extUnixSk: "--ext-unix-sk",
    linkRemap: "--link-remap",
  };
  return {
    flags: Object.entries(manifest.criu.flags).filter(([, v]) => v).map(([k]) => names[k]).filter(Boolean),
    external: manifest.criu.external ?? [],
  };
}

let seq = 0;

async function cedanaRound(d: TestDaemon, mib: number): Promise<Sample & { manifest: CriuFlags }> {
  const jid = `c${mib}-${++seq}`;
  const job = await startWorkload(d, jid, "memory", String(mib));
  const log = job.log!;
  const pid = job.pid!;
  const pids = tids(pid);
  await sync();
  const tick = lastTick(readLog(log));
  const dump = await cliJson<DumpResult>(d, "dump", "job", jid);
  const cp = dump.data.checkpoint;
  const manifest = JSON.parse(Deno.readTextFileSync(`${cp.path}/manifest.json`));
  await waitGone(pids, `cedana dump of ${jid}`);
  await sync();
  const restore = await cliJson<RestoreResult>(d, "restore", "job", jid);
  if (restore.data.pidNamespace) throw new Error(`${jid} was restored in a new PID namespace`);
  const rpid = restore.data.job.pid!;
  await assertRestored(rpid, log, tick);
  await d.ok("job", "kill", jid, "--signal", "KILL");
  await waitGone(tids(rpid), `killing ${jid}`);
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
    manifest: criuFlags(manifest),
  };
}

/** Starts the workload like a cedana log-mode job: own session, stdin /dev/null, output appended. */
async function startRaw(
  d: TestDaemon,
  mib: number,
  log: string,
): Promise<{ pid: number; exited: Promise<void> }> {
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

async function rawRound(d: TestDaemon, mib: number, v4: boolean, cf: CriuFlags): Promise<Sample> {
  const name = `raw-${mib}-${++seq}${v4 ? "-v4" : ""}`;
  const log = `${d.dir}/logs/${name}.log`;
  const dir = `${d.dir}/checkpoints/${name}`;
  const { pid, exited } = await startRaw(d, mib, log);
  const pids = tids(pid);
  Deno.mkdirSync(dir);
  const common = [
    "-D",
    dir,
    ...(v4 ? ["-v4"] : []),
    ...cf.flags,
    ...cf.external.flatMap((e) => ["--external", e]),
  ];
  await sync();
  const tick = lastTick(readLog(log));
  const dump = await run(["criu", "dump", "-t", String(pid), "-o", "dump.log", ...common]);
  if (dump.code !== 0) throw new Error(`raw criu dump failed (${dump.code}): ${tail(`${dir}/dump.log`)}`);
  await exited; // our child: reaped by Deno
  started.delete(pid);
  await waitGone(pids, `raw dump of ${name}`);
  let size = 0;
  for (const e of Deno.readDirSync(dir)) size += Deno.statSync(`${dir}/${e.name}`).size;
  await sync();
  const logFd = openSync(log, "a");
  const restore = await run(
    [
      "criu",
      "restore",
      "-o",
      "restore.log",
      "-d",
      ...common,
      "--inherit-fd",
      `fd[3]:${log.replace(/^\//, "")}`,
    ],
    { extraFds: [logFd] },
  );
  closeSync(logFd);
  if (restore.code !== 0) {
    throw new Error(`raw criu restore failed (${restore.code}): ${tail(`${dir}/restore.log`)}`);
  }
  started.add(pid);
  await assertRestored(pid, log, tick);
  const s: Sample = {
    dumpMs: dump.ms,
    restoreMs: restore.ms,
    dumpStats: readDumpStats(dir) as unknown as Record<string, number> | null,
    restoreStats: readRestoreStats(dir) as unknown as Record<string, number> | null,
    size,
  };
  Deno.kill(pid, "SIGKILL");
  await waitGone(tids(pid).concat(pids), `killing ${name}`);
  started.delete(pid);
  Deno.removeSync(dir, { recursive: true });
  Deno.removeSync(log);
  return s;
}

function tail(path: string): string {
  try {
    return Deno.readTextFileSync(path).split("\n").filter((l) => /Error|error/.test(l)).slice(-8).join("\n");
  } catch {
    return "(no log)";
  }
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
  for (let r = 0; r < RUNS; r++) {
    for (const c of COMPRESSIONS) {
      await sync();
      const dump = await cliJson<DumpResult>(d, "dump", "job", jid, "--leave-running", "--compression", c);
      const cp = dump.data.checkpoint;
      const tick = lastTick(readLog(log));
      await d.ok("job", "kill", jid, "--signal", "KILL");
      await waitGone(tids(pid), `killing ${jid}`);
      await waitFor(async () => {
        const j = (await d.json<{ jid: string; status: string }[]>("ps")).find((j) => j.jid === jid);
        return j?.status === "halted";
      }, `${jid} halted`);
      await sync();
      const restore = await cliJson<RestoreResult>(d, "restore", "job", jid, "--path", cp.path);
      if (restore.data.pidNamespace) throw new Error(`${jid} was restored in a new PID namespace`);
      pid = restore.data.job.pid!;
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
  return out;
}

// ---- report ---------------------------------------------------------------------------------

const med = (xs: (number | undefined)[]) => {
  const v = xs.filter((x): x is number => typeof x === "number");
  return v.length ? stats(v).median : NaN;
};
const fms = (v: number) =>
  Number.isNaN(v) ? "-" : v >= 1000 ? `${(v / 1000).toFixed(2)} s` : `${v.toFixed(0)} ms`;
const fratio = (a: number, b: number) => (a / b).toFixed(2);
const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;

function table(head: string[], rows: string[][]): string {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) => `| ${r.map((c, i) => c.padEnd(w[i])).join(" | ")} |`;
  return [line(head), `| ${w.map((n) => "-".repeat(n)).join(" | ")} |`, ...rows.map(line)].join("\n");
}

// ---- main -----------------------------------------------------------------------------------

const df = new TextDecoder().decode(
  (await new Deno.Command("df", { args: ["-B1", "--output=avail", "/tmp"] }).output()).stdout,
).trim().split("\n").pop()!;
const need = (Math.max(...SIZES, CSIZE) * 2 + 1024) * 2 ** 20; // images + a second copy while unpacking
if (Number(df) < need) {
  console.error(`not enough space on /tmp: ${mib(Number(df))} free, ${mib(need)} needed`);
  Deno.exit(1);
}

console.log(
  `machine: ${machine()}, ${
    (await Deno.readTextFile("/proc/meminfo")).match(/MemTotal:\s*(\d+)/)![1]
  } kB RAM`,
);
const criuV = (await run(["criu", "--version"])).out.match(/Version: (\S+)/)?.[1];
console.log(
  `criu: ${criuV}; date: ${new Date().toISOString()}; runs: ${RUNS}; sizes: ${SIZES.join(", ")} MiB`,
);

const d = await startDaemon();
const results = new Map<number, { ced: Sample[]; raw: Sample[]; raw4: Sample[]; flags: CriuFlags }>();
let comp: Map<string, CSample[]> | null = null;
try {
  if (WARMUP) {
    console.error("warm-up (64 MiB, untimed)");
    const w = await cedanaRound(d, 64);
    await rawRound(d, 64, false, w.manifest);
  }
  for (const size of SIZES) {
    const r = {
      ced: [] as Sample[],
      raw: [] as Sample[],
      raw4: [] as Sample[],
      flags: { flags: [], external: [] } as CriuFlags,
    };
    results.set(size, r);
    for (let i = 0; i < RUNS; i++) {
      // Rotate the order so no variant always goes first.
      const order = ["ced", "raw", ...(RAW_V4 ? ["raw4"] : [])];
      for (let k = 0; k < i % order.length; k++) order.push(order.shift()!);
      if (i === 0) order.splice(order.indexOf("ced"), 1), order.unshift("ced"); // flags come from cedana's manifest
      for (const v of order) {
        if (v === "ced") {
          const s = await cedanaRound(d, size);
          r.flags = s.manifest;
          r.ced.push(s);
        } else r[v as "raw" | "raw4"].push(await rawRound(d, size, v === "raw4", r.flags));
        const s = r[v as "ced"].at(-1)!;
        console.error(
          `${size} MiB run ${i + 1} ${v.padEnd(4)}: dump ${s.dumpMs.toFixed(0)} ms${
            s.dumpT ? ` (daemon ${s.dumpT.total})` : ""
          }, restore ${s.restoreMs.toFixed(0)} ms${s.restoreT ? ` (daemon ${s.restoreT.total})` : ""}`,
        );
      }
    }
  }
  if (CSIZE > 0) {
    console.error(`compression (${CSIZE} MiB)`);
    comp = await compressionRounds(d, CSIZE);
  }
} finally {
  for (const pid of started) {
    try {
      Deno.kill(pid, "SIGKILL");
    } catch { /* gone */ }
  }
  await waitGone([...started], "cleanup").catch(() => {});
  await d.cleanup();
}

const n = RUNS;
const dumpRows: string[][] = [], restoreRows: string[][] = [];
for (const [size, r] of results) {
  const cw = med(r.ced.map((s) => s.dumpMs)), ct = med(r.ced.map((s) => s.dumpT!.total));
  const rw = med(r.raw.map((s) => s.dumpMs)), r4 = med(r.raw4.map((s) => s.dumpMs));
  const ok = (x: number) => size < 512 ? "" : x <= GOAL ? "met" : "missed";
  dumpRows.push([
    `${size} MiB`,
    fms(cw),
    fms(ct),
    fms(rw),
    fms(r4),
    `${fratio(cw, rw)} ${ok(cw / rw)}`.trim(),
    fratio(ct, rw),
    fratio(ct, r4),
  ]);
  const cwr = med(r.ced.map((s) => s.restoreMs)), ctr = med(r.ced.map((s) => s.restoreT!.total));
  const rwr = med(r.raw.map((s) => s.restoreMs)), r4r = med(r.raw4.map((s) => s.restoreMs));
  restoreRows.push([
    `${size} MiB`,
    fms(cwr),
    fms(ctr),
    fms(rwr),
    fms(r4r),
    `${fratio(cwr, rwr)} ${ok(cwr / rwr)}`.trim(),
    fratio(ctr, rwr),
    fratio(ctr, r4r),
  ]);
}
const flagsUsed = [...results.values()][0]?.flags;
console.log(
  `\n### Dump (medians of ${n}; raw = \`criu dump -t PID -D DIR -o dump.log${
    flagsUsed?.flags.length ? " " + flagsUsed.flags.join(" ") : ""
  }\`)\n`,
);
console.log(table(
  ["size", "cedana CLI", "daemon total", "raw criu", "raw -v4", "CLI/raw", "total/raw", "total/raw -v4"],
  dumpRows,
));
console.log(
  `\n### Restore (medians of ${n}; raw = \`criu restore -D DIR -o restore.log -d --inherit-fd fd[3]:LOG\`)\n`,
);
console.log(table(
  ["size", "cedana CLI", "daemon total", "raw criu", "raw -v4", "CLI/raw", "total/raw", "total/raw -v4"],
  restoreRows,
));

// Where cedana's time goes, next to CRIU's own statistics for both.
const stepRows: string[][] = [];
for (const [size, r] of results) {
  const t = (k: string) => fms(med(r.ced.map((s) => s.dumpT![k])));
  const st = (xs: Sample[], k: string) =>
    fms(med(xs.map((s) => s.dumpStats?.[k] !== undefined ? s.dumpStats[k] / 1000 : undefined)));
  stepRows.push([
    `${size} MiB`,
    t("inspect"),
    t("prepare"),
    t("criu_dump"),
    t("manifest"),
    t("commit"),
    t("total"),
    `${st(r.ced, "frozenTimeUs")} / ${st(r.raw, "frozenTimeUs")} / ${st(r.raw4, "frozenTimeUs")}`,
    `${st(r.ced, "memwriteTimeUs")} / ${st(r.raw, "memwriteTimeUs")} / ${st(r.raw4, "memwriteTimeUs")}`,
    mib(med(r.ced.map((s) => s.size))),
  ]);
}
console.log(`\n### Dump steps (cedana, medians; CRIU stats cedana / raw / raw -v4)\n`);
console.log(table(
  [
    "size",
    "inspect",
    "prepare",
    "criu_dump",
    "manifest",
    "commit",
    "total",
    "CRIU frozen",
    "CRIU memwrite",
    "images",
  ],
  stepRows,
));
const rstepRows: string[][] = [];
for (const [size, r] of results) {
  const t = (k: string) => fms(med(r.ced.map((s) => s.restoreT![k])));
  const st = (xs: Sample[], k: string) =>
    fms(med(xs.map((s) => s.restoreStats?.[k] !== undefined ? s.restoreStats[k] / 1000 : undefined)));
  rstepRows.push([
    `${size} MiB`,
    t("verify"),
    t("pids"),
    t("io"),
    t("criu_restore"),
    t("total"),
    `${st(r.ced, "forkingTimeUs")} / ${st(r.raw, "forkingTimeUs")} / ${st(r.raw4, "forkingTimeUs")}`,
    `${st(r.ced, "restoreTimeUs")} / ${st(r.raw, "restoreTimeUs")} / ${st(r.raw4, "restoreTimeUs")}`,
  ]);
}
console.log(`\n### Restore steps (cedana, medians; CRIU stats cedana / raw / raw -v4)\n`);
console.log(table(
  ["size", "verify", "pids", "io", "criu_restore", "total", "CRIU forking", "CRIU restore"],
  rstepRows,
));

if (comp) {
  const rows: string[][] = [];
  for (const [c, xs] of comp) {
    const t = (k: string) => fms(med(xs.map((s) => s.dumpT[k])));
    const rt = (k: string) => fms(med(xs.map((s) => s.restoreT[k])));
    rows.push([
      c,
      mib(med(xs.map((s) => s.size))),
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
    `\n### Compression (${CSIZE} MiB of random data, dump --leave-running, restore --path; medians of ${n})\n`,
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
await sleep(0);
libc.close();
