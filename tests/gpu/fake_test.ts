// The fake libcuda's own contract, which other tests (the daemon's GPU dump/restore) rely on:
// state files, the call log, failure injection, and how it tells a CRIU-restored process from a
// reused pid.
import { assertEquals } from "../../src/testing/asserts.ts";
import { CudaDriver, CudaError } from "../../src/gpu/mod.ts";
import { buildFakeCuda, readCalls, readFakeState } from "./fake.ts";

async function withStateDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "fake-cuda-" });
  const saved = ["FAKE_CUDA_STATE_DIR", "FAKE_CUDA_FAIL"].map((k) => [k, Deno.env.get(k)] as const);
  Deno.env.set("FAKE_CUDA_STATE_DIR", dir);
  Deno.env.set("FAKE_CUDA_FAIL", "");
  try {
    await fn(dir);
  } finally {
    for (const [k, v] of saved) v === undefined ? Deno.env.delete(k) : Deno.env.set(k, v);
    await Deno.remove(dir, { recursive: true });
  }
}

async function withSleep(fn: (pid: number) => Promise<void>): Promise<void> {
  const child = new Deno.Command("sleep", { args: ["30"], stdout: "null", stderr: "null" }).spawn();
  try {
    await fn(child.pid);
  } finally {
    child.kill("SIGKILL");
    await child.status;
  }
}

Deno.test("fake cuda: state file per pid, one log line per call, state shared across handles", async () => {
  const lib = await buildFakeCuda();
  await withStateDir((dir) =>
    withSleep(async (pid) => {
      // Two handles stand for two processes (the daemon and a later one): state is in files.
      const a = CudaDriver.open(lib);
      const b = CudaDriver.open(lib);
      assertEquals(readFakeState(dir, pid), null);
      await a.lock(pid, 1);
      assertEquals(readFakeState(dir, pid), { state: 1, poisoned: false });
      await b.checkpoint(pid);
      assertEquals(a.state(pid), "checkpointed");
      const log = Deno.readTextFileSync(`${dir}/calls.log`).trim().split("\n");
      assertEquals(log.slice(2), [`lock ${pid} -> 0`, `checkpoint ${pid} -> 0`, `state ${pid} -> 0`]);
      assertEquals(readCalls(dir)[0], { op: "init", pid: Deno.pid, rc: 0 });
    })
  );
});

Deno.test("fake cuda: a new process under a recorded pid", async () => {
  const lib = await buildFakeCuda();
  await withStateDir((dir) =>
    withSleep(async (pid) => {
      const cuda = CudaDriver.open(lib);
      // Recorded with another start time: a CRIU-restored copy of a checkpointed process stays
      // checkpointed and may be restored afresh (the poisoned mark of a failed restore is dropped)...
      Deno.writeTextFileSync(`${dir}/${pid}`, "2 1 1\n");
      assertEquals(cuda.state(pid), "checkpointed");
      await cuda.restore(pid);
      assertEquals(cuda.state(pid), "locked");
      // ...and in any other state it is a reused pid: a fresh, running process.
      Deno.writeTextFileSync(`${dir}/${pid}`, "1 0 1\n");
      assertEquals(cuda.state(pid), "running");
      // The same start time is the same process: the poisoned mark holds.
      await cuda.lock(pid, 1);
      await cuda.checkpoint(pid);
      Deno.env.set("FAKE_CUDA_FAIL", "restore:2");
      await cuda.restore(pid).catch(() => {});
      Deno.env.set("FAKE_CUDA_FAIL", "");
      const err = await cuda.restore(pid).then(() => null, (e) => e);
      assertEquals(err instanceof CudaError && err.result, 304);
    })
  );
});

Deno.test("fake cuda: a restored copy under a new pid carries its FAKE_CUDA_TOKEN, a new process does not", async () => {
  const lib = await buildFakeCuda();
  const start = (token: string) =>
    new Deno.Command("sleep", {
      args: ["30"],
      env: { FAKE_CUDA_TOKEN: token },
      stdout: "null",
      stderr: "null",
    })
      .spawn();
  await withStateDir(async () => {
    const cuda = CudaDriver.open(lib);
    const [orig, copy, other] = [start("t-1"), start("t-1"), start("t-2")];
    try {
      await cuda.lock(orig.pid, 1);
      assertEquals(cuda.state(copy.pid), "running", "nothing checkpointed with its token yet");
      await cuda.checkpoint(orig.pid);
      await cuda.restore(orig.pid);
      await cuda.unlock(orig.pid);
      // (as after a leave-running dump: the original goes on, its images hold a checkpointed state)
      assertEquals(cuda.state(copy.pid), "checkpointed");
      assertEquals(cuda.state(other.pid), "running");
      await cuda.restore(copy.pid);
      await cuda.unlock(copy.pid);
      assertEquals([cuda.state(orig.pid), cuda.state(copy.pid)], ["running", "running"]);
    } finally {
      for (const c of [orig, copy, other]) {
        c.kill("SIGKILL");
        await c.status;
      }
    }
  });
});

Deno.test("fake cuda: FAKE_CUDA_FAIL parses op[:code] lists, and only whole op names", async () => {
  const lib = await buildFakeCuda();
  await withStateDir((dir) =>
    withSleep(async (pid) => {
      const cuda = CudaDriver.open(lib);
      Deno.env.set("FAKE_CUDA_FAIL", "unlocked:5,state:100,lock");
      const codes = [await cuda.lock(pid, 1).then(() => 0, (e: CudaError) => e.result)];
      try {
        cuda.state(pid);
        codes.push(0);
      } catch (e) {
        codes.push((e as CudaError).result);
      }
      Deno.env.set("FAKE_CUDA_FAIL", "checkpoint:2,lock:7");
      codes.push(await cuda.lock(pid, 1).then(() => 0, (e: CudaError) => e.result));
      Deno.env.set("FAKE_CUDA_FAIL", "unlocked:5");
      codes.push(await cuda.lock(pid, 1).then(() => 0, (e: CudaError) => e.result));
      assertEquals(codes, [999, 100, 7, 0]);
      assertEquals(readFakeState(dir, pid)?.state, 1);
    })
  );
});
