// JSR is unreachable in this environment, so assertions come from node:assert.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import {
  closeFd,
  ErrnoError,
  ESRCH,
  getClockTicks,
  openpty,
  pidfdOpen,
  readNow,
  setChildSubreaper,
  setWindowSize,
  waitForExit,
  waitidPidfd,
} from "./libc.ts";

const decoder = new TextDecoder();

/** Runs `sh -c script` and returns trimmed stdout (the script must not leave writers behind). */
async function sh(script: string): Promise<string> {
  const out = await new Deno.Command("sh", { args: ["-c", script], stderr: "inherit" }).output();
  return decoder.decode(out.stdout).trim();
}

Deno.test("openpty: slave path under /dev/pts, slave writes readable on the master", () => {
  const { master, slave, slavePath } = openpty();
  try {
    assert.match(slavePath, /^\/dev\/pts\/\d+$/);
    const file = Deno.openSync(slavePath, { write: true });
    file.writeSync(new TextEncoder().encode("hello\n"));
    file.close();
    const buf = new Uint8Array(64);
    const n = readNow(master, buf); // (the bytes are there: no wait)
    // The line discipline's default ONLCR turns "\n" into "\r\n".
    assert.deepEqual(decoder.decode(buf.subarray(0, n)), "hello\r\n");
  } finally {
    closeFd(slave);
    closeFd(master);
  }
});

Deno.test("openpty: master is close-on-exec so children do not inherit it", async () => {
  const { master, slave } = openpty();
  try {
    // A child lists its own fds; the numbers of ours must be absent.
    const fds = (await sh("ls /proc/self/fd")).split(/\s+/).map(Number);
    assert(!fds.includes(master), `master fd ${master} leaked into child: ${fds}`);
  } finally {
    closeFd(slave);
    closeFd(master);
  }
});

Deno.test("setWindowSize: stty on the slave reports rows and cols", async () => {
  const { master, slave, slavePath } = openpty();
  try {
    setWindowSize(master, 123, 45);
    assert.deepEqual(await sh(`stty size < ${slavePath}`), "45 123");
  } finally {
    closeFd(slave);
    closeFd(master);
  }
});

Deno.test("pidfdOpen + waitForExit resolves only after the process exits", async () => {
  const child = new Deno.Command("sleep", { args: ["0.2"] }).spawn();
  const pidfd = pidfdOpen(child.pid);
  try {
    const started = performance.now();
    await waitForExit(pidfd);
    assert(performance.now() - started >= 150, "resolved before sleep 0.2 could have finished");
    assert.deepEqual((await child.status).code, 0);
  } finally {
    closeFd(pidfd);
  }
});

Deno.test("waitForExit rejects on abort while the process keeps running", async () => {
  const child = new Deno.Command("sleep", { args: ["30"] }).spawn();
  const pidfd = pidfdOpen(child.pid);
  try {
    const controller = new AbortController();
    setTimeout(() => controller.abort(new Error("stop waiting")), 50);
    await assert.rejects(waitForExit(pidfd, controller.signal), /stop waiting/);
    assert.deepEqual(await sh(`kill -0 ${child.pid} && echo alive`), "alive");
  } finally {
    child.kill("SIGKILL");
    await child.status;
    // The abandoned poll slice returns as soon as the pidfd turns readable; let it settle so
    // the op sanitizer sees no pending op.
    await waitForExit(pidfd);
    closeFd(pidfd);
  }
});

Deno.test("pidfdOpen of a non-existent pid throws ESRCH", () => {
  // Above the kernel's absolute PID limit (4194304), so it can never exist.
  assert.throws(
    () => pidfdOpen(4_194_305 + 1000),
    (err) => err instanceof ErrnoError && err.errno === ESRCH && /No such process/.test(err.message),
  );
});

Deno.test("closeFd of a closed fd throws", () => {
  const { master, slave } = openpty();
  closeFd(slave);
  closeFd(master);
  assert.throws(() => closeFd(master), /Bad file descriptor/);
});

Deno.test("getClockTicks returns USER_HZ", () => {
  assert.deepEqual(getClockTicks(), 100); // USER_HZ is 100 on every x86_64/aarch64 Linux
});

// Finding, Deno 2.9.6: both `Deno.Command` and `node:child_process.spawn` children are reaped
// by Deno itself as soon as they exit, so waitidPidfd on them returns null (ECHILD) and the real
// status only arrives via `child.status` / the "exit" event. The pidfd still reports the exit.
Deno.test("waitidPidfd: Deno reaps its own children, so there is no status to collect", async () => {
  const child = new Deno.Command("sh", { args: ["-c", "exit 7"] }).spawn();
  const pidfd = pidfdOpen(child.pid);
  try {
    await waitForExit(pidfd);
    assert.deepEqual((await child.status).code, 7);
    assert.deepEqual(waitidPidfd(pidfd), null);
  } finally {
    closeFd(pidfd);
  }

  const nodeChild = spawn("sh", ["-c", "exit 7"]);
  const exited = new Promise<number | null>((resolve) => nodeChild.on("exit", resolve));
  const nodePidfd = pidfdOpen(nodeChild.pid!);
  try {
    assert.deepEqual(await exited, 7);
    assert.deepEqual(waitidPidfd(nodePidfd), null);
  } finally {
    closeFd(nodePidfd);
  }
});

/**
 * Starts `script` as a grandchild: the intermediate shell exits at once, so as child subreaper
 * we adopt the grandchild, and Deno (which only tracks processes it spawned) never reaps it.
 */
async function spawnOrphan(script: string): Promise<number> {
  setChildSubreaper();
  try {
    const pid = Number(await sh(`sh -c '${script}' >/dev/null 2>&1 </dev/null & echo $!`));
    assert(pid > 0);
    return pid;
  } finally {
    // Only this orphan is adopted: the test runner must not collect the orphans of later tests
    // (their zombies would never be reaped, and keep PIDs a restore needs).
    setChildSubreaper(false);
  }
}

// What works: an orphan adopted through PR_SET_CHILD_SUBREAPER is our child but unknown to Deno,
// so waitid(P_PIDFD) collects its real exit status.
Deno.test("waitidPidfd returns the exit code of an adopted orphan", async () => {
  const pid = await spawnOrphan("sleep 0.2; exit 7");
  const pidfd = pidfdOpen(pid);
  try {
    assert.deepEqual(waitidPidfd(pidfd), null, "still running: WNOHANG must not block");
    await waitForExit(pidfd);
    assert.deepEqual(waitidPidfd(pidfd), { code: 7, signal: null });
    assert.deepEqual(waitidPidfd(pidfd), null, "already reaped");
  } finally {
    closeFd(pidfd);
  }
});

Deno.test("waitidPidfd returns the killing signal of an adopted orphan", async () => {
  const pid = await spawnOrphan("exec sleep 30");
  const pidfd = pidfdOpen(pid);
  try {
    Deno.kill(pid, "SIGKILL");
    await waitForExit(pidfd);
    assert.deepEqual(waitidPidfd(pidfd), { code: null, signal: 9 });
  } finally {
    closeFd(pidfd);
  }
});
