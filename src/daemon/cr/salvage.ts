// Temporary dirs, and the images that outlive a failed dump. Once CRIU has dumped a job without
// --leave-running, the job is gone and its images are all that is left of it. When the dump then
// fails (compressing on a full disk, the DB refusing the record) or the daemon is killed before
// the commit, the images must not be lost, nor may `restore job` quietly bring back an older
// checkpoint:
// - with a manifest (written right after CRIU, before any hashing) they are a whole checkpoint:
//   recorded as the job's latest (the archive if compressing had finished, else uncompressed);
// - without one, but with the draft written before CRIU ran and CRIU's stats-dump (CRIU, or runc
//   on its own after the daemon died, finished), the manifest is completed and they are recorded;
// - with only CRIU's stats-dump, they are kept as NAME.incomplete;
// - otherwise CRIU did not finish, the job lives on, and the images are useless.
// Every temporary dir is listed in the DB (temp_paths) while it exists, so a daemon started after
// a crash finds exactly its own, wherever --dir put them.

import { basename, dirname, join } from "node:path";
import { detectCompression } from "../../checkpoint/archive.ts";
import {
  MANIFEST,
  type Manifest,
  MANIFEST_DRAFT,
  newCheckpointId,
  readManifest,
  stampFiles,
  verifySizes,
  writeManifest,
} from "../../checkpoint/manifest.ts";
import { readDumpStats } from "../../criu/stats.ts";
import { isRunning, isSameProcess, jobProcess } from "../../proc/mod.ts";
import type { CrHost } from "./host.ts";
import {
  abandonCutRestore,
  finishCutRestore,
  killLeftovers,
  readIntent,
  recoverContainerRestore,
  RUNTIMES,
} from "./restore_intent.ts";
import { plugin } from "../../plugins/mod.ts";
import type { JobPlugin } from "../../plugins/types.ts";
import { findCudaPids } from "../../gpu/mod.ts";
import { gpuBack } from "./gpu.ts";
import type { IoKeep } from "../../plugins/process/io.ts";
import { FROZEN_MARK, thawMarked } from "../../sys/freezer.ts";

/** A dump's images while it runs: `<dir>/.cedana-tmp-<name>` (and `<that>.tar.gz` etc.). */
export const TMP_PREFIX = ".cedana-tmp-";
/** Scratch dirs (a restore's work dir). */
export const WORK_PREFIX = ".cedana-work-";
/** A runtime's (runc's) CRIU work dir during a dump: inside the images' temporary dir. */
export const WORK_SUBDIR = ".work";

export type Salvaged =
  | { kind: "recorded"; id: string; path: string; jid: string | null }
  /** `manifest`: whether `restore process --path` can take them (else only CRIU by hand). */
  | { kind: "kept"; path: string; manifest: boolean }
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

function manifestOf(dir: string): Manifest | null {
  try {
    const m = readManifest(dir);
    verifySizes(dir, m);
    return m;
  } catch {
    return null;
  }
}

/**
 * The manifest of images CRIU finished after the daemon died before writing it: the draft (all
 * but the files) plus the files there now. Null without a draft, or when CRIU did not finish.
 */
function completeDraft(dir: string): Manifest | null {
  let draft: Manifest;
  try {
    draft = JSON.parse(Deno.readTextFileSync(join(dir, MANIFEST_DRAFT)));
  } catch {
    return null;
  }
  const work = join(dir, WORK_SUBDIR);
  if (!exists(join(dir, "stats-dump"))) {
    try {
      Deno.copyFileSync(join(work, "stats-dump"), join(dir, "stats-dump"));
    } catch {
      return null; // CRIU did not finish: the job lives on
    }
  }
  try {
    Deno.removeSync(work, { recursive: true });
  } catch { /* a process dump has none */ }
  const files = [...Deno.readDirSync(dir)]
    .filter((e) => e.isFile && !e.name.startsWith("."))
    .map((e) => ({ name: e.name, size: Deno.statSync(join(dir, e.name)).size, sha256: "" }))
    .sort((a, b) => a.name.localeCompare(b.name));
  let stats: ReturnType<typeof readDumpStats> = null;
  try {
    stats = readDumpStats(dir);
  } catch { /* the numbers are a nicety: the images are what matters */ }
  const m: Manifest = {
    ...draft,
    files,
    checksums: "pending",
    stats: (stats ?? undefined) as Manifest["stats"],
  };
  writeManifest(dir, m);
  Deno.removeSync(join(dir, MANIFEST_DRAFT));
  return m;
}

/**
 * The dumped job ends as dumped by checkpoint `id`, if its process is gone (a --leave-running
 * dump's may still run): `restore job` must then refuse an older checkpoint once `id` is deleted.
 */
function endIfGone(host: CrHost, jid: string | null, id?: string, dumpedPid?: number): void {
  const row = jid ? host.db.getJob(jid) : null;
  if (!row || isRunning(jobProcess(row.pid, row.startTime))) return;
  if (row.state === "running") host.dumped(row.jid, id);
  else if (id && row.pid === dumpedPid && !row.details.haltedBy) {
    // the exit watcher got there first and took CRIU's kill for the job's own end
    host.db.updateJob(row.jid, {
      exitCode: null,
      exitSignal: null,
      details: { ...row.details, haltedBy: id },
    });
  }
}

/**
 * What to do with a dump's temporary dir whose dump did not commit. `final`: where the commit
 * would have put the checkpoint (a finished archive may be there already).
 */
export function salvageImages(
  host: CrHost,
  tmpDir: string,
  final: string | null,
  dumpedJid: string | null = null,
): Salvaged {
  const baseDir = dirname(tmpDir), name = basename(tmpDir).slice(TMP_PREFIX.length);
  const m = manifestOf(tmpDir) ?? completeDraft(tmpDir);
  if (!m) {
    if (!exists(join(tmpDir, "stats-dump"))) return { kind: "useless" };
    const kept = freePath(baseDir, `${name}.incomplete`);
    Deno.renameSync(tmpDir, kept);
    host.log.warn("dump did not finish after CRIU ended the job; images kept", {
      path: kept,
      jid: dumpedJid,
    });
    // `restore job` must not quietly bring back an older checkpoint: the job remembers these
    const row = dumpedJid ? host.db.getJob(dumpedJid) : null;
    if (row) host.db.updateJob(row.jid, { details: { ...row.details, incompleteDump: kept } });
    endIfGone(host, dumpedJid);
    return { kind: "kept", path: kept, manifest: false };
  }
  const recorded = m.id ? host.db.getCheckpoint(m.id) : null;
  if (recorded) {
    // The commit recorded it: the archive is in place (this is a leftover), or the rename of an
    // uncompressed checkpoint into place did not happen yet: finish it.
    if (exists(recorded.path)) return { kind: "useless" };
    Deno.renameSync(tmpDir, recorded.path);
    return { kind: "recorded", id: recorded.id, path: recorded.path, jid: recorded.jid };
  }
  const jid = m.job.jid && host.db.getJob(m.job.jid) ? m.job.jid : null;
  const id = m.id || newCheckpointId();
  let path: string, manifest: Record<string, unknown>, size: number;
  const archived = !!final && exists(final) && Deno.statSync(final).isFile &&
    detectCompression(final) !== "none";
  if (archived) {
    // compressing finished (the archive is renamed into place only when whole): record it
    path = final!;
    size = Deno.statSync(path).size;
    manifest = { ...m, compression: detectCompression(path) };
  } else {
    path = freePath(baseDir, name);
    size = m.files.reduce((a, f) => a + f.size, 0);
    manifest = { ...m, id, compression: "none", stamps: stampFiles(tmpDir, m.files) };
  }
  const time = Date.parse(m.time) || Date.now();
  if (!archived) {
    // (the uncompressed images become the checkpoint, under the name the dump meant for them)
    Deno.renameSync(tmpDir, path);
    try {
      host.db.insertCheckpoint({ id, jid, path, time, size, manifest });
    } catch (e) {
      host.log.warn("cannot record a failed dump's images; kept", { path, error: String(e) });
      return { kind: "kept", path, manifest: true };
    }
    if (m.checksums === "pending") host.checksums.hashLater(id, path, m);
  } else {
    host.db.insertCheckpoint({ id, jid, path, time, size, manifest });
    Deno.removeSync(tmpDir, { recursive: true });
  }
  endIfGone(host, jid, id, m.job.pid);
  host.log.warn("a dump failed after CRIU ended the job; its images are recorded", { jid, id, path });
  return { kind: "recorded", id, path, jid };
}

/**
 * PIDs of the runtimes (`runc checkpoint`, `ctr task checkpoint`) still writing a dump into
 * `path`. (A compressor may still be writing the archive too: that one is simply dropped.)
 */
function writers(path: string): number[] {
  const out: number[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const argv = Deno.readTextFileSync(`/proc/${e.name}/cmdline`).split("\0");
      if (RUNTIMES.has(basename(argv[0])) && argv.includes(path)) out.push(Number(e.name));
    } catch { /* gone */ }
  }
  return out;
}

type Temp = ReturnType<CrHost["db"]["temps"]>[number];

/** How often a daemon tries to finish a restore the previous one was cut off in. */
const FINISH_ATTEMPTS = 4;

/** The PIDs of the live keepers named in a job's details (a dead one's PID may be another's now). */
export function keeperPids(keep: unknown): number[] {
  const k = keep as IoKeep | undefined;
  return [k?.out, k?.input, k?.session].filter((r) => r && isSameProcess(r.pid, r.startTime)).map((r) =>
    r!.pid
  );
}

/**
 * On daemon start: every temporary dir a killed daemon left (this daemon's DB says which). A
 * dump that a runtime is still writing (runc outlives the daemon and finishes the checkpoint on
 * its own) is salvaged once it ends; its job is busy until then, so nothing restores an older
 * checkpoint meanwhile. Returns the PIDs of the I/O keepers restores still to be finished hold.
 */
export function clearTemps(host: CrHost): number[] {
  const pendingKeepers: number[] = [];
  for (const t of host.db.temps()) {
    const intent = t.kind === "work" && exists(t.path) ? readIntent(t.path) : null;
    if (intent) {
      pendingKeepers.push(...keeperPids(intent.row.details.ioKeepers));
      // CRIU or the runtime may still be at it (neither dies with the daemon): finished once they end
      const container = !!plugin(intent.row.type).restore;
      const done = (async () => {
        // (tried again on a failure: the work dir goes with clearTemp, and a CRIU still at work
        // there, or tasks it resumed, must not be left to run unrecorded)
        for (let attempt = 1;; attempt++) {
          try {
            if (container) {
              await untilNoWriters(t.path);
              await recoverContainerRestore(host, intent);
            } else await finishCutRestore(host, t.path, intent);
            break;
          } catch (e) {
            if (attempt < FINISH_ATTEMPTS) {
              host.log.debug("finishing a cut restore failed; trying again", {
                jid: intent.row.jid,
                error: String(e),
              });
              await new Promise((r) => setTimeout(r, 500 * attempt));
              continue;
            }
            host.log.warn("cannot finish a restore the previous daemon started", {
              jid: intent.row.jid,
              error: String(e),
            });
            if (!container) abandonCutRestore(host, t.path, intent);
            break;
          }
        }
        clearTemp(host, t);
      })();
      host.busyUntil(intent.row.jid, "restore (finishing after a daemon restart)", done);
      continue;
    }
    if (t.kind === "work" && exists(t.path) && !writers(t.path).length) {
      // a half-done restore from before CRIU ran: nothing of it can have resumed
      killLeftovers(host, t.path, []);
    }
    const pids = t.kind === "dump" && exists(t.path) ? writers(t.path) : [];
    if (!pids.length) {
      if (t.kind === "dump") thawMarked(join(t.path, WORK_SUBDIR, FROZEN_MARK));
      const keep = rootfsToKeep(host, t);
      if (keep) {
        const kept = keepContainerRootfs(host, t, keep).then(() => clearTemp(host, t));
        host.busyUntil(t.jid, "dump (saving its container's files after a daemon restart)", kept);
        continue;
      }
      clearTemp(host, t);
      // a GPU job whose dump stopped short of CRIU ending it: its GPU state may still be held
      const row = t.kind === "dump" && t.jid ? host.db.getJob(t.jid) : null;
      if (row?.gpu && row.state === "running" && isRunning(jobProcess(row.pid, row.startTime))) {
        host.busyUntil(row.jid, "dump cleanup (GPU)", gpuBack(host, row, findCudaPids(row.pid!), false));
      }
      continue;
    }
    host.log.warn(
      "a dump the previous daemon started is still being written; its images are salvaged when it ends",
      {
        path: t.path,
        jid: t.jid,
        pids,
      },
    );
    const ended = untilNoWriters(t.path).then(async () => {
      thawMarked(join(t.path, WORK_SUBDIR, FROZEN_MARK)); // (CRIU froze a job left running again)
      const keep = rootfsToKeep(host, t);
      if (keep) await keepContainerRootfs(host, t, keep);
      clearTemp(host, t);
    });
    host.busyUntil(t.jid, "dump (still being written after a daemon restart)", ended);
  }
  return pendingKeepers;
}

/**
 * A container's dump the runtime finished but the daemon did not: the container's file system,
 * which the dump saves after the runtime's part, is not with the images yet. (Its draft says it
 * should be; CRIU's stats say the runtime finished.)
 */
function rootfsToKeep(host: CrHost, t: Temp): NonNullable<JobPlugin["keepRootfs"]> | null {
  if (t.kind !== "dump" || !exists(t.path) || exists(join(t.path, MANIFEST))) return null;
  let draft: Manifest;
  try {
    draft = JSON.parse(Deno.readTextFileSync(join(t.path, MANIFEST_DRAFT)));
  } catch {
    return null;
  }
  const row = t.jid ? host.db.getJob(t.jid) : null;
  const keep = row ? plugin(row.type).keepRootfs : undefined;
  if (draft.rootfs !== "saved" || !keep) return null;
  const finished = exists(join(t.path, "stats-dump")) || exists(join(t.path, WORK_SUBDIR, "stats-dump"));
  return finished ? keep : null;
}

/** Saves it now (the bundle or snapshot is still there), or marks the checkpoint as without it. */
async function keepContainerRootfs(
  host: CrHost,
  t: Temp,
  keep: NonNullable<JobPlugin["keepRootfs"]>,
): Promise<void> {
  const row = t.jid ? host.db.getJob(t.jid) : null;
  if (!row) return;
  let why: string;
  try {
    // (a container left running (--leave-running) has written on since: its files now are not
    // those of the memory in the images)
    if (isRunning(jobProcess(row.pid, row.startTime))) throw new Error("the container has run on since");
    await keep(row, t.path);
    host.log.info("saved the file system of a container dump the previous daemon did not finish", {
      jid: row.jid,
      path: t.path,
    });
    return;
  } catch (e) {
    why = String(e);
  }
  try {
    const draft = JSON.parse(Deno.readTextFileSync(join(t.path, MANIFEST_DRAFT))) as Manifest;
    writeManifest(t.path, { ...draft, rootfs: "not saved" }, MANIFEST_DRAFT);
  } catch { /* (a full disk, likely why the tar failed: the images are recorded all the same) */ }
  host.log.warn("a container dump the previous daemon did not finish is kept without the container's files", {
    jid: row.jid,
    path: t.path,
    error: why,
  });
}

async function untilNoWriters(path: string): Promise<void> {
  for (const until = Date.now() + 3600_000; writers(path).length && Date.now() < until;) {
    await new Promise((r) => setTimeout(r, 250));
  }
}

function clearTemp(host: CrHost, t: Temp): void {
  try {
    if (t.kind === "dump") {
      // a half-written archive next to it (.cedana-tmp-NAME.tar.gz): never whole, never kept
      const prefix = `${basename(t.path)}.`;
      try {
        for (const e of Deno.readDirSync(dirname(t.path))) {
          if (e.isFile && e.name.startsWith(prefix)) Deno.removeSync(join(dirname(t.path), e.name));
        }
      } catch { /* the dir is gone */ }
    }
    if (
      exists(t.path) &&
      (t.kind === "work" || salvageImages(host, t.path, t.final, t.jid).kind === "useless")
    ) {
      Deno.removeSync(t.path, { recursive: true });
    }
  } catch (e) {
    host.log.warn("cannot clear a temporary dir", { path: t.path, error: String(e) });
  }
  host.db.removeTemp(t.path);
}
