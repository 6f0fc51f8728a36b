// Warm CRIUs (src/daemon/cr/warm.ts): the CRIU started when a dump ends a job restores it, the one
// started for a running job dumps it, and one that is not used goes without a trace (no CRIU left
// waiting, no work dir, nothing done to the job).
import { existsSync } from "node:fs";
import type { DumpResult, RestoreResult } from "../src/api/types.ts";
import { assert, assertEquals, assertStringIncludes } from "../src/testing/asserts.ts";
import { assertContinues, crOpts, lastTick, readLog, startWorkload, verify } from "./cr_helpers.ts";
import { sleep, TestDaemon, waitFor, withDaemon } from "./helpers.ts";

type Op = "restore" | "dump";

/** CRIU processes working for this daemon (their command lines name its directory), by operation. */
function criusOf(d: TestDaemon, op: Op = "restore"): number[] {
  const out: number[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const argv = Deno.readTextFileSync(`/proc/${e.name}/cmdline`).split("\0");
      const criu = argv.findIndex((a) => a.endsWith("/criu") || a.endsWith("criu.real"));
      if (criu >= 0 && argv[criu + 1] === op && argv.some((a) => a.includes(d.dir))) out.push(Number(e.name));
    } catch { /* gone */ }
  }
  return out;
}

/** Scratch dirs in the checkpoint dir: of restores, or of warm dumps (those have images/.work). */
function workDirs(d: TestDaemon, op: Op = "restore"): string[] {
  const dir = `${d.dir}/checkpoints`;
  return [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) =>
    n.startsWith(".cedana-work-") && existsSync(`${dir}/${n}/images/.work`) === (op === "dump")
  );
}

/** Whether CRIU `pid` has a file open whose path ends with `tail`. */
function holds(pid: number, tail: string): boolean {
  try {
    return [...Deno.readDirSync(`/proc/${pid}/fd`)].some((e) => {
      try {
        return Deno.readLinkSync(`/proc/${pid}/fd/${e.name}`).endsWith(tail);
      } catch {
        return false;
      }
    });
  } catch {
    return false;
  }
}

/** A CRIU started ahead for the job's next restore (or dump) is there, waiting (a dump's: at its FIFO). */
async function warmUp(d: TestDaemon, op: Op = "restore"): Promise<number> {
  return await waitFor(
    () => criusOf(d, op).find((p) => op === "restore" || holds(p, "/.work/irmap-cache")),
    `the CRIU started ahead (${op})`,
  );
}

async function noneLeft(d: TestDaemon, what: string, op: Op = "restore"): Promise<void> {
  await waitFor(
    () => !criusOf(d, op).length && !workDirs(d, op).length,
    `no ${op} CRIU or work dir left (${what})`,
    5000,
  );
}

Deno.test(
  "a restore right after a dump uses the CRIU started ahead: the job goes on, its output in its log",
  crOpts,
  withDaemon(async (d) => {
    const job = await startWorkload(d, "w", "memory", "32");
    for (let i = 0; i < 3; i++) {
      const before = lastTick(readLog(job.log!));
      await d.ok("dump", "job", "w");
      await warmUp(d);
      const r = await d.json<RestoreResult>("restore", "job", "w");
      assertEquals(r.warm, true, "restored by the CRIU started ahead");
      assertEquals(r.job.pid, job.pid);
      assertEquals(r.pidNamespace, false);
      await assertContinues(job.log!, before);
      await noneLeft(d, "after the restore");
    }
    // what the user reads says so
    await d.ok("dump", "job", "w");
    await warmUp(d);
    const plain = await d.cli("restore", "job", "w");
    assertEquals(plain.code, 0, plain.stderr);
    assertStringIncludes(plain.stdout, "criu (started ahead)");
    await verify(d, "w", job.log!);
    // the daemon still learns the job's exit
    await d.ok("job", "kill", "w");
    await waitFor(async () => (await d.json<{ status: string }[]>("ps"))[0].status === "halted", "exit seen");
  }),
);

Deno.test(
  "a CRIU started ahead that a restore cannot use goes: another checkpoint, other options, a rotated log",
  crOpts,
  withDaemon(async (d) => {
    const job = await startWorkload(d, "o", "counter");
    // an older checkpoint, by --path
    const first = await d.json<DumpResult>("dump", "job", "o");
    await d.ok("restore", "job", "o");
    await d.ok("dump", "job", "o");
    await warmUp(d);
    let before = lastTick(readLog(job.log!));
    let r = await d.json<RestoreResult>("restore", "job", "o", "--path", first.checkpoint.path);
    assertEquals(r.warm, undefined);
    await waitFor(() => readLog(job.log!).length > 0, "output");
    await noneLeft(d, "older checkpoint restored");
    // the log moved away (rotated): the job writes to a new file at its path, as without a warm CRIU
    await d.ok("dump", "job", "o");
    await warmUp(d);
    Deno.renameSync(job.log!, `${job.log}.1`);
    r = await d.json<RestoreResult>("restore", "job", "o");
    assertEquals(r.warm, undefined);
    await waitFor(() => lastTick(readLog(job.log!)) > 0, "output in the new log");
    await noneLeft(d, "rotated log");
    // restored with -o: the output goes there
    await d.ok("dump", "job", "o");
    await warmUp(d);
    const other = `${d.dir}/other.log`;
    before = lastTick(readLog(job.log!));
    r = await d.json<RestoreResult>("restore", "job", "o", "-o", other);
    assertEquals(r.warm, undefined);
    await waitFor(() => lastTick(readLog(other)) > 0, "output in the -o log");
    await noneLeft(d, "restored with -o");
    assert(lastTick(readLog(job.log!)) <= before + 1, "nothing more in the old log");
    await verify(d, "o", other);
  }),
);

Deno.test(
  "a CRIU started ahead goes with its job or checkpoint, and with its daemon even when killed",
  crOpts,
  async () => {
    const d = new TestDaemon();
    await d.start();
    try {
      await startWorkload(d, "a", "counter");
      await d.ok("dump", "job", "a");
      await warmUp(d);
      await d.ok("job", "delete", "a");
      await noneLeft(d, "job deleted");

      await startWorkload(d, "b", "counter");
      const dump = await d.json<DumpResult>("dump", "job", "b");
      await warmUp(d);
      await d.ok("job", "checkpoint", "delete", dump.checkpoint.id);
      await noneLeft(d, "checkpoint deleted");
      // removed by hand: the restore says so, and its warm CRIU goes too
      await startWorkload(d, "b2", "counter");
      const byHand = await d.json<DumpResult>("dump", "job", "b2");
      await warmUp(d);
      Deno.removeSync(byHand.checkpoint.path, { recursive: true });
      const r2 = await d.cli("restore", "job", "b2");
      assertEquals(r2.code, 3, r2.stderr);
      await noneLeft(d, "checkpoint removed by hand");

      const c = await startWorkload(d, "c", "counter");
      await d.ok("dump", "job", "c");
      await warmUp(d);
      await d.stop("SIGKILL");
      // (it reads end-of-file once the daemon's end of its FIFO is gone)
      await waitFor(() => !criusOf(d).length, "the waiting CRIU ended with its daemon", 5000);
      await sleep(200);
      assertEquals(readLog(c.log!).filter((l) => l.startsWith("ready")).length, 1, "nothing restored");
      await d.start();
      const before = lastTick(readLog(c.log!));
      const r = await d.json<RestoreResult>("restore", "job", "c");
      assertEquals(r.warm, undefined);
      await assertContinues(c.log!, before);
      await noneLeft(d, "next daemon");
      await verify(d, "c", c.log!);
      // `daemon stop`: the warm CRIUs and their dirs go with it
      await d.ok("dump", "job", "c");
      await warmUp(d);
      await d.ok("daemon", "stop");
      assertEquals(await d.exited(), 0);
      await noneLeft(d, "daemon stopped");
      await noneLeft(d, "daemon stopped", "dump");
      await d.start();
    } finally {
      await d.cleanup();
    }
  },
);

Deno.test(
  "a place for a warm dump that comes free goes to a running job that has none",
  crOpts,
  withDaemon(async (d) => {
    const jobs = [];
    for (const jid of ["p1", "p2", "p3", "p4", "p5"]) jobs.push(await startWorkload(d, jid, "counter"));
    // at most 4 at a time
    const warmPids = () =>
      criusOf(d, "dump").filter((p) => holds(p, "/.work/irmap-cache")).map((p) => {
        const argv = Deno.readTextFileSync(`/proc/${p}/cmdline`).split("\0");
        return Number(argv[argv.indexOf("-t") + 1]);
      });
    await waitFor(() => warmPids().length === 4, "4 warm dumps");
    await sleep(1500);
    assertEquals(warmPids().length, 4, "no more than 4");
    const without = jobs.find((j) => !warmPids().includes(j.pid!))!;
    const withOne = jobs.find((j) => warmPids().includes(j.pid!))!;
    await d.ok("job", "kill", withOne.jid);
    await waitFor(() => warmPids().includes(without.pid!), `job ${without.jid} gets the place`);
    assertEquals(warmPids().length, 4);
  }),
);

Deno.test(
  "checkpoint.warm=false: no CRIU is started ahead",
  crOpts,
  async () => {
    const d = new TestDaemon({ CEDANA_CHECKPOINT_WARM: "false" });
    await d.start();
    try {
      const job = await startWorkload(d, "n", "counter");
      await d.ok("dump", "job", "n");
      await sleep(300);
      assertEquals(criusOf(d), []);
      const before = lastTick(readLog(job.log!));
      const r = await d.json<RestoreResult>("restore", "job", "n");
      assertEquals(r.warm, undefined);
      await assertContinues(job.log!, before);
    } finally {
      await d.cleanup();
    }
  },
);

Deno.test(
  "a dump of a job that has run a moment uses the CRIU started ahead; so does the next after a restore",
  crOpts,
  withDaemon(async (d) => {
    const job = await startWorkload(d, "wd", "memory", "32");
    for (let i = 0; i < 2; i++) {
      await warmUp(d, "dump");
      const before = lastTick(readLog(job.log!));
      const r = await d.json<DumpResult>("dump", "job", "wd");
      assertEquals(r.warm, true, "dumped by the CRIU started ahead");
      assert(r.criuStats?.frozenTimeUs, "CRIU's stats are with the checkpoint");
      const files = [...Deno.readDirSync(r.checkpoint.path)].map((e) => e.name);
      assert(!files.includes("irmap-cache"), `the FIFO stayed out of the checkpoint: ${files}`);
      await noneLeft(d, "after the dump", "dump");
      await d.ok("restore", "job", "wd");
      await assertContinues(job.log!, before);
    }
    await verify(d, "wd", job.log!);
  }),
);

Deno.test(
  "a CRIU started ahead for a dump is not used when the dump asks for more or the job changed, and goes",
  crOpts,
  withDaemon(async (d) => {
    // --leave-running: not the options it was started with
    const job = await startWorkload(d, "wl", "counter");
    await warmUp(d, "dump");
    let r = await d.json<DumpResult>("dump", "job", "wl", "--leave-running");
    assertEquals(r.warm, undefined);
    // the job keeps running, and gets a new one
    await warmUp(d, "dump");
    // (one at a time; a CRIU probing the kernel has a child for a moment)
    await waitFor(() => criusOf(d, "dump").length === 1, "one warm dump");
    // the job took a file lock after it was started: the dump needs --file-locks now
    const lock = `${d.dir}/lockfile`;
    const sh = await d.json<{ jid: string; log: string }>(
      "run",
      "process",
      "--jid",
      "lk",
      "--",
      "sh",
      "-c",
      `i=0; while :; do echo tick $i; i=$((i+1)); [ $i = 8 ] && exec 9>>${lock} && flock 9; sleep 0.2; done`,
    );
    await warmUp(d, "dump");
    await waitFor(() => lastTick(readLog(sh.log)) >= 9, "the lock taken");
    r = await d.json<DumpResult>("dump", "job", "lk");
    assertEquals(r.warm, undefined);
    assert(r.detected.some((l) => l.includes("--file-locks")), r.detected.join("; "));
    await d.ok("restore", "job", "lk");
    const before = lastTick(readLog(sh.log));
    await waitFor(() => lastTick(readLog(sh.log)) > before + 1, "the shell ticks on");
    // a job that exits, or is killed: its warm dump goes
    await d.ok("job", "kill", "wl", "lk");
    await noneLeft(d, "jobs killed", "dump");
    assert(lastTick(readLog(job.log!)) > 0);
  }),
);

Deno.test(
  "a CRIU started ahead for a dump dies with its daemon, even killed, and never touches the job",
  crOpts,
  async () => {
    const d = new TestDaemon();
    await d.start();
    try {
      const job = await startWorkload(d, "k", "counter");
      await warmUp(d, "dump");
      const dirs = workDirs(d, "dump");
      await d.stop("SIGKILL");
      await waitFor(() => !criusOf(d, "dump").length, "the waiting CRIU died with its daemon", 5000);
      const before = lastTick(readLog(job.log!));
      await waitFor(() => lastTick(readLog(job.log!)) > before + 2, "the job runs on, never frozen");
      await d.start();
      await waitFor(() => dirs.every((n) => !existsSync(`${d.dir}/checkpoints/${n}`)), "its dir cleared");
      await verify(d, "k", job.log!);
    } finally {
      await d.cleanup();
    }
  },
);

Deno.test(
  "the daemon killed as a CRIU started ahead finished its dump: the next daemon records the checkpoint",
  crOpts,
  async () => {
    const d = new TestDaemon({ CEDANA_FAULT: "dump-after-criu" });
    await d.start();
    try {
      const job = await startWorkload(d, "cut", "counter");
      await warmUp(d, "dump");
      const r = await d.cli("dump", "job", "cut");
      assert(r.code !== 0, "the daemon died in the dump");
      delete d.env.CEDANA_FAULT;
      await d.start();
      // (CRIU's stats were in its work dir inside the images: the dump is known to have finished)
      const cps = await waitFor(async () => {
        const l = await d.json<{ path: string }[]>("job", "checkpoint", "list", "cut");
        return l.length ? l : null;
      }, "the checkpoint recorded");
      assert(existsSync(`${cps[0].path}/stats-dump`));
      const before = lastTick(readLog(job.log!));
      await d.ok("restore", "job", "cut");
      await assertContinues(job.log!, before);
      await verify(d, "cut", job.log!);
    } finally {
      await d.cleanup();
    }
  },
);
