import { assert, assertEquals } from "../testing/asserts.ts";
import { runCommand, TIMED_OUT } from "./command.ts";

Deno.test("runCommand: output and exit code; a time limit kills what hangs", async () => {
  const ok = await runCommand("sh", ["-c", "echo out; echo err >&2; exit 3"]);
  assertEquals([ok.code, ok.stdout, ok.stderr], [3, "out\n", "err\n"]);
  const t0 = performance.now();
  const hung = await runCommand("sleep", ["30"], undefined, 200);
  assertEquals(hung.code, TIMED_OUT);
  assert(performance.now() - t0 < 5_000, "killed at its limit");
});
