// Tests of the NVML bindings against tests/gpu/fake_nvml.c, which reads its figures from the
// environment at every call.
import { assert, assertEquals } from "../testing/asserts.ts";
import { buildFakeNvml } from "../../tests/gpu/fake.ts";
import { Nvml } from "./mod.ts";

const GIB = 2 ** 30;

async function withEnv(env: Record<string, string>, fn: () => Promise<void> | void): Promise<void> {
  const vars = {
    FAKE_NVML_DEVICES: "",
    FAKE_NVML_TOTAL_BYTES: "",
    FAKE_NVML_FREE_BYTES: "",
    FAKE_NVML_PROCS: "",
    FAKE_NVML_FAIL: "",
    ...env,
  };
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, Deno.env.get(k)]));
  for (const [k, v] of Object.entries(vars)) Deno.env.set(k, v);
  try {
    await fn();
  } finally {
    for (const [k, v] of Object.entries(saved)) v === undefined ? Deno.env.delete(k) : Deno.env.set(k, v);
  }
}

Deno.test("nvml: free memory per GPU and a process's usage", async () => {
  const lib = await buildFakeNvml();
  await withEnv({
    FAKE_NVML_DEVICES: "2",
    FAKE_NVML_TOTAL_BYTES: String(80 * GIB),
    FAKE_NVML_FREE_BYTES: String(30 * GIB),
    FAKE_NVML_PROCS: `4242:${8 * GIB},77:1024`,
  }, () => {
    const nvml = Nvml.open(lib);
    assert(nvml !== null);
    assertEquals(nvml.memory(), [
      { index: 0, total: 80 * GIB, free: 30 * GIB, used: 50 * GIB },
      { index: 1, total: 80 * GIB, free: 30 * GIB, used: 50 * GIB },
    ]);
    assertEquals(nvml.processMemory(4242), 8 * GIB);
    assertEquals(nvml.processMemory(77), 1024);
    assertEquals(nvml.processMemory(5), 0); // not on any GPU, e.g. checkpointed
    // The figures are read live, not at open.
    Deno.env.set("FAKE_NVML_FREE_BYTES", String(GIB));
    assertEquals(nvml.memory()?.[0].free, GIB);
  });
});

Deno.test("nvml: more processes than the first buffer holds (NVML_ERROR_INSUFFICIENT_SIZE)", async () => {
  const lib = await buildFakeNvml();
  const procs = Array.from({ length: 40 }, (_, i) => `${1000 + i}:${i + 1}`).join(",");
  await withEnv({ FAKE_NVML_PROCS: procs }, () => {
    const nvml = Nvml.open(lib)!;
    assertEquals(nvml.processMemory(1039), 40);
    assertEquals(nvml.processMemory(1000), 1);
  });
});

Deno.test("nvml: null when it cannot tell", async () => {
  const lib = await buildFakeNvml();
  assertEquals(Nvml.open("/nonexistent/libnvidia-ml.so.1"), null);
  await withEnv({ FAKE_NVML_FAIL: "init" }, () => assertEquals(Nvml.open(lib), null));
  await withEnv({ FAKE_NVML_PROCS: "9:na" }, () => assertEquals(Nvml.open(lib)!.processMemory(9), null));
  await withEnv({ FAKE_NVML_FAIL: "procs" }, () => assertEquals(Nvml.open(lib)!.processMemory(9), null));
  await withEnv({ FAKE_NVML_FAIL: "memory" }, () => assertEquals(Nvml.open(lib)!.memory(), null));
});

Deno.test("nvml: CEDANA_NVML_LIB, loaded once per process; null without NVML", async () => {
  const lib = await buildFakeNvml();
  const mod = JSON.stringify(new URL("./mod.ts", import.meta.url).href);
  const run = async (env: Record<string, string>) => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "eval",
        "--ext=ts",
        `import * as gpu from ${mod};
         const a = gpu.freeGpuMemory();
         Deno.env.set("FAKE_NVML_FREE_BYTES", "5");
         console.log(a, gpu.freeGpuMemory(), gpu.processGpuMemory(12), gpu.gpuMemory()?.length ?? null);`,
      ],
      env,
      stdout: "piped",
      stderr: "inherit",
    }).output();
    assert(out.success);
    return new TextDecoder().decode(out.stdout).trim();
  };
  assertEquals(
    await run({ CEDANA_NVML_LIB: lib, FAKE_NVML_FREE_BYTES: "1000", FAKE_NVML_PROCS: "12:34" }),
    "1000 5 34 1",
  );
  assertEquals(await run({ CEDANA_NVML_LIB: "/nonexistent/libnvidia-ml.so.1" }), "null null null null");
});
