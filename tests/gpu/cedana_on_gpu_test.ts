// Runs cedana_on_gpu.sh (the through-cedana GPU script for real GPU machines) here, with the fake
// driver and a torch-less workload, so that the script itself is known to work before it meets a
// GPU: dump/restore, leave-running copy, 3 cycles.
import { assertEquals, assertStringIncludes } from "../../src/testing/asserts.ts";
import { HAVE_CRIU } from "../cr_helpers.ts";
import { MAIN } from "../helpers.ts";
import { buildFakeCuda, buildFakeNvml } from "./fake.ts";

Deno.test("cedana_on_gpu.sh passes with the fake driver", {
  sanitizeOps: false,
  sanitizeResources: false,
  ignore: !HAVE_CRIU,
}, async () => {
  const cuda = await buildFakeCuda();
  const nvml = await buildFakeNvml();
  const w = Deno.makeTempDirSync({ prefix: "cedana-fakegpu-" });
  try {
    Deno.mkdirSync(`${w}/lib`);
    Deno.mkdirSync(`${w}/state`);
    Deno.copyFileSync(cuda, `${w}/lib/libcuda.so.1`);
    Deno.writeTextFileSync(
      `${w}/cedana`,
      `#!/bin/sh\nexec "${Deno.execPath()}" run -A --quiet ${MAIN} "$@"\n`,
      {
        mode: 0o755,
      },
    );
    // (APP_OUT as app.py: the 2-process job gives each its own log)
    const app = `exec env LD_PRELOAD=${w}/lib/libcuda.so.1 python3 -c 'import os, sys, time
out = open(os.environ["APP_OUT"], "a", buffering=1) if os.environ.get("APP_OUT") else sys.stdout
i = 0
while True:
    i += 1; print(i, i, i, 7, file=out, flush=True); time.sleep(0.1)'`;
    const out = await new Deno.Command("bash", {
      args: [new URL("./cedana_on_gpu.sh", import.meta.url).pathname],
      env: {
        CEDANA: `${w}/cedana`,
        CEDANA_CUDA_LIB: cuda,
        CEDANA_NVML_LIB: nvml,
        FAKE_CUDA_STATE_DIR: `${w}/state`,
        FAKE_GPU: "1",
        GIBS: "1",
        WORK: `${w}/work`,
        APP_CMD: app,
      },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    assertEquals(out.code, 0, text);
    assertStringIncludes(text, "PASS");
    assertStringIncludes(text, '"gpu_checkpoint"');
    assertStringIncludes(text, '"gpu_restore"');
    assertStringIncludes(text, "2 CUDA processes in one job");
    assertStringIncludes(text, "0.5x2\trestore");
  } finally {
    Deno.removeSync(w, { recursive: true });
  }
});
