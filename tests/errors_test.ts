// Bad input: one clear line on stderr, a non-zero exit code, and a daemon that keeps serving.
import { assert, assertEquals, assertStringIncludes } from "../src/testing/asserts.ts";
import { opts, TestDaemon, waitFor, withDaemon } from "./helpers.ts";

async function expectError(d: TestDaemon, code: number, includes: string, ...args: string[]) {
  const r = await d.cli(...args);
  assertEquals(r.code, code, `cedana ${args.join(" ")}: ${r.stderr}`);
  assertStringIncludes(r.stderr, includes);
  assertEquals(r.stderr.trim().split("\n").length, 1, r.stderr);
}

Deno.test(
  "bad inputs give one-line errors with distinct exit codes",
  opts,
  withDaemon(async (d) => {
    await expectError(d, 3, "job nope not found", "job", "inspect", "nope");
    await expectError(d, 3, "job nope not found", "job", "kill", "nope");
    await expectError(d, 2, 'invalid PID "abc"', "manage", "process", "abc");
    await expectError(d, 3, "no running process with PID 4194303", "manage", "process", "4194303");
    await expectError(d, 2, "executable file not found", "run", "process", "--", "no-such-binary-xyz");
    await expectError(d, 2, "no such executable file", "run", "process", "--", "./nope.sh");
    await expectError(
      d,
      5,
      "cannot open log file /nonexistent/dir/x.log",
      "run",
      "process",
      "-o",
      "/nonexistent/dir/x.log",
      "--",
      "true",
    );
    await expectError(d, 2, "invalid job ID", "run", "process", "--jid", "bad/jid", "--", "true");
    // `-o $EMPTY -- cmd`: the `--` is not taken for the log file's name
    const noFile = "argument '--' is invalid. expected a file name, got \"--\" (an empty variable?)";
    await expectError(d, 2, noFile, "run", "process", "-o", "--", "true");
    await expectError(d, 2, noFile, "restore", "job", "x", "-o", "--");
    await expectError(d, 2, "unknown signal", "job", "kill", "--all", "--signal", "SIGFOO");
    await expectError(d, 2, "unknown command", "frobnicate");
    await expectError(d, 2, "name one or more jobs", "job", "kill");
    // all or nothing: a job that is not running among them, and nothing is signalled
    await d.ok("run", "process", "--jid", "k1", "--", "sleep", "30");
    await d.ok("run", "process", "--jid", "k2", "--", "true");
    await waitFor(
      async () => (await d.json<{ status: string }>("job", "inspect", "k2")).status === "halted",
      "k2 ended",
    );
    await expectError(d, 5, "job k2 is not running (nothing was signalled)", "job", "kill", "k1", "k2");
    assert(
      (await d.json<{ status: string }>("job", "inspect", "k1")).status !== "halted",
      "k1 not signalled",
    );
    await d.ok("run", "process", "--jid", "dup", "--", "sleep", "30");
    await expectError(d, 4, "job dup already exists", "run", "process", "--jid", "dup", "--", "true");
    await expectError(d, 3, "no job with PID 1", "attach", "1");
    await expectError(d, 2, "got an empty string", "run", "process", "--jid", "", "--", "true");
    await expectError(d, 2, "IDs, names and paths cannot be empty", "job", "inspect", "");
    await expectError(d, 2, "IDs, names and paths cannot be empty", "job", "checkpoint", "delete", "");
    await expectError(
      d,
      2,
      "up to 200 letters",
      "dump",
      "job",
      "dup",
      "--leave-running",
      "--name",
      "a".repeat(300),
    );
    Deno.writeTextFileSync(`${d.dir}/afile`, "");
    await expectError(
      d,
      2,
      "is not a directory",
      "dump",
      "job",
      "dup",
      "--leave-running",
      "--dir",
      `${d.dir}/afile`,
    );
    await expectError(d, 2, "cannot manage PID 1", "manage", "process", "1");
    await expectError(d, 2, "name jobs or use --all, not both", "job", "kill", "dup", "--all");
    await expectError(d, 2, "--ignore-rootfs is for container jobs", "dump", "job", "dup", "--ignore-rootfs");
    await expectError(d, 2, 'invalid job ID "a\\nb"', "run", "process", "--jid", "a\nb", "--", "true");
    await expectError(d, 3, 'job "a\\nb" not found', "job", "inspect", "a\nb");
    // processes that are no one's to take: the kernel's, the daemon, PIDs the kernel never gives
    // (PID 2 is kthreadd, except in a PID namespace of its own, where no kernel thread shows)
    const kthreadd = (() => {
      try {
        return Deno.readTextFileSync("/proc/2/comm") === "kthreadd\n";
      } catch {
        return false;
      }
    })();
    const refused: [string, ...string[]][] = [
      ...(kthreadd
        ? [
          ["PID 2 is a kernel thread (kthreadd): cannot manage it", "manage", "process", "2"],
          ["PID 2 is a kernel thread (kthreadd): cannot checkpoint it", "dump", "process", "2"],
        ] as [string, ...string[]][]
        : []),
      ["cannot checkpoint the cedana daemon itself", "dump", "process", String(d.pid)],
      ['invalid PID "99999999999999999999"', "manage", "process", "99999999999999999999"],
      ['invalid PID "4294967297"', "dump", "process", "4294967297"],
    ];
    for (const [msg, ...args] of refused) await expectError(d, 2, msg, ...args);
    await expectError(
      d,
      2,
      "cannot write the PID file /nonexistent/dir/pid",
      "run",
      "process",
      "--pid-file",
      "/nonexistent/dir/pid",
      "--",
      "true",
    );
    await expectError(
      d,
      5,
      "cannot create checkpoint dir /etc/hostname/ck",
      "dump",
      "job",
      "dup",
      "--dir",
      "/etc/hostname/ck",
    );
    await d.ok("run", "process", "--jid", "fin", "--attachable", "--", "sh", "-c", "exit 3");
    await waitFor(
      async () => (await d.json<{ status: string }>("job", "inspect", "fin")).status === "halted",
      "fin halts",
    );
    await expectError(d, 5, "job fin has exited (exit code 3): nothing to attach to", "job", "attach", "fin");
    // malformed requests straight to the socket
    const client = Deno.createHttpClient({ proxy: { transport: "unix", path: d.socket } });
    for (const body of ["{nope", "[]", '{"args": "x", "cwd": "/", "env": {}}']) {
      const res = await fetch("http://localhost/v1/run/process", { method: "POST", body, client });
      assertEquals(res.status, 400);
      const b = await res.json();
      assertEquals(b.error.code, "invalid_argument");
    }
    const res = await fetch("http://localhost/v1/run/nosuchtype", {
      method: "POST",
      body: JSON.stringify({ args: ["true"], cwd: "/", env: {} }),
      client,
    });
    assertEquals(res.status, 404);
    await res.body?.cancel();
    client.close();
    // still alive and serving
    assertEquals((await d.json<unknown[]>("ps")).length, 4);
  }),
);

Deno.test("no daemon: clear error naming the socket", opts, async () => {
  const d = new TestDaemon();
  try {
    await expectError(d, 6, `cannot reach the cedana daemon at ${d.socket}`, "ps");
  } finally {
    await d.cleanup();
  }
});

Deno.test(
  "the CLI reads as cobra's: global options after the command, help of a nested command",
  opts,
  async () => {
    const d = new TestDaemon();
    try {
      // (no daemon anywhere here: the error names the socket the command was sent to)
      await expectError(
        d,
        6,
        "cannot reach the cedana daemon at /nonexistent/a.sock",
        "ps",
        "--address",
        "/nonexistent/a.sock",
      );
      await expectError(d, 6, "at /nonexistent/b.sock", "job", "kill", "x", "--address=/nonexistent/b.sock");
      await expectError(
        d,
        6,
        "at /nonexistent/d.sock",
        "--config-dir",
        d.dir,
        "ps",
        "--address",
        "/nonexistent/d.sock",
      );
      // a job's own arguments are its own, and `run containerd --address` is containerd's socket
      await expectError(
        d,
        6,
        `at ${d.socket}`,
        "exec",
        "--jid",
        "x",
        "sleep",
        "--address",
        "/nonexistent/c.sock",
      );
      const help = await d.cli("help", "job", "kill");
      assertEquals(help.code, 0, help.stderr);
      assert(help.stdout.startsWith("Usage: cedana job kill "), help.stdout);
      await expectError(d, 2, 'unknown command "nope" (see: cedana job --help)', "help", "job", "nope");
      // empty values and --json with --attach (the JSON would be followed by the job's output)
      await expectError(
        d,
        2,
        "got an empty string (an empty variable?)",
        "run",
        "process",
        "-o",
        "",
        "--",
        "true",
      );
      await expectError(d, 2, "got an empty string", "run", "runc", "--bundle", "");
      await expectError(
        d,
        2,
        "'--json' cannot be used with option '-a, --attach'",
        "restore",
        "job",
        "x",
        "-a",
        "--json",
      );
      await expectError(
        d,
        2,
        "'--json' cannot be used with option '-a, --attach'",
        "run",
        "process",
        "-a",
        "--json",
        "--",
        "true",
      );
    } finally {
      await d.cleanup();
    }
  },
);

Deno.test("bad config file is reported, not ignored", opts, async () => {
  const d = new TestDaemon();
  try {
    Deno.writeTextFileSync(`${d.env.CEDANA_CONFIG_DIR}/config.json`, "{broken");
    await expectError(d, 2, "config.json is not valid JSON", "ps");
  } finally {
    await d.cleanup();
  }
});

Deno.test(
  "garbage on the attach WebSocket never takes the daemon down",
  opts,
  withDaemon(async (d) => {
    await d.ok("run", "process", "--attachable", "--jid", "ws", "--", "sh", "-c", "cat >/dev/null");
    const client = Deno.createHttpClient({ proxy: { transport: "unix", path: d.socket } });
    const ws = new WebSocket("ws://localhost/v1/jobs/ws/attach", { client } as unknown as string[]);
    await new Promise((r) => ws.onopen = r);
    for (const m of ["null", "{", "[]", '{"type":"resize","cols":"x"}', '{"type":7}', "42"]) ws.send(m);
    ws.send(new Blob([new Uint8Array([1, 2, 3])]));
    await new Promise((r) => setTimeout(r, 300));
    ws.close();
    client.close();
    assertEquals((await d.json<unknown[]>("ps")).length, 1, "the daemon still answers");
  }),
);

Deno.test(
  "a stopped daemon: a query gives up after client.timeout with a clear error, then works once it runs",
  opts,
  withDaemon(async (d) => {
    Deno.kill(d.pid, "SIGSTOP");
    try {
      const t0 = performance.now();
      const r = await d.cliWith({ env: { CEDANA_CLIENT_TIMEOUT: "1" } }, "ps");
      assertEquals(r.code, 6, r.stderr);
      assertStringIncludes(r.stderr, `the cedana daemon at ${d.socket} did not answer in 1 s`);
      assertEquals(r.stderr.trim().split("\n").length, 1, r.stderr);
      assert(performance.now() - t0 < 8000, "gave up in time");
      const kill = await d.cliWith({ env: { CEDANA_CLIENT_TIMEOUT: "1" } }, "job", "kill", "nope");
      assertEquals(kill.code, 6, kill.stderr);
      assertStringIncludes(kill.stderr, "did not answer in 1 s");
    } finally {
      Deno.kill(d.pid, "SIGCONT");
    }
    await d.ok("ps");
    const bad = await d.cliWith({ env: { CEDANA_CLIENT_TIMEOUT: "-1" } }, "ps");
    assertEquals(bad.code, 2, bad.stderr);
    assertStringIncludes(
      bad.stderr,
      "client.timeout must be a number of seconds, 0 for no limit (got -1) (from CEDANA_CLIENT_TIMEOUT)",
    );
  }),
);
