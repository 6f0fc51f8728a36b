import { assertEquals } from "../testing/asserts.ts";
import { shellQuote } from "./job.ts";

Deno.test("shellQuote: one line that bash reads back as the same argument", async () => {
  const args = ["plain-arg.txt", "it's here", "import os\nprint('x')\n\ttab \\ back", "\x1b[1m"];
  assertEquals(shellQuote(args[2]), "$'import os\\nprint(\\'x\\')\\n\\ttab \\\\ back'");
  for (const a of args) assertEquals(shellQuote(a).includes("\n"), false);
  const out = await new Deno.Command("bash", {
    args: ["-c", `printf '%s\\0' ${args.map(shellQuote).join(" ")}`],
    stdout: "piped",
  }).output();
  assertEquals(new TextDecoder().decode(out.stdout).split("\0").slice(0, -1), args);
});
