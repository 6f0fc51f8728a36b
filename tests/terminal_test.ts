// Jobs on a terminal: a process started in a user's shell (tmux, ssh) and adopted with `manage
// process`, a process leading its own terminal's session, and a job whose log is a terminal.
// Each is dumped and restored for real; what the user checks is that the counter goes on where it
// stopped, on a terminal they can reach.
import { fileURLToPath } from "node:url";
import type { Job } from "../src/api/types.ts";
import { assert, assertEquals, assertStringIncludes } from "../src/testing/asserts.ts";
import { crOpts, jobOf, lastTick, PYTHON, readLog, waitTicks, WORKLOAD } from "./cr_helpers.ts";
import { MAIN, pidAlive, sleep, type TestDaemon, waitFor, withDaemon } from "./helpers.ts";

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

/** The workload's PID, from its `ready` line on the screen. */
async function readyPid(screen: string): Promise<number> {
  return await waitFor(() => {
    const m = readLog(screen).map((l) => /^ready \w+ pid (\d+)$/.exec(l)).find((x) => x);
    return m ? Number(m[1]) : 0;
  }, `the workload's ready line in ${screen}`);
}

/** What `cedana job attach JID` shows until `enough` says so (or 20 s pass). */
async function attachedOutput(d: TestDaemon, jid: string, enough: (lines: string[]) => boolean) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", MAIN, "job", "attach", jid, "--no-stdin"],
    env: d.env,
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const reader = child.stdout.getReader();
  const dec = new TextDecoder();
  let text = "";
  const deadline = Date.now() + 20_000;
  try {
    while (Date.now() < deadline) {
      const r = await Promise.race([reader.read(), sleep(deadline - Date.now()).then(() => null)]);
      if (!r || r.done) break;
      text += dec.decode(r.value, { stream: true });
      if (enough(text.replaceAll("\r", "").split("\n"))) break;
    }
  } finally {
    child.kill("SIGKILL");
    await child.status;
  }
  return text.replaceAll("\r", "").split("\n");
}

/** After a restore onto a new terminal: the counter goes on past `before`, seen through attach. */
async function assertGoesOnAttached(d: TestDaemon, jid: string, before: number): Promise<number> {
  const lines = await attachedOutput(d, jid, (l) => lastTick(l) >= before + 2);
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
    const term = startTerminal(d, "open", screen);
    const reader = term.stdout.getReader();
    const tty = new TextDecoder().decode((await reader.read()).value).trim();
    reader.releaseLock();
    assert(/^\/dev\/pts\/\d+$/.test(tty), tty);
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
