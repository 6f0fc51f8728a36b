// Warm restores (src/daemon/cr/warm.ts): the CRIU started when a dump ends a job restores it, and
// one that is not used goes without a trace (no CRIU left waiting, no work dir, no output).
import type { DumpResult, RestoreResult } from "../src/api/types.ts";
import { assert, assertEquals } from "../src/testing/asserts.ts";
import { assertContinues, crOpts, lastTick, readLog, startWorkload, verify } from "./cr_helpers.ts";
import { sleep, TestDaemon, waitFor, withDaemon } from "./helpers.ts";

/** CRIU processes working for this daemon (their command lines name its directory). */
function criusOf(d: TestDaemon): number[] {
  const out: number[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const argv = Deno.readTextFileSync(`/proc/${e.name}/cmdline`).split("\0");
      if (
        argv.some((a) => a.endsWith("criu") || a.endsWith("criu.real")) && argv.some((a) => a.includes(d.dir))
      ) {
        out.push(Number(e.name));
      }
    } catch { /* gone */ }
  }
  return out;
}

/** The restores' scratch dirs in the checkpoint dir. */
function workDirs(d: TestDaemon): string[] {
  return [...Deno.readDirSync(`${d.dir}/checkpoints`)].map((e) => e.name).filter((n) =>
    n.startsWith(".cedana-work-")
  );
}

/** After a dump ended the job: its CRIU is there, waiting. */
async function warmUp(d: TestDaemon): Promise<number> {
  return await waitFor(() => criusOf(d)[0], "the CRIU started ahead");
}

async function noneLeft(d: TestDaemon, what: string): Promise<void> {
  await waitFor(() => !criusOf(d).length && !workDirs(d).length, `no CRIU or work dir left (${what})`, 5000);
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
    } finally {
      await d.cleanup();
    }
  },
);

Deno.test(
  "checkpoint.warm_restore=false: no CRIU is started ahead",
  crOpts,
  async () => {
    const d = new TestDaemon({ CEDANA_CHECKPOINT_WARM_RESTORE: "false" });
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
