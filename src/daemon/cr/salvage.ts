// Images that outlived a failed dump. Once CRIU has dumped a job without --leave-running, the
// job is gone and its images are all that is left of it. When the dump then fails (compressing
// on a full disk) or the daemon is killed before the commit, the images must not be lost, nor
// must `restore job` quietly bring back an older checkpoint:
// - with a manifest (the dump got past writing it) they are a whole checkpoint, uncompressed:
//   recorded under the dump's name as the job's latest;
// - without one, but with CRIU's stats-dump (CRIU finished), they are kept as NAME.incomplete
//   for `restore process --path`;
// - otherwise CRIU did not finish, the job lives on, and the images are useless.

import { join } from "node:path";
import { hashFile } from "../../checkpoint/hasher.ts";
import {
  type Manifest,
  newCheckpointId,
  readManifest,
  stampFiles,
  verifySizes,
} from "../../checkpoint/manifest.ts";
import { isRunning, jobProcess } from "../../proc/mod.ts";
import type { CrHost } from "./host.ts";

export type Salvaged =
  | { kind: "recorded"; id: string; path: string; jid: string | null }
  | { kind: "kept"; path: string }
  | { kind: "useless" };

/** Whether anything (a dangling link too) is at `p`. */
export function exists(p: string): boolean {
  try {
    Deno.lstatSync(p);
    return true;
  } catch {
    return false;
  }
}

/** A free path for `name` in `dir` (NAME, then NAME-2, NAME-3, ...). */
function freePath(dir: string, name: string): string {
  for (let i = 1;; i++) {
    const p = join(dir, i === 1 ? name : `${name}-${i}`);
    if (!exists(p)) return p;
  }
}

export function salvageImages(host: CrHost, tmpDir: string, baseDir: string, name: string): Salvaged {
  let m: Manifest | null = null;
  try {
    m = readManifest(tmpDir);
    verifySizes(tmpDir, m);
  } catch {
    m = null;
  }
  if (!m) {
    if (!exists(join(tmpDir, "stats-dump"))) return { kind: "useless" };
    const kept = freePath(baseDir, `${name}.incomplete`);
    Deno.renameSync(tmpDir, kept);
    host.log.warn("dump did not finish after CRIU ended the job; images kept", { path: kept });
    return { kind: "kept", path: kept };
  }
  const path = freePath(baseDir, name);
  Deno.renameSync(tmpDir, path);
  const jid = m.job.jid && host.db.getJob(m.job.jid) ? m.job.jid : null;
  const id = m.id && !host.db.getCheckpoint(m.id) ? m.id : newCheckpointId();
  host.db.insertCheckpoint({
    id,
    jid,
    path,
    time: Date.parse(m.time) || Date.now(),
    size: m.files.reduce((a, f) => a + f.size, 0),
    manifest: {
      ...(m as unknown as Record<string, unknown>),
      id,
      compression: "none",
      stamps: stampFiles(path, m.files),
    },
  });
  if (m.checksums === "pending") {
    const digests = Promise.all(
      m.files.map(async (f) => ({
        name: f.name,
        ...(await hashFile(join(path, f.name), host.checksums.pace)),
      })),
    );
    host.checksums.complete(id, path, m, digests);
  }
  // (a --leave-running dump's job may still run: only a job that is gone ends here)
  const row = jid ? host.db.getJob(jid) : null;
  if (row && row.state === "running" && !isRunning(jobProcess(row.pid, row.startTime))) host.dumped(row.jid);
  host.log.warn("dump failed after CRIU ended the job; its images are recorded uncompressed", {
    jid,
    id,
    path,
  });
  return { kind: "recorded", id, path, jid };
}
