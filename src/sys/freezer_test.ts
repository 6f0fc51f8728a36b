import { spawn } from "node:child_process";
import { assert, assertEquals } from "../testing/asserts.ts";
import { freezeCgroup, freezerOf, thaw, thawMarked } from "./freezer.ts";

const ROOT = "/sys/fs/cgroup";
const v2 = (() => {
  try {
    Deno.statSync(`${ROOT}/cgroup.controllers`);
    return true;
  } catch {
    return false;
  }
})();
const base = v2 ? ROOT : `${ROOT}/freezer`;
const canRun = Deno.uid() === 0 && (() => {
  try {
    return Deno.statSync(base).isDirectory;
  } catch {
    return false;
  }
})();

const frozenNow = (dir: string) =>
  v2
    ? /^frozen 1$/m.test(Deno.readTextFileSync(`${dir}/cgroup.events`))
    : Deno.readTextFileSync(`${dir}/freezer.state`).trim() === "FROZEN";

Deno.test("freezeCgroup: frozen until thawed, a mark to thaw after a crash, a frozen cgroup left alone", {
  ignore: !canRun,
  sanitizeResources: false,
  sanitizeOps: false,
}, async () => {
  const dir = `${base}/cedana-freezer-test-${crypto.randomUUID().slice(0, 8)}`;
  Deno.mkdirSync(dir);
  const mark = Deno.makeTempFileSync();
  const child = spawn("sleep", ["60"], { stdio: "ignore" });
  const exited = new Promise((r) => child.once("exit", r));
  try {
    Deno.writeTextFileSync(`${dir}/cgroup.procs`, String(child.pid));
    assertEquals(freezerOf(child.pid!)?.dir, dir);

    const f = await freezeCgroup(child.pid!, mark);
    assert(f, "froze");
    assert(frozenNow(dir), "frozen once freezeCgroup returns: CRIU's first look finds it so");
    // someone else's freeze (a paused container) is not ours to undo
    assertEquals(await freezeCgroup(child.pid!, null), null);
    assert(frozenNow(dir));
    // what the next daemon does when this one died mid-dump
    thawMarked(mark);
    assert(!frozenNow(dir), "thawed from the mark");

    assert(await freezeCgroup(child.pid!, null));
    thaw(f);
    assert(!frozenNow(dir));
    thaw(f); // twice, and
    thaw({ dir: `${dir}-gone`, v2 }); // a cgroup gone already: no error
  } finally {
    child.kill("SIGKILL");
    await exited;
    Deno.removeSync(mark);
    Deno.removeSync(dir);
  }
});

Deno.test("freezerOf: never the daemon's own cgroup or the root", { ignore: !canRun }, () => {
  // (a process in the daemon's cgroup, as any job not in a container of its own)
  assertEquals(freezerOf(Deno.pid), null);
  assertEquals(freezerOf(1) === null || freezerOf(1)!.dir !== base, true);
  assertEquals(freezerOf(2 ** 30), null); // no such process
});
