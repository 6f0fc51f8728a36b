// Runs crash_on_gpu.sh (the daemon killed mid GPU dump and mid GPU restore, for real GPU machines)
// here with the fake driver and a torch-less workload, so that the script is known to work before
// it meets a GPU.
import { assertEquals, assertStringIncludes } from "../../src/testing/asserts.ts";
import { HAVE_CRIU } from "../cr_helpers.ts";
import { runGpuScript, tickingApp } from "./fake.ts";

Deno.test("crash_on_gpu.sh passes with the fake driver", {
  sanitizeOps: false,
  sanitizeResources: false,
  ignore: !HAVE_CRIU,
}, async () => {
  const { code, text } = await runGpuScript("./crash_on_gpu.sh", tickingApp);
  assertEquals(code, 0, text);
  assertStringIncludes(text, "the daemon died at dump-after-gpu-checkpoint");
  assertStringIncludes(text, "the daemon died at restore-before-gpu");
  assertStringIncludes(text, "PASS");
});
