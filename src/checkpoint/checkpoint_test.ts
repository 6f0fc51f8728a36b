import { assertEquals, assertRejects, assertThrows } from "../testing/asserts.ts";
import {
  createArchive,
  detectCompression,
  extractArchive,
  parseCompression,
  requireCompressor,
  resetBinaryCache,
} from "./archive.ts";
import { DirHasher, hashFile } from "./hasher.ts";
import { type Manifest, readManifest, verifyHashes, verifySizes, writeManifest } from "./manifest.ts";

Deno.test("tail hasher equals a plain hash of files that grew while followed", async () => {
  const dir = Deno.makeTempDirSync();
  const hasher = new DirHasher(dir, new Set(["manifest.json"]));
  hasher.start();
  const f = await Deno.open(`${dir}/pages-1.img`, { write: true, create: true });
  for (let i = 0; i < 20; i++) {
    await f.write(crypto.getRandomValues(new Uint8Array(50_000)));
    await new Promise((r) => setTimeout(r, 5));
  }
  f.close();
  Deno.writeTextFileSync(`${dir}/core-1.img`, "core");
  const files = await hasher.finish();
  assertEquals(files.map((x) => x.name), ["core-1.img", "pages-1.img"]);
  assertEquals(files[1], { name: "pages-1.img", ...(await hashFile(`${dir}/pages-1.img`)) });
});

Deno.test("manifest verification names the bad file", async () => {
  const dir = Deno.makeTempDirSync();
  Deno.writeTextFileSync(`${dir}/a.img`, "aaaa");
  const m = {
    format: 1,
    files: [{ name: "a.img", ...(await hashFile(`${dir}/a.img`)) }],
  } as unknown as Manifest;
  writeManifest(dir, m);
  const back = readManifest(dir);
  verifySizes(dir, back);
  await verifyHashes(dir, back);
  Deno.writeTextFileSync(`${dir}/a.img`, "aaab");
  await assertRejects(() => verifyHashes(dir, back), Error, "a.img does not match its checksum");
  Deno.writeTextFileSync(`${dir}/a.img`, "a");
  assertThrows(() => verifySizes(dir, back), Error, "a.img has 1 bytes, expected 4");
  Deno.removeSync(`${dir}/a.img`);
  assertThrows(() => verifySizes(dir, back), Error, "a.img is missing");
  Deno.writeTextFileSync(`${dir}/manifest.json`, "{");
  assertThrows(() => readManifest(dir), Error, "manifest.json is damaged");
});

Deno.test("compression names and archive round trip", async () => {
  assertEquals(detectCompression("/x/dump.tar.zst"), "zstd");
  assertEquals(detectCompression("/x/dump.tar.gz"), "gzip");
  assertEquals(detectCompression("/x/dump.tar"), "tar");
  assertEquals(detectCompression("/x/dump"), "none");
  assertEquals(parseCompression(undefined), "none");
  assertThrows(() => parseCompression("bzip9"), Error, "unknown compression");
  const src = Deno.makeTempDirSync();
  Deno.writeTextFileSync(`${src}/f`, "data");
  for (const c of ["tar", "gzip", "zstd", "lz4"] as const) {
    const out = Deno.makeTempDirSync();
    const archive = `${out}/x${{ tar: ".tar", gzip: ".tar.gz", zstd: ".tar.zst", lz4: ".tar.lz4" }[c]}`;
    await createArchive(src, archive, c);
    const dst = Deno.makeTempDirSync();
    await extractArchive(archive, dst);
    assertEquals(Deno.readTextFileSync(`${dst}/f`), "data");
  }
});

Deno.test("a missing compressor is reported before anything is dumped", () => {
  const path = Deno.env.get("PATH");
  Deno.env.set("PATH", Deno.makeTempDirSync());
  resetBinaryCache();
  try {
    assertThrows(() => requireCompressor("lz4"), Error, "compression lz4 needs lz4, which is not installed");
  } finally {
    Deno.env.set("PATH", path ?? "");
    resetBinaryCache();
  }
});
