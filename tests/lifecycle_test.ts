// manage, kill, delete, inspect, and the daemon's own lifecycle (restart, reconcile, refusal).
import { existsSync } from "node:fs";
import { DatabaseSync } from "node:sqlite";
import type { Job, JobInspect } from "../src/api/types.ts";
import { assert, assertEquals, assertMatch, assertStringIncludes } from "../src/testing/asserts.ts";
import { MAIN, opts, pidAlive, sleep, TestDaemon, waitFor, withDaemon } from "./helpers.ts";

async function spawnSleeper(seconds = 60): Promise<Deno.ChildProcess> {
  const c = new Deno.Command("sleep", { args: [String(seconds)], stdout: "null", stderr: "null" }).spawn();
  await sleep(50);
  return c;
}

Deno.test(
  "manage process: adopt, notice the exit, kill with a signal",
  opts,
  withDaemon(async (d) => {
    const child = await spawnSleeper();
    const out = await d.ok("manage", "process", String(child.pid), "--jid", "adopted");
    assertStringIncludes(out, "exit code will not be known");
    const dup = await d.cli("manage", "process", String(child.pid));
    assertEquals(dup.code, 4, dup.stderr);
    const job = (await d.json<Job[]>("ps"))[0];
    assertEquals([job.jid, job.pid, job.adopted, job.status], ["adopted", child.pid, true, "sleeping"]);
    assertMatch(job.cmdline.join(" "), /sleep 60$/);
    const k = await d.ok("job", "kill", "adopted", "--signal", "term");
    assertStringIncludes(k, "sent SIGTERM to job adopted");
    assertEquals((await child.status).signal, "SIGTERM");
    const halted = await waitFor(async () => {
      const j = (await d.json<Job[]>("ps"))[0];
      return j.status === "halted" && j;
    }, "adopted job to be seen halted");
    assertEquals(halted.exitCode, null);
    assertStringIncludes(await d.ok("job", "inspect", "adopted"), "unknowable (adopted)");
    // SIGKILL cannot be caught: the one the daemon sent is what ended it, adopted or not
    const other = await spawnSleeper();
    await d.ok("manage", "process", String(other.pid), "--jid", "adopted2");
    await d.ok("job", "kill", "adopted2");
    const killed = await waitFor(async () => {
      const j = (await d.json<Job[]>("ps")).find((j) => j.jid === "adopted2")!;
      return j.status === "halted" && j;
    }, "adopted2 to be seen halted");
    assertEquals([killed.exitCode, killed.exitSignal], [null, "SIGKILL"]);
  }),
);

Deno.test(
  "kill: default SIGKILL to the whole process group; custom signal reaches a trap",
  opts,
  withDaemon(async (d) => {
    await d.ok("run", "process", "--jid", "tree", "--", "sh", "-c", "sleep 100 & sleep 100 & wait");
    const tree = await waitFor(async () => {
      const j = await d.json<JobInspect>("job", "inspect", "tree");
      return j.children.length === 2 && j;
    }, "two children");
    await d.ok("job", "kill", "tree");
    const j = await waitFor(async () => {
      const j = (await d.json<Job[]>("ps"))[0];
      return j.status === "halted" && j;
    }, "halted");
    assertEquals(j.exitSignal, "SIGKILL");
    await waitFor(() => tree.children.every((p) => !pidAlive(p)), "children killed with the group");

    await d.ok(
      "run",
      "process",
      "--jid",
      "trap",
      "--",
      "sh",
      "-c",
      'trap "echo got TERM; exit 9" TERM; while :; do sleep 0.1; done',
    );
    await sleep(300);
    await d.ok("job", "kill", "trap", "-s", "15");
    const t = await waitFor(
      async () => (await d.json<Job[]>("ps")).find((j) => j.jid === "trap" && j.status === "halted"),
      "trap",
    );
    assertEquals(t.exitCode, 9);
    // the whole group got it: the shell's `sleep` child too (sh reports it as "Terminated")
    assertMatch(Deno.readTextFileSync(t.log!), /got TERM\n$/);
    const again = await d.cli("job", "kill", "trap");
    assertEquals(again.code, 5);
    assertStringIncludes(again.stderr, "not running");
  }),
);

Deno.test(
  "delete: refuses a running job, removes halted ones, --all",
  opts,
  withDaemon(async (d) => {
    await d.ok("run", "process", "--jid", "live", "--", "sleep", "60");
    await d.ok("run", "process", "--jid", "done1", "--", "true");
    await d.ok("run", "process", "--jid", "done2", "--", "false");
    await waitFor(
      async () => (await d.json<Job[]>("ps")).filter((j) => j.status === "halted").length === 2,
      "exits",
    );
    const r = await d.cli("job", "delete", "live");
    assertEquals(r.code, 5);
    assertEquals(r.stderr.trim().split("\n").length, 1);
    assertStringIncludes(r.stderr, "still running");
    assertEquals((await d.ok("job", "delete", "done1")).trim(), "deleted job done1");
    assertEquals((await d.ok("job", "delete", "--all")).trim(), "deleted job done2");
    assertEquals((await d.json<Job[]>("ps")).map((j) => j.jid), ["live"]);
    assertEquals((await d.cli("job", "delete", "done1")).code, 3);
  }),
);

Deno.test(
  "inspect shows cmdline, cwd, start time, fds",
  opts,
  withDaemon(async (d) => {
    await d.ok("run", "process", "--jid", "insp", "--", "sleep", "60");
    const j = await d.json<JobInspect>("job", "inspect", "insp");
    assertEquals(j.cmdline, ["sleep", "60"]);
    assertEquals(j.cwd, d.dir);
    assert(j.startedAt && Math.abs(Date.parse(j.startedAt) - Date.now()) < 60_000, j.startedAt ?? "no start");
    assertEquals(j.fds.map((f) => f.fd).slice(0, 3), [0, 1, 2]);
    assertEquals(j.fds[1].target, j.log);
    const text = await d.ok("job", "inspect", "insp");
    assertMatch(text, /Command:\s+sleep 60/);
    assertMatch(text, /Open files:\n\s+0\s+\/dev\/null/);
  }),
);

Deno.test("daemon restart: jobs keep running and are reconciled against /proc", opts, async () => {
  const d = new TestDaemon();
  await d.start();
  try {
    await d.ok(
      "run",
      "process",
      "--jid",
      "counter",
      "--",
      "sh",
      "-c",
      "i=0; while :; do echo $i; i=$((i+1)); sleep 0.05; done",
    );
    await d.ok("run", "process", "--jid", "short", "--", "sleep", "1");
    await d.ok("run", "process", "--jid", "reused", "--", "sleep", "60");
    const before = await d.json<Job[]>("ps");
    const counter = before.find((j) => j.jid === "counter")!;
    assertEquals(await d.stop(), 0);
    assert(!pidAlive(0) && pidAlive(counter.pid!), "job survives the daemon");
    await sleep(1200); // "short" exits while no daemon runs
    // Make "reused" look like its PID was reused by another process: same PID, other start time.
    const db = new DatabaseSync(d.env.CEDANA_DB_PATH);
    db.prepare("UPDATE jobs SET start_time = start_time - 1 WHERE jid = 'reused'").run();
    db.close();
    await d.start();
    const after = new Map((await d.json<Job[]>("ps")).map((j) => [j.jid, j]));
    assertEquals(after.get("counter")!.status !== "halted", true);
    assertEquals(after.get("short")!.status, "halted");
    assertEquals(after.get("reused")!.status, "halted");
    // the reused PID is never signalled
    const reusedPid = after.get("reused")!.pid!;
    assertEquals((await d.cli("job", "kill", "reused")).code, 5);
    assert(pidAlive(reusedPid), "a process that is not the job is left alone");
    Deno.kill(reusedPid, "SIGKILL");
    // the counter's output continued while the daemon was away
    const log = Deno.readTextFileSync(counter.log!).trim().split("\n");
    assert(log.length > 20, `counter kept counting (${log.length} lines)`);
    // the restarted daemon notices the surviving job's exit (no exit code: not its child anymore)
    await d.ok("job", "kill", "counter");
    await waitFor(
      async () => (await d.json<Job[]>("ps")).find((j) => j.jid === "counter")!.status === "halted",
      "exit",
    );
  } finally {
    await d.cleanup();
  }
});

Deno.test("daemon: socket mode 0600, second daemon refused, stale socket replaced", opts, async () => {
  const d = new TestDaemon();
  await d.start();
  try {
    assertEquals(Deno.statSync(d.socket).mode! & 0o777, 0o600);
    const second = await d.cli("daemon", "start");
    assertEquals(second.code, 4);
    assertStringIncludes(second.stderr, "already running");
    assertEquals(second.stderr.trim().split("\n").length, 1);
    // another socket, the same job DB: refused too (it would take the first one's dumps in
    // progress for leftovers of a crash); its socket is never created
    const other = await d.cliWith({ env: { CEDANA_ADDRESS: `${d.dir}/other.sock` } }, "daemon", "start");
    assertEquals(other.code, 4, other.stderr);
    assertStringIncludes(
      other.stderr,
      `another cedana daemon (pid ${d.pid}, socket ${d.socket}) uses the job DB`,
    );
    assertEquals(other.stderr.trim().split("\n").length, 1);
    assert(!existsSync(`${d.dir}/other.sock`));
    // SIGKILL leaves a stale socket behind; the next start replaces it.
    await d.stop("SIGKILL");
    assert(Deno.statSync(d.socket).isSocket);
    await d.start();
    assertEquals((await d.json<Job[]>("ps")).length, 0);
    assertEquals(await d.stop("SIGINT"), 0);
    let gone = false;
    try {
      Deno.statSync(d.socket);
    } catch {
      gone = true;
    }
    assert(gone, "clean stop removes the socket");
  } finally {
    await d.cleanup();
  }
});

Deno.test("attachable and tty jobs survive a daemon restart and can be attached again", opts, async () => {
  const d = new TestDaemon();
  await d.start();
  try {
    await d.ok(
      "run",
      "process",
      "--attachable",
      "--jid",
      "pipes",
      "--",
      "sh",
      "-c",
      'while read l; do echo "p:$l"; done; exit 6',
    );
    await d.ok(
      "run",
      "process",
      "--tty",
      "--jid",
      "term",
      "--",
      "sh",
      "-c",
      'while read l; do echo "t:$l"; done',
    );
    // a chatty one: it writes all the time, including while no daemon runs
    await d.ok(
      "run",
      "process",
      "--attachable",
      "--jid",
      "chatty",
      "--",
      "sh",
      "-c",
      "i=0; while :; do echo $i; i=$((i+1)); sleep 0.05; done",
    );
    assertEquals(await d.stop(), 0);
    await sleep(1000);
    await d.start();
    const ps = await d.json<Job[]>("ps");
    assertEquals(ps.map((j) => [j.jid, j.status !== "halted"]), [["pipes", true], ["term", true], [
      "chatty",
      true,
    ]]);
    const p = await d.cliWith({ stdin: "a\n" }, "job", "attach", "pipes");
    // the job is no longer the daemon's child: output yes, exit code unknowable (so not 0)
    assertEquals([p.stdout, p.code], ["p:a\n", 1]);
    assertStringIncludes(p.stderr, "exit code is unknown");
    const t = await d.cliWith({ stdin: "b\n" }, "job", "attach", "term");
    assertStringIncludes(t.stdout, "t:b");
    const c = await d.json<JobInspect>("job", "inspect", "chatty");
    assertEquals(c.ioAvailable, true);
  } finally {
    await d.cleanup();
  }
});

Deno.test(
  "daemon start: another program's socket is never taken; the global --address counts; SIGHUP is survived",
  opts,
  async () => {
    const d = new TestDaemon();
    try {
      // a foreign server on the path: refused, its socket left alone
      const foreign = `${d.dir}/foreign.sock`;
      const server = Deno.listen({ transport: "unix", path: foreign });
      const r = await d.cli("daemon", "start", "--address", foreign);
      assertEquals(r.code, 5, r.stderr);
      assertStringIncludes(r.stderr, "another program listens on");
      assert(existsSync(foreign), "the foreign socket is still there");
      server.close();
      // `cedana --address X daemon start` listens on X (the subcommand's unset flag hid it)
      const flag = `${d.dir}/flag.sock`;
      const child = new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", "--quiet", MAIN, "--address", flag, "daemon", "start"],
        env: d.env,
        stdout: "null",
        stderr: "null",
      }).spawn();
      try {
        await waitFor(() => existsSync(flag), "the daemon listens on the global --address");
        child.kill("SIGHUP"); // (its terminal closed)
        await sleep(500);
        assertEquals((await d.cliWith({ env: { CEDANA_ADDRESS: flag } }, "ps")).code, 0, "still serving");
      } finally {
        child.kill("SIGTERM");
        await child.status;
      }
    } finally {
      await d.cleanup();
    }
  },
);

Deno.test(
  "ps, jobs, job list: the fast path prints what the full CLI prints",
  opts,
  withDaemon(async (d) => {
    await d.ok("run", "process", "--jid", "one", "--", "sleep", "60");
    await d.ok("run", "process", "--jid", "two", "--", "true");
    await waitFor(
      async () => (await d.json<Job[]>("ps")).some((j) => j.jid === "two" && j.status === "halted"),
      "two ended",
    );
    // a global option sends a command through the full CLI (commander)
    const full = (...args: string[]) => d.ok("--address", d.socket, ...args);
    for (const args of [["ps"], ["ps", "--json"], ["jobs"], ["job", "list"], ["job", "ls", "--json"]]) {
      assertEquals(await d.ok(...args), await full(...args), args.join(" "));
    }
    assertMatch(await d.ok("ps"), /^JOB +TYPE +PID +STATUS +GPU +CHECKPOINT +SIZE +LOG\none +process +\d+ /);
    // anything the fast path does not know goes to the full CLI, and its errors
    const bad = await d.cli("ps", "--bogus");
    assertEquals([bad.code, bad.stderr.trim()], [2, "Error: unknown option '--bogus'"]);
  }),
);

Deno.test(
  "daemon stop: the daemon stops, its jobs keep running; stopping it again is done",
  opts,
  async () => {
    const d = new TestDaemon();
    await d.start();
    try {
      const job = await d.json<Job>("run", "process", "--jid", "tick", "--", "sleep", "60");
      const r = await d.cli("daemon", "stop");
      assertEquals(r.code, 0, r.stderr);
      assertMatch(r.stdout, /^stopped the cedana daemon \(pid \d+\); jobs keep running\n$/);
      assertEquals(await d.exited(), 0);
      assert(!existsSync(d.socket), "its socket is gone");
      assert(pidAlive(job.pid!), "the job survives the daemon");
      const again = await d.cli("daemon", "stop");
      assertEquals([again.code, again.stdout], [0, `no cedana daemon is running at ${d.socket}\n`]);
      const bad = await d.cli("daemon", "stop", "--timeout", "0");
      assertEquals(bad.code, 2, bad.stderr);
      assertStringIncludes(bad.stderr, 'expected seconds > 0, got "0"');
      await d.start();
      assertEquals((await d.json<Job[]>("ps"))[0].status !== "halted", true);
    } finally {
      await d.cleanup();
    }
  },
);
