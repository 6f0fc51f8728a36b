// The crash-recovery paths of salvage.ts that black-box tests cannot time: each left-over state a
// killed dump can leave, and what the next start makes of it.
import { assert, assertEquals } from "../../testing/asserts.ts";
import { type Manifest, writeManifest } from "../../checkpoint/manifest.ts";
import { JobDb } from "../db.ts";
import { Logger } from "../log.ts";
import { Checksums } from "./checksums.ts";
import type { CrHost } from "./host.ts";
import { clearTemps, exists, salvageImages, TMP_PREFIX, WORK_PREFIX } from "./salvage.ts";

function host(root: string) {
  const db = new JobDb(`${root}/cedana.db`);
  const log = new Logger("error", true);
  const dumped: string[] = [];
  const h = {
    db,
    log,
    checksums: new Checksums(db, log),
    dumped: (jid: string) => dumped.push(jid),
  } as unknown as CrHost;
  return { h, db, dumped };
}

/** A dump's temporary dir as CRIU and (optionally) the manifest step left it. */
function leftover(root: string, name: string, withManifest: boolean, id = "c0ffee000001") {
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
      job: { jid: null },
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
  db.insertJob({
    jid: "j4",
    type: "process",
    pid: null,
    startTime: null,
    state: "running",
    exitCode: null,
    exitSignal: null,
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
  });
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
