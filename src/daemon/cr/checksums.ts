// Checksums without the wait. A dump records its checkpoint as soon as CRIU is done; the SHA-256
// of the images is finished in the background and written into manifest.json (and the DB) a
// moment later. A restore of a checkpoint whose files are exactly the ones this daemon wrote (same
// inode, size, mtime as stamped at commit) trusts them without hashing, even while the background
// hashing still runs, unless checkpoint.verify is "full"; anything else is verified in full.
// Background hashing steps aside while CRIU restores (hold): reading 9 GB next to a restore that
// reads the same amount slowed the restore down (measured on 2 cores and on an H100 machine).

import { join } from "node:path";
import type { FileDigest } from "../../checkpoint/hasher.ts";
import { hashFile } from "../../checkpoint/hasher.ts";
import {
  CHANGED_AFTER_DUMP,
  type FileStamps,
  type Manifest,
  readManifest,
  sameStamp,
  stampFiles,
  stampsMatch,
  verifyHashes,
  writeManifest,
} from "../../checkpoint/manifest.ts";
import type { JobDb } from "../db.ts";
import { exists } from "./salvage.ts";
import type { Logger } from "../log.ts";

export class Checksums {
  readonly #pending = new Map<string, Promise<void>>();
  #holds = 0;
  #released: Promise<void> = Promise.resolve();
  #release: () => void = () => {};

  constructor(readonly db: JobDb, readonly log: Logger) {}

  /**
   * Pauses background hashing until the returned function is called (restores take these), or
   * `afterMs` after that: a restore lets its client (`cedana restore job` printing and exiting,
   * the restored job starting) have the CPU first; hashing right then slowed the command by ~6
   * ms on 2 cores.
   */
  hold(): (afterMs?: number) => void {
    if (this.#holds++ === 0) this.#released = new Promise((r) => this.#release = r);
    let done = false;
    const release = () => {
      if (--this.#holds === 0) this.#release();
    };
    return (afterMs = 0) => {
      if (done) return;
      done = true;
      if (!afterMs) return release();
      Deno.unrefTimer(setTimeout(release, afterMs));
    };
  }

  /** Background hashing awaits this before each chunk. */
  readonly pace = (): Promise<void> | void => this.#holds ? this.#released : undefined;

  /** Finish a dump's checksums in the background; the checkpoint is already recorded. */
  complete(id: string, path: string, manifest: Manifest, digests: Promise<FileDigest[]>): void {
    const done = (async () => {
      const hashed = await digests;
      const rec = this.db.getCheckpoint(id);
      // A file written to after the dump was committed may have been hashed with its new bytes:
      // it is marked, and the stamps stay those of the commit, so no restore ever trusts it.
      const committed = rec?.manifest.stamps as FileStamps | undefined;
      const now = stampFiles(path, hashed);
      const files = hashed.map((f) =>
        committed && !sameStamp(committed[f.name], now[f.name]) ? { ...f, sha256: CHANGED_AFTER_DUMP } : f
      );
      const changed = files.filter((f) => f.sha256 === CHANGED_AFTER_DUMP).map((f) => f.name);
      if (changed.length) {
        this.log.warn("checkpoint files changed after the dump", { id, path, files: changed });
      }
      const { checksums: _, ...m } = manifest;
      writeManifest(path, { ...m, files });
      if (!rec) return; // deleted meanwhile
      const { checksums: _p, ...recorded } = rec.manifest;
      this.db.updateCheckpointManifest(id, { ...recorded, files, stamps: committed ?? now });
    })().catch((e) => this.log.warn("checkpoint checksums failed", { id, path, error: String(e) }))
      .finally(() => this.#pending.delete(path));
    this.#pending.set(path, done);
  }

  /** On daemon start: finish what a killed daemon left pending. */
  resume(): void {
    for (const rec of this.db.allCheckpoints()) {
      if (rec.manifest.checksums !== "pending") continue;
      const m = rec.manifest as unknown as Manifest;
      // Files removed by hand (or on a disk not mounted now): nothing to hash, and nothing to warn
      // about at every start; a restore of it says which file is missing.
      if (!m.files.every((f) => exists(join(rec.path, f.name)))) {
        this.log.debug("checkpoint files missing; checksums left pending", { id: rec.id, path: rec.path });
        continue;
      }
      this.hashLater(rec.id, rec.path, m);
    }
  }

  /** Hash a recorded checkpoint's files in the background (paced), then complete() it. */
  hashLater(id: string, path: string, m: Manifest): void {
    const digests = Promise.all(
      m.files.map(async (f) => ({ name: f.name, ...(await hashFile(join(path, f.name), this.pace)) })),
    );
    this.complete(id, path, m, digests);
  }

  /**
   * Whether the images in `dir` can be trusted without hashing: they are exactly as this daemon
   * wrote them (stamped when the dump was committed) and verify mode is not "full".
   */
  trusted(dir: string, recordedPath: string | null, mode: string): boolean {
    if (mode === "full" || recordedPath !== dir) return false;
    const stamps = this.db.checkpointByPath(dir)?.manifest.stamps as FileStamps | undefined;
    return stampsMatch(dir, stamps, readManifest(dir).files);
  }

  /**
   * A check of the images in `dir` against their manifest, ready to run (it rejects naming the bad
   * file), or null when there is nothing to check. Getting it may wait for this checkpoint's
   * background checksums: do that before taking a hold, which would pause them.
   */
  async verifier(
    dir: string,
    recordedPath: string | null,
    mode: string,
  ): Promise<(() => Promise<void>) | null> {
    if (this.trusted(dir, recordedPath, mode)) return null; // nothing to check
    // Not trusted: the checksums still being computed are needed to compare against.
    if (recordedPath) await this.#pending.get(recordedPath);
    const m = readManifest(dir);
    if (m.checksums === "pending") {
      // Hashing never finished (it failed, or the dir was reached by another path): there is
      // nothing to compare with. The sizes were checked; refusing a good checkpoint helps no one.
      this.log.warn("checkpoint has no checksums yet; restoring with sizes checked only", { dir });
      return null;
    }
    return () => verifyHashes(dir, m);
  }

  /** Wait for a checkpoint's background checksums (before deleting or archiving it). */
  async settled(path: string): Promise<void> {
    await this.#pending.get(path);
  }
}
