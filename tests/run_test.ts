// `cedana run process` in log, attach, attachable and tty modes, and `cedana ps`.
import { existsSync } from "node:fs";
import type { Job, JobInspect } from "../src/api/types.ts";
import { assert, assertEquals, assertMatch, assertStringIncludes } from "../src/testing/asserts.ts";
import {
  attachedOutput,
  MAIN,
  opts,
  sleep,
  type TestDaemon,
  typingClient,
  waitFor,
  withDaemon,
} from "./helpers.ts";

Deno.test(
  "run process: output goes to the log, exit code shows in ps",
  opts,
  withDaemon(async (d) => {
    const job = await d.json<Job>(
      "run",
      "process",
      "--jid",
      "hello",
      "--",
      "sh",
      "-c",
      "echo hello from $PWD; exit 3",
    );
    assertEquals(job.jid, "hello");
    assertEquals(job.log, `${d.dir}/logs/cedana-output-hello.log`);
    const done = await waitFor(async () => {
      const jobs = await d.json<Job[]>("ps");
      return jobs.find((j) => j.jid === "hello" && j.status === "halted");
    }, "job to exit");
    assertEquals(done.exitCode, 3);
    // the job ran in the caller's cwd (the helper runs the CLI in the test dir)
    assertEquals(Deno.readTextFileSync(job.log!), `hello from ${d.dir}\n`);
    const table = await d.ok("ps");
    const [header, row] = table.trim().split("\n");
    assertMatch(header, /^JOB\s+TYPE\s+PID\s+STATUS\s+GPU\s+CHECKPOINT\s+SIZE\s+LOG$/);
    assertMatch(row, new RegExp(`^hello\\s+process\\s+${job.pid}\\s+halted \\(3\\)\\s+no\\s+${job.log}$`));
  }),
);

Deno.test(
  "run process: -o log, --pid-file, caller's env, exec alias, random JID",
  opts,
  withDaemon(async (d) => {
    const log = `${d.dir}/custom.log`;
    Deno.writeTextFileSync(log, "before\n");
    const r = await d.cliWith(
      { env: { GREETING: "hi there" } },
      "exec",
      "-o",
      log,
      "--pid-file",
      `${d.dir}/pid`,
      "--",
      "sh",
      "-c",
      'echo "$GREETING"',
    );
    assertEquals(r.code, 0, r.stderr);
    const m = /started job (\S+) \(pid (\d+)\), output in (.+)/.exec(r.stdout);
    assert(m, r.stdout);
    assertMatch(m[1], /^[a-z]+_[a-z]+$/);
    assertEquals(m[3], log);
    assertEquals(Deno.readTextFileSync(`${d.dir}/pid`).trim(), m[2]);
    await waitFor(() => Deno.readTextFileSync(log) === "before\nhi there\n", "log to be appended");
  }),
);

Deno.test(
  "run process -o FIFO: refused at once without a reader, the reader gets the output with one",
  opts,
  withDaemon(async (d) => {
    const fifo = `${d.dir}/fifo`;
    await new Deno.Command("mkfifo", { args: [fifo] }).output();
    const none = await d.cli("run", "process", "-o", fifo, "--", "echo", "hi");
    assertEquals([none.code, none.stderr.trim()], [
      5,
      `Error: cannot open log file ${fifo}: a FIFO with no reader`,
    ]);
    const reader = new Deno.Command("cat", { args: [fifo], stdout: "piped" }).spawn();
    // (until `cat` has opened its end: before that the FIFO has no reader)
    await waitFor(
      async () =>
        (await d.cli("run", "process", "-o", fifo, "--", "sh", "-c", "echo one; echo two")).code === 0,
      "run with a reader",
    );
    assertEquals(new TextDecoder().decode((await reader.output()).stdout), "one\ntwo\n");
    await d.ok("ps"); // (and the daemon answers on)
  }),
);

Deno.test(
  "run --attach: streams stdout/stderr, forwards stdin, exits with the job's code",
  opts,
  withDaemon(async (d) => {
    const r = await d.cliWith(
      { stdin: "one\ntwo\n" },
      "run",
      "process",
      "--attach",
      "--",
      "sh",
      "-c",
      'while read l; do echo "out:$l"; echo "err:$l" >&2; done; exit 42',
    );
    assertEquals(r.code, 42, r.stderr);
    assertEquals(r.stdout, "out:one\nout:two\n");
    assertEquals(r.stderr, "err:one\nerr:two\n");
    const fast = await d.cli("run", "process", "--attach", "--", "sh", "-c", "echo quick; kill -TERM $$");
    assertEquals(fast.stdout, "quick\n");
    assertEquals(fast.code, 128 + 15);
    // more than the daemon's 1 MiB replay buffer, at full speed: not a byte lost
    const lots = await d.cli("run", "process", "--attach", "--", "seq", "1", "400000");
    assertEquals(lots.code, 0, lots.stderr);
    const lines = lots.stdout.split("\n");
    assertEquals([lines[0], lines.at(-2), lines.length - 1], ["1", "400000", 400000]);
  }),
);

Deno.test(
  "run --attach into a pipe that closes early: detaches quietly, the job goes on",
  opts,
  withDaemon(async (d) => {
    const r = await new Deno.Command("bash", {
      args: [
        "-c",
        `"$@" | head -2`,
        "x",
        Deno.execPath(),
        "run",
        "-A",
        "--quiet",
        MAIN,
        ...["run", "process", "--attach", "--jid", "hp", "--", "seq", "1", "400000"],
      ],
      env: d.env,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const err = new TextDecoder().decode(r.stderr);
    assertEquals(new TextDecoder().decode(r.stdout), "1\n2\n");
    assert(!err.includes("Uncaught") && !err.includes("BrokenPipe"), err);
  }),
);

Deno.test(
  "attachable job: attach later, several clients see the output",
  opts,
  withDaemon(async (d) => {
    await d.ok(
      "run",
      "process",
      "--attachable",
      "--jid",
      "echoer",
      "--",
      "sh",
      "-c",
      'while read l; do echo "got:$l"; done; exit 5',
    );
    const jobs = await d.json<Job[]>("ps");
    assertEquals(jobs[0].attachable, true);
    assertStringIncludes(await d.ok("ps"), "[Attachable]");
    // A watcher without stdin sees what another client types.
    const watcher = d.cli("job", "attach", "--no-stdin", "echoer");
    await waitFor(
      async () => (await d.json<JobInspect>("job", "inspect", "echoer")).status !== "halted",
      "job",
    );
    await new Promise((r) => setTimeout(r, 700)); // let the watcher connect
    const inspect = await d.json<JobInspect>("job", "inspect", "echoer");
    const writer = await d.cliWith({ stdin: "x\ny\n" }, "attach", String(inspect.pid));
    assertEquals(writer.code, 5, writer.stderr);
    assertEquals(writer.stdout, "got:x\ngot:y\n");
    const w = await watcher;
    assertEquals(w.code, 5);
    assertEquals(w.stdout, "got:x\ngot:y\n");
    // Attaching to a finished job just reports its exit code.
    assertEquals((await d.cli("job", "attach", "echoer")).code, 5);
  }),
);

Deno.test(
  "--tty: the job gets a terminal",
  opts,
  withDaemon(async (d) => {
    const r = await d.cli(
      "run",
      "process",
      "--tty",
      "--attach",
      "--",
      "sh",
      "-c",
      "tty; test -t 0 && echo isatty; stty size; exit 4",
    );
    assertEquals(r.code, 4, r.stderr);
    assertMatch(r.stdout, /^\/dev\/pts\/\d+\r\nisatty\r\n\d+ \d+\r\n$/);
  }),
);

Deno.test(
  "an attached terminal that goes away detaches; the terminal job goes on",
  opts,
  withDaemon(async (d) => {
    await d.ok(
      "run",
      "process",
      "--tty",
      "--jid",
      "sh",
      "--",
      "sh",
      "-c",
      'while read l; do echo "t:$l"; done',
    );
    // the client on a terminal of its own (not its controlling one: no SIGHUP), which then closes
    const script = [
      "import os, pty, subprocess, sys, time",
      "m, s = pty.openpty()",
      "p = subprocess.Popen(sys.argv[1:], stdin=s, stdout=s, stderr=s)",
      "os.close(s); time.sleep(2); os.close(m)",
      "print(p.wait(timeout=20))",
    ].join("\n");
    const r = await new Deno.Command("python3", {
      args: ["-c", script, Deno.execPath(), "run", "-A", "--quiet", MAIN, "job", "attach", "sh"],
      env: d.env,
      stdout: "piped",
      stderr: "piped",
    }).output();
    // (the client ended: how it exits nobody sees, its terminal is gone)
    assertMatch(new TextDecoder().decode(r.stdout).trim(), /^\d+$/, new TextDecoder().decode(r.stderr));
    await sleep(300);
    const j = await d.json<JobInspect>("job", "inspect", "sh");
    assert(j.status !== "halted", `the job still runs (${j.status})`);
  }),
);

Deno.test(
  "job kill reaches what is left of an ended job (processes of its group whose parent exited)",
  opts,
  withDaemon(async (d) => {
    const j = await d.json<Job>(
      "run",
      "process",
      "--jid",
      "left",
      "--",
      "sh",
      "-c",
      '( sh -c "while true; do echo g; sleep 0.1; done" & ); exit 3',
    );
    await waitFor(async () => (await d.json<JobInspect>("job", "inspect", "left")).exitCode === 3, "ended");
    await d.ok("job", "kill", "left");
    await sleep(300);
    const n = Deno.readTextFileSync(j.log!).length;
    await sleep(400);
    assertEquals(Deno.readTextFileSync(j.log!).length, n, "nothing of the job writes any more");
    const again = await d.cli("job", "kill", "left");
    assertEquals(again.code, 5, "now nothing is left to kill");
  }),
);

Deno.test(
  "a non-attachable job refuses attach",
  opts,
  withDaemon(async (d) => {
    await d.ok("run", "process", "--jid", "plain", "--", "sleep", "30");
    const r = await d.cli("job", "attach", "plain");
    assertEquals(r.code, 5);
    assertStringIncludes(r.stderr, "not attachable");
  }),
);

Deno.test(
  "Ctrl+P Ctrl+Q detaches from a terminal and neither key reaches the job; a Ctrl+P with another key does",
  opts,
  withDaemon(async (d) => {
    const got = `${d.dir}/got.txt`;
    // (detach keys are a terminal's: a tty job, its terminal raw so that each key reaches cat as is)
    await d.ok("run", "process", "--tty", "--jid", "keys", "--", "sh", "-c", `stty raw -echo; cat > ${got}`);
    // the client on a terminal (script's pty), typing one key at a time
    const attach = async (keys: string[]) => {
      const before = d.daemonLog.split('"path":"/v1/jobs/keys/attach"').length;
      const child = new Deno.Command("script", {
        args: ["-qfec", `${Deno.execPath()} run -A --quiet ${MAIN} job attach keys`, "/dev/null"],
        env: d.env,
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      await waitFor(() => d.daemonLog.split('"path":"/v1/jobs/keys/attach"').length > before, "attached");
      await sleep(300); // (its terminal in raw mode)
      const w = child.stdin.getWriter();
      for (const k of keys) {
        await w.write(new TextEncoder().encode(k));
        await sleep(150);
      }
      const stuck = setTimeout(() => child.kill("SIGKILL"), 10_000); // (not detached: fail, not hang)
      const out = await child.output();
      clearTimeout(stuck);
      return new TextDecoder().decode(out.stdout);
    };
    assertStringIncludes(await attach(["ab", "\x10", "\x11"]), "detached from job keys");
    await waitFor(() => existsSync(got) && Deno.readTextFileSync(got) === "ab", "ab, and no Ctrl+P");
    assertStringIncludes(await attach(["\x10", "x", "\x10", "\x11"]), "detached from job keys");
    await waitFor(() => Deno.readTextFileSync(got) === "ab\x10x", "a Ctrl+P followed by x reaches the job");
  }),
);

Deno.test(
  "Ctrl+C detaches an attached client; the job keeps running",
  opts,
  withDaemon(async (d) => {
    await d.ok(
      "run",
      "process",
      "--attachable",
      "--jid",
      "talker",
      "--",
      "sh",
      "-c",
      "while :; do echo hi; sleep 0.1; done",
    );
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--quiet", MAIN, "job", "attach", "talker"],
      env: d.env,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const reader = child.stdout.getReader();
    const first = await reader.read(); // attached: output flows
    assertStringIncludes(new TextDecoder().decode(first.value), "hi");
    child.kill("SIGINT");
    reader.releaseLock();
    const out = await child.output();
    assertEquals(out.code, 0);
    assertStringIncludes(new TextDecoder().decode(out.stderr), "detached from job talker (still running)");
    const j = await d.json<JobInspect>("job", "inspect", "talker");
    assertEquals(j.status !== "halted", true);
  }),
);

Deno.test(
  "40 attachable jobs (pipes and ptys): the newest answers attach, and every job's exit is seen",
  opts,
  withDaemon(async (d) => {
    // A blocked read per stream held one of the 32 threads of Deno's blocking pool: from ~16 such
    // jobs on, newer jobs' output was never read (attach hung) and exits went unnoticed.
    const fds = () => [...Deno.readDirSync(`/proc/${d.pid}/fd`)].length;
    const before = fds();
    for (let i = 0; i < 40; i++) {
      const tty = i % 4 === 3 ? ["--tty"] : [];
      await d.ok(
        "run",
        "process",
        "--attachable",
        ...tty,
        "--jid",
        `a${i}`,
        "--",
        "sh",
        "-c",
        "read l; echo got $l",
      );
    }
    for (const jid of ["a0", "a38", "a39"]) { // (a39: a pty job; a38: pipes)
      const r = await d.cliWith({ stdin: "hello\n" }, "job", "attach", jid);
      assertEquals(r.code, 0, `${jid}: ${r.stderr}`);
      assertStringIncludes(r.stdout, "got hello");
    }
    await waitFor(async () => {
      const jobs = await d.json<Job[]>("ps");
      return ["a0", "a38", "a39"].every((j) => jobs.find((x) => x.jid === j)?.status === "halted");
    }, "the attached jobs' exits recorded");
    // Ended jobs leave no fd behind (a pipe job's stdin end stayed open until its input ended).
    await d.ok("job", "kill", "--all");
    await waitFor(async () => (await d.json<Job[]>("ps")).every((j) => j.status === "halted"), "all halted");
    await waitFor(() => fds() <= before + 2, `the daemon's fds back to ${before} (${fds()})`);
  }),
);

Deno.test(
  "attach: a client behind holds the job's output up (nothing piles up in the daemon); one that reads nothing for 10 s is let go, the job goes on",
  opts,
  withDaemon(async (d) => {
    // a fast job and a client that reads it all: every byte, none dropped
    const all = await d.cli("run", "process", "--attach", "--", "sh", "-c", "yes | head -c 50000000");
    assertEquals([all.code, all.stdout.length], [0, 50_000_000]);

    await d.ok("run", "process", "--attachable", "--jid", "yes", "--", "yes");
    const rss = () => daemonRss(d);
    const client = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--quiet", MAIN, "job", "attach", "yes", "--no-stdin"],
      env: d.env,
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    await sleep(1000); // (attached, reading)
    const before = rss();
    Deno.kill(client.pid, "SIGSTOP"); // (Ctrl-Z'd; `yes` makes 100+ MB/s: all of it was held for it before)
    await sleep(12_000);
    const grew = rss() - before;
    Deno.kill(client.pid, "SIGCONT");
    const out = await client.output();
    assertEquals(out.code, 6);
    assertStringIncludes(new TextDecoder().decode(out.stderr), "read none of job yes's output for 10 s");
    assert(grew < 100 << 20, `the daemon grew by ${grew >> 20} MiB for a stopped client`);
    assertEquals((await d.json<Job[]>("ps")).find((j) => j.jid === "yes")?.status !== "halted", true);
    // and the job's output flows again for the next client
    const next = (await attachedOutput(d, "yes", (t) => t.length > 1 << 20, 5000)).length;
    assert(next > 1 << 20, `the next client got ${next} bytes`);
  }),
);

/** The daemon's resident memory, in bytes. */
function daemonRss(d: TestDaemon): number {
  return Number(/VmRSS:\s+(\d+)/.exec(Deno.readTextFileSync(`/proc/${d.pid}/status`))![1]) * 1024;
}

/** `cedana ARGS` whose stdout nobody reads: its writes block once the pipe is full. */
function unreadClient(d: TestDaemon, ...args: string[]): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", MAIN, ...args],
    env: d.env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

/** Ctrl-C to `client`: its exit status, or null when it did not end within 4 s (then killed). */
async function interrupt(client: Deno.ChildProcess): Promise<Deno.CommandStatus | null> {
  try {
    Deno.kill(client.pid, "SIGINT");
    return await Promise.race([client.status, sleep(4000).then(() => null)]);
  } finally {
    try {
      client.kill("SIGKILL");
    } catch { /* ended */ }
    await client.stdout.cancel();
    await client.output().catch(() => {});
  }
}

Deno.test(
  "attach: Ctrl-C detaches a client whose stdout is blocked (a paused pager), the job goes on",
  opts,
  withDaemon(async (d) => {
    await d.ok("run", "process", "--attachable", "--jid", "yes", "--", "yes");
    const rss = () => daemonRss(d);
    const client = unreadClient(d, "job", "attach", "yes", "--no-stdin");
    await sleep(1500);
    const before = rss();
    await sleep(1000);
    // (it sat in a blocking write before, deaf to Ctrl-C until the daemon let it go 10 s later)
    const ended = await interrupt(client);
    assert(ended !== null, "the client did not detach on Ctrl-C");
    assertEquals(ended.code, 0);
    assert(rss() - before < 50 << 20, `the daemon grew by ${(rss() - before) >> 20} MiB`);
    assertEquals((await d.json<Job[]>("ps")).find((j) => j.jid === "yes")?.status !== "halted", true);
  }),
);

Deno.test(
  "attach: a slow reader (100 KB/s) stays attached; Ctrl-C after the job ended reports its exit code",
  opts,
  withDaemon(async (d) => {
    await d.ok("run", "process", "--attachable", "--jid", "yes", "--", "yes");
    // (its output was written out in pieces of up to 1 MiB, acknowledged after each: at 100 KB/s
    // that is 10 s without a word, and the daemon let it go as a stopped client)
    const slow = "import sys,time\nn=0\nt=time.time()\nwhile time.time()-t<13:\n" +
      " b=sys.stdin.buffer.read1(4096)\n n+=len(b)\n time.sleep(0.04)\nprint(n)";
    const r = await new Deno.Command("bash", {
      args: [
        "-c",
        `"${Deno.execPath()}" run -A --quiet ${MAIN} job attach yes --no-stdin | python3 -c '${slow}'`,
      ],
      env: d.env,
    }).output();
    const err = new TextDecoder().decode(r.stderr);
    assert(!err.includes("read none"), err);
    assert(
      Number(new TextDecoder().decode(r.stdout)) > 800_000,
      `read ${new TextDecoder().decode(r.stdout)}`,
    );

    // (the job ends while its output still waits for the client)
    const client = unreadClient(
      d,
      "run",
      "process",
      "--attach",
      "--",
      "sh",
      "-c",
      "head -c 3000000 /dev/zero; exit 3",
    );
    await sleep(2500);
    const ended = await interrupt(client);
    assertEquals(ended?.code, 3, "the job's exit code, not a detach from a job that was still running");
  }),
);

Deno.test(
  "attach: input for a job that does not read it waits in the client, not in the daemon",
  opts,
  withDaemon(async (d) => {
    await d.ok("run", "process", "--attachable", "--jid", "nr", "--", "sleep", "600");
    const rss = () => daemonRss(d);
    const before = rss();
    const client = typingClient(d, "nr");
    const w = client.stdin.getWriter();
    const chunk = new Uint8Array(1 << 20);
    let sent = 0;
    const feeding = (async () => {
      for (let i = 0; i < 300; i++) {
        await w.write(chunk); // (blocks once the client stops reading its stdin)
        sent += chunk.length;
      }
    })().catch(() => {});
    await sleep(4000); // (the daemon queued all of it before: ~150 MB/s here)
    const grew = rss() - before;
    client.kill("SIGKILL");
    await client.status;
    await feeding;
    assert(grew < 40 << 20, `the daemon grew by ${grew >> 20} MiB holding input (${sent >> 20} MiB sent)`);
    assert(sent < 100 << 20, `${sent >> 20} MiB left the client for a job that reads nothing`);
  }),
);

Deno.test(
  "run --attach: output of what the job left running in its group still reaches the client before the exit",
  opts,
  withDaemon(async (d) => {
    // (the client got the exit 2 s after sh ended, and `late` was lost)
    const r = await d.cli(
      "run",
      "process",
      "--attach",
      "--",
      "sh",
      "-c",
      "(sleep 3; echo late) & echo early; exit 4",
    );
    assertEquals([r.code, r.stdout], [4, "early\nlate\n"]);
    // and a client that comes after the main process ended still gets the rest, and the exit
    await d.ok(
      "run",
      "process",
      "--attachable",
      "--jid",
      "lg",
      "--",
      "sh",
      "-c",
      "(sleep 3; echo late) & exit 5",
    );
    await waitFor(
      async () => (await d.json<Job[]>("ps")).find((j) => j.jid === "lg")?.status === "halted",
      "lg",
    );
    const a = await d.cli("job", "attach", "lg", "--no-stdin");
    assertEquals([a.code, a.stdout], [5, "late\n"]);
  }),
);
