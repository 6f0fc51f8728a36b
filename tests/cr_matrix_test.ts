// The C/R matrix: every workload dumped and restored through the CLI, checked by the workload
// itself (counter continues, memory/pipes/sockets/locks intact).
import { assertEquals, assertStringIncludes } from "../src/testing/asserts.ts";
import { assertContinues, crOpts, jobOf, readLog, startWorkload, verify, waitTicks } from "./cr_helpers.ts";
import { withDaemon } from "./helpers.ts";

const WORKLOADS: [string, string[]][] = [
  ["counter", []],
  ["memory", ["256"]],
  ["threads", []],
  ["pipes", []],
  ["tcp", []],
  ["unixpair", []],
  ["flock", ["@/lockfile"]],
  ["memfd", ["@/mapped"]],
];

for (const [kind, rawArgs] of WORKLOADS) {
  Deno.test(
    `dump + restore: ${kind}`,
    crOpts,
    withDaemon(async (d) => {
      const args = rawArgs.map((a) => a.replace("@", d.dir));
      const job = await startWorkload(d, kind, kind, ...args);
      const log = job.log!;
      await verify(d, kind, log);
      const out = await d.ok("dump", "job", kind);
      assertStringIncludes(out, `dumped job ${kind} to ${d.dir}/checkpoints/dump-process-${kind}-`);
      if (kind === "tcp") assertStringIncludes(out, "--tcp-established");
      if (kind === "flock") assertStringIncludes(out, "--file-locks");
      const halted = await jobOf(d, kind);
      assertEquals(halted.status, "halted");
      assertEquals(halted.checkpoint !== null, true);
      const before = await waitTicks(log, 0);
      await d.ok("restore", "job", kind);
      const back = await jobOf(d, kind);
      assertEquals(back.status === "halted", false);
      await assertContinues(log, before);
      await verify(d, kind, log);
      await d.ok("job", "kill", kind);
    }),
  );
}

Deno.test(
  "attachable job: output after restore reaches an attached client",
  crOpts,
  withDaemon(async (d) => {
    await d.ok(
      "run",
      "process",
      "--attachable",
      "--jid",
      "att",
      "--",
      "sh",
      "-c",
      'while read l; do echo "got:$l"; done',
    );
    const dump = await d.ok("dump", "job", "att");
    assertStringIncludes(dump, "dumped job att");
    await d.ok("restore", "job", "att");
    const r = await d.cliWith({ stdin: "after\n" }, "job", "attach", "att");
    assertEquals(r.stdout, "got:after\n", r.stderr);
    assertEquals(r.code, 0);
  }),
);

Deno.test(
  "tty job: dump and restore with a fresh terminal",
  crOpts,
  withDaemon(async (d) => {
    await d.ok(
      "run",
      "process",
      "--tty",
      "--jid",
      "term",
      "--",
      "sh",
      "-c",
      'while read l; do echo "tty:$l"; done',
    );
    await d.ok("dump", "job", "term");
    await d.ok("restore", "job", "term");
    const r = await d.cliWith({ stdin: "x\n" }, "job", "attach", "term");
    assertStringIncludes(r.stdout, "tty:x");
  }),
);

Deno.test(
  "restored job's real exit code is recorded",
  crOpts,
  withDaemon(async (d) => {
    await d.ok("run", "process", "--jid", "ex", "--", "sh", "-c", "sleep 1.5; exit 42");
    await d.ok("dump", "job", "ex");
    await d.ok("restore", "job", "ex");
    const j = await (async () => {
      for (;;) {
        const j = await jobOf(d, "ex");
        if (j.status === "halted") return j;
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    assertEquals(j.exitCode, 42);
    assertEquals(readLog(j.log!).join(""), "");
  }),
);

Deno.test(
  "a log-mode job restored with --attach streams its output to the client",
  crOpts,
  withDaemon(async (d) => {
    await d.ok(
      "run",
      "process",
      "--jid",
      "la",
      "--",
      "sh",
      "-c",
      "i=0; while [ $i -lt 30 ]; do echo n$i; i=$((i+1)); sleep 0.1; done; exit 3",
    );
    await new Promise((r) => setTimeout(r, 500));
    await d.ok("dump", "job", "la");
    const r = await d.cli("restore", "job", "la", "--attach");
    assertEquals(r.code, 3, r.stderr);
    assertStringIncludes(r.stdout, "n29\n");
    const j = await jobOf(d, "la");
    assertEquals([j.attachable, j.exitCode], [true, 3]);
  }),
);
