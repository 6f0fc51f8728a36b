// GPU jobs through the real daemon and CLI, with the CUDA driver and NVML replaced by test doubles
// (tests/gpu/fake_*.c, loaded through the same FFI code): the order of driver calls around CRIU,
// unlock on failure, the free-memory check before a restore, and a failed GPU restore.
import type { DumpResult, Job, JobInspect, RestoreResult } from "../../src/api/types.ts";
import { assert, assertEquals, assertStringIncludes } from "../../src/testing/asserts.ts";
import { crOpts, lastTick, PYTHON, readLog, waitTicks, WORKLOAD } from "../cr_helpers.ts";
import { crashDuring, pidAlive, TestDaemon, waitFor } from "../helpers.ts";
import { buildFakeCuda, buildFakeNvml, readCalls, readFakeState } from "./fake.ts";

const opts = { ...crOpts, ignore: crOpts.ignore || !hasGcc() };
function hasGcc(): boolean {
  try {
    return Deno.statSync("/usr/bin/gcc").isFile;
  } catch {
    return false;
  }
}

/** A daemon that uses the fake driver, and a job that looks like a CUDA process (libcuda mapped). */
async function gpuSetup(extra: Record<string, string> = {}) {
  const cuda = await buildFakeCuda();
  const nvml = await buildFakeNvml();
  const d = new TestDaemon();
  const state = `${d.dir}/cuda-state`;
  Deno.mkdirSync(state);
  Deno.mkdirSync(`${d.dir}/lib`);
  Deno.copyFileSync(cuda, `${d.dir}/lib/libcuda.so.1`);
  Object.assign(d.env, {
    CEDANA_CUDA_LIB: cuda,
    CEDANA_NVML_LIB: nvml,
    FAKE_CUDA_STATE_DIR: state,
    ...extra,
  });
  await d.start();
  const r = await d.cliWith(
    { env: { LD_PRELOAD: `${d.dir}/lib/libcuda.so.1`, FAKE_CUDA_STATE_DIR: state } },
    "run",
    "process",
    "--gpu-enabled",
    "--jid",
    "g",
    "--json",
    "--",
    PYTHON,
    WORKLOAD,
    "counter",
  );
  assertEquals(r.code, 0, r.stderr);
  const job = JSON.parse(r.stdout) as Job;
  await waitTicks(job.log!, 2);
  return { d, state, job };
}

async function restart(d: TestDaemon, env: Record<string, string>) {
  await d.stop();
  for (const [k, v] of Object.entries(env)) {
    if (v === "") delete d.env[k];
    else d.env[k] = v;
  }
  await d.start();
}

const ops = (state: string, pid: number) =>
  readCalls(state).filter((c) => c.pid === pid).map((c) => `${c.op}:${c.rc}`);
/** The calls that change a process's GPU state (not the state queries), in order. */
const gpuOps = (state: string, pid: number) =>
  ops(state, pid).filter((o) => !o.startsWith("state")).join(" ");

Deno.test("GPU job: lock, checkpoint, CRIU dump; CRIU restore, restore, unlock", opts, async () => {
  const { d, state, job } = await gpuSetup({ FAKE_CUDA_DELAY_MS: "50" }); // (as the driver: not instant)
  try {
    assertStringIncludes(await d.ok("ps"), "yes");
    const dump = await d.ok("dump", "job", "g");
    assertStringIncludes(dump, "GPU lock");
    assertStringIncludes(dump, "GPU checkpoint");
    assertEquals(ops(state, job.pid!), ["lock:0", "checkpoint:0"]);
    const before = lastTick(readLog(job.log!));
    const restored = await d.ok("restore", "job", "g");
    assertStringIncludes(restored, "GPU restore");
    assertEquals(ops(state, job.pid!), ["lock:0", "checkpoint:0", "restore:0", "unlock:0"]);
    assertEquals(readFakeState(state, job.pid!)?.state, 0);
    await waitTicks(job.log!, before + 2);
    const ins = await d.json<JobInspect>("job", "inspect", "g");
    assertEquals(ins.cuda, [{ pid: job.pid!, state: "running" }]);
    // leave-running: checkpointed, then back on the GPU at once
    const lr = await d.json<DumpResult>("dump", "job", "g", "--leave-running");
    assertEquals(lr.gpu?.pids, [job.pid!]);
    assertEquals(ops(state, job.pid!).slice(-4), ["lock:0", "checkpoint:0", "restore:0", "unlock:0"]);
    assertEquals(readFakeState(state, job.pid!)?.state, 0);
    // the copy, once the original is gone: the restore's total covers its GPU steps
    await d.ok("job", "kill", "g");
    await waitFor(() => !pidAlive(job.pid!), "original gone");
    await waitFor(async () => (await d.json<Job[]>("ps"))[0].status === "halted", "job halted");
    const t = (await d.json<RestoreResult>("restore", "job", "g")).timings;
    assert(t.total >= t.criu_restore + t.gpu_restore + t.gpu_unlock, JSON.stringify(t));
  } finally {
    await d.cleanup();
  }
});

Deno.test("GPU dump failure: the job is unlocked and keeps running", opts, async () => {
  const { d, state, job } = await gpuSetup({ FAKE_CUDA_FAIL: "checkpoint:2" });
  try {
    const r = await d.cli("dump", "job", "g");
    assert(r.code !== 0, "dump failed");
    assertStringIncludes(r.stderr, "OUT_OF_MEMORY");
    assertEquals(ops(state, job.pid!), ["lock:0", "checkpoint:2", "unlock:0"]);
    assertEquals(readFakeState(state, job.pid!)?.state, 0);
    const j = (await d.json<Job[]>("ps"))[0];
    assertEquals([j.status !== "halted", j.checkpoint], [true, null]);
    await waitTicks(job.log!, lastTick(readLog(job.log!)) + 2);
  } finally {
    await d.cleanup();
  }
});

Deno.test(
  "GPU restore: refused early without enough free GPU memory; a failed GPU restore kills the job",
  opts,
  async () => {
    const { d, state, job } = await gpuSetup();
    try {
      // NVML reports the job holding 8 GiB (the fake learns the pid at daemon start)
      await restart(d, { FAKE_NVML_PROCS: `${job.pid}:${8 * 2 ** 30}` });
      await d.ok("dump", "job", "g");
      await restart(d, { FAKE_NVML_FREE_BYTES: String(2 ** 30) });
      const r = await d.cli("restore", "job", "g");
      assertEquals(r.code, 5, r.stderr);
      assertStringIncludes(
        r.stderr,
        "not enough free GPU memory to restore: the checkpoint needs 8.0 GiB, the GPU has 1.0 GiB free",
      );
      assertEquals(ops(state, job.pid!), ["lock:0", "checkpoint:0"], "nothing was spent");
      assert(!pidAlive(job.pid!));
      // GPU restore fails after CRIU: the job is killed, never left stuck
      await restart(d, { FAKE_NVML_FREE_BYTES: "", FAKE_CUDA_FAIL: "restore:304" });
      const f = await d.cli("restore", "job", "g");
      assert(f.code !== 0, "restore failed");
      assertStringIncludes(f.stderr, "CUDA_ERROR_OPERATING_SYSTEM");
      assertStringIncludes(f.stderr, "restore it again");
      await waitFor(() => !pidAlive(job.pid!), "killed restored job");
      assertEquals((await d.json<Job[]>("ps"))[0].status, "halted");
      // the checkpoint is intact: restore again once the GPU is fine
      await restart(d, { FAKE_CUDA_FAIL: "" });
      await d.ok("restore", "job", "g");
      await waitTicks(job.log!, lastTick(readLog(job.log!)) + 2);
      assertEquals(readFakeState(state, job.pid!)?.state, 0);
    } finally {
      await d.cleanup();
    }
  },
);

Deno.test(
  "GPU restore cut short by the daemon's death after CRIU: the next daemon brings the GPU state back",
  opts,
  async () => {
    const { d, state, job } = await gpuSetup();
    try {
      await d.ok("dump", "job", "g");
      const before = lastTick(readLog(job.log!));
      await crashDuring(d, "restore-before-gpu", "restore", "job", "g");
      await waitFor(
        () => gpuOps(state, job.pid!) === "lock:0 checkpoint:0 restore:0 unlock:0",
        "GPU restore and unlock by the next daemon",
      ).catch((e) => {
        throw new Error(`${e.message}: ${ops(state, job.pid!).join(" ")}\n${d.daemonLog}`);
      });
      assertEquals(readFakeState(state, job.pid!)?.state, 0);
      const j = (await d.json<Job[]>("ps"))[0];
      assertEquals([j.status !== "halted", j.pid], [true, job.pid]);
      await waitTicks(job.log!, before + 2);
    } finally {
      await d.cleanup();
    }
  },
);

Deno.test(
  "GPU dump cut short by the daemon's death before CRIU: the next daemon puts the job back on the GPU",
  opts,
  async () => {
    const { d, state, job } = await gpuSetup();
    try {
      await crashDuring(d, "dump-after-gpu-checkpoint", "dump", "job", "g");
      await waitFor(
        () => gpuOps(state, job.pid!) === "lock:0 checkpoint:0 restore:0 unlock:0",
        "GPU restore and unlock by the next daemon",
      );
      assertEquals(readFakeState(state, job.pid!)?.state, 0);
      const j = (await d.json<Job[]>("ps"))[0];
      assertEquals([j.status !== "halted", j.pid, j.checkpoint], [true, job.pid, null]);
      await waitTicks(job.log!, lastTick(readLog(job.log!)) + 2);
      // and it dumps again
      await waitFor(async () => (await d.cli("dump", "job", "g")).code === 0, "a dump after the cleanup");
    } finally {
      await d.cleanup();
    }
  },
);
