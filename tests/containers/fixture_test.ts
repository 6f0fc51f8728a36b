// Proves the container fixtures: a runc bundle that runs, checkpoints and restores with fresh
// pipes, and an OCI image that runs in a private containerd with a file log.
import { assert, assertEquals, assertMatch } from "../../src/testing/asserts.ts";
import {
  type Capture,
  hasContainerCRTools,
  hasContainerTools,
  makeBundle,
  makeImageTar,
  mountsUnder,
  PrivateContainerd,
  reapZombieChildren,
  run,
  runOk,
  spawnCapture,
} from "./fixture.ts";

const HAVE_TOOLS = hasContainerTools();
const HAVE_CR = hasContainerCRTools();
const opts = { sanitizeOps: false, sanitizeResources: false } as const;

const COUNTER = "i=0; while true; do echo n=$i; i=$((i+1)); sleep 0.1; done";

function counters(text: string): number[] {
  return [...text.matchAll(/^n=(\d+)$/gm)].map((m) => Number(m[1]));
}

async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, rej) => {
    timer = setTimeout(() => rej(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function waitForFile(path: string, re: RegExp, timeoutMs = 10_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let text = "";
    try {
      text = await Deno.readTextFile(path);
    } catch { /* not yet */ }
    if (re.test(text)) return text;
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${re} in ${path}:\n${text.slice(-1000)}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

Deno.test({
  name: "containers: runc bundle runs with pipes, checkpoints, restores with fresh pipes",
  ignore: !HAVE_CR,
  ...opts,
  async fn() {
    const tmp = await Deno.makeTempDir({ prefix: "cedana-runc-" });
    const runcRoot = `${tmp}/runc-root`;
    const id = `cedana-fx-${crypto.randomUUID().slice(0, 8)}`;
    const captures: Capture[] = [];
    const inits: number[] = [];
    try {
      const bundle = await makeBundle(`${tmp}/bundle`, ["sh", "-c", COUNTER], { env: ["FOO=bar"] });
      assertEquals(bundle, `${tmp}/bundle`);
      const cfg = JSON.parse(await Deno.readTextFile(`${bundle}/config.json`));
      assertEquals(cfg.process.terminal, false);
      assertEquals(cfg.root.readonly, false);
      assert((cfg.process.env as string[]).includes("FOO=bar"));

      const first = spawnCapture("runc", ["--root", runcRoot, "run", "-d", "--bundle", bundle, id]);
      captures.push(first);
      assertEquals(await within(first.exited, 20_000, "runc run -d"), 0, first.stderr);
      await first.waitFor(/^n=5$/m);
      const state = JSON.parse(await runOk("runc", ["--root", runcRoot, "state", id]));
      assertEquals(state.status, "running");
      assert(state.pid > 0);
      inits.push(state.pid);

      const t0 = performance.now();
      const cp = await run("runc", [
        "--root",
        runcRoot,
        "checkpoint",
        "--image-path",
        `${tmp}/img`,
        "--work-path",
        `${tmp}/work`,
        id,
      ]);
      const dumpLog = await Deno.readTextFile(`${tmp}/work/dump.log`).catch(() => "");
      assertEquals(cp.code, 0, `${cp.stderr}\n${dumpLog.slice(-3000)}`);
      console.log(`runc checkpoint: ${(performance.now() - t0).toFixed(0)} ms`);
      await Deno.stat(`${tmp}/img/inventory.img`);
      // The container is gone, so the first pipes reach EOF.
      await within(first.closed, 10_000, "EOF on the first container's pipes");
      const before = counters(first.stdout);
      const last = before[before.length - 1];
      assert(last >= 5, first.stdout);

      const second = spawnCapture("runc", [
        "--root",
        runcRoot,
        "restore",
        "-d",
        "--image-path",
        `${tmp}/img`,
        "--work-path",
        `${tmp}/work-restore`,
        "--bundle",
        bundle,
        id,
      ]);
      captures.push(second);
      const rc = await within(second.exited, 20_000, "runc restore -d");
      const restoreLog = await Deno.readTextFile(`${tmp}/work-restore/restore.log`).catch(() => "");
      assertEquals(rc, 0, `${second.stderr}\n${restoreLog.slice(-3000)}`);
      await second.waitFor(new RegExp(`^n=${last + 3}$`, "m"));
      const after = counters(second.stdout);
      assertEquals(after[0], last + 1, `first line after restore: ${second.stdout.slice(0, 200)}`);
      const restored = JSON.parse(await runOk("runc", ["--root", runcRoot, "state", id]));
      assertEquals(restored.status, "running");
      inits.push(restored.pid);

      await runOk("runc", ["--root", runcRoot, "kill", id, "KILL"]);
      await within(second.closed, 10_000, "EOF on the restored container's pipes");
    } finally {
      await run("runc", ["--root", runcRoot, "delete", "--force", id]);
      for (const c of captures) c.destroy();
      // Adopted by this process when it is a child subreaper: do not leave zombies behind.
      reapZombieChildren(inits);
      await Deno.remove(tmp, { recursive: true });
    }
  },
});

Deno.test({
  name: "containers: OCI image imports into a private containerd; ctr run -d logs to a file",
  ignore: !HAVE_TOOLS,
  ...opts,
  async fn() {
    const tmp = await Deno.makeTempDir({ prefix: "cedana-image-" });
    const cd = new PrivateContainerd();
    try {
      const tar = await makeImageTar(tmp, "cedana-test/busybox:latest");
      await cd.start();
      assert((await Deno.readTextFile(cd.configPath)).includes(cd.root));
      const imported = await cd.ctrOk("images", "import", "--index-name", "cedana-test/busybox:latest", tar);
      assertMatch(imported, /cedana-test\/busybox:latest/);
      const images = (await cd.ctrOk("images", "ls", "-q")).split("\n").filter((s) => s);
      assertEquals(images, ["cedana-test/busybox:latest"]);

      const log = `${tmp}/c1.log`;
      await cd.ctrOk(
        "run",
        "-d",
        "--log-uri",
        `file://${log}`,
        "cedana-test/busybox:latest",
        "c1",
        "sh",
        "-c",
        COUNTER,
      );
      await waitForFile(log, /^n=5$/m);
      const { pid, status } = await cd.taskPid("c1");
      assertEquals(status, "RUNNING");
      assert(pid > 0);
      assertMatch(await Deno.readTextFile(`/proc/${pid}/cmdline`), /^sh\0-c\0/);
      // The image's default Cmd and PATH.
      const spec = JSON.parse(await cd.ctrOk("containers", "info", "c1")).Spec;
      assert((spec.process.env as string[]).some((e) => e.startsWith("PATH=")));
      assert(mountsUnder(cd.state).length > 0, "the task's rootfs is mounted under the state dir");
    } finally {
      await cd.stop();
      await Deno.remove(tmp, { recursive: true });
    }
    assertEquals(mountsUnder(cd.dir), []);
    let exists = true;
    try {
      await Deno.stat(cd.dir);
    } catch {
      exists = false;
    }
    assert(!exists, `${cd.dir} was removed`);
  },
});

Deno.test({
  name: "containers: ctr task checkpoint --image-path writes plain CRIU images (leave-running and --exit)",
  ignore: !HAVE_CR,
  ...opts,
  async fn() {
    const tmp = await Deno.makeTempDir({ prefix: "cedana-ctrcp-" });
    const cd = new PrivateContainerd();
    try {
      const tar = await makeImageTar(tmp, "cedana-test/busybox:latest");
      await cd.start();
      await cd.ctrOk("images", "import", "--index-name", "cedana-test/busybox:latest", tar);
      const log = `${tmp}/c1.log`;
      await cd.ctrOk(
        "run",
        "-d",
        "--log-uri",
        `file://${log}`,
        "cedana-test/busybox:latest",
        "c1",
        "sh",
        "-c",
        COUNTER,
      );
      await waitForFile(log, /^n=3$/m);
      const { pid } = await cd.taskPid("c1");

      // Without --exit the task keeps running (same PID) and the log keeps growing.
      await cd.ctrOk(
        "task",
        "checkpoint",
        "--image-path",
        `${tmp}/img1`,
        "--work-path",
        `${tmp}/work1`,
        "c1",
      );
      await Deno.stat(`${tmp}/img1/inventory.img`);
      const descriptors = JSON.parse(await Deno.readTextFile(`${tmp}/img1/descriptors.json`)) as string[];
      assertMatch(descriptors[1], /^pipe:\[\d+\]$/, "stdout is a shim pipe, external to the dump");
      const n = counters(await Deno.readTextFile(log)).pop()!;
      await waitForFile(log, new RegExp(`^n=${n + 3}$`, "m"));
      assertEquals(await cd.taskPid("c1"), { pid, status: "RUNNING" });
      assertEquals((await cd.ctrOk("images", "ls", "-q")).trim(), "cedana-test/busybox:latest");

      // The shim's runc state is under /run/containerd/runc/<namespace>.
      const st = JSON.parse(await runOk("runc", ["--root", cd.runcRoot, "state", "c1"]));
      assertEquals(st.pid, pid);

      // --exit stops the task after the dump.
      await cd.ctrOk(
        "task",
        "checkpoint",
        "--exit",
        "--image-path",
        `${tmp}/img2`,
        "--work-path",
        `${tmp}/work2`,
        "c1",
      );
      await Deno.stat(`${tmp}/img2/pstree.img`);
      assertEquals((await cd.taskPid("c1")).status, "STOPPED");
    } finally {
      await cd.stop();
      await Deno.remove(tmp, { recursive: true });
    }
    assertEquals(mountsUnder(cd.dir), []);
  },
});
