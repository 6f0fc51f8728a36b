// Benchmark: `cedana run process` to "running" (goal: < 100 ms, Deno start-up of the CLI excluded).
//
//   deno run -A bench/run_bench.ts
//
// Env: RUNS (API runs, default 50), CLI_RUNS (default 20), KEEP_TEST_DIRS=1 keeps the temp dir.
//
// Starts its own daemon on a temp dir (like tests/helpers.ts) and measures
//   1. POST /v1/run/process {args: ["sleep","60"], cwd, env} round trip (response carries the PID),
//   2. the same plus GET /v1/jobs/JID until the job shows as running (what a client would do),
//   3. the same POST on a fresh connection each time (like one CLI invocation), with the CLI's
//      URL host "cedana" (looked up in DNS by Deno) and with "127.0.0.1" (no lookup),
//   4. the whole CLI `deno run -A main.ts run process -- sleep 60`, and `--version` for context.
// Kills every job and stops the daemon at the end.

import type { Job, JobInspect } from "../src/api/types.ts";
import { Api, intEnv, machine, row, startDaemon, timeCli } from "./common.ts";

const RUNS = intEnv("RUNS", 50);
const CLI_RUNS = intEnv("CLI_RUNS", 20);
const GOAL_MS = 100;

console.log(`machine: ${machine()}`);
console.log(`date: ${new Date().toISOString()}`);
const d = await startDaemon();
const api = new Api(d.socket);
const env = Deno.env.toObject(); // what the CLI sends
const req = { args: ["sleep", "60"], cwd: d.dir, env };

function assertRunning(j: Job) {
  if (j.pid === null || j.status === "halted") throw new Error(`job ${j.jid} is not running: ${j.status}`);
}

try {
  for (let i = 0; i < 5; i++) await api.call<Job>("POST", "/v1/run/process", req); // warm-up (JIT)

  const post: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const t = performance.now();
    const { data: j } = await api.call<Job>("POST", "/v1/run/process", req);
    post.push(performance.now() - t);
    assertRunning(j);
  }

  const postVisible: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const t = performance.now();
    const { data: j } = await api.call<Job>("POST", "/v1/run/process", req);
    for (;;) {
      const { data: s } = await api.call<JobInspect>("GET", `/v1/jobs/${j.jid}`);
      if (s.status !== "halted" && s.pid === j.pid) break;
    }
    postVisible.push(performance.now() - t);
  }

  const fresh: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const t = performance.now();
    const a = new Api(d.socket);
    const { data: j } = await a.call<Job>("POST", "/v1/run/process", req);
    fresh.push(performance.now() - t);
    a.close();
    assertRunning(j);
  }

  const freshIp: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const t = performance.now();
    const a = new Api(d.socket, "127.0.0.1");
    const { data: j } = await a.call<Job>("POST", "/v1/run/process", req);
    freshIp.push(performance.now() - t);
    a.close();
    assertRunning(j);
  }

  // Kill what we started so far, so the CLI runs see a similar daemon.
  await api.call("POST", "/v1/jobs/kill", { jids: [], all: true });

  await timeCli(d, "--version"); // warm the module cache
  const version: number[] = [], cli: number[] = [];
  for (let i = 0; i < CLI_RUNS; i++) version.push(await timeCli(d, "--version"));
  for (let i = 0; i < CLI_RUNS; i++) cli.push(await timeCli(d, "run", "process", "--", "sleep", "60"));

  console.log("");
  console.log(row("POST /v1/run/process (keep-alive)", post, GOAL_MS));
  console.log(row("POST + GET /v1/jobs/JID shows running", postVisible, GOAL_MS));
  console.log(row("POST /v1/run/process (fresh connection)", fresh, GOAL_MS));
  console.log(row("POST, fresh connection, host 127.0.0.1", freshIp, GOAL_MS));
  console.log(row("CLI `--version` (Deno start-up + imports)", version));
  console.log(row("CLI `run process -- sleep 60`", cli));
} finally {
  api.close();
  await d.cleanup(); // kill --all, SIGTERM the daemon, remove the temp dir
}
