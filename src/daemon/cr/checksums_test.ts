import { assert, assertEquals, assertRejects } from "../../testing/asserts.ts";
import { DirHasher } from "../../checkpoint/hasher.ts";
import { type Manifest, readManifest, stampFiles, writeManifest } from "../../checkpoint/manifest.ts";
import { JobDb } from "../db.ts";
import { Logger } from "../log.ts";
import { Checksums } from "./checksums.ts";

/** A committed-but-still-hashing checkpoint, as a dump leaves it. */
function checkpoint(root: string, db: JobDb, bytes = 64 << 20) {
  const path = `${root}/ck`;
  Deno.mkdirSync(path);
  Deno.writeFileSync(`${path}/pages-1.img`, new Uint8Array(bytes).fill(7));
  Deno.writeTextFileSync(`${path}/core-1.img`, "core");
  const hasher = new DirHasher(path, new Set(["manifest.json"]));
  const files = hasher.list().map((f) => ({ ...f, sha256: "" }));
  const manifest = { format: 1, files, checksums: "pending" } as unknown as Manifest;
  writeManifest(path, manifest);
  db.insertCheckpoint({
    id: "c1",
    jid: null,
    path,
    time: Date.now(),
    size: bytes,
    manifest: { ...manifest, stamps: stampFiles(path, files) } as unknown as Record<string, unknown>,
  });
  return { path, manifest, hasher };
}

Deno.test("a checkpoint this daemon wrote is trusted while its checksums are still computed; holds pause them", async () => {
  const root = Deno.makeTempDirSync();
  const db = new JobDb(`${root}/cedana.db`);
  const sums = new Checksums(db, new Logger("error", true));
  const { path, manifest, hasher } = checkpoint(root, db);
  const release = sums.hold();
  sums.complete("c1", path, manifest, hasher.finish(sums.pace));
  // trusted at once: no hashing needed, no waiting for the paused background work
  assertEquals(await sums.verifier(path, path, "auto"), null);
  await new Promise((r) => setTimeout(r, 50));
  assertEquals(readManifest(path).checksums, "pending", "hashing must wait while a restore holds");
  release();
  await sums.settled(path);
  const done = readManifest(path);
  assertEquals(done.checksums, undefined);
  assert(done.files.every((f) => f.sha256.length === 64));
  db.close();
});

Deno.test("images changed after the dump are verified in full, after the background checksums", async () => {
  const root = Deno.makeTempDirSync();
  const db = new JobDb(`${root}/cedana.db`);
  const sums = new Checksums(db, new Logger("error", true));
  const { path, manifest, hasher } = checkpoint(root, db, 1 << 20);
  sums.complete("c1", path, manifest, hasher.finish(sums.pace));
  await sums.settled(path);
  Deno.writeTextFileSync(`${path}/core-1.img`, "corf"); // same size, new content and mtime
  assert(!sums.trusted(path, path, "auto"));
  const check = await sums.verifier(path, path, "auto");
  await assertRejects(check!, Error, "core-1.img");
  db.close();
});

Deno.test("a file written to after the dump was committed is never trusted, however the hashing went", async () => {
  const root = Deno.makeTempDirSync();
  const db = new JobDb(`${root}/cedana.db`);
  const sums = new Checksums(db, new Logger("error", true));
  const { path, manifest, hasher } = checkpoint(root, db, 1 << 20);
  const release = sums.hold(); // the background hashing waits, as it would behind a restore
  sums.complete("c1", path, manifest, hasher.finish(sums.pace));
  await new Promise((r) => setTimeout(r, 20));
  const f = Deno.openSync(`${path}/pages-1.img`, { write: true });
  f.writeSync(new Uint8Array([1, 2, 3])); // same size, new bytes, new mtime
  f.close();
  release();
  await sums.settled(path);
  for (let i = 0; i < 2; i++) { // the same verdict every time
    assert(!sums.trusted(path, path, "auto"));
    const check = await sums.verifier(path, path, "auto");
    await assertRejects(check!, Error, "pages-1.img was changed after the dump");
  }
  db.close();
});
