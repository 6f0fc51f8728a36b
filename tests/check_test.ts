// `cedana check` / `cedana daemon check`, config through --config-dir, and `dump process`.
import type { CheckpointInfo, DumpResult, RestoreResult } from "../src/api/types.ts";
import { assert, assertEquals, assertStringIncludes } from "../src/testing/asserts.ts";
import { crOpts, HAVE_CRIU, readLog, waitTicks } from "./cr_helpers.ts";
import { buildFakeCuda, buildFakeNvml } from "./gpu/fake.ts";
import { opts, pidAlive, sleep, TestDaemon, waitFor, withDaemon } from "./helpers.ts";

Deno.test("check: CRIU, kernel and daemon; daemon check fails when the daemon is down", opts, async () => {
  const d = new TestDaemon();
  try {
    const down = await d.cli("daemon", "check");
    assertEquals(down.code, 6);
    assertStringIncludes(down.stdout, "FAIL  daemon");
    assertStringIncludes(down.stdout, "fix: start it: cedana daemon start");
    const plain = await d.cli("check", "--json");
    const report = JSON.parse(plain.stdout) as { ok: boolean; checks: { name: string; ok: boolean }[] };
    assertEquals(report.checks.find((c) => c.name === "daemon")?.ok, false);
    assertEquals(plain.code, HAVE_CRIU ? 0 : 5, "the daemon is not required by plain `check`");
    await d.start();
    const up = await d.cli("daemon", "check");
    assertEquals(up.code, HAVE_CRIU ? 0 : 5, up.stdout);
    assertStringIncludes(up.stdout, `ok    daemon      ${d.socket}`);
    const noCriu = await d.cliWith({ env: { CEDANA_CRIU_BINARY_PATH: "/nonexistent/criu" } }, "check");
    assertEquals(noCriu.code, 5, "a failed required check is a failed precondition");
    assertStringIncludes(noCriu.stdout, "FAIL  criu");
  } finally {
    await d.cleanup();
  }
});

Deno.test("config file in --config-dir sets the socket the CLI and daemon use", opts, async () => {
  const d = new TestDaemon();
  const sock = `${d.dir}/from-config.sock`;
  Deno.writeTextFileSync(`${d.dir}/config/config.json`, JSON.stringify({ address: sock }));
  const { CEDANA_ADDRESS: _, ...env } = d.env;
  (d as unknown as { env: Record<string, string> }).env = env;
  Object.defineProperty(d, "socket", { get: () => sock });
  try {
    await d.start();
    assert(Deno.statSync(sock).isSocket);
    const r = await d.cli("--config-dir", `${d.dir}/config`, "ps");
    assertEquals(r.code, 0, r.stderr);
  } catch (e) {
    console.error(`--- daemon log (${d.dir}) ---\n${d.daemonLog}`);
    throw e;
  } finally {
    await d.cleanup();
  }
});

Deno.test(
  "dump process PID (not a job), then restore it as a new job",
  crOpts,
  withDaemon(async (d) => {
    const log = `${d.dir}/free.log`;
    const child = new Deno.Command("setsid", {
      args: ["sh", "-c", `exec >>${log} 2>&1; i=0; while :; do echo "tick $i"; i=$((i+1)); sleep 0.1; done`],
      stdin: "null",
      cwd: d.dir,
    }).spawn();
    await waitTicks(log, 2);
    const r = await d.json<DumpResult>("dump", "process", String(child.pid));
    assertEquals(r.checkpoint.jid, null);
    // a checkpoint of no job is still listed: `checkpoints` without a JID shows them all
    const all = await d.json<CheckpointInfo[]>("checkpoints");
    assertEquals(all.find((c) => c.id === r.checkpoint.id)?.jid, null);
    assertStringIncludes(await d.ok("checkpoints"), `${r.checkpoint.id}  -  `);
    await child.status;
    const back = await d.json<RestoreResult>(
      "restore",
      "process",
      "--path",
      r.checkpoint.path,
      "--jid",
      "revived",
    );
    assertEquals(back.job.jid, "revived");
    // the new job knows what it runs (from the checkpoint: the process was no job before)
    assertEquals(back.job.cmdline.slice(0, 2), ["sh", "-c"]);
    assertEquals(back.job.cwd, d.dir);
    // While this test's Deno.Command still holds a pidfd of its dead child, the PID stays allocated
    // and the restore falls back to a new PID namespace; once Deno has let go, the original PID is
    // free again. Which one happens depends on Deno's timing: both must give a running job.
    assert(pidAlive(back.job.pid!), `restored (PID namespace: ${back.pidNamespace}) and running`);
    const before = Number(readLog(log).filter((l) => l.startsWith("tick")).at(-1)!.slice(5));
    await waitTicks(log, before + 2);
    await d.ok("job", "kill", "revived");
    await waitFor(() => !pidAlive(back.job.pid!), "killed");
    // files removed by hand: the record stays, marked, until it is deleted
    Deno.removeSync(r.checkpoint.path, { recursive: true });
    assertStringIncludes(await d.ok("checkpoints"), `${r.checkpoint.path} (missing)`);
    await d.ok("job", "checkpoint", "delete", r.checkpoint.id);
  }),
);

Deno.test(
  "--criu-opts: bad JSON, options cedana sets and options CRIU does not know are refused up front (exit 2)",
  crOpts,
  withDaemon(async (d) => {
    await d.ok("run", "process", "--jid", "co", "--", "sleep", "60");
    for (const bad of ["{bad", "[]", '{"images-dir":"/tmp/elsewhere"}', '{"ghost-limit":{"a":1}}']) {
      const r = await d.cli("dump", "job", "co", "--leave-running", "--criu-opts", bad);
      assertEquals(r.code, 2, `${bad}: ${r.stderr}`);
      assertEquals(r.stderr.trim().split("\n").length, 1, r.stderr);
    }
    const r = await d.cli("dump", "job", "co", "--leave-running", "--criu-opts", '{"no-such-opt":true}');
    assertEquals(r.code, 2, r.stderr);
    assertStringIncludes(r.stderr, "--criu-opts: CRIU refused them: unrecognized option '--no-such-opt'");
    assertEquals(r.stderr.trim().split("\n").length, 1, r.stderr);
    assert(!r.stderr.includes("CRIU log:"), `no log to point at: ${r.stderr}`);
    assert(!r.stderr.includes("Usage"), r.stderr);
    assert(pidAlive((await d.json<{ pid: number }>("job", "inspect", "co")).pid), "the job runs on");
  }),
);

Deno.test(
  "a dumped attachable job: attach says restore first; restore -o takes it to a log",
  crOpts,
  withDaemon(async (d) => {
    await d.ok("run", "process", "--attachable", "--jid", "att", "--", "sleep", "60");
    // a client attached during the dump hears that the job was checkpointed, not that it exited
    const attached = d.cli("job", "attach", "att", "--no-stdin");
    await sleep(1000);
    await d.ok("dump", "job", "att");
    const during = await attached;
    assertEquals(during.code, 0, during.stderr);
    assertEquals(
      during.stderr.trim(),
      "job att was checkpointed; restore it with: cedana restore job att --attach",
    );
    const a = await d.cli("job", "attach", "att");
    assertEquals(a.code, 5, a.stderr);
    assertStringIncludes(a.stderr, "job att was dumped and is not running: restore it first");
    // (-o was refused: "job att is attachable"; it takes the job to a log now)
    const r = await d.json<RestoreResult>("restore", "job", "att", "-o", `${d.dir}/x.log`);
    assertEquals([r.job.attachable, r.job.log], [false, `${d.dir}/x.log`]);
    assertEquals((await d.cli("job", "attach", "att")).code, 5);
  }),
);

Deno.test(
  "config criu.leave_running: dumps keep the job running; --no-leave-running stops it",
  crOpts,
  async () => {
    const d = new TestDaemon();
    Deno.writeTextFileSync(`${d.dir}/config/config.json`, JSON.stringify({ "criu.leave_running": true }));
    await d.start();
    try {
      await d.ok("run", "process", "--jid", "lr", "--", "sleep", "60");
      const kept = await d.json<DumpResult>("dump", "job", "lr");
      assertEquals(kept.leftRunning, true);
      const stopped = await d.json<DumpResult>("dump", "job", "lr", "--no-leave-running");
      assertEquals(stopped.leftRunning, false);
      assertStringIncludes(await d.ok("ps"), "halted");
    } finally {
      await d.cleanup();
    }
  },
);

Deno.test("check: a GPU line, from the CUDA driver and NVML (here the fake ones); optional", async () => {
  const d = new TestDaemon();
  try {
    const env = { CEDANA_CUDA_LIB: await buildFakeCuda(), CEDANA_NVML_LIB: await buildFakeNvml() };
    const withGpu = await d.cliWith({ env }, "check");
    assertStringIncludes(
      withGpu.stdout,
      "ok    gpu         CUDA driver 13.0 with the checkpoint API; 1 GPU(s)",
    );
    const without = await d.cliWith({ env: { CEDANA_CUDA_LIB: "/nonexistent/libcuda.so.1" } }, "check");
    assertStringIncludes(without.stdout, "warn  gpu         cannot load the CUDA driver");
  } finally {
    await d.cleanup();
  }
});
