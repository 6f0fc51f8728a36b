// runc jobs through the real CLI and a real daemon: run, dump/restore, copies, cycles, daemon
// restarts, cleanup, errors. Each test uses its own runc state root.
import type { DumpResult, Job, RestoreResult } from "../../src/api/types.ts";
import { assert, assertEquals, assertStringIncludes } from "../../src/testing/asserts.ts";
import { assertConsecutiveTicks, lastTick, readLog, waitTicks } from "../cr_helpers.ts";
import { crashDuring, sleep, TestDaemon, waitFor, withDaemon } from "../helpers.ts";
import { existsSync } from "node:fs";
import { closeFd, openpty } from "../../src/sys/mod.ts";
import { hasContainerCRTools, makeBundle, runOk, spawnCapture } from "./fixture.ts";

const opts = { sanitizeOps: false, sanitizeResources: false, ignore: !hasContainerCRTools() } as const;
const COUNTER = ["sh", "-c", 'i=0; while true; do echo "tick $i"; i=$((i+1)); sleep 0.1; done'];

async function setup(d: TestDaemon, args = COUNTER) {
  const bundle = await makeBundle(`${d.dir}/bundle`, args);
  const root = `${d.dir}/runc`;
  return { bundle, root };
}

/** `cedana run runc ARGS... --json`: the new job. */
function runRunc(d: TestDaemon, ...args: string[]): Promise<Job> {
  return d.json<Job>("run", "runc", ...args);
}

async function runcList(root: string): Promise<string[]> {
  return (await runOk("runc", ["--root", root, "list", "-q"])).split("\n").filter(Boolean);
}

// 60 MB of random data in the container's /dev/shm: CRIU gzips tmpfs contents, slowly enough to
// kill the daemon halfway through a dump
const BLOB_COUNTER = [
  "sh",
  "-c",
  'head -c 60000000 /dev/urandom > /dev/shm/blob; i=0; while true; do echo "tick $i"; i=$((i+1)); sleep 0.1; done',
];

/** Starts `cedana dump job JID ARGS...` and SIGKILLs the daemon while runc runs CRIU. */
async function killDuringDump(d: TestDaemon, jid: string, ...args: string[]): Promise<void> {
  const dumping = d.cli("dump", "job", jid, ...args);
  const ck = `${d.dir}/checkpoints`;
  await waitFor(
    () => [...Deno.readDirSync(ck)].some((e) => e.name.startsWith(".cedana-tmp-")),
    "dump started",
  );
  await sleep(300); // runc is running CRIU
  await d.stop("SIGKILL");
  assert((await dumping).code !== 0, "the dump did not report success");
}

async function job(d: TestDaemon, jid: string): Promise<Job> {
  return (await d.json<Job[]>("ps")).find((j) => j.jid === jid)!;
}

Deno.test(
  "runc: a counter container keeps counting across dump/restore, 3 cycles",
  opts,
  withDaemon(async (d) => {
    const { bundle, root } = await setup(d);
    const started = await runRunc(d, "--bundle", bundle, "--root", root, "--jid", "ctr", "--id", "c1");
    assertEquals([started.type, (started.details as { id: string }).id], ["runc", "c1"]);
    const log = started.log!;
    await waitTicks(log, 3);
    assertStringIncludes(await d.ok("ps"), "runc");
    for (let i = 0; i < 3; i++) {
      const r = await d.json<DumpResult>("dump", "job", "ctr");
      assert(r.checkpoint.path.includes("dump-runc-ctr-"), r.checkpoint.path);
      assertEquals((await job(d, "ctr")).status, "halted");
      assertEquals(await runcList(root), [], "runc checkpoint removed the container");
      const before = lastTick(readLog(log));
      const back = await d.json<RestoreResult>("restore", "job", "ctr");
      assert(back.job.pid !== null && back.job.status !== "halted");
      await waitTicks(log, before + 3);
      assertConsecutiveTicks(log);
    }
    assertEquals(await runcList(root), ["c1"]);
    await d.ok("job", "kill", "ctr");
    await waitFor(async () => (await job(d, "ctr")).status === "halted", "killed");
    assertEquals((await job(d, "ctr")).exitSignal, "SIGKILL");
    await d.ok("job", "delete", "ctr");
    assertEquals(await runcList(root), [], "delete cleans up runc's state");
  }),
);

Deno.test(
  "runc: leave-running, then restore a copy under a new id next to the original",
  opts,
  withDaemon(async (d) => {
    const { bundle, root } = await setup(d);
    const orig = await runRunc(d, "--bundle", bundle, "--root", root, "--jid", "orig", "--id", "o1");
    await waitTicks(orig.log!, 2);
    const r = await d.json<DumpResult>("dump", "runc", "o1", "--leave-running");
    assertEquals(r.leftRunning, true);
    const copy = await d.json<RestoreResult>(
      "restore",
      "runc",
      "--path",
      r.checkpoint.path,
      "--id",
      "o2",
      "--jid",
      "copy",
    );
    assertEquals(copy.pidNamespace, false);
    assertEquals((await runcList(root)).sort(), ["o1", "o2"]);
    assert(copy.job.log !== orig.log, "the copy has a log of its own");
    await waitTicks(copy.job.log!, lastTick(readLog(copy.job.log!)) + 2);
    await waitTicks(orig.log!, lastTick(readLog(orig.log!)) + 2);
    const dup = await d.cli("restore", "runc", "--path", r.checkpoint.path, "--id", "o1");
    assertEquals(dup.code, 4, dup.stderr);
    assertStringIncludes(dup.stderr, "container o1 is running");
  }),
);

Deno.test(
  "runc: restore after the daemon restarted; the container survived the restart",
  opts,
  withDaemon(async (d) => {
    const { bundle, root } = await setup(d);
    const j = await runRunc(d, "--bundle", bundle, "--root", root, "--jid", "r", "--id", "r1");
    await waitTicks(j.log!, 2);
    await d.stop();
    await sleep(800); // the container writes into its pipe meanwhile (its keeper holds the other end)
    await d.start();
    assertEquals((await job(d, "r")).status !== "halted", true);
    const before = lastTick(readLog(j.log!));
    await waitTicks(j.log!, before + 3); // the new daemon took over the pipe and copies to the log again
    await d.ok("dump", "job", "r");
    await d.stop();
    await d.start();
    await d.ok("restore", "job", "r");
    await waitTicks(j.log!, lastTick(readLog(j.log!)) + 2);
    // adopted by a new daemon (not its child, runc does not say how it ended): a kill still ends
    // with a known signal (it showed none before)
    await d.stop();
    await d.start();
    await d.ok("job", "kill", "r");
    await waitFor(async () => (await job(d, "r")).exitSignal === "SIGKILL", "the kill recorded as SIGKILL");
  }),
);

Deno.test(
  "runc: checkpoint and restore use the CRIU cedana checked, not the first criu on runc's PATH",
  opts,
  async () => {
    const criu = (await runOk("sh", ["-c", "command -v criu"])).trim();
    const shadow = Deno.makeTempDirSync({ prefix: "cedana-shadow-criu-" });
    Deno.writeTextFileSync(`${shadow}/criu`, "#!/bin/sh\necho 'the wrong criu' >&2\nexit 1\n", {
      mode: 0o755,
    });
    const d = new TestDaemon({ PATH: `${shadow}:${Deno.env.get("PATH")}`, CEDANA_CRIU_BINARY_PATH: criu });
    await d.start();
    try {
      const { bundle, root } = await setup(d);
      const j = await runRunc(d, "--bundle", bundle, "--root", root, "--jid", "p", "--id", "p1");
      await waitTicks(j.log!, 2);
      await d.ok("dump", "job", "p");
      await d.ok("restore", "job", "p");
      await waitTicks(j.log!, lastTick(readLog(j.log!)) + 2);
    } catch (e) {
      console.error(`--- daemon log (${d.dir}) ---\n${d.daemonLog}`);
      throw e;
    } finally {
      await d.cleanup();
      Deno.removeSync(shadow, { recursive: true });
    }
  },
);

Deno.test(
  "runc: --criu-opts reach the CRIU runc starts; one CRIU does not know is refused with its words",
  opts,
  withDaemon(async (d) => {
    const { bundle, root } = await setup(d);
    const j = await d.json<Job>("run", "runc", "--bundle", bundle, "--root", root, "--jid", "o");
    await waitTicks(j.log!, 2);
    const bad = await d.cli("dump", "job", "o", "--criu-opts", '{"no-such-opt":true}');
    assertEquals(bad.code, 2, bad.stderr);
    assertStringIncludes(bad.stderr, "unrecognized option '--no-such-opt'");
    const r = await d.json<DumpResult>("dump", "job", "o", "--criu-opts", '{"ghost-limit":"3M"}');
    // CRIU's log is kept with the images, as for a process dump: it read cedana's file
    assertStringIncludes(Deno.readTextFileSync(`${r.checkpoint.path}/dump.log`), "criu-opts.conf");
    await d.ok("restore", "job", "o");
    await waitTicks(j.log!, lastTick(readLog(j.log!)) + 2);
  }),
);

Deno.test(
  "runc: a deleted file over CRIU's ghost limit: a hint, then --criu-opts raises it; --link-remap and --external reach CRIU",
  opts,
  withDaemon(async (d) => {
    const bundle = await makeBundle(`${d.dir}/ghost`, [
      "sh",
      "-c",
      'dd if=/dev/zero of=/big bs=1M count=3 2>/dev/null; exec 3</big; rm /big; i=0; while true; do echo "tick $i"; i=$((i+1)); sleep 0.1; done',
    ]);
    const j = await runRunc(d, "--bundle", bundle, "--root", `${d.dir}/runc`, "--jid", "g");
    await waitTicks(j.log!, 2);
    const ghost = await d.cli("dump", "job", "g", "--leave-running");
    assertEquals(ghost.code, 5, ghost.stderr);
    assertStringIncludes(ghost.stderr, "Can't dump ghost file");
    assertEquals(ghost.stderr.split(".dump.log").length, 2, `CRIU's log named once: ${ghost.stderr}`);
    assertStringIncludes(
      ghost.stderr,
      "hint: a deleted file the job holds open is larger than CRIU's ghost-limit (1 MiB by default)",
    );
    const r = await d.json<DumpResult>(
      "dump",
      "job",
      "g",
      "--criu-opts",
      '{"ghost-limit":"4M"}',
      "--link-remap",
      "--external",
      "unix[1]",
    );
    // (they share the CRIU config file with --criu-opts: CRIU's log shows it read it)
    assertStringIncludes(Deno.readTextFileSync(`${r.checkpoint.path}/dump.log`), "criu-opts.conf");
    await d.ok("restore", "job", "g");
    await waitTicks(j.log!, lastTick(readLog(j.log!)) + 2);
  }),
);

Deno.test(
  "runc: another container under a job's old ID is never deleted or taken over",
  opts,
  withDaemon(async (d) => {
    const { bundle, root } = await setup(d);
    const a = await runRunc(d, "--bundle", bundle, "--root", root, "--jid", "a", "--id", "same");
    await waitTicks(a.log!, 1);
    const cp = await d.json<DumpResult>("dump", "job", "a", "--leave-running");
    await d.ok("job", "kill", "a");
    await waitFor(async () => (await job(d, "a")).status === "halted", "a killed");
    // a new job's restore under the ID of a's stopped container is refused (it used to delete it)
    const args = ["--path", cp.checkpoint.path, "--bundle", bundle, "--root", root, "--id", "same"];
    const taken = await d.cli("restore", "runc", ...args, "--jid", "b");
    assertEquals(taken.code, 4, taken.stderr);
    assertStringIncludes(taken.stderr, "container same already exists");
    // the user clears it and runs a container of their own under that ID
    await runOk("runc", ["--root", root, "delete", "same"]);
    const user = spawnCapture("runc", ["--root", root, "run", "-d", "--bundle", bundle, "same"]);
    assertEquals(await user.exited, 0, user.stderr);
    await d.ok("job", "delete", "a");
    assertEquals(await runcList(root), ["same"], "deleting job a left the user's container alone");
    await runOk("runc", ["--root", root, "delete", "--force", "same"]);
  }),
);

Deno.test(
  "runc: attachable container",
  opts,
  withDaemon(async (d) => {
    const { bundle, root } = await setup(d, ["sh", "-c", 'while read l; do echo "c:$l"; done; exit 4']);
    await d.ok("run", "runc", "--bundle", bundle, "--root", root, "--jid", "a", "--attachable");
    const r = await d.cliWith({ stdin: "hi\n" }, "job", "attach", "a");
    assertEquals([r.stdout, r.code], ["c:hi\n", 4]);
  }),
);

Deno.test(
  "runc: dump runc CID when two runc roots have a container CID: refused until --root names one",
  opts,
  withDaemon(async (d) => {
    const { bundle, root } = await setup(d);
    const other = `${d.dir}/runc-other`;
    const a = await runRunc(d, "--bundle", bundle, "--root", root, "--id", "same", "--jid", "a");
    const b = await runRunc(d, "--bundle", bundle, "--root", other, "--id", "same", "--jid", "b");
    await waitTicks(a.log!, 2);
    await waitTicks(b.log!, 2);
    const which = await d.cli("dump", "runc", "same");
    assertEquals(which.code, 2, which.stderr);
    assertStringIncludes(
      which.stderr,
      `jobs a (${root}), b (${other}) each have a container same: name one with --root`,
    );
    assert(
      (await job(d, "a")).status !== "halted" && (await job(d, "b")).status !== "halted",
      "nothing dumped",
    );
    const nowhere = await d.cli("dump", "runc", "same", "--root", `${d.dir}/runc-none`);
    assertEquals(nowhere.code, 3, nowhere.stderr);
    assertStringIncludes(
      nowhere.stderr,
      `no running runc job for container same (root ${d.dir}/runc-none) (job a has one: cedana dump runc same --root ${root})`,
    );
    // (relative to the caller's directory, as runc takes it)
    const r = await d.cliWith({ cwd: d.dir }, "dump", "runc", "same", "--root", "runc-other", "--json");
    assertEquals(r.code, 0, r.stderr);
    assert((JSON.parse(r.stdout) as DumpResult).checkpoint.path.includes("dump-runc-b-"));
    assertEquals([(await job(d, "a")).status !== "halted", (await job(d, "b")).status], [true, "halted"]);
    await d.ok("job", "kill", "a");
  }),
);

Deno.test(
  "runc: a container that ends at once: its exit code, its output, and delete removes it",
  opts,
  withDaemon(async (d) => {
    const bundle = await makeBundle(`${d.dir}/quick`, ["sh", "-c", "echo bye; exit 7"]);
    const root = `${d.dir}/runc`;
    const attached = await d.cli("run", "runc", "--bundle", bundle, "--root", root, "--id", "q1", "--attach");
    assertEquals(attached.code, 7, attached.stderr);
    assertEquals(attached.stdout, "bye\n");
    const j = await runRunc(d, "--bundle", bundle, "--root", root, "--id", "q2", "--jid", "q2");
    assert(j.pid! > 0, `a real PID (${j.pid})`);
    await waitFor(async () => (await job(d, "q2")).exitCode === 7, "exit code 7 recorded");
    assertStringIncludes(readLog(j.log!).join("\n"), "bye");
    assertEquals((await runcList(root)).sort(), ["q1", "q2"], "stopped, until deleted");
    await d.ok("job", "delete", "--all");
    assertEquals(await runcList(root), [], "job delete removed the jobs' containers");
  }),
);

Deno.test(
  "runc: errors",
  opts,
  withDaemon(async (d) => {
    const { bundle, root } = await setup(d);
    const missing = await d.cli("run", "runc", "--bundle", `${d.dir}/nope`);
    assertEquals(missing.code, 2);
    assertStringIncludes(missing.stderr, "does not exist");
    const unknown = await d.cli("manage", "runc", "nope", "--root", root);
    assertEquals(unknown.code, 3);
    assertStringIncludes(unknown.stderr, "container nope not found");
    const notJob = await d.cli("dump", "runc", "nope");
    assertEquals(notJob.code, 3);
    // a container whose command does not exist: runc's own words, and no runc log left behind
    const noBin = await makeBundle(`${d.dir}/nobin`, ["/nope"]);
    const failed = await d.cli("run", "runc", "--bundle", noBin, "--root", root, "--id", "nb");
    assertEquals(failed.code, 5, failed.stderr);
    assertStringIncludes(failed.stderr, "/nope");
    assertEquals([...Deno.readDirSync(`${d.dir}/checkpoints`)].map((e) => e.name), [], "files left");
    await d.ok("run", "runc", "--bundle", bundle, "--root", root, "--id", "x1", "--jid", "x");
    const dupId = await d.cli("run", "runc", "--bundle", bundle, "--root", root, "--id", "x1");
    assertEquals(dupId.code, 4, dupId.stderr);
    assertStringIncludes(dupId.stderr, "container x1 already exists");
    const badId = await d.cli("run", "runc", "--bundle", bundle, "--root", root, "--id", "bad/id");
    assertEquals(badId.code, 2, badId.stderr);
    assertStringIncludes(badId.stderr, 'invalid container ID "bad/id"');
    // a runc checkpoint is restored by `restore runc`, not by another kind of restore
    const cp = await d.json<DumpResult>("dump", "job", "x", "--leave-running");
    for (const kind of ["process", "containerd"]) {
      const wrong = await d.cli("restore", kind, "--path", cp.checkpoint.path);
      assertEquals(wrong.code, 2, wrong.stderr);
      assertStringIncludes(wrong.stderr, `is a runc checkpoint: restore it with cedana restore runc --path`);
    }
    // a checkpoint without its file system, into a bundle with an empty rootfs: refused up front
    const bare = await d.json<DumpResult>("dump", "job", "x", "--leave-running", "--ignore-rootfs");
    const empty = `${d.dir}/empty-bundle`;
    Deno.mkdirSync(`${empty}/rootfs`, { recursive: true });
    Deno.copyFileSync(`${bundle}/config.json`, `${empty}/config.json`);
    const noFs = await d.cli(
      "restore",
      "runc",
      "--path",
      bare.checkpoint.path,
      "--bundle",
      empty,
      "--id",
      "e2",
    );
    assertEquals(noFs.code, 5, noFs.stderr);
    assertStringIncludes(noFs.stderr, "the checkpoint holds no file system (dumped with --ignore-rootfs)");
    // adopting a container someone else started
    const ext = spawnCapture("runc", ["--root", root, "run", "-d", "--bundle", bundle, "ext"]);
    await ext.exited;
    const m = await d.json<Job>("manage", "runc", "ext", "--root", root);
    assertEquals([m.type, m.adopted], ["runc", true]);
    await d.ok("job", "kill", m.jid);
    await waitFor(async () => (await job(d, m.jid)).status === "halted", "adopted container killed");
    await d.ok("job", "delete", m.jid);
    assert(!(await runcList(root)).includes("ext"));
  }),
);

Deno.test(
  "runc: the daemon SIGKILLed during a dump: runc finishes it, the next daemon records it as the latest",
  opts,
  async () => {
    const d = new TestDaemon();
    await d.start();
    try {
      const { bundle, root } = await setup(d, BLOB_COUNTER);
      const started = await d.json<Job>("run", "runc", "--bundle", bundle, "--root", root, "--jid", "crash");
      const log = started.log!;
      await waitTicks(log, 3);
      await d.ok("dump", "job", "crash"); // an older checkpoint, which must not come back
      await d.ok("restore", "job", "crash");
      await waitTicks(log, lastTick(readLog(log)) + 3);
      Deno.writeTextFileSync(`${bundle}/rootfs/marker`, "the container's own file");
      await killDuringDump(d, "crash");
      const lastBefore = lastTick(readLog(log));
      await d.start();
      await waitFor(
        async () => (await d.json<unknown[]>("checkpoints", "crash")).length === 2,
        "the finished dump recorded",
        60_000,
      );
      // The container's files, which the dump saves after runc's part, were saved by the next
      // daemon (the kept checkpoint had none, and said nothing): a copy in an empty bundle has them.
      const latest = (await d.json<{ path: string }[]>("checkpoints", "crash"))[0].path;
      assertEquals(JSON.parse(Deno.readTextFileSync(`${latest}/manifest.json`)).rootfs, "saved");
      const empty = `${d.dir}/empty-bundle`;
      Deno.mkdirSync(`${empty}/rootfs`, { recursive: true });
      Deno.copyFileSync(`${bundle}/config.json`, `${empty}/config.json`);
      const copy = `${d.dir}/copy.log`;
      await d.ok(
        "restore",
        "runc",
        "--path",
        latest,
        "--bundle",
        empty,
        "--root",
        root,
        "--id",
        "cp1",
        "--jid",
        "cp",
        "-o",
        copy,
      );
      assertEquals(Deno.readTextFileSync(`${empty}/rootfs/marker`), "the container's own file");
      await waitTicks(copy, lastBefore + 1);
      await d.ok("job", "kill", "cp");
      assertEquals((await job(d, "crash")).status, "halted");
      await d.ok("restore", "job", "crash");
      await waitTicks(log, lastBefore + 3);
      assertConsecutiveTicks(log, "the latest state, not an older one");
      assertEquals(
        [...Deno.readDirSync(`${d.dir}/checkpoints`)].filter((e) => e.name.startsWith(".cedana-")).length,
        0,
        "no temporary dirs left",
      );
      await d.ok("job", "kill", "crash");
    } finally {
      await d.cleanup();
    }
  },
);

/** A counter container run as job `jid`, then dumped: where its log stood. */
async function dumpedCounter(d: TestDaemon, jid: string, id: string) {
  const { bundle, root } = await setup(d);
  const log = (await runRunc(d, "--bundle", bundle, "--root", root, "--jid", jid, "--id", id)).log!;
  await waitTicks(log, 3);
  await d.ok("dump", "job", jid);
  return { root, log, before: lastTick(readLog(log)) };
}

Deno.test(
  "runc: the daemon killed after runc restored the container, before recording it: the next daemon adopts it",
  opts,
  withDaemon(async (d) => {
    const { root, log, before } = await dumpedCounter(d, "late", "l1");
    await crashDuring(d, "restore-before-record", "restore", "job", "late");
    await waitFor(async () => (await job(d, "late")).status !== "halted", "the restored container adopted");
    const j = await job(d, "late");
    const st = JSON.parse(await runOk("runc", ["--root", root, "state", "l1"]));
    assertEquals([j.pid, st.status], [st.pid, "running"]);
    // its output still reaches the log (the keepers held its pipes): nothing lost, nothing replayed
    await waitTicks(log, before + 5);
    assertConsecutiveTicks(log);
    // and the record is whole: another cycle works
    await d.ok("dump", "job", "late");
    await d.ok("restore", "job", "late");
    await waitTicks(log, lastTick(readLog(log)) + 2);
    await d.ok("job", "kill", "late");
  }),
);

Deno.test(
  "runc: the daemon killed as runc finished a restore: the next daemon removes that container, the job restores again",
  opts,
  withDaemon(async (d) => {
    const { root, log, before } = await dumpedCounter(d, "cut", "k1");
    await crashDuring(d, "restore-runtime-done", "restore", "job", "cut");
    // (its stdout pipe had no reader left: it could not write its output anywhere)
    // (the log line comes once `runc delete` has returned, a moment after the container is gone)
    await waitFor(
      () => d.daemonLog.includes("removed the container of a restore the previous daemon did not finish"),
      "the cut restore's container removed",
    );
    assertEquals(await runcList(root), []);
    assertEquals((await job(d, "cut")).status, "halted");
    await waitFor(async () => (await d.cli("restore", "job", "cut")).code === 0, "the job restores again");
    await waitTicks(log, before + 3);
    assertConsecutiveTicks(log);
    await d.ok("job", "kill", "cut");
  }),
);

Deno.test(
  "runc: the daemon killed after freezing a container for its dump: the next daemon thaws it, the job runs on",
  opts,
  withDaemon(async (d) => {
    const { bundle, root } = await setup(d);
    const log = (await runRunc(d, "--bundle", bundle, "--root", root, "--jid", "fz", "--id", "f1")).log!;
    await waitTicks(log, 3);
    await crashDuring(d, "dump-container-frozen", "dump", "job", "fz");
    const before = lastTick(readLog(log));
    await waitTicks(log, before + 3); // thawed: counting on where it stopped
    assert((await job(d, "fz")).status !== "halted", "the job was not lost");
    assertEquals(await d.json<unknown[]>("checkpoints", "fz"), []);
    // and a dump now works as ever
    await d.ok("dump", "job", "fz");
    await d.ok("restore", "job", "fz");
    const after = lastTick(readLog(log));
    await waitTicks(log, after + 3);
    assertConsecutiveTicks(log);
    await d.ok("job", "kill", "fz");
  }),
);

Deno.test(
  "runc: the daemon killed or stopped while a container writes nonstop: its log loses no line",
  opts,
  withDaemon(async (d) => {
    const { bundle, root } = await setup(d, [
      "sh",
      "-c",
      'i=0; while [ $i -lt 1000000 ]; do echo "tick $i"; i=$((i+1)); done; exec sleep 1000',
    ]);
    const log = (await runRunc(d, "--bundle", bundle, "--root", root, "--jid", "busy", "--id", "b1")).log!;
    let at = await waitTicks(log, 2000);
    for (const signal of ["SIGKILL", "SIGTERM", "SIGKILL"] as const) {
      await d.stop(signal); // mid-stream: the pump has a chunk in hand more often than not
      await d.start();
      at = await waitTicks(log, at + 5000);
    }
    const lines = readLog(log).filter((l) => l.startsWith("tick "));
    lines.pop(); // the last may be half written
    lines.forEach((l, k) => assertEquals(l, `tick ${k}`, "every line, once, in order"));
    await d.ok("job", "kill", "busy");
  }),
);

Deno.test(
  "runc: a log that is a FIFO or a terminal: refused without a reader, never stalls the daemon",
  opts,
  withDaemon(async (d) => {
    const { bundle, root } = await setup(d);
    const fifo = `${d.dir}/fifo`;
    await runOk("mkfifo", [fifo]);
    const none = await d.cli("run", "runc", "--bundle", bundle, "--root", root, "--id", "f0", "-o", fifo);
    assertEquals([none.code, none.stderr.trim()], [
      5,
      `Error: cannot open log file ${fifo}: a FIFO with no reader`,
    ]);
    assertEquals(await runcList(root), [], "no container made");
    // with a reader: it reads the ticks (the log is opened once: the reader never sees an EOF)
    const reader = new Deno.Command("head", { args: ["-n", "3", fifo], stdout: "piped" }).spawn();
    // (until `head` has opened its end: before that the FIFO has no reader)
    await waitFor(
      async () =>
        (await d.cli(
          "run",
          "runc",
          "--bundle",
          bundle,
          "--root",
          root,
          "--jid",
          "ff",
          "--id",
          "f1",
          "-o",
          fifo,
        ))
          .code === 0,
      "run with a reader",
    );
    assertEquals(new TextDecoder().decode((await reader.output()).stdout), "tick 0\ntick 1\ntick 2\n");
    // a terminal nobody reads: the job's output stalls there, the daemon answers
    const pty = openpty();
    const chatty = await makeBundle(`${d.dir}/chatty`, [
      "sh",
      "-c",
      "while :; do echo 0123456789abcdef; done",
    ]);
    await d.ok(
      "run",
      "runc",
      "--bundle",
      chatty,
      "--root",
      root,
      "--jid",
      "tt",
      "--id",
      "t1",
      "-o",
      pty.slavePath,
    );
    await sleep(1000);
    const t0 = performance.now();
    await d.ok("ps");
    assert(performance.now() - t0 < 5000, "ps answered");
    await d.ok("job", "kill", "ff");
    await d.ok("job", "kill", "tt");
    closeFd(pty.master);
    closeFd(pty.slave);
  }),
);

/** The container's freezer (v1) or unified (v2) cgroup, as runc's state has it. */
function runcCgroup(root: string, id: string): string {
  const paths = JSON.parse(Deno.readTextFileSync(`${root}/${id}/state.json`)).cgroup_paths;
  return existsSync("/sys/fs/cgroup/cgroup.controllers") ? paths[""] : paths.freezer;
}

Deno.test(
  "runc: a container whose process moved into a cgroup below its own dumps as ever (the container's cgroup is frozen)",
  opts,
  withDaemon(async (d) => {
    const { bundle, root } = await setup(d);
    const started = await runRunc(d, "--bundle", bundle, "--root", root, "--jid", "sub", "--id", "s1");
    const log = started.log!;
    await waitTicks(log, 3);
    const sub = `${runcCgroup(root, "s1")}/inner`;
    Deno.mkdirSync(sub);
    Deno.writeTextFileSync(`${sub}/cgroup.procs`, String(started.pid));
    const t0 = performance.now();
    await d.ok("dump", "job", "sub", "--leave-running");
    await waitTicks(log, lastTick(readLog(log)) + 3); // not left frozen
    await d.ok("dump", "job", "sub");
    // (CRIU waited 10 s for a task frozen in a cgroup it had not frozen, then failed)
    assert(performance.now() - t0 < 8_000, "no freezer timeout");
    await d.ok("restore", "job", "sub");
    await waitTicks(log, lastTick(readLog(log)) + 3);
    await d.ok("job", "kill", "sub");
    await d.ok("job", "delete", "sub");
    try {
      Deno.removeSync(sub); // (the restored container is in its own, new cgroup: this one is empty)
    } catch { /* runc removed it */ }
  }),
);

Deno.test(
  "runc: the daemon killed while runc dumps a job left running: the container is thawed without waiting for a new daemon",
  opts,
  withDaemon(async (d) => {
    const { bundle, root } = await setup(d, BLOB_COUNTER);
    const log = (await runRunc(d, "--bundle", bundle, "--root", root, "--jid", "lr", "--id", "l1")).log!;
    await waitTicks(log, 3);
    await killDuringDump(d, "lr", "--leave-running", "--compression", "gzip");
    const ck = `${d.dir}/checkpoints`;
    // no daemon now: runc finishes (CRIU's stats are its last word), and the shell around it thaws
    // what CRIU froze again (CRIU puts back the frozen state it found)
    const cg = runcCgroup(root, "l1");
    const thawed = () =>
      existsSync(`${cg}/freezer.state`)
        ? Deno.readTextFileSync(`${cg}/freezer.state`).trim() === "THAWED"
        : Deno.readTextFileSync(`${cg}/cgroup.freeze`).trim() === "0";
    const tmp = [...Deno.readDirSync(ck)].find((e) =>
      e.name.startsWith(".cedana-tmp-") && e.isDirectory
    )!.name;
    await waitFor(() => existsSync(`${ck}/${tmp}/.work/stats-dump`), "runc's CRIU done", 30_000);
    await waitFor(() => thawed(), "thawed with no daemon", 5_000);
    await sleep(300);
    assert(thawed(), "stays thawed");
    await d.start(); // the output (copied by the daemon) flows again
    await waitTicks(log, lastTick(readLog(log)) + 3);
    await d.ok("job", "kill", "lr");
  }),
);

Deno.test(
  "runc: a container with TCP connections in a network namespace of its own is refused before the dump (runc could not restore it); one joined by path restores",
  opts,
  withDaemon(async (d) => {
    // (a loopback connection: `ping` lines from one nc to another that echoes them)
    const TCP = [
      "sh",
      "-c",
      "nc -l -p 7777 -e cat & sleep 1; (while :; do echo ping; sleep .2; done) | nc 127.0.0.1 7777",
    ];
    const { bundle, root } = await setup(d, TCP);
    await runRunc(d, "--bundle", bundle, "--root", root, "--jid", "own", "--id", "own1");
    await sleep(1500);
    const r = await d.cli("dump", "job", "own");
    assertEquals(r.code, 5, r.stderr);
    assertStringIncludes(r.stderr, "open TCP connections in a network namespace of its own");
    assertEquals((await job(d, "own")).status !== "halted", true, "the container runs on");
    await d.ok("job", "kill", "own");

    // the same in a namespace it joins by path: dumped and restored with its connection
    const ns = `cedana-test-${crypto.randomUUID().slice(0, 8)}`;
    await runOk("ip", ["netns", "add", ns]);
    try {
      await runOk("ip", ["-n", ns, "link", "set", "lo", "up"]);
      const cfg = JSON.parse(Deno.readTextFileSync(`${bundle}/config.json`));
      cfg.linux.namespaces = cfg.linux.namespaces.map((n: { type: string }) =>
        n.type === "network" ? { type: "network", path: `/run/netns/${ns}` } : n
      );
      Deno.writeTextFileSync(`${bundle}/config.json`, JSON.stringify(cfg));
      const j = await runRunc(d, "--bundle", bundle, "--root", root, "--jid", "joined", "--id", "joined1");
      await sleep(1500);
      const dumped = await d.json<DumpResult>("dump", "job", "joined");
      assertStringIncludes(dumped.detected.join(" "), "--tcp-established");
      await d.ok("restore", "job", "joined");
      const lines = () => readLog(j.log!).filter((l) => l === "ping").length;
      const before = lines();
      await waitFor(() => lines() > before + 3, "the echoed pings going on after the restore");
      await d.ok("job", "kill", "joined");
      await waitFor(async () => (await job(d, "joined")).status === "halted", "killed");
    } finally {
      await runOk("ip", ["netns", "delete", ns]).catch(() => {});
    }
  }),
);

Deno.test(
  "runc: a container paused with runc pause shows paused in ps, and its status again once resumed",
  opts,
  withDaemon(async (d) => {
    const { bundle, root } = await setup(d);
    const j = await runRunc(d, "--bundle", bundle, "--root", root, "--jid", "pz", "--id", "pz1");
    await waitTicks(j.log!, 1);
    await runOk("runc", ["--root", root, "pause", "pz1"]);
    // (it showed `sleeping`: a frozen cgroup's tasks look asleep in /proc)
    assertEquals((await job(d, "pz")).status, "paused");
    assertStringIncludes(await d.ok("ps"), "paused");
    await runOk("runc", ["--root", root, "resume", "pz1"]);
    assert(["running", "sleeping"].includes((await job(d, "pz")).status));
    await d.ok("job", "kill", "pz");
  }),
);
