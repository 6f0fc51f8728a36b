// Tests of the CUDA checkpoint bindings against tests/gpu/fake_cuda.c (no GPU needed). Most tests
// use CudaDriver.open(fake), which bypasses the once-per-process cache; the cache itself (load,
// gpuAvailable, CEDANA_CUDA_LIB) is tested in subprocesses, each a fresh process.
import {
  assert,
  assertEquals,
  assertMatch,
  assertRejects,
  assertStringIncludes,
  assertThrows,
} from "../testing/asserts.ts";
import { buildFakeCuda, readCalls, readFakeState } from "../../tests/gpu/fake.ts";
import {
  CudaDriver,
  CudaError,
  CUresult,
  cuResultName,
  findCudaPids,
  GpuUnavailable,
  usesCuda,
} from "./mod.ts";

const MOD = new URL("./mod.ts", import.meta.url).href;

/** Runs `fn` with a fresh fake state dir and these FAKE_CUDA_* variables set, then restores them. */
async function withFake(
  env: Record<string, string>,
  fn: (stateDir: string) => Promise<void> | void,
): Promise<void> {
  const stateDir = await Deno.makeTempDir({ prefix: "fake-cuda-" });
  const vars = { FAKE_CUDA_STATE_DIR: stateDir, FAKE_CUDA_FAIL: "", FAKE_CUDA_DELAY_MS: "", ...env };
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, Deno.env.get(k)]));
  for (const [k, v] of Object.entries(vars)) Deno.env.set(k, v);
  try {
    await fn(stateDir);
  } finally {
    for (const [k, v] of Object.entries(saved)) v === undefined ? Deno.env.delete(k) : Deno.env.set(k, v);
    await Deno.remove(stateDir, { recursive: true });
  }
}

/** A live process for the fake to treat as a CUDA process; killed and reaped by `using`. */
function liveProcess(cmd = "sleep", args = ["30"], env?: Record<string, string>) {
  const child = new Deno.Command(cmd, { args, env, stdin: "null", stdout: "null", stderr: "null" }).spawn();
  return {
    pid: child.pid,
    async [Symbol.asyncDispose]() {
      try {
        child.kill("SIGKILL");
      } catch { /* already gone */ }
      await child.status;
    },
  };
}

/** A pid with no process behind it (the fake answers INVALID_VALUE for it). */
function deadPid(): number {
  for (let pid = 4_000_000;; pid--) {
    try {
      Deno.statSync(`/proc/${pid}`);
    } catch {
      return pid;
    }
  }
}

Deno.test("full sequence: lock, checkpoint, restore, unlock move through the driver's states", async () => {
  const lib = await buildFakeCuda();
  await withFake({}, async (dir) => {
    await using proc = liveProcess();
    const cuda = CudaDriver.open(lib);
    assertEquals(cuda.version, 13000);
    assertEquals(cuda.versionString, "13.0");
    assertEquals(cuda.state(proc.pid), "running");
    await cuda.lock(proc.pid, 10_000);
    assertEquals(cuda.state(proc.pid), "locked");
    await cuda.checkpoint(proc.pid);
    assertEquals(cuda.state(proc.pid), "checkpointed");
    assertEquals(readFakeState(dir, proc.pid)?.state, 2);
    await cuda.restore(proc.pid);
    assertEquals(cuda.state(proc.pid), "locked");
    assertEquals(cuda.restoreThreadId(proc.pid), proc.pid);
    await cuda.unlock(proc.pid);
    assertEquals(cuda.state(proc.pid), "running");
    const ops = readCalls(dir).filter((c) => c.op !== "state").map((c) => `${c.op} ${c.rc}`);
    assertEquals(ops, ["init 0", "lock 0", "checkpoint 0", "restore 0", "tid 0", "unlock 0"]);
    assert(readCalls(dir).slice(1).every((c) => c.pid === proc.pid));
  });
});

Deno.test("checkpoint before lock: CudaError 401 naming the pid, the step and the state", async () => {
  const lib = await buildFakeCuda();
  await withFake({}, async () => {
    await using proc = liveProcess();
    const cuda = CudaDriver.open(lib);
    const err = await assertRejects(() => cuda.checkpoint(proc.pid), CudaError) as CudaError;
    assertEquals(err.result, CUresult.ILLEGAL_STATE);
    assertEquals(err.resultName, "CUDA_ERROR_ILLEGAL_STATE");
    assertEquals([err.op, err.pid, err.code], ["checkpoint", proc.pid, "failed_precondition"]);
    assertEquals(
      err.message,
      `GPU checkpoint of pid ${proc.pid} failed (cuCheckpointProcessCheckpoint): CUDA_ERROR_ILLEGAL_STATE ` +
        "(401): the operation cannot be performed in the present state; the process is running, it must be locked",
    );
    assertEquals(cuda.state(proc.pid), "running");
    // Unlocking a running process is just as illegal.
    await assertRejects(() => cuda.unlock(proc.pid), CudaError, "the process is running, it must be locked");
  });
});

Deno.test("failure injection: lock failing with 2 is OUT_OF_MEMORY and leaves the process running", async () => {
  const lib = await buildFakeCuda();
  await withFake({ FAKE_CUDA_FAIL: "checkpoint,lock:2" }, async (dir) => {
    await using proc = liveProcess();
    const cuda = CudaDriver.open(lib);
    const err = await assertRejects(() => cuda.lock(proc.pid, 500), CudaError) as CudaError;
    assertEquals([err.result, err.resultName, err.code], [2, "CUDA_ERROR_OUT_OF_MEMORY", "unavailable"]);
    assertStringIncludes(err.message, `GPU lock of pid ${proc.pid} failed`);
    assertStringIncludes(err.message, "CUDA_ERROR_OUT_OF_MEMORY (2): out of memory");
    assertEquals(cuda.state(proc.pid), "running");
    Deno.env.set("FAKE_CUDA_FAIL", "checkpoint"); // no code: 999
    await cuda.lock(proc.pid, 500);
    const ck = await assertRejects(() => cuda.checkpoint(proc.pid), CudaError) as CudaError;
    assertEquals([ck.result, ck.resultName, ck.code], [999, "CUDA_ERROR_UNKNOWN", "internal"]);
    assertEquals(cuda.state(proc.pid), "locked");
    assertEquals(readCalls(dir).filter((c) => c.op !== "state").map((c) => `${c.op} ${c.rc}`), [
      "init 0",
      "lock 2",
      "lock 0",
      "checkpoint 999",
    ]);
  });
});

Deno.test("a failed GPU restore is not retryable: 2, then 304 on retry, unlock 401 (as on the H200)", async () => {
  const lib = await buildFakeCuda();
  await withFake({}, async () => {
    await using proc = liveProcess();
    const cuda = CudaDriver.open(lib);
    await cuda.lock(proc.pid, 0);
    await cuda.checkpoint(proc.pid);
    Deno.env.set("FAKE_CUDA_FAIL", "restore:2");
    const err = await assertRejects(() => cuda.restore(proc.pid), CudaError) as CudaError;
    assertEquals(err.result, CUresult.OUT_OF_MEMORY);
    assertStringIncludes(err.message, "cannot be retried in this process");
    Deno.env.set("FAKE_CUDA_FAIL", "");
    const retry = await assertRejects(() => cuda.restore(proc.pid), CudaError) as CudaError;
    assertEquals(retry.resultName, "CUDA_ERROR_OPERATING_SYSTEM");
    assertEquals(cuda.state(proc.pid), "checkpointed");
    const unlock = await assertRejects(() => cuda.unlock(proc.pid), CudaError) as CudaError;
    assertEquals(unlock.result, CUresult.ILLEGAL_STATE);
    assertStringIncludes(unlock.message, "the process is checkpointed, it must be locked");
  });
});

Deno.test("a pid that is not a CUDA process: INVALID_VALUE", async () => {
  const lib = await buildFakeCuda();
  await withFake({}, async () => {
    const cuda = CudaDriver.open(lib);
    const pid = deadPid();
    const err = assertThrows(() => cuda.state(pid), CudaError) as CudaError;
    assertEquals([err.result, err.op, err.code], [CUresult.INVALID_VALUE, "state", "failed_precondition"]);
    assertMatch(
      err.message,
      new RegExp(`^GPU state query of pid ${pid} failed .*CUDA_ERROR_INVALID_VALUE \\(1\\)`),
    );
    await assertRejects(() => cuda.lock(pid, 10), CudaError, "CUDA_ERROR_INVALID_VALUE (1)");
  });
});

Deno.test("without cuGetErrorName/cuGetErrorString the names come from the static table", async () => {
  const lib = await buildFakeCuda({ noErrorNames: true });
  await withFake({ FAKE_CUDA_FAIL: "lock:909" }, async () => {
    await using proc = liveProcess();
    const cuda = CudaDriver.open(lib);
    const err = await assertRejects(() => cuda.lock(proc.pid, 10), CudaError) as CudaError;
    assertEquals(err.resultName, "CUDA_ERROR_TIMEOUT");
    assertStringIncludes(err.message, "(cuCheckpointProcessLock): CUDA_ERROR_TIMEOUT (909)");
    Deno.env.set("FAKE_CUDA_FAIL", "");
    await assertRejects(
      () => cuda.checkpoint(proc.pid),
      CudaError,
      "(cuCheckpointProcessCheckpoint): CUDA_ERROR_ILLEGAL_STATE (401); the process is running",
    );
  });
  assertEquals(cuResultName(12345), "CUresult 12345");
});

Deno.test("a missing library is GpuUnavailable with a one-line message", () => {
  const err = assertThrows(() => CudaDriver.open("/nonexistent/libcuda.so.1"), GpuUnavailable);
  assertMatch(
    err.message,
    /^GPU support unavailable: cannot load the CUDA driver \/nonexistent\/libcuda\.so\.1 /,
  );
  assertStringIncludes(err.message, "CEDANA_CUDA_LIB");
  assert(!err.message.includes("\n"), err.message);
  assertEquals((err as GpuUnavailable).code, "failed_precondition");
});

Deno.test("a driver without the checkpoint API is GpuUnavailable naming what is missing", async () => {
  // libc has cuInit no more than the checkpoint calls; a library with cuInit but no checkpoint
  // calls is what an old driver looks like, so build one.
  const dir = await Deno.makeTempDir();
  try {
    const src = `${dir}/old.c`;
    await Deno.writeTextFile(
      src,
      "int cuInit(unsigned f){return 0;} int cuDriverGetVersion(int*v){*v=12040;return 0;}\n",
    );
    const out = await new Deno.Command("gcc", { args: ["-shared", "-fPIC", "-o", `${dir}/old.so`, src] })
      .output();
    assert(out.success);
    const err = assertThrows(() => CudaDriver.open(`${dir}/old.so`), GpuUnavailable);
    assertStringIncludes(
      err.message,
      "(version 12.4) lacks the checkpoint API (cuCheckpointProcessGetState, ",
    );
    assert(!err.message.includes("\n"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("lock and checkpoint run off the event loop: timers fire during a 300 ms driver call", async () => {
  const lib = await buildFakeCuda();
  await withFake({ FAKE_CUDA_DELAY_MS: "300" }, async () => {
    await using proc = liveProcess();
    const cuda = CudaDriver.open(lib);
    for (const step of [() => cuda.lock(proc.pid, 1000), () => cuda.checkpoint(proc.pid)]) {
      let ticks = 0;
      const timer = setInterval(() => ticks++, 20);
      const t0 = performance.now();
      try {
        await step();
      } finally {
        clearInterval(timer);
      }
      const ms = performance.now() - t0;
      assert(ms >= 290, `the call took only ${ms} ms`);
      assert(ticks >= 5, `only ${ticks} timer ticks during a ${ms.toFixed(0)} ms call`);
    }
    assertEquals(cuda.state(proc.pid), "checkpointed");
  });
});

Deno.test("lock rejects a timeout that does not fit CUcheckpointLockArgs.timeoutMs", async () => {
  const lib = await buildFakeCuda();
  await withFake({}, async (dir) => {
    const cuda = CudaDriver.open(lib);
    for (const bad of [-1, 1.5, 2 ** 32]) await assertRejects(() => cuda.lock(1, bad), RangeError);
    assertEquals(readCalls(dir).map((c) => c.op), ["init"]);
  });
});

/** Runs `code` (TypeScript importing the GPU module as `gpu`) in a fresh deno process. */
async function inSubprocess(code: string, env: Record<string, string>): Promise<string> {
  const script = `import * as gpu from ${JSON.stringify(MOD)};\n${code}`;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--ext=ts", script],
    env,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  assert(out.success, `subprocess failed:\n${text}`);
  return text.trim();
}

Deno.test("CudaDriver.load: CEDANA_CUDA_LIB, opened and cuInit once per process", async () => {
  const lib = await buildFakeCuda();
  await withFake({}, async (dir) => {
    await using proc = liveProcess();
    const out = await inSubprocess(
      `const a = gpu.CudaDriver.load();
       const ok = gpu.gpuAvailable();
       await a.lock(${proc.pid}, 100);
       await gpu.CudaDriver.load().unlock(${proc.pid});
       console.log(ok, a === gpu.CudaDriver.load(), a.path, a.versionString);`,
      { CEDANA_CUDA_LIB: lib, FAKE_CUDA_STATE_DIR: dir, FAKE_CUDA_VERSION: "12080" },
    );
    assertEquals(out, `true true ${lib} 12.8`);
    assertEquals(readCalls(dir).map((c) => `${c.op} ${c.rc}`), ["init 0", "lock 0", "unlock 0"]);
  });
});

Deno.test("CudaDriver.load: cuInit failure is GpuUnavailable, cached without calling cuInit again", async () => {
  const lib = await buildFakeCuda();
  await withFake({}, async (dir) => {
    const out = await inSubprocess(
      `const msgs = [];
       for (let i = 0; i < 2; i++) {
         try { gpu.CudaDriver.load(); } catch (e) { msgs.push(e instanceof gpu.GpuUnavailable ? e.message : "other " + e); }
       }
       console.log(gpu.gpuAvailable(), msgs[0] === msgs[1]);
       console.log(msgs[0]);`,
      { CEDANA_CUDA_LIB: lib, FAKE_CUDA_STATE_DIR: dir, FAKE_CUDA_FAIL: "init:100" },
    );
    const [first, message] = out.split("\n");
    assertEquals(first, "false true");
    assertMatch(
      message,
      /^GPU support unavailable: cuInit failed: CUDA_ERROR_NO_DEVICE \(100\): no CUDA-capable device is detected \(driver .*libfake_cuda\.so, version 13\.0\)$/,
    );
    assertEquals(readCalls(dir).map((c) => `${c.op} ${c.rc}`), ["init 100"]);
  });
});

Deno.test("gpuAvailable is false, without throwing, when the library is missing", async () => {
  const out = await inSubprocess(
    `console.log(gpu.gpuAvailable());
     try { gpu.CudaDriver.load(); } catch (e) { console.log(e.name, e.message.split("\\n").length); }`,
    { CEDANA_CUDA_LIB: "/nonexistent/libcuda.so.1" },
  );
  assertEquals(out, "false\nGpuUnavailable 1");
});

Deno.test("usesCuda: /dev/nvidia* fds or libcuda in the maps", () => {
  assert(usesCuda(["/dev/null", "/dev/nvidiactl"], ""));
  assert(usesCuda(["/dev/nvidia-uvm"], ""));
  assert(usesCuda([], "7f00-7f01 r-xp 00000000 08:01 12 /usr/lib/x86_64-linux-gnu/libcuda.so.580.159.04\n"));
  assert(usesCuda([], "7f00-7f01 r-xp 00000000 08:01 12 /usr/local/nvidia/lib64/libcuda.so.1"));
  assert(!usesCuda(["/dev/null", "pipe:[123]"], "7f00-7f01 r-xp 0 08:01 12 /usr/lib/libcudart.so.12\n"));
  assert(!usesCuda([], "7f00-7f01 r-xp 0 08:01 12 /opt/libcuda.sonic.so\n"));
});

Deno.test("findCudaPids: the processes of a tree that have libcuda mapped", async () => {
  const lib = await buildFakeCuda();
  const dir = await Deno.makeTempDir();
  try {
    // A copy named like the driver, preloaded into one child: its maps then name libcuda.so.1.
    const libcuda = `${dir}/libcuda.so.1`;
    await Deno.copyFile(lib, libcuda);
    const ready = `${dir}/ready`;
    await using tree = liveProcess("sh", [
      "-c",
      `LD_PRELOAD=${libcuda} sleep 30 & sleep 30 & touch ${ready}; wait`,
    ]);
    for (let i = 0; i < 100; i++) {
      try {
        Deno.statSync(ready);
        break;
      } catch {
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    const kids = Deno.readTextFileSync(`/proc/${tree.pid}/task/${tree.pid}/children`).trim().split(" ")
      .map(Number);
    assertEquals(kids.length, 2);
    // The preloading child maps the copy once the dynamic loader has run in it (after its exec).
    const mapsIt = (pid: number) => Deno.readTextFileSync(`/proc/${pid}/maps`).includes(libcuda);
    let preloaded: number[] = [];
    for (let i = 0; i < 100 && preloaded.length === 0; i++) {
      preloaded = kids.filter(mapsIt);
      if (preloaded.length === 0) await new Promise((r) => setTimeout(r, 20));
    }
    assertEquals(preloaded.length, 1);
    assertEquals(findCudaPids(tree.pid), preloaded);
    assertEquals(findCudaPids(deadPid()), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
