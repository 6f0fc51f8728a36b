// containerd jobs through the real CLI and daemon, against a private containerd started by the
// test (own root, state and socket) with an image imported from a local OCI tarball.
import { existsSync } from "node:fs";
import type { DumpResult, Job, RestoreResult } from "../../src/api/types.ts";
import { assert, assertEquals, assertStringIncludes } from "../../src/testing/asserts.ts";
import { assertConsecutiveTicks, lastTick, readLog, waitTicks } from "../cr_helpers.ts";
import { crashDuring, type TestDaemon, waitFor } from "../helpers.ts";
import { hasContainerCRTools, type PrivateContainerd } from "./fixture.ts";
import { IMAGE, withContainerd } from "./with_containerd.ts";

const opts = { sanitizeOps: false, sanitizeResources: false, ignore: !hasContainerCRTools() } as const;
const COUNTER = ["sh", "-c", 'i=0; while true; do echo "tick $i"; i=$((i+1)); sleep 0.1; done'];

/** `ctr containers rm`, retried while containerd is still removing the container's dead task. */
async function removeContainer(c: PrivateContainerd, id: string): Promise<void> {
  await waitFor(
    () => c.ctrOk("containers", "rm", id).then(() => true, () => false),
    `ctr containers rm ${id}`,
  );
}

async function job(d: TestDaemon, jid: string): Promise<Job> {
  return (await d.json<Job[]>("ps")).find((j) => j.jid === jid)!;
}

Deno.test(
  "containerd: counter keeps counting across dump/restore, 3 cycles; kill and delete clean up",
  opts,
  () =>
    withContainerd(async (d, c) => {
      const j = await d.json<Job>("run", "containerd", IMAGE, "--jid", "cd", "--id", "k1", "--", ...COUNTER);
      assertEquals(j.type, "containerd");
      assertEquals((await c.taskPid("k1")).pid, j.pid);
      await waitTicks(j.log!, 3);
      for (let i = 0; i < 3; i++) {
        await d.ok("dump", "job", "cd");
        assertEquals((await job(d, "cd")).status, "halted");
        const before = lastTick(readLog(j.log!));
        await d.ok("restore", "job", "cd");
        await waitTicks(j.log!, before + 3);
        assertConsecutiveTicks(j.log!);
      }
      const pid = (await job(d, "cd")).pid!;
      assertEquals((await c.taskPid("k1")).pid, pid);
      await d.ok("job", "kill", "cd");
      await waitFor(async () => (await job(d, "cd")).status === "halted", "killed");
      // (the container's init is the shim's child: containerd tells how it ended)
      await waitFor(async () => (await job(d, "cd")).exitSignal === "SIGKILL", "exit recorded as SIGKILL");
      // a container that exits on its own: its exit code
      const ex = await d.json<Job>(
        "run",
        "containerd",
        IMAGE,
        "--jid",
        "ex",
        "--id",
        "ex1",
        "--",
        "sh",
        "-c",
        "exit 3",
      );
      await waitFor(async () => (await job(d, "ex")).exitCode === 3, "exit code 3 recorded");
      assertEquals(ex.type, "containerd");
      await d.ok("job", "delete", "ex");
      await d.ok("job", "delete", "cd");
      const left = await c.ctr("containers", "ls", "-q");
      assert(!left.stdout.includes("k1"), `container removed: ${left.stdout}`);
    }),
);

Deno.test(
  "containerd: leave-running, then a copy under a new id; restore after a daemon restart",
  opts,
  () =>
    withContainerd(async (d) => {
      // the container changes its files: one written, one of the image's deleted
      const changes = "echo kept > /marker; rm /etc/group; ";
      const j = await d.json<Job>(
        "run",
        "containerd",
        IMAGE,
        "--jid",
        "o",
        "--id",
        "o1",
        "--",
        "sh",
        "-c",
        changes + COUNTER[2],
      );
      await waitTicks(j.log!, 2);
      const r = await d.json<DumpResult>("dump", "containerd", "o1", "--leave-running");
      const copy = await d.json<RestoreResult>(
        "restore",
        "containerd",
        "--path",
        r.checkpoint.path,
        "--id",
        "o2",
        "--jid",
        "copy",
      );
      assert(copy.job.log !== j.log);
      await waitTicks(copy.job.log!, 2);
      // a new container from the image, with the dumped one's file changes
      assertEquals(Deno.readTextFileSync(`/proc/${copy.job.pid}/root/marker`), "kept\n");
      assert(!existsSync(`/proc/${copy.job.pid}/root/etc/group`), "the deleted file stays deleted");
      assert(existsSync(`/proc/${copy.job.pid}/root/etc/passwd`), "the image's other files are there");
      await waitTicks(j.log!, lastTick(readLog(j.log!)) + 2);
      await d.ok("dump", "job", "o");
      await d.stop();
      await d.start();
      await d.ok("restore", "job", "o");
      await waitTicks(j.log!, lastTick(readLog(j.log!)) + 2);
    }),
);

Deno.test(
  "containerd: another container under a job's old ID is never deleted or taken over",
  opts,
  () =>
    withContainerd(async (d, c) => {
      const a = await d.json<Job>(
        "run",
        "containerd",
        IMAGE,
        "--jid",
        "ca",
        "--id",
        "cdup",
        "--",
        ...COUNTER,
      );
      await waitTicks(a.log!, 1);
      const cp = await d.json<DumpResult>("dump", "job", "ca", "--leave-running");
      await d.ok("job", "kill", "ca");
      await waitFor(async () => (await job(d, "ca")).status === "halted", "ca killed");
      const taken = await d.cli(
        "restore",
        "containerd",
        "--path",
        cp.checkpoint.path,
        "--id",
        "cdup",
        "--jid",
        "cb",
      );
      assertEquals(taken.code, 4, taken.stderr);
      assertStringIncludes(taken.stderr, "container cdup already exists");
      // cleared by hand, the ID is free: a new container for job cb. (Right after the kill, containerd
      // may still be removing the dead task, and refuses the container's removal until it has.)
      await removeContainer(c, "cdup");
      await d.ok("restore", "containerd", "--path", cp.checkpoint.path, "--id", "cdup", "--jid", "cb");
      await d.ok("job", "delete", "ca");
      assert((await job(d, "cb")).status !== "halted", "deleting job ca left job cb's container alone");
      await d.ok("job", "kill", "cb");
      // a restore that fails (the file the process holds is not in a new container without its
      // changes) takes the container it made with it: a retry does not find it in the way
      const w = await d.json<Job>(
        "run",
        "containerd",
        IMAGE,
        "--jid",
        "cw",
        "--id",
        "cw",
        "--",
        "sh",
        "-c",
        'exec 3>>/root/data.log; while true; do echo x >&3; echo "tick 1"; sleep 0.1; done',
      );
      await waitTicks(w.log!, 1);
      const bare = await d.json<DumpResult>("dump", "job", "cw", "--leave-running", "--ignore-rootfs");
      const failed = await d.cli("restore", "containerd", "--path", bare.checkpoint.path, "--id", "cw2");
      assertEquals(failed.code, 5, failed.stderr);
      assert(!(await c.ctrOk("containers", "ls", "-q")).split("\n").includes("cw2"), "no container left");
      // the job's container removed by hand and a user's made under its ID since the dump: not the job's
      const x = await d.json<Job>("run", "containerd", IMAGE, "--jid", "cx", "--id", "cx", "--", ...COUNTER);
      await waitTicks(x.log!, 1);
      const xcp = await d.json<DumpResult>("dump", "job", "cx");
      await removeContainer(c, "cx");
      await c.ctrOk("containers", "create", IMAGE, "cx", "sleep", "1000");
      const theirs = await d.cli("restore", "job", "cx");
      assertEquals(theirs.code, 4, theirs.stderr);
      assertStringIncludes(
        theirs.stderr,
        `container cx already exists in containerd: restore it as a new job under another ID: cedana restore containerd --path ${xcp.checkpoint.path} --id NEW_ID`,
      );
      await d.ok("job", "delete", "cx");
      assert(
        (await c.ctrOk("containers", "ls", "-q")).split("\n").includes("cx"),
        "the user's container stays",
      );
    }),
);

Deno.test(
  "containerd: errors (unknown container, containerd down)",
  opts,
  () =>
    withContainerd(async (d, c) => {
      const unknown = await d.cli("manage", "containerd", "nope");
      assertEquals(unknown.code, 3, unknown.stderr);
      // (an image in another namespace than the one looked in: say which one that was)
      const other = await d.cli("run", "containerd", IMAGE, "--namespace", "elsewhere", "--", "true");
      assertEquals(other.code, 3, other.stderr);
      assertStringIncludes(other.stderr, "(containerd namespace elsewhere)");
      const badId = await d.cli("run", "containerd", IMAGE, "--id", "bad/id", "--", "true");
      assertEquals(badId.code, 2, badId.stderr);
      assertStringIncludes(badId.stderr, 'invalid container ID "bad/id"');
      const down = await d.cliWith(
        {},
        "run",
        "containerd",
        IMAGE,
        "--address",
        `${c.dir}/nope.sock`,
        "--",
        "true",
      );
      assertEquals(down.code, 6, down.stderr);
      assertStringIncludes(down.stderr, "containerd is not reachable");
      // CRIU options cannot reach the CRIU of containerd's shim: refused, not ignored
      const j = await d.json<Job>("run", "containerd", IMAGE, "--jid", "e", "--", ...COUNTER);
      await waitTicks(j.log!, 1);
      const opt = await d.cli("dump", "job", "e", "--criu-opts", '{"ghost-limit":"1M"}');
      assertEquals(opt.code, 2, opt.stderr);
      assertStringIncludes(opt.stderr, "--criu-opts cannot be used with containerd jobs");
      const remap = await d.cli("dump", "job", "e", "--link-remap");
      assertEquals(remap.code, 2, remap.stderr);
      assertStringIncludes(remap.stderr, "--external and --link-remap cannot be used with containerd jobs");
      assert((await job(d, "e")).status !== "halted", "the job still runs");
      // dump containerd CID in a namespace that has no such job; then in its own
      const cid = (j.details as { id: string }).id;
      const elsewhere = await d.cli("dump", "containerd", cid, "--namespace", "elsewhere", "--leave-running");
      assertEquals(elsewhere.code, 3, elsewhere.stderr);
      assertStringIncludes(
        elsewhere.stderr,
        `no running containerd job for container ${cid} (namespace elsewhere)`,
      );
      await d.ok(
        "dump",
        "containerd",
        cid,
        "--namespace",
        c.namespace,
        "--address",
        c.address,
        "--leave-running",
      );
      // a restore names the containerd to use (here: one that is not there)
      const cp = await d.json<DumpResult>("dump", "job", "e", "--leave-running");
      const away = await d.cli(
        "restore",
        "containerd",
        "--path",
        cp.checkpoint.path,
        "--id",
        "e2",
        "--address",
        `${c.dir}/nope.sock`,
      );
      assertEquals(away.code, 6, away.stderr);
      assertStringIncludes(away.stderr, `${c.dir}/nope.sock`);
    }),
);

Deno.test(
  "containerd: the daemon killed after the task was restored, before recording it: the next daemon adopts it",
  opts,
  () =>
    withContainerd(async (d, c) => {
      const j = await d.json<Job>(
        "run",
        "containerd",
        IMAGE,
        "--jid",
        "late",
        "--id",
        "l1",
        "--",
        ...COUNTER,
      );
      await waitTicks(j.log!, 2);
      await d.ok("dump", "job", "late");
      const before = lastTick(readLog(j.log!));
      await crashDuring(d, "restore-before-record", "restore", "job", "late");
      await waitFor(async () => (await job(d, "late")).status !== "halted", "the restored task adopted");
      assertEquals((await job(d, "late")).pid, (await c.taskPid("l1")).pid);
      await waitTicks(j.log!, before + 3);
      await d.ok("dump", "job", "late");
      await d.ok("restore", "job", "late");
      await d.ok("job", "kill", "late");
    }),
);

Deno.test(
  "containerd: a managed container, dumped and restored, is removed by job delete like one cedana made",
  opts,
  () =>
    withContainerd(async (d, c) => {
      await c.ctrOk("run", "-d", IMAGE, "ext5", ...COUNTER);
      const j = await d.json<Job>("manage", "containerd", "ext5", "--jid", "m5");
      assertEquals(j.pid, (await c.taskPid("ext5")).pid);
      await d.ok("dump", "job", "m5");
      await d.ok("restore", "job", "m5");
      await d.ok("job", "kill", "m5");
      await waitFor(async () => (await job(d, "m5")).status === "halted", "killed");
      await d.ok("job", "delete", "m5");
      // (it was left, "its container ID now names another container", once its restored task ended)
      assert(!d.daemonLog.includes("now names another container"), "taken for another's");
      const left = await c.ctr("containers", "ls", "-q");
      assert(!left.stdout.split("\n").includes("ext5"), `container left: ${left.stdout}`);
    }),
);
