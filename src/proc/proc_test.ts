// JSR is unreachable in this environment, so assertions come from node:assert.
import assert from "node:assert/strict";
import {
  descendants,
  isProcessGone,
  isSameProcess,
  isValidPid,
  parseStat,
  readCmdline,
  readCwd,
  readExe,
  readFds,
  readStat,
  startTimeToDate,
  statusWord,
  unmanageable,
} from "./mod.ts";

/** Above the kernel's absolute PID limit (4194304), so it can never exist. */
const NO_SUCH_PID = 4_194_305 + 1000;

/** Polls `probe` until it returns a non-null value; processes start asynchronously. */
async function eventually<T>(probe: () => T | null, what: string, timeoutMs = 3000): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== null) return value;
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

async function stop(child: Deno.ChildProcess): Promise<void> {
  try {
    child.kill("SIGKILL");
  } catch {
    // already exited
  }
  await child.status;
}

Deno.test("a process reaped mid-read is gone, whatever Deno appends to ESRCH's message", () => {
  // (Deno 2.9's words, as a whole-file read of a process reaped between open and read gives them:
  // the path after the errno was taken for a real error, and a daemon gave up finishing a restore)
  assert.equal(
    isProcessGone(new Error("No such process (os error 3): readfile '/proc/20444/cmdline'")),
    true,
  );
  assert.equal(isProcessGone(new Error("No such process (os error 3)")), true);
  assert.equal(isProcessGone(new Deno.errors.NotFound("x")), true);
  assert.equal(isProcessGone(new Error("Input/output error (os error 5): readfile '/proc/1/stat'")), false);
  assert.equal(isProcessGone(new Error("Too many open files (os error 24)")), false);
});

Deno.test("readStat of this process", () => {
  const stat = readStat(Deno.pid);
  assert.ok(stat);
  assert.equal(stat.pid, Deno.pid);
  assert.equal(stat.ppid, Deno.ppid);
  assert.ok("RS".includes(stat.state), stat.state);
  assert.ok(stat.numThreads >= 1);
  assert.ok(stat.rss > 0 && stat.vsize > 0 && stat.startTime > 0);
  assert.equal(readStat(NO_SUCH_PID), null);
});

Deno.test("parseStat splits at the last ')' so comm may hold spaces and parentheses", () => {
  const line =
    "42 (a b) c) S 1 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 3 0 12345 8192 7 18446744073709551615\n";
  const stat = parseStat(line);
  assert.deepEqual(stat, {
    pid: 42,
    comm: "a b) c",
    state: "S",
    ppid: 1,
    pgrp: 42,
    session: 42,
    ttyNr: 0,
    numThreads: 3,
    flags: 4194560,
    startTime: 12345,
    vsize: 8192,
    rss: 7,
  });
});

Deno.test("unmanageable: the daemon itself, init, kernel threads, and this process's ancestors", () => {
  assert.equal(unmanageable(Deno.pid, "manage"), "cannot manage the cedana daemon itself");
  assert.equal(unmanageable(1, "checkpoint"), "cannot checkpoint PID 1 (init)");
  // (PID 2 is kthreadd, except in a PID namespace of its own, where no kernel thread shows)
  if (readStat(2)?.comm === "kthreadd") {
    assert.match(unmanageable(2, "manage")!, /^PID 2 is a kernel thread \(kthreadd\)/);
  }
  const parent = readStat(Deno.pid)!.ppid;
  if (parent > 1) assert.match(unmanageable(parent, "checkpoint")!, /is an ancestor of the cedana daemon/);
  assert.equal(isValidPid(4_194_304), true);
  assert.equal(isValidPid(4_194_305), false);
  assert.equal(isValidPid(1.5), false);
});

Deno.test("readStat of a real process whose comm is 'we ird) x'", async () => {
  const dir = Deno.makeTempDirSync();
  const exe = `${dir}/we ird) x`;
  Deno.copyFileSync("/bin/sleep", exe);
  Deno.chmodSync(exe, 0o755);
  const child = new Deno.Command(exe, { args: ["30"] }).spawn();
  try {
    const stat = await eventually(() => {
      const s = readStat(child.pid);
      return s?.comm === "we ird) x" ? s : null; // before exec, comm is still the parent's
    }, "exec of the oddly named binary");
    assert.equal(stat.ppid, Deno.pid);
    assert.equal(readExe(child.pid), exe);
  } finally {
    await stop(child);
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("statusWord maps every state letter", () => {
  const cases: [string, string][] = [
    ["R", "running"],
    ["S", "sleeping"],
    ["D", "sleeping"],
    ["I", "sleeping"],
    ["T", "stopped"],
    ["t", "stopped"],
    ["Z", "zombie"],
    ["X", "dead"],
    ["x", "dead"],
    ["P", "sleeping"],
  ];
  for (const [state, word] of cases) assert.equal(statusWord(state), word, state);
});

Deno.test("isSameProcess: true while alive, false for a wrong startTime or after exit", async () => {
  const child = new Deno.Command("sleep", { args: ["30"] }).spawn();
  const { startTime } = readStat(child.pid)!;
  assert.ok(isSameProcess(child.pid, startTime));
  assert.ok(!isSameProcess(child.pid, startTime + 1));
  await stop(child);
  assert.ok(!isSameProcess(child.pid, startTime));
});

Deno.test("isSameProcess counts a zombie as alive", async () => {
  // `exec sleep` replaces the shell, and sleep never waits for the shell's `true` child.
  const shell = new Deno.Command("sh", { args: ["-c", "true & exec sleep 30"] }).spawn();
  try {
    const zombie = await eventually(() => {
      const [pid] = descendants(shell.pid);
      const stat = pid === undefined ? null : readStat(pid);
      return stat?.state === "Z" ? stat : null;
    }, "a zombie child");
    assert.equal(statusWord(zombie.state), "zombie");
    assert.ok(isSameProcess(zombie.pid, zombie.startTime));
  } finally {
    await stop(shell); // the zombie is re-parented and reaped by init (or our subreaper)
  }
});

Deno.test("startTimeToDate of a fresh process is close to now", async () => {
  const child = new Deno.Command("sleep", { args: ["30"] }).spawn();
  try {
    const started = startTimeToDate(readStat(child.pid)!.startTime);
    // btime has one-second resolution, hence the generous tolerance.
    assert.ok(Math.abs(started.getTime() - Date.now()) < 3000, started.toISOString());
  } finally {
    await stop(child);
  }
});

Deno.test("readCmdline, readCwd and readExe", async () => {
  const child = new Deno.Command("sh", { args: ["-c", "sleep 30; :", "arg with space"], cwd: "/tmp" })
    .spawn();
  try {
    // A freshly forked child still shows Deno's own argv until exec.
    const argv = await eventually(() => {
      const a = readCmdline(child.pid);
      return a?.[1] === "-c" ? a : null;
    }, "exec of sh");
    // Deno.Command passes the PATH-resolved program (/usr/bin/sh) as argv[0].
    assert.match(argv[0], /\/sh$/);
    assert.deepEqual(argv.slice(1), ["-c", "sleep 30; :", "arg with space"]);
    assert.equal(readCwd(child.pid), "/tmp");
    assert.equal(readExe(child.pid), Deno.realPathSync("/bin/sh"));
  } finally {
    await stop(child);
  }
  assert.equal(readCmdline(NO_SUCH_PID), null);
  assert.equal(readCwd(NO_SUCH_PID), null);
  assert.equal(readExe(NO_SUCH_PID), null);
});

Deno.test("readFds lists a process's open files sorted by fd", async () => {
  const shell = new Deno.Command("sh", {
    args: ["-c", "exec 7</etc/hostname 5</etc/passwd; echo ready; exec sleep 30"],
    stdin: "null",
    stdout: "piped",
  }).spawn();
  try {
    const reader = shell.stdout.getReader();
    await reader.read(); // "ready": the redirections are in place
    reader.releaseLock();
    const fds = readFds(shell.pid);
    assert.deepEqual(fds.map((f) => f.fd), [...fds.map((f) => f.fd)].sort((a, b) => a - b));
    assert.ok(fds.some((f) => f.fd === 5 && f.target === "/etc/passwd"), JSON.stringify(fds));
    assert.ok(fds.some((f) => f.fd === 7 && f.target === "/etc/hostname"), JSON.stringify(fds));
    assert.equal(fds.find((f) => f.fd === 0)?.target, "/dev/null");
  } finally {
    await stop(shell);
    await shell.stdout.cancel();
  }
  assert.deepEqual(readFds(NO_SUCH_PID), []);
});

Deno.test("descendants finds children and grandchildren, not the pid itself", async () => {
  const shell = new Deno.Command("sh", { args: ["-c", "sleep 30 & sleep 30 & wait"] }).spawn();
  let kids: number[] = [];
  try {
    kids = await eventually(() => {
      const found = descendants(shell.pid);
      return found.length === 2 ? found : null;
    }, "two sleep children");
    assert.ok(!kids.includes(shell.pid));
    for (const pid of kids) assert.equal(readStat(pid)?.ppid, shell.pid);
    // From our own pid the shell and both sleeps are visible: grandchildren are included.
    const mine = descendants(Deno.pid);
    for (const pid of [shell.pid, ...kids]) assert.ok(mine.includes(pid), `${pid} in ${mine}`);
    assert.ok(!mine.includes(Deno.pid));
  } finally {
    for (const pid of kids) Deno.kill(pid, "SIGKILL"); // before the shell, so none is orphaned
    await stop(shell);
  }
  assert.deepEqual(descendants(NO_SUCH_PID), []);
});
