import { assert, assertEquals } from "../testing/asserts.ts";
import { JobDb, type JobRow } from "./db.ts";

function job(jid: string, over: Partial<JobRow> = {}): JobRow {
  return {
    jid,
    type: "process",
    pid: 42,
    startTime: 1000,
    state: "running",
    exitCode: null,
    exitSignal: null,
    adopted: false,
    log: "/tmp/x.log",
    attachable: false,
    tty: false,
    gpu: false,
    cmdline: ["sleep", "1"],
    cwd: "/",
    details: { a: 1 },
    createdAt: 1,
    updatedAt: 1,
    ...over,
  };
}

Deno.test("jobs round-trip, update and delete; schema is migrated and reopenable", () => {
  const path = `${Deno.makeTempDirSync()}/cedana.db`;
  const db = new JobDb(path);
  assertEquals(db.schemaVersion, 3);
  db.insertJob(job("a"));
  db.insertJob(job("b", { attachable: true, createdAt: 2 }));
  assertEquals(db.getJob("a"), job("a"));
  db.updateJob("a", { state: "halted", exitCode: 3, updatedAt: 5 });
  assertEquals(db.getJob("a")?.exitCode, 3);
  assertEquals(db.listJobs().map((j) => j.jid), ["a", "b"]);
  db.deleteJob("a");
  assertEquals(db.getJob("a"), null);
  db.close();
  const again = new JobDb(path);
  assertEquals(again.listJobs().map((j) => [j.jid, j.attachable]), [["b", true]]);
  again.close();
});

Deno.test("latest checkpoint per job", () => {
  const db = new JobDb(`${Deno.makeTempDirSync()}/cedana.db`);
  db.insertJob(job("a"));
  for (const [id, time] of [["c1", 10], ["c2", 30], ["c3", 20]] as const) {
    db.insertCheckpoint({ id, jid: "a", path: `/tmp/${id}`, time, size: 1, manifest: {} });
  }
  assertEquals(db.latestCheckpoints().get("a")?.id, "c2");
  assertEquals(db.listCheckpoints("a").map((c) => c.id), ["c2", "c3", "c1"]);
  assert(db.getCheckpoint("nope") === null);
  db.close();
});
