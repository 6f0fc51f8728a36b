// Runs cedana_on_gpu.sh (the through-cedana GPU script for real GPU machines) here, with the fake
// driver and a torch-less workload, so that the script itself is known to work before it meets a
// GPU: dump/restore, leave-running copy, 3 cycles.
import { assertEquals, assertStringIncludes } from "../../src/testing/asserts.ts";
import { HAVE_CRIU } from "../cr_helpers.ts";
import { runGpuScript } from "./fake.ts";

Deno.test("cedana_on_gpu.sh passes with the fake driver", {
  sanitizeOps: false,
  sanitizeResources: false,
  ignore: !HAVE_CRIU,
}, async () => {
  // (APP_OUT as app.py: the 2-process job gives each its own log)
  const app = (w: string) =>
    `exec env LD_PRELOAD=${w}/lib/libcuda.so.1 python3 -c 'import os, sys, time
out = open(os.environ["APP_OUT"], "a", buffering=1) if os.environ.get("APP_OUT") else sys.stdout
i = 0
while True:
    i += 1; print(i, i, i, 7, file=out, flush=True); time.sleep(0.1)'`;
  const { code, text } = await runGpuScript("./cedana_on_gpu.sh", app, { GIBS: "1" });
  assertEquals(code, 0, text);
  assertStringIncludes(text, "PASS");
  assertStringIncludes(text, '"gpu_checkpoint"');
  assertStringIncludes(text, '"gpu_restore"');
  assertStringIncludes(text, "2 CUDA processes in one job");
  assertStringIncludes(text, "0.5x2\trestore");
});
