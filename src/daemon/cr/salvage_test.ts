// The crash-recovery paths of salvage.ts that black-box tests cannot time: each left-over state a
// killed dump can leave, and what the next start makes of it.
import { assert, assertEquals } from "../../testing/asserts.ts";
import { type Manifest, MANIFEST_DRAFT, writeManifest } from "../../checkpoint/manifest.ts";
import { JobDb, type JobRow } from "../db.ts";
import { Logger } from "../log.ts";
import { Checksums } from "./checksums.ts";
import type { CrHost } from "./host.ts";
import { clearTemps, exists, salvageImages, TMP_PREFIX, WORK_PREFIX, WORK_SUBDIR } from "./salvage.ts";

function host(root: string) {
  const db = new JobDb(`${root}/cedana.db`);
  const log = new Logger("error", true);
  const dumped: string[] = [];
  const halts: (string | undefined)[] = [];
  const h = {
    db,
    log,
    checksums: new Checksums(db, log),
    dumped: (jid: string, checkpoint?: string) => {
      dumped.push(jid);
      halts.push(checkpoint);
    },
  } as unknown as CrHost;
  return { h, db, dumped, halts };
}

function jobRow(jid: string, state: "running" | "halted", pid: number | null): JobRow {
  return {
    jid,
    type: "process",
    pid,
    startTime: pid === null ? null : 1,
    state,
    exitCode: null,
    // (a halted one: the exit watcher took CRIU's kill for its end)
    exitSignal: state === "halted" ? "SIGKILL" : null,
    adopted: false,
    log: null,
    attachable: false,
    tty: false,
    gpu: false,
    cmdline: [],
    cwd: "/",
    details: {},
    createdAt: 1,
    updatedAt: 1,
  };
}

/** A dump's temporary dir as CRIU and (optionally) the manifest step left it. */
function leftover(
  root: string,
  name: string,
  withManifest: boolean,
  id = "c0ffee000001",
  job: { jid: string | null; pid?: number } = { jid: null },
) {
  const tmp = `${root}/${TMP_PREFIX}${name}`;
  Deno.mkdirSync(tmp);
  Deno.writeTextFileSync(`${tmp}/pages-1.img`, "pages");
  Deno.writeTextFileSync(`${tmp}/stats-dump`, "stats");
  if (withManifest) {
    writeManifest(tmp, {
      format: 1,
      id,
      name,
      time: new Date().toISOString(),
      job,
      files: [{ name: "pages-1.img", size: 5, sha256: "" }, { name: "stats-dump", size: 5, sha256: "" }],
      checksums: "pending",
    } as unknown as Manifest);
  }
  return tmp;
}

Deno.test("salvage: images with a manifest are recorded uncompressed under the dump's name", () => {
  const root = Deno.makeTempDirSync();
  const { h, db } = host(root);
  const tmp = leftover(root, "d1", true);
  const s = salvageImages(h, tmp, null);
  assertEquals(s, { kind: "recorded", id: "c0ffee000001", path: `${root}/d1`, jid: null });
  assert(!exists(tmp) && exists(`${root}/d1/pages-1.img`));
  assertEquals(db.getCheckpoint("c0ffee000001")?.manifest.compression, "none");
  db.close();
});

Deno.test("salvage: a finished archive is recorded; a recorded one leaves a leftover; an unmoved one is moved", () => {
  const root = Deno.makeTempDirSync();
  const { h, db } = host(root);
  const tmp = leftover(root, "d2", true);
  Deno.writeTextFileSync(`${root}/d2.tar.gz`, "archive");
  assertEquals(salvageImages(h, tmp, `${root}/d2.tar.gz`).kind, "recorded");
  assertEquals(db.getCheckpoint("c0ffee000001")?.path, `${root}/d2.tar.gz`);
  assertEquals(db.getCheckpoint("c0ffee000001")?.manifest.compression, "gzip");
  assert(!exists(tmp), "the images went once the archive was recorded");
  // the commit recorded it and the archive is there: the images are a leftover
  const again = leftover(root, "d2", true);
  assertEquals(salvageImages(h, again, `${root}/d2.tar.gz`).kind, "useless");
  // recorded, but the uncompressed move into place never happened: finish it
  const t3 = leftover(root, "d3", true, "c0ffee000003");
  db.insertCheckpoint({ id: "c0ffee000003", jid: null, path: `${root}/d3`, time: 1, size: 10, manifest: {} });
  assertEquals(salvageImages(h, t3, `${root}/d3`).kind, "recorded");
  assert(exists(`${root}/d3/pages-1.img`));
  db.close();
});

Deno.test("salvage: no manifest but CRIU finished: kept as .incomplete (and the job knows); CRIU unfinished: useless", () => {
  const root = Deno.makeTempDirSync();
  const { h, db, dumped } = host(root);
  db.insertJob(jobRow("j4", "running", null));
  const tmp = leftover(root, "d4", false);
  assertEquals(salvageImages(h, tmp, null, "j4"), {
    kind: "kept",
    path: `${root}/d4.incomplete`,
    manifest: false,
  });
  // `restore job j4` must not quietly take an older checkpoint: the job carries the path
  assertEquals(db.getJob("j4")?.details.incompleteDump, `${root}/d4.incomplete`);
  assertEquals(dumped, ["j4"], "its process is gone: the job ends as dumped");
  const t5 = leftover(root, "d5", false);
  Deno.removeSync(`${t5}/stats-dump`);
  assertEquals(salvageImages(h, t5, null).kind, "useless");
  db.close();
});

Deno.test("clearTemps: only this daemon's listed dirs; half-written archives go; work dirs go", () => {
  const root = Deno.makeTempDirSync();
  const { h, db } = host(root);
  const mine = leftover(root, "d6", false);
  Deno.removeSync(`${mine}/stats-dump`); // CRIU did not finish
  Deno.writeTextFileSync(`${mine}.tar.zst`, "half");
  const work = Deno.makeTempDirSync({ dir: root, prefix: WORK_PREFIX });
  const theirs = leftover(root, "other", true); // another daemon's live dump in the same dir
  db.addTemp(mine, "dump", `${root}/d6.tar.zst`);
  db.addTemp(work, "work");
  clearTemps(h);
  assert(!exists(mine) && !exists(`${mine}.tar.zst`) && !exists(work));
  assert(exists(theirs), "not ours: untouched");
  assertEquals(db.temps(), []);
  db.close();
});

Deno.test("salvage: no manifest, but the draft from before CRIU and CRIU's stats in the runtime's work dir: completed and recorded", () => {
  const root = Deno.makeTempDirSync();
  const { h, db } = host(root);
  const tmp = `${root}/${TMP_PREFIX}d5`;
  Deno.mkdirSync(`${tmp}/${WORK_SUBDIR}`, { recursive: true });
  Deno.writeTextFileSync(`${tmp}/pages-1.img`, "pages");
  Deno.writeTextFileSync(`${tmp}/${WORK_SUBDIR}/stats-dump`, "stats"); // (runc's CRIU wrote it there)
  writeManifest(tmp, {
    format: 1,
    id: "c0ffee000005",
    name: "d5",
    time: new Date().toISOString(),
    job: { jid: null, type: "runc" },
    files: [],
    checksums: "pending",
  } as unknown as Manifest, MANIFEST_DRAFT);
  // (its final path is free: the images move there, they are not dropped for an archive)
  const s = salvageImages(h, tmp, `${root}/d5`);
  assertEquals(s, { kind: "recorded", id: "c0ffee000005", path: `${root}/d5`, jid: null });
  const m = db.getCheckpoint("c0ffee000005")!.manifest as unknown as Manifest;
  assertEquals(m.files.map((f) => f.name), ["pages-1.img", "stats-dump"]);
  assertEquals(m.job.type, "runc");
  assertEquals([...Deno.readDirSync(`${root}/d5`)].map((e) => e.name).sort(), [
    "manifest.json",
    "pages-1.img",
    "stats-dump",
  ]);
  // without CRIU's stats (CRIU did not finish) a draft alone is useless
  const t6 = `${root}/${TMP_PREFIX}d6`;
  Deno.mkdirSync(t6);
  Deno.writeTextFileSync(`${t6}/pages-1.img`, "pages");
  writeManifest(t6, { format: 1, id: "c0ffee000006", files: [] } as unknown as Manifest, MANIFEST_DRAFT);
  assertEquals(salvageImages(h, t6, null).kind, "useless");
  db.close();
});

Deno.test("salvage: recorded images are the checkpoint that halted their job, whoever noticed the end first", () => {
  const root = Deno.makeTempDirSync();
  const { h, db, dumped, halts } = host(root);
  const gone = 4194999; // above any default pid_max: never a live process
  const job = (jid: string, state: "running" | "halted") => db.insertJob(jobRow(jid, state, gone));
  job("j6", "running");
  salvageImages(h, leftover(root, "d6", true, "c0ffee000006", { jid: "j6", pid: gone }), null, "j6");
  assertEquals([dumped, halts], [["j6"], ["c0ffee000006"]]);
  // the exit watcher recorded CRIU's kill as the job's end: it is a dump's end all the same
  job("j7", "halted");
  salvageImages(h, leftover(root, "d7", true, "c0ffee000007", { jid: "j7", pid: gone }), null, "j7");
  const j7 = db.getJob("j7")!;
  assertEquals([j7.details.haltedBy, j7.exitSignal], ["c0ffee000007", null]);
  db.close();
});
