// Runs gpu_alternate.sh (the paired raw/cedana GPU bench for real GPU machines) here with the fake
// driver and a torch-less workload, so that the script is known to work before it meets a GPU.
import { assertEquals, assertMatch, assertStringIncludes } from "../../src/testing/asserts.ts";
import { HAVE_CRIU } from "../cr_helpers.ts";
import { runGpuScript, tickingApp } from "./fake.ts";

Deno.test("gpu_alternate.sh pairs raw and cedana cycles with the fake driver", {
  sanitizeOps: false,
  sanitizeResources: false,
  ignore: !HAVE_CRIU,
}, async () => {
  const run = () =>
    runGpuScript("../../bench/gpu_alternate.sh", tickingApp, { DENO: Deno.execPath(), ROUNDS: "2" });
  let { code, text } = await run();
  if (code !== 0 && /FAIL: raw cycle/.test(text)) {
    // Once in CI (never in 15 runs by hand) CRIU itself failed the raw reference cycle, which does
    // not involve cedana; the script now prints CRIU's log tail. Shown, and run once more.
    console.warn(`gpu_alternate.sh: the raw reference cycle failed; running it again. First run:\n${text}`);
    ({ code, text } = await run());
  }
  assertEquals(code, 0, text);
  assertMatch(text, /== round 2\ncedana dump \d+ ms, restore \d+ ms \(CLI wall time\)\nraw {4}dump \d+ ms/);
  assertStringIncludes(text, "both workloads counted in order through 3 cycles each");
  assertMatch(text, /\| 1 GiB \| [\d.]+ s \|.*\| 2\/2 \|/);
});
