// The manifest travels with the images (manifest.json): what was dumped, by which CRIU on which
// kernel, and every file with its size and SHA-256, so a restore can refuse a damaged checkpoint
// and name the bad file.

import { join } from "node:path";
import { failedPrecondition } from "../errors.ts";
import type { FileDigest } from "./hasher.ts";
import { hashFile } from "./hasher.ts";

export const MANIFEST = "manifest.json";
/**
 * Everything a dump knows before CRIU runs (the job, its flags, its stdio), written before CRIU
 * starts: if the daemon dies while CRIU (or runc) finishes the dump on its own, the next start
 * completes the manifest from it (see salvage.ts). Removed once the manifest is written.
 */
export const MANIFEST_DRAFT = ".manifest.draft.json";

/** A checkpoint's ID: 12 hex digits. */
export function newCheckpointId(): string {
  return Array.from(crypto.getRandomValues(new Uint8Array(6)), (b) => b.toString(16).padStart(2, "0")).join(
    "",
  );
}

/**
 * `holder`: who held a log terminal's master at the dump (a terminal that got its number later is
 * not it; devpts reuses even the inode).
 */
export type TtyStdio = {
  kind: "tty";
  id: string;
  shell?: boolean;
  path?: string;
  holder?: { pid: number; startTime: number };
};
/** `outside`: a pipe to a process outside the job (`job | tee`), not the daemon's. */
export type PipeStdio = { kind: "pipe"; ino: number; outside?: boolean };

/** Input clients sent an attachable job that the daemon still held when it was dumped (not in its pipe). */
export const STDIN_QUEUED = "stdin-queued.bin";

/** A file the job wrote its output to. `append` false: written at an offset (`> file`), at `pos`. */
export type FileStdio = { kind: "file"; path: string; append?: boolean; pos?: number };

export interface StdioInfo {
  /**
   * fd -> what it was: a log file, a pipe held by the daemon, or a terminal (the daemon's pty, or
   * one the process was started in). `shell`: the terminal's session is led from outside the
   * checkpoint (CRIU's -j); `path`: a terminal that was the job's log (-o /dev/pts/N).
   */
  [fd: string]:
    | FileStdio
    | PipeStdio
    | TtyStdio;
}

export interface Manifest {
  format: 1;
  id: string;
  name: string;
  time: string;
  job: {
    jid: string | null;
    /** When the job was recorded (ms): a later job of the same name is another job. */
    createdAt?: number;
    type: string;
    pid: number;
    cmdline: string[];
    cwd: string;
    log: string | null;
    attachable: boolean;
    tty: boolean;
    gpu: boolean;
    details: Record<string, unknown>;
  };
  /** Every PID and TID of the dumped tree: a restore checks whether they are free. */
  pids: number[];
  stdio: StdioInfo;
  criu: { version: string; flags: Record<string, boolean>; external: string[] };
  kernel: string;
  host: string;
  /** sha256 is "" while checksums are still being computed ("pending"). */
  files: FileDigest[];
  checksums?: "pending";
  /** CUDA processes checkpointed through the driver, and the GPU memory they held. */
  gpu?: { pids: number[]; memory: Record<string, number | null>; total: number; driverVersion: number };
  stats?: Record<string, unknown>;
  /**
   * A container's file system (runc: rootfs.tar; containerd: rootfs-diff.tar): saved with the
   * images, left out on purpose (--ignore-rootfs), or not saved (the daemon stopped during the
   * dump and the next one could not save it). Absent: a process, or an older cedana.
   */
  rootfs?: "saved" | "ignored" | "not saved";
}

/** What a checkpoint's manifest says of its container's file system (see Manifest.rootfs). */
export function rootfsState(dir: string): Manifest["rootfs"] {
  try {
    return (JSON.parse(Deno.readTextFileSync(join(dir, MANIFEST))) as Manifest).rootfs;
  } catch {
    return undefined;
  }
}

/** Written to a temporary name and renamed: a reader never sees half a manifest. */
export function writeManifest(dir: string, m: Manifest, name = MANIFEST): void {
  const tmp = join(dir, `.${name}.tmp`);
  Deno.writeTextFileSync(tmp, JSON.stringify(m, null, 2) + "\n");
  Deno.renameSync(tmp, join(dir, name));
}

/** Identity of each file when its checksum was taken: unchanged files need no re-hashing. */
export type FileStamps = Record<string, { ino: number; mtimeMs: number; size: number }>;

export function stampFiles(dir: string, files: { name: string }[]): FileStamps {
  const out: FileStamps = {};
  for (const f of files) {
    const st = Deno.statSync(join(dir, f.name));
    out[f.name] = { ino: st.ino ?? 0, mtimeMs: st.mtime?.getTime() ?? 0, size: st.size };
  }
  return out;
}

/** The same file, unchanged: same inode, mtime and size. */
export function sameStamp(a?: FileStamps[string], b?: FileStamps[string]): boolean {
  return !!a && !!b && a.ino === b.ino && a.mtimeMs === b.mtimeMs && a.size === b.size;
}

export function stampsMatch(dir: string, stamps: FileStamps | undefined, files: { name: string }[]): boolean {
  if (!stamps) return false;
  try {
    const now = stampFiles(dir, files);
    return files.every((f) => sameStamp(stamps[f.name], now[f.name]));
  } catch {
    return false;
  }
}

export function readManifest(dir: string): Manifest {
  let text: string;
  try {
    text = Deno.readTextFileSync(join(dir, MANIFEST));
  } catch {
    let st: Deno.FileInfo | null = null;
    try {
      st = Deno.statSync(dir);
    } catch { /* below */ }
    if (!st) throw failedPrecondition(`checkpoint ${dir} does not exist`);
    if (!st.isDirectory) {
      throw failedPrecondition(
        `${dir} is not a checkpoint: a checkpoint is a directory, or a .tar, .tar.gz, .tar.lz4 or .tar.zst archive`,
      );
    }
    throw failedPrecondition(`checkpoint ${dir} has no ${MANIFEST}: not a cedana checkpoint, or damaged`);
  }
  try {
    const m = JSON.parse(text) as Manifest;
    if (m.format !== 1 || !Array.isArray(m.files)) throw new Error("unknown format");
    return m;
  } catch (e) {
    throw failedPrecondition(`checkpoint ${dir}: ${MANIFEST} is damaged (${(e as Error).message})`);
  }
}

/** Cheap first pass: every file there with its size. */
export function verifySizes(dir: string, m: Manifest): void {
  // an image the manifest does not list would be restored unchecked (CRIU reads what it needs)
  const listed = new Set(m.files.map((f) => f.name));
  for (const e of Deno.readDirSync(dir)) {
    if (e.isFile && e.name.endsWith(".img") && !listed.has(e.name)) {
      throw failedPrecondition(`checkpoint ${dir} is damaged: ${e.name} is not in its ${MANIFEST}`);
    }
  }
  for (const f of m.files) {
    let size: number;
    try {
      size = Deno.statSync(join(dir, f.name)).size;
    } catch {
      throw failedPrecondition(`checkpoint ${dir} is damaged: ${f.name} is missing`);
    }
    if (size !== f.size) {
      throw failedPrecondition(
        `checkpoint ${dir} is damaged: ${f.name} has ${size} bytes, expected ${f.size}`,
      );
    }
  }
}

/** In place of a SHA-256: the file was written to after the dump was committed (see checksums.ts). */
export const CHANGED_AFTER_DUMP = "changed-after-dump";

/** Full pass: every file's SHA-256 (largest first, so the long ones start early). */
export async function verifyHashes(dir: string, m: Manifest): Promise<void> {
  const files = [...m.files].sort((a, b) => b.size - a.size);
  const changed = files.find((f) => f.sha256 === CHANGED_AFTER_DUMP);
  if (changed) {
    throw failedPrecondition(`checkpoint ${dir} is damaged: ${changed.name} was changed after the dump`);
  }
  for (const f of files) {
    const got = await hashFile(join(dir, f.name));
    if (got.sha256 !== f.sha256) {
      throw failedPrecondition(`checkpoint ${dir} is damaged: ${f.name} does not match its checksum`);
    }
  }
}
