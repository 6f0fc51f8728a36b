import { spawn } from "node:child_process";
import { assert, assertEquals } from "../testing/asserts.ts";
import { freezeCgroup, runcFreezer, thaw, thawAfter, thawMarked } from "./freezer.ts";

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
    // the process in a cgroup below the container's (systemd in a container does that): the
    // container's own cgroup is frozen, as runc has CRIU do, so CRIU can thaw what it froze
    Deno.mkdirSync(`${dir}/sub`);
    Deno.writeTextFileSync(`${dir}/sub/cgroup.procs`, String(child.pid));
    const paths: Record<string, string> = v2 ? { "": dir } : { freezer: dir, "": `${ROOT}/unified/x` };
    const where = runcFreezer(paths);
    assertEquals(where, { dir, v2 });

    const f = await freezeCgroup(where, mark);
    assert(f, "froze");
    assert(frozenNow(dir), "frozen once freezeCgroup returns: CRIU's first look finds it so");
    // someone else's freeze (a paused container) is not ours to undo
    assertEquals(await freezeCgroup(where, null), null);
    assert(frozenNow(dir));
    // what the next daemon does when this one died mid-dump
    thawMarked(mark);
    assert(!frozenNow(dir), "thawed from the mark");

    assert(await freezeCgroup(where, null));
    thaw(f);
    assert(!frozenNow(dir));

    // the runtime's wrapper thaws when the runtime exits, with its exit code
    assert(await freezeCgroup(where, null));
    const [cmd, args] = thawAfter(f, "sh", ["-c", "exit 3"]);
    assertEquals((await new Deno.Command(cmd, { args }).output()).code, 3);
    assert(!frozenNow(dir), "thawed by the wrapper");
    thaw(f); // twice, and
    thaw({ dir: `${dir}-gone`, v2 }); // a cgroup gone already: no error
  } finally {
    child.kill("SIGKILL");
    await exited;
    Deno.removeSync(mark);
    Deno.removeSync(`${dir}/sub`);
    Deno.removeSync(dir);
  }
});

Deno.test("runcFreezer: the hierarchy runc uses; never a root, a path outside cgroupfs, or the daemon's own", () => {
  const key = v2 ? "" : "freezer";
  assertEquals(runcFreezer(undefined), null);
  assertEquals(runcFreezer({}), null);
  assertEquals(runcFreezer({ [key]: base }), null);
  assertEquals(runcFreezer({ [key]: "/tmp/x" }), null);
  assertEquals(runcFreezer({ [key]: `${base}/a/../..` }), null);
  const own = /^\d+:(?:[^:]*,)?freezer(?:,[^:]*)?:(\/.*)$/m.exec(Deno.readTextFileSync("/proc/self/cgroup"))
    ?.[1];
  if (!v2 && own && own !== "/") assertEquals(runcFreezer({ freezer: `${base}${own}` }), null);
  assertEquals(runcFreezer({ [key]: `${base}/ctr-1` })?.dir, `${base}/ctr-1`);
});
