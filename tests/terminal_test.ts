// Jobs on a terminal: a process started in a user's shell (tmux, ssh) and adopted with `manage
// process`, a process leading its own terminal's session, and a job whose log is a terminal.
// Each is dumped and restored for real; what the user checks is that the counter goes on where it
// stopped, on a terminal they can reach.
import { fileURLToPath } from "node:url";
import type { Job } from "../src/api/types.ts";
import { assert, assertEquals, assertStringIncludes } from "../src/testing/asserts.ts";
import { crOpts, jobOf, lastTick, PYTHON, readLog, waitTicks, WORKLOAD } from "./cr_helpers.ts";
import { attachedOutput, pidAlive, type TestDaemon, waitFor, withDaemon } from "./helpers.ts";

const TERMINAL = fileURLToPath(new URL("./workloads/terminal.py", import.meta.url));

/** A terminal (see workloads/terminal.py) running `cmd`; what it shows goes to `screen`. */
function startTerminal(d: TestDaemon, mode: "shell" | "leader" | "open", screen: string, cmd: string[] = []) {
  const child = new Deno.Command(PYTHON, {
    args: [TERMINAL, mode, screen, ...cmd],
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  d.onCleanup(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
  });
  return child;
}

/** A terminal with no program on it (`-o` target): its slave's path. */
async function openTerminal(d: TestDaemon, screen: string) {
  const child = startTerminal(d, "open", screen);
  const reader = child.stdout.getReader();
  const tty = new TextDecoder().decode((await reader.read()).value).trim();
  reader.releaseLock();
  assert(/^\/dev\/pts\/\d+$/.test(tty), tty);
  return { tty, child };
}

/** The workload's PID, from its `ready` line on the screen. */
async function readyPid(screen: string): Promise<number> {
  return await waitFor(() => {
    const m = readLog(screen).map((l) => /^ready \w+ pid (\d+)$/.exec(l)).find((x) => x);
    return m ? Number(m[1]) : 0;
  }, `the workload's ready line in ${screen}`);
}

/** After a restore onto a new terminal: the counter goes on past `before`, seen through attach. */
async function assertGoesOnAttached(d: TestDaemon, jid: string, before: number): Promise<number> {
  const toLines = (t: string) => t.replaceAll("\r", "").split("\n");
  const lines = toLines(await attachedOutput(d, jid, (t) => lastTick(toLines(t)) >= before + 2));
  const t = lastTick(lines);
  assert(t >= before + 2, `${jid}: attach shows tick ${t} after tick ${before} before the dump`);
  assert(!lines.some((l) => l.startsWith("ready")), `${jid} was restarted, not restored`);
  return t;
}

async function untilHalted(d: TestDaemon, jid: string): Promise<Job> {
  return await waitFor(async () => {
    const j = await jobOf(d, jid);
    return j.status === "halted" ? j : null;
  }, `job ${jid} halted`);
}

Deno.test(
  "terminal: a process started in a user's shell, adopted with manage, comes back on a new terminal twice (a daemon restart between); its shell lives on",
  crOpts,
  withDaemon(async (d) => {
    const screen = `${d.dir}/screen.txt`;
    startTerminal(d, "shell", screen, [PYTHON, WORKLOAD, "counter"]);
    const pid = await readyPid(screen);
    await waitTicks(screen, 2);
    await d.ok("manage", "process", String(pid), "--jid", "sh1");
    assertStringIncludes(await d.ok("dump", "job", "sh1"), "--shell-job");
    const before = lastTick(readLog(screen));
    // A log cannot stand in for a terminal: refused, with the way that works.
    const refused = await d.cli("restore", "job", "sh1", "-o", `${d.dir}/out.log`);
    assertEquals(refused.code, 2, refused.stderr);
    assertStringIncludes(refused.stderr, "the job's output went to a terminal: restore it without -o");
    // (it used to fail here: "tty: Don't have tty to inherit session from")
    const r = await d.ok("restore", "job", "sh1");
    assertStringIncludes(r, "note: its terminal stays with the session it was started in");
    assertStringIncludes(r, "cedana job attach sh1");
    let j = await jobOf(d, "sh1");
    assertEquals([j.pid, j.attachable, j.tty], [pid, true, true]);
    const t1 = await assertGoesOnAttached(d, "sh1", before);
    // The user's shell is untouched: it reported its job killed by the dump and waits at its prompt.
    await waitFor(() => readLog(screen).some((l) => l.startsWith("Killed")), "the shell's Killed line");

    // A daemon restart keeps the terminal's session keeper (it is the job's, not a stray).
    await d.stop("SIGKILL");
    await d.start();
    assertEquals((await jobOf(d, "sh1")).status !== "halted", true, "the job survives a daemon restart");
    // Again, from the new terminal (the job is a shell job there too: its keeper leads the session).
    await d.ok("dump", "job", "sh1");
    await d.ok("restore", "job", "sh1");
    await assertGoesOnAttached(d, "sh1", t1);

    // A kill ends it with its real status (it is the daemon's child), and its terminal's keepers go.
    j = await jobOf(d, "sh1");
    const keep = j.details.ioKeepers as { out: { pid: number }; session: { pid: number } };
    assert(pidAlive(keep.session.pid) && pidAlive(keep.out.pid), "the job's terminal is held while it runs");
    await d.ok("job", "kill", "sh1");
    j = await untilHalted(d, "sh1");
    assertEquals(j.exitSignal, "SIGKILL");
    await waitFor(
      () => !pidAlive(keep.session.pid) && !pidAlive(keep.out.pid),
      "the terminal's keepers gone",
    );
  }),
);

Deno.test(
  "terminal: a process leading its terminal's session comes back on a new terminal, after a daemon restart too",
  crOpts,
  withDaemon(async (d) => {
    const screen = `${d.dir}/screen.txt`;
    startTerminal(d, "leader", screen, [PYTHON, WORKLOAD, "counter"]);
    const pid = await readyPid(screen);
    await waitTicks(screen, 2);
    await d.ok("manage", "process", String(pid), "--jid", "ld1");
    await d.ok("dump", "job", "ld1");
    const before = lastTick(readLog(screen));
    assertStringIncludes(await d.ok("restore", "job", "ld1"), "note: its terminal stays");
    const t = await assertGoesOnAttached(d, "ld1", before);
    await d.stop("SIGKILL");
    await d.start();
    await assertGoesOnAttached(d, "ld1", t);
  }),
);

Deno.test(
  "terminal: a job whose log is a terminal (-o /dev/pts/N) is dumped and restored onto that terminal",
  crOpts,
  withDaemon(async (d) => {
    const screen = `${d.dir}/screen.txt`;
    const { tty } = await openTerminal(d, screen);
    await d.ok("run", "process", "--jid", "tl", "-o", tty, "--", PYTHON, WORKLOAD, "counter");
    await waitTicks(screen, 2);
    // (it used to fail: "tty: Found slave peer index 0 without correspond master peer")
    await d.ok("dump", "job", "tl");
    const before = lastTick(readLog(screen));
    const r = await d.ok("restore", "job", "tl");
    assert(!r.includes("note:"), r);
    assertEquals((await jobOf(d, "tl")).log, tty);
    await waitTicks(screen, before + 2);
    assertEquals(readLog(screen).filter((l) => l.startsWith("ready")).length, 1, "restarted, not restored");
  }),
);

Deno.test(
  "terminal: a program that opened its terminal again (as less does) is refused up front and runs on",
  crOpts,
  withDaemon(async (d) => {
    for (
      const [jid, open, says] of [
        ["again", 'exec 3< "$(tty)"', "opened its terminal /dev/pts/"],
        ["devtty", "exec 3< /dev/tty", "has its terminal open as /dev/tty (fd 3"],
      ]
    ) {
      const screen = `${d.dir}/${jid}.txt`;
      startTerminal(d, "shell", screen, ["bash", "-c", `${open}; exec ${PYTHON} ${WORKLOAD} counter`]);
      const pid = await readyPid(screen);
      await d.ok("manage", "process", String(pid), "--jid", jid);
      const r = await d.cli("dump", "job", jid);
      assertEquals(r.code, 5, r.stderr);
      assertStringIncludes(r.stderr, says);
      const t = lastTick(readLog(screen));
      await waitTicks(screen, t + 1); // (refused before CRIU froze it)
    }
  }),
);

Deno.test(
  "terminal: a job piped to a process outside it (`job | cat`) comes back with the pipe on its new terminal, or on the daemon's pipe",
  crOpts,
  withDaemon(async (d) => {
    // in a terminal: its output pipe goes to the new terminal too
    const screen = `${d.dir}/screen.txt`;
    startTerminal(d, "shell", screen, ["bash", "-c", `${PYTHON} ${WORKLOAD} counter | cat`]);
    const pid = await readyPid(screen);
    await waitTicks(screen, 2);
    await d.ok("manage", "process", String(pid), "--jid", "pt");
    assertStringIncludes(await d.ok("dump", "job", "pt"), "fd 1 is a pipe to a process outside the job");
    await d.ok("restore", "job", "pt");
    await assertGoesOnAttached(d, "pt", lastTick(readLog(screen)));

    // no terminal (`nohup job | cat > out &`): the daemon's pipe, so attach shows it
    const out = `${d.dir}/out.txt`;
    const bg = new Deno.Command("setsid", {
      args: ["bash", "-c", `${PYTHON} ${WORKLOAD} counter | cat > ${out}`],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    d.onCleanup(() => {
      try {
        bg.kill("SIGKILL");
      } catch { /* gone */ }
    });
    const bgPid = await readyPid(out);
    await waitTicks(out, 2);
    await d.ok("manage", "process", String(bgPid), "--jid", "pp");
    await d.ok("dump", "job", "pp");
    const before = lastTick(readLog(out));
    // (it used to die at its next line: EPIPE, nobody at the pipe's other end)
    assertStringIncludes(await d.ok("restore", "job", "pp"), "is the daemon's now: cedana job attach pp");
    await assertGoesOnAttached(d, "pp", before);
    assertEquals((await jobOf(d, "pp")).status === "halted", false);
  }),
);

Deno.test(
  "terminal: a shell job writing to a file, restored --attachable, goes on writing to it; its keepers are recorded",
  crOpts,
  withDaemon(async (d) => {
    const screen = `${d.dir}/screen.txt`, log = `${d.dir}/out.log`;
    startTerminal(d, "shell", screen, ["bash", "-c", `${PYTHON} ${WORKLOAD} counter > ${log} 2>&1`]);
    const pid = await readyPid(log);
    await waitTicks(log, 2);
    await d.ok("manage", "process", String(pid), "--jid", "fl");
    await d.ok("dump", "job", "fl");
    const before = lastTick(readLog(log));
    await d.ok("restore", "job", "fl", "--attachable");
    await waitTicks(log, before + 2);
    const keep = (await jobOf(d, "fl")).details.ioKeepers as { kind: string; session?: unknown };
    assertEquals([keep.kind, !!keep.session], ["pty", true]);
    // (a pipe keeper nobody recorded was stopped as a stray here, and the job died of EPIPE)
    await d.stop("SIGKILL");
    await d.start();
    assert(!d.daemonLog.includes("never recorded"), d.daemonLog);
    await waitTicks(log, lastTick(readLog(log)) + 2);
  }),
);

Deno.test(
  "terminal: a job whose log terminal closed is not restored onto whatever terminal has its number now",
  crOpts,
  withDaemon(async (d) => {
    const first = await openTerminal(d, `${d.dir}/first.txt`);
    await d.ok("run", "process", "--jid", "tl", "-o", first.tty, "--", PYTHON, WORKLOAD, "counter");
    await waitTicks(`${d.dir}/first.txt`, 2);
    await d.ok("dump", "job", "tl");
    first.child.kill("SIGKILL");
    await first.child.status;
    const second = await openTerminal(d, `${d.dir}/second.txt`); // (likely the same number)
    const r = await d.cli("restore", "job", "tl");
    assertEquals(r.code, 5, r.stderr);
    assertStringIncludes(r.stderr, `the terminal ${first.tty} the job wrote to is`);
    assertStringIncludes(r.stderr, "restore it with --attachable (a new terminal)");
    assertEquals(readLog(`${d.dir}/second.txt`).filter((l) => l.startsWith("tick")).length, 0);
    const o = await d.cli("restore", "job", "tl", "-o", `${d.dir}/x.log`);
    assertEquals(o.code, 2, o.stderr); // (CRIU restores a terminal as a terminal, not as a file)
    assertStringIncludes(await d.ok("restore", "job", "tl", "--attachable"), "it has a new one");
    await assertGoesOnAttached(d, "tl", 2);
    second.child.kill("SIGKILL");
  }),
);
