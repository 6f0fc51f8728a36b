// Warm restores (see warm.ts). Right after a dump ends a job, the daemon starts the CRIU that will
// restore it: CRIU is given a staging images dir of links to the checkpoint's files, but
// inventory.img (the first image a restore reads) leads to a pipe the daemon holds
// (/proc/<daemon>/fd/N), so CRIU waits there. `cedana restore job` then puts the real inventory
// there (a link to it replaces that one, and the pipe gets its bytes, for a CRIU that opened the
// pipe already) and CRIU goes straight on.
//
// Nothing of the job exists before that, so a warm CRIU that is not wanted just goes: the link is
// removed and the pipe closed, and CRIU reads end-of-file or finds no inventory, and exits having
// done nothing. So it does when the daemon dies, even killed: the kernel closes the pipe, and
// /proc/<daemon> is gone. (Not a FIFO: one that no process holds open blocks its opener forever.)
// Only the plain case is prepared: a process job whose output goes to a log appended to (no
// terminal, no pipes, no GPU), restored as it was dumped (`cedana restore job JID`, its latest
// checkpoint, uncompressed, trusted without re-hashing, its PIDs free). Anything else finds no
// warm CRIU, or drops it, and restores as before.

import { join } from "node:path";
import type { RestoreRequest } from "../../api/types.ts";
import type { FileStdio, Manifest } from "../../checkpoint/manifest.ts";
import { type CriuRun, spawnCriu } from "../../criu/run.ts";
import { closeFd, openAppend, pipe, writeFd } from "../../sys/mod.ts";
import type { JobRow } from "../db.ts";
import type { CrHost } from "./host.ts";
import { WORK_PREFIX } from "./salvage.ts";
import { closeWhenRead, criuStamp, endRun, type Held, inode, removeScratch, WarmPool } from "./warm.ts";

/** A warm restore is dropped after this long unused (it holds the job's log open). */
const TTL_MS = 10 * 60_000;
/** At most this many at once (the oldest goes). */
const MAX = 4;
const INVENTORY = "inventory.img";
const STAGING = "images";

export interface WarmCriu extends Held {
  /** The checkpoint it restores. */
  path: string;
  /** The CRIU binary it runs, as it was (see criuStamp). */
  criu: string;
  /** The job's log as it was when this was prepared. */
  log: string;
  /** The files CRIU was handed (the job's output), with the inode each fd has open. */
  files: { path: string; ino: number }[];
  workDir: string;
  /** The images dir CRIU was given (links to the checkpoint's files, and to the pipe). */
  staging: string;
  /** The pipe inventory.img leads to until the restore; null once closed. */
  wait: { read: number; write: number } | null;
  /** The fds CRIU was handed (--inherit-fd), as the daemon holds them until the restore ends. */
  childFds: number[];
  inherit: { fd: number; resource: string }[];
}

/** The CRIU options a restore of this checkpoint uses with no gate, under its own PIDs (restore.ts). */
export interface WarmArgs {
  imagesDir: string;
  workDir: string;
  inherit: { fd: number; resource: string }[];
}

type ArgsOf = (m: Manifest, a: WarmArgs) => string[];

/** A restore that asks for nothing but the job back as it was dumped. */
export function plainRestore(req: RestoreRequest, path: string): boolean {
  const { jid: _j, path: p, ...rest } = req;
  return (p === undefined || p === path) && Object.values(rest).every((v) => v === undefined || v === false);
}

export class WarmRestores {
  readonly #pool = new WarmPool<WarmCriu>(TTL_MS, MAX, (w) => this.#end(w, true));

  constructor(readonly host: CrHost, readonly argsOf: ArgsOf) {}

  /** After a dump ended job `row` with checkpoint `path` (never throws: a warm CRIU is a bonus). */
  prepare(row: JobRow, path: string, manifest: Manifest, criu: string): void {
    this.drop(row.jid);
    const cfg = this.host.config;
    if (!cfg.checkpoint.warm || cfg.checkpoint.verify === "full") return;
    const stdio = Object.values(manifest.stdio ?? {});
    const plain = row.type === "process" && !row.tty && !row.attachable && !row.gpu && !!row.log &&
      !manifest.gpu && manifest.job.log === row.log && stdio.length > 0 &&
      stdio.every((s) => s.kind === "file" && s.append !== false);
    if (!plain) return;
    let workDir: string | null = null;
    const fds: number[] = [];
    let wait: { read: number; write: number } | null = null;
    try {
      workDir = Deno.makeTempDirSync({ dir: cfg.checkpoint.dir, prefix: WORK_PREFIX });
      this.host.db.addTemp(workDir, "work");
      const staging = join(workDir, STAGING);
      Deno.mkdirSync(staging);
      for (const e of Deno.readDirSync(path)) {
        if (e.name !== INVENTORY) Deno.symlinkSync(join(path, e.name), join(staging, e.name));
      }
      // (as restore.ts's io step hands them over: each file once, the job's log at the job's log)
      const inherit: WarmCriu["inherit"] = [];
      const files: WarmCriu["files"] = [];
      for (const file of new Set((stdio as FileStdio[]).map((s) => s.path))) {
        const fd = openAppend(file);
        fds.push(fd);
        inherit.push({ fd: 3 + inherit.length, resource: file.replace(/^\//, "") });
        files.push({ path: file, ino: inode(`/proc/self/fd/${fd}`) ?? -1 });
      }
      wait = pipe();
      Deno.symlinkSync(`/proc/${Deno.pid}/fd/${wait.read}`, join(staging, INVENTORY));
      const args = this.argsOf(manifest, { imagesDir: staging, workDir, inherit });
      const stamp = criuStamp(criu);
      const run = spawnCriu(criu, args, { extraFds: fds, pdeathsig: false });
      const w: WarmCriu = {
        jid: row.jid,
        path,
        criu: stamp,
        log: row.log!,
        files,
        workDir,
        staging,
        run,
        wait,
        childFds: fds,
        inherit,
        exited: false,
        timer: 0,
      };
      this.#pool.add(w);
      this.host.log.debug("restore prepared", { jid: row.jid, checkpoint: path, criu: run.pid });
    } catch (e) {
      // (the dir first, the link in it with it: the pipe's fd number is free for other files once closed)
      if (workDir) this.#removeDir(workDir);
      for (const fd of fds) closeFd(fd);
      if (wait) {
        closeFd(wait.read);
        closeFd(wait.write);
      }
      this.host.log.debug("no warm restore", { jid: row.jid, error: String(e) });
    }
  }

  /**
   * The warm CRIU for a restore of job `row` from `path`, if it fits what the restore asks for and
   * where the job's log is now; any other is dropped.
   */
  take(row: JobRow, path: string, req: RestoreRequest, criu: string): WarmCriu | null {
    const w = this.#pool.take(row.jid);
    if (!w) return null;
    // (a log rotated or removed since: the job writes to the file at its path now, as restores do)
    const fits = !w.exited && w.path === path && plainRestore(req, path) && row.log === w.log &&
      w.criu === criuStamp(criu) && w.files.every((f) => inode(f.path) === f.ino);
    if (fits) return w;
    this.#end(w, true).catch(() => {}); // (best effort, as the pool's)
    return null;
  }

  /**
   * Lets a taken warm CRIU restore: its images are the checkpoint's, read from here on. Returns
   * how it ended (see criuOutcome).
   */
  go(w: WarmCriu): Promise<CriuRun & { output: string }> {
    const wait = w.wait!;
    w.wait = null;
    try {
      // (a CRIU that has not opened the pipe yet opens the real file; one that has reads it from the pipe)
      const link = join(w.staging, `.${INVENTORY}`);
      Deno.symlinkSync(join(w.path, INVENTORY), link);
      Deno.renameSync(link, join(w.staging, INVENTORY));
      writeFd(wait.write, Deno.readFileSync(join(w.path, INVENTORY)));
    } catch (e) {
      // (no inventory then, rather than a link to whatever file gets the pipe's fd number next)
      try {
        Deno.removeSync(join(w.staging, INVENTORY));
      } catch { /* gone */ }
      closeFd(wait.read);
      closeFd(wait.write);
      throw e;
    }
    closeWhenRead(w, wait);
    return w.run.done;
  }

  /** A taken warm CRIU the restore does not use after all; `keepDir`: the restore works in it. */
  async release(w: WarmCriu, keepDir: boolean): Promise<void> {
    await this.#end(w, !keepDir);
    // (its log says it read an empty inventory: not the log of the restore that follows)
    if (keepDir) {
      try {
        Deno.removeSync(join(w.workDir, "restore.log"));
      } catch { /* none */ }
    }
  }

  /** Drops job `jid`'s warm CRIU, if any (its checkpoint or the job is going, or it expired). */
  drop(jid: string): void {
    this.#pool.drop(jid);
  }

  /** Drops every warm CRIU whose checkpoint is `path`. */
  dropPath(path: string): void {
    this.#pool.dropWhere((w) => w.path === path);
  }

  dropAll(): void {
    this.#pool.dropWhere(() => true);
  }

  /** Ends a warm CRIU (no inventory, or end-of-file in the pipe), then SIGKILL if not gone within 2 s. */
  async #end(w: WarmCriu, removeDir: boolean): Promise<void> {
    if (w.wait) {
      // (the link first: the fd number is free for other files once closed)
      try {
        Deno.removeSync(join(w.staging, INVENTORY));
      } catch { /* gone */ }
      closeFd(w.wait.read);
      closeFd(w.wait.write);
      w.wait = null;
    }
    for (const fd of w.childFds.splice(0)) closeFd(fd);
    // (the dir at once: a daemon stopping does not wait for CRIU; CRIU then finds no inventory)
    if (removeDir) this.#removeDir(w.workDir);
    await endRun(w, 2000);
  }

  #removeDir(dir: string): void {
    removeScratch(this.host, dir);
  }
}
