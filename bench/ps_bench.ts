// Benchmark: `cedana ps` with 1,000 jobs in the DB (goal: < 150 ms wall for the whole CLI).
//
//   deno run -A bench/ps_bench.ts
//
// Env: JOBS (default 1000), RUNNING (of those, `sleep 600` jobs; default 200), RUNS (default 20),
// CONCURRENCY (POSTs in flight while populating; default 4), KEEP_TEST_DIRS=1 keeps the temp dir.
//
// Starts its own daemon on a temp dir (like tests/helpers.ts), fills its DB through the API with
// RUNNING `sleep 600` jobs and JOBS-RUNNING `true` jobs (halted), then measures
//   1. GET /v1/jobs over the socket from this process (keep-alive, fresh connection with the CLI's
//      URL host "cedana" and with "127.0.0.1"),
//   2. the whole CLI `deno run -A main.ts ps` (and `--version` / `ps` on an empty DB for context),
//   3. an in-process breakdown of the daemon's handler (DB read, /proc reads, JSON) and the CLI's
//      rendering, on the same DB file.
// Kills every job and stops the daemon at the end.

import type { Job } from "../src/api/types.ts";
import { JOB_HEADER, jobRow, table } from "../src/commands/render.ts";
import { defaults } from "../src/config/mod.ts";
import { JobDb } from "../src/daemon/db.ts";
import { JobService } from "../src/daemon/job_service.ts";
import { Logger } from "../src/daemon/log.ts";
import { readStat, startTimeToDate, statusWord } from "../src/proc/mod.ts";
import { Api, intEnv, machine, row, startDaemon, timeCli } from "./common.ts";

const JOBS = intEnv("JOBS", 1000);
const RUNNING = intEnv("RUNNING", 200);
const RUNS = intEnv("RUNS", 20);
const MICRO_RUNS = 50; // in-process breakdown iterations
const CONCURRENCY = intEnv("CONCURRENCY", 4);
const GOAL_MS = 150;

function timeSync(n: number, fn: () => unknown): number[] {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    fn();
    out.push(performance.now() - t0);
  }
  return out;
}

console.log(`machine: ${machine()}`);
console.log(`date: ${new Date().toISOString()}`);
const d = await startDaemon();
const api = new Api(d.socket);
try {
  // ---- baselines on an empty DB ---------------------------------------------------------------
  await timeCli(d, "--version"); // warm the module cache
  const version: number[] = [], psEmpty: number[] = [];
  for (let i = 0; i < RUNS; i++) version.push(await timeCli(d, "--version"));
  for (let i = 0; i < RUNS; i++) psEmpty.push(await timeCli(d, "ps"));

  // ---- populate ---------------------------------------------------------------------------------
  const t0 = performance.now();
  const every = RUNNING > 0 ? JOBS / RUNNING : Infinity; // spread the sleepers over the whole list
  let next = 0, nSleep = 0;
  const env = Deno.env.toObject();
  const worker = async () => {
    for (;;) {
      const i = next++;
      if (i >= JOBS) return;
      const sleeper = nSleep < RUNNING && Math.floor(i % every) === 0;
      if (sleeper) nSleep++;
      await api.call<Job>("POST", "/v1/run/process", {
        args: sleeper ? ["sleep", "600"] : ["true"],
        cwd: d.dir,
        env,
      });
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  const popMs = performance.now() - t0;
  // Wait until every `true` job is recorded as halted.
  for (let tries = 0;; tries++) {
    const jobs = (await api.call<Job[]>("GET", "/v1/jobs")).data;
    const live = jobs.filter((j) => j.status !== "halted").length;
    if (live === nSleep || tries > 200) {
      console.log(
        `populated ${jobs.length} jobs (${live} running sleep, ${jobs.length - live} halted) in ${
          (popMs / 1000).toFixed(1)
        } s (${(popMs / JOBS).toFixed(1)} ms/job, ${CONCURRENCY} in flight)`,
      );
      break;
    }
    await new Promise((r) => setTimeout(r, 100));
  }

  // Idle CPU of the daemon while it watches the running jobs (its ExitWatcher poll loop).
  const cpuTicks = () => {
    const f = Deno.readTextFileSync(`/proc/${d.pid}/stat`).split(") ")[1].split(" ");
    return Number(f[11]) + Number(f[12]); // utime + stime (fields 14, 15)
  };
  const c0 = cpuTicks();
  await new Promise((r) => setTimeout(r, 3000));
  const idleCpu = (cpuTicks() - c0) / 100 / 3; // USER_HZ = 100

  // ---- daemon response time over the socket -----------------------------------------------------
  for (let i = 0; i < 3; i++) await api.call("GET", "/v1/jobs"); // warm-up (JIT)
  const keepAlive: number[] = [];
  let bytes = 0;
  for (let i = 0; i < RUNS; i++) {
    const t = performance.now();
    bytes = (await api.call("GET", "/v1/jobs")).bytes;
    keepAlive.push(performance.now() - t);
  }
  const fresh: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const t = performance.now();
    const a = new Api(d.socket); // new connection each time, like one CLI invocation
    await a.call("GET", "/v1/jobs");
    fresh.push(performance.now() - t);
    a.close();
  }

  const freshIp: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const t = performance.now();
    const a = new Api(d.socket, "127.0.0.1");
    await a.call("GET", "/v1/jobs");
    freshIp.push(performance.now() - t);
    a.close();
  }

  // ---- whole CLI -------------------------------------------------------------------------------
  const ps: number[] = [], psJson: number[] = [];
  for (let i = 0; i < RUNS; i++) ps.push(await timeCli(d, "ps"));
  for (let i = 0; i < RUNS; i++) psJson.push(await timeCli(d, "ps", "--json"));

  // ---- in-process breakdown (same DB file, same code as the daemon's handler) -------------------
  const db = new JobDb(d.env.CEDANA_DB_PATH);
  const svc = new JobService(db, { ...defaults(), db: { path: d.env.CEDANA_DB_PATH } }, new Logger("error"));
  const rows = db.listJobs();
  const live = rows.filter((r) => r.state === "running");
  timeSync(5, () => svc.list()); // warm-up
  const bList = timeSync(MICRO_RUNS, () => db.listJobs());
  const bCkpt = timeSync(MICRO_RUNS, () => db.latestCheckpoints());
  const bStatLive = timeSync(MICRO_RUNS, () => live.forEach((r) => readStat(r.pid!)));
  // Job.#toJob's default parameter `latest = this.db.listCheckpoints(row.jid)[0]` is evaluated
  // whenever list() passes `undefined` (a job with no checkpoint): one SQL query per such job.
  const bCkptEach = timeSync(MICRO_RUNS, () => rows.forEach((r) => db.listCheckpoints(r.jid)));
  const bDates = timeSync(MICRO_RUNS, () =>
    rows.forEach((r) => {
      if (r.startTime) startTimeToDate(r.startTime).toISOString();
      new Date(r.createdAt).toISOString();
      new Date(r.updatedAt).toISOString();
    }));
  const bSvc = timeSync(MICRO_RUNS, () => svc.list());
  // A replica of list() that uses the one-query checkpoint map only (what the fix would cost).
  const fixedList = () => {
    const latest = db.latestCheckpoints();
    return db.listJobs().map((r) => {
      const st = r.state === "running" && r.pid !== null ? readStat(r.pid) : null;
      const c = latest.get(r.jid);
      return {
        ...r,
        status: st && st.startTime === r.startTime ? statusWord(st.state) : "halted",
        startedAt: r.startTime ? startTimeToDate(r.startTime).toISOString() : null,
        createdAt: new Date(r.createdAt).toISOString(),
        updatedAt: new Date(r.updatedAt).toISOString(),
        checkpoint: c ? { id: c.id, path: c.path, time: new Date(c.time).toISOString(), size: c.size } : null,
      };
    });
  };
  timeSync(5, fixedList);
  const bFixed = timeSync(MICRO_RUNS, fixedList);
  const jobs = svc.list();
  const bJson = timeSync(MICRO_RUNS, () => JSON.stringify(jobs));
  const body = JSON.stringify(jobs);
  const bParse = timeSync(MICRO_RUNS, () => JSON.parse(body));
  const bTable = timeSync(MICRO_RUNS, () => table(JOB_HEADER, (JSON.parse(body) as Job[]).map(jobRow)));
  db.close();

  console.log(`daemon idle CPU with ${nSleep} running jobs: ${(idleCpu * 100).toFixed(1)}% of one core`);
  console.log(`\nGET /v1/jobs body: ${(bytes / 1024).toFixed(0)} KiB for ${jobs.length} jobs\n`);
  console.log(row("CLI `--version` (Deno start-up + imports)", version));
  console.log(row("CLI `ps`, empty DB", psEmpty));
  console.log(row(`CLI \`ps\`, ${jobs.length} jobs`, ps, GOAL_MS));
  console.log(row(`CLI \`ps --json\`, ${jobs.length} jobs`, psJson));
  console.log(row("GET /v1/jobs, keep-alive connection", keepAlive));
  console.log(row("GET /v1/jobs, fresh connection", fresh));
  console.log(row("GET /v1/jobs, fresh connection, host 127.0.0.1", freshIp));
  console.log("\nin-process breakdown (this process, same DB):");
  console.log(row("  db.listJobs() (SQL + row mapping)", bList));
  console.log(row("  db.latestCheckpoints()", bCkpt));
  console.log(row(`  readStat() x ${live.length} running jobs`, bStatLive));
  console.log(row(`  db.listCheckpoints(jid) x ${rows.length} jobs`, bCkptEach));
  console.log(row(`  3 dates -> ISO x ${rows.length} jobs`, bDates));
  console.log(row("  svc.list() (whole handler minus HTTP)", bSvc));
  console.log(row("  list() replica w/o per-job checkpoint query", bFixed));
  console.log(row("  JSON.stringify(jobs)", bJson));
  console.log(row("  CLI side: JSON.parse(body)", bParse));
  console.log(row("  CLI side: JSON.parse + table render", bTable));
} finally {
  api.close();
  await d.cleanup(); // kill --all, SIGTERM the daemon, remove the temp dir
}
