// Compressed checkpoints are one archive, streamed through the compressor by tar (no temporary
// uncompressed tarball): .tar, .tar.gz, .tar.lz4, .tar.zst (zstd multi-threaded).

import { dirname } from "node:path";
import { COMPRESSION_NAMES, type CompressionName } from "../api/types.ts";
import { failedPrecondition, invalidArgument } from "../errors.ts";
import { runCommand } from "../sys/command.ts";

export type Compression = CompressionName;
export const COMPRESSIONS: readonly Compression[] = COMPRESSION_NAMES;

const EXT: Record<Exclude<Compression, "none">, string> = {
  tar: ".tar",
  gzip: ".tar.gz",
  lz4: ".tar.lz4",
  zstd: ".tar.zst",
};

/** Compressor for tar's -I; null = plain tar. pigz when present: gzip is single-threaded. */
function program(c: Compression, decompress: boolean): string | null {
  switch (c) {
    case "gzip":
      return hasBinary("pigz") ? "pigz" : "gzip";
    case "lz4":
      return "lz4";
    case "zstd":
      return decompress ? "zstd -T0" : "zstd -T0 -3";
    default:
      return null;
  }
}

let binCache: Record<string, boolean> = {};
function hasBinary(name: string): boolean {
  return binCache[name] ??= (Deno.env.get("PATH") ?? "/usr/bin:/bin").split(":").some((d) => {
    try {
      return Deno.statSync(`${d}/${name}`).isFile;
    } catch {
      return false;
    }
  });
}
export function resetBinaryCache() {
  binCache = {};
}

export function parseCompression(s: string | undefined): Compression {
  const c = (s ?? "none").toLowerCase();
  if (c === "" || c === "false") return "none";
  if (!COMPRESSIONS.includes(c as Compression)) {
    throw invalidArgument(`unknown compression "${s}" (use one of ${COMPRESSIONS.join(", ")})`);
  }
  return c as Compression;
}

export const archiveExt = (c: Exclude<Compression, "none">) => EXT[c];

/** Which compression a checkpoint path uses, from its name; "none" for a directory. */
export function detectCompression(path: string): Compression {
  for (const [c, ext] of Object.entries(EXT).sort((a, b) => b[1].length - a[1].length)) {
    if (path.endsWith(ext)) return c as Compression;
  }
  return "none";
}

async function tar(args: string[], what: string, into?: string): Promise<void> {
  const out = await runCommand("tar", args);
  if (!out.success) {
    const err = out.stderr.trim().split("\n").slice(-3);
    // (not the archive's fault: said so, or a good checkpoint looks damaged)
    if (into && /No space left on device/.test(out.stderr)) {
      throw failedPrecondition(
        `not enough space in ${into} to unpack the checkpoint (free some, then again)`,
        err,
      );
    }
    throw failedPrecondition(`${what} failed`, err);
  }
}

export function requireCompressor(c: Exclude<Compression, "none">): void {
  const need = program(c, false)?.split(" ")[0];
  if (need && !hasBinary(need)) {
    throw failedPrecondition(`compression ${c} needs ${need}, which is not installed`);
  }
}

export async function createArchive(dir: string, archive: string, c: Exclude<Compression, "none">) {
  requireCompressor(c);
  const prog = program(c, false);
  await tar([...(prog ? ["-I", prog] : []), "-C", dir, "-cf", archive, "."], `compressing with ${c}`);
  Deno.chmodSync(archive, 0o600); // the job's whole memory: not for other users
}

export async function extractArchive(archive: string, dir: string): Promise<void> {
  const c = detectCompression(archive);
  if (c === "none") throw invalidArgument(`${archive} is not a checkpoint archive`);
  const need = program(c, true)?.split(" ")[0];
  if (need && !hasBinary(need)) {
    // (tar would only say that its child failed, as if the archive were damaged)
    throw failedPrecondition(
      `${archive} is compressed with ${c}: unpacking it needs ${need}, which is not installed`,
    );
  }
  const prog = program(c, true);
  await tar(
    [...(prog ? ["-I", prog] : []), "-C", dir, "-xf", archive],
    `unpacking ${archive} (damaged archive?)`,
    dirname(dirname(dir)), // (the scratch dir's own dir: the checkpoint dir)
  );
}
