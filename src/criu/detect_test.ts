import { assertEquals } from "../testing/asserts.ts";
import { inspectTree } from "./detect.ts";

/** A python child that takes `lock` (a Python statement on fd `f`), then says so and waits. */
async function withChild(lock: string, fn: (pid: number) => void) {
  const file = Deno.makeTempFileSync();
  const code = `import fcntl, os, sys, time
r, w = os.pipe()
f = open("${file}", "w")
${lock}
print("ready", flush=True)
time.sleep(60)`;
  const child = new Deno.Command("python3", { args: ["-c", code], stdout: "piped", stderr: "inherit" })
    .spawn();
  const reader = child.stdout.getReader();
  await reader.read(); // "ready"
  try {
    fn(child.pid);
  } finally {
    reader.releaseLock();
    child.kill("SIGKILL");
    await child.status;
    await child.stdout.cancel();
    Deno.removeSync(file);
  }
}

Deno.test("file locks are found in the tree's fdinfo: flock, POSIX, OFD, and a flock on a pipe", async () => {
  await withChild("pass", (pid) => assertEquals(inspectTree(pid).fileLocks, false));
  await withChild("fcntl.flock(f, fcntl.LOCK_EX)", (pid) => assertEquals(inspectTree(pid).fileLocks, true));
  await withChild("fcntl.lockf(f, fcntl.LOCK_EX)", (pid) => assertEquals(inspectTree(pid).fileLocks, true));
  await withChild(
    // struct flock: l_type, l_whence, l_start, l_len, l_pid (l_pid 0 for OFD locks)
    "import struct; fcntl.fcntl(f, fcntl.F_OFD_SETLK, struct.pack('hhqqi', fcntl.F_WRLCK, 0, 0, 0, 0))",
    (pid) => assertEquals(inspectTree(pid).fileLocks, true),
  );
  await withChild("fcntl.flock(r, fcntl.LOCK_EX)", (pid) => assertEquals(inspectTree(pid).fileLocks, true));
});
