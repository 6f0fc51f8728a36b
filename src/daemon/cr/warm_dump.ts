// Warm dumps (see warm.ts). The CRIU that will dump a running process job is started ahead, with
// the options a plain `cedana dump job JID` would choose now (the dump's own inspection, run on the
// job as it is), its images dir a scratch dir in the checkpoint dir. The first file a dump reads,
// irmap-cache (CRIU's optional cache of file paths) in its work dir (.work in the images dir, as a
// runtime's dump has it: a daemon killed after CRIU finds its stats there, see salvage.ts), is a
// FIFO the daemon holds open: CRIU waits on it. The dump renames the images dir to its own
// temporary dir (CRIU works in it through its fds), writes an empty cache into the FIFO, and CRIU
// goes on to freeze the job.
//
// Before that, CRIU has not touched the job. A warm dump that is not wanted is killed. It dies with
// the daemon too (the daemon-death signal), and were it not, it would wait on the FIFO for ever and
// never dump: a FIFO that no one holds open for writing blocks its reader.
// Prepared for a process job (no GPU, not in a PID namespace of its own) whenever the daemon starts
// watching it (started, adopted, restored, or running on after a failed or --leave-running dump),
// once it has run for a moment; used by a dump that asks for nothing but the defaults.

import { join } from "node:path";
import type { DumpRequest } from "../../api/types.ts";
import { type CriuRun, spawnCriu } from "../../criu/run.ts";
import { closeFd, openFifo, writeFd } from "../../sys/mod.ts";
import type { JobRow } from "../db.ts";
import type { CrHost } from "./host.ts";
import { exists, WORK_PREFIX, WORK_SUBDIR } from "./salvage.ts";
import { closeWhenRead, criuStamp, endRun, type Held, removeScratch, WarmPool } from "./warm.ts";

/**
 * At most this many at once (~9 MiB each); then jobs go without until one is used or its job ends
 * (many jobs starting would otherwise start and kill a CRIU each). Kept until then: CRIU's view of
 * the kernel does not age, and it checks the job again when it goes on.
 */
const MAX = 4;
const IRMAP_CACHE = "irmap-cache";
const IMAGES = "images";
/** An empty irmap-cache: CRIU's service-file magic, then the cache's (criu/include/magic.h). */
const EMPTY_IRMAP_CACHE = new Uint8Array(new Uint32Array([0x55105940, 0x57004059]).buffer);

export interface WarmDump extends Held {
  /** The job's process it was started for. */
  pid: number;
  startTime: number | null;
  /** Its scratch dir (images/ in it), and its options as a dump with those images has them. */
  root: string;
  /** The CRIU binary it runs, as it was (path and mtime): an upgraded one is not that. */
  criu: string;
  args: string[];
  /** Our end of the FIFO; -1 once given over to the dump. */
  fifo: number;
}

/** The CRIU options a plain dump of the job would use now with these images, or null (no dump). */
export type DumpArgsOf = (row: JobRow, imagesDir: string) => string[] | null;

/** A dump that asks for nothing but the defaults (the checkpoint's name and compression aside). */
export function plainDump(req: DumpRequest, checkpointDir: string): boolean {
  const { jid: _j, name: _n, compression: _c, dir, leaveRunning, ...rest } = req;
  return (dir === undefined || dir === checkpointDir) && !leaveRunning &&
    Object.values(rest).every((v) => v === undefined || v === false || (Array.isArray(v) && !v.length));
}

/** A job's process (a restored one is another), for #gaveUp. */
function gaveUpKey(j: { jid: string; pid: number | null; startTime: number | null }): string {
  return `${j.jid}\0${j.pid}\0${j.startTime}`;
}

export class WarmDumps {
  readonly #pool = new WarmPool<WarmDump>(0, MAX, (w) => this.#end(w), () => this.onFree());

  /** Job processes whose warm dump's CRIU ended on its own, before any dump: not tried again for them. */
  readonly #gaveUp = new Set<string>();

  /** `onFree`: a place in the pool came free (another running job may have one now). */
  constructor(readonly host: CrHost, readonly argsOf: DumpArgsOf, readonly onFree: () => void = () => {}) {}

  /** For job `row`, running now (never throws: a warm CRIU is a bonus). */
  prepare(row: JobRow, criu: string): void {
    const cfg = this.host.config;
    // (criu.leave_running: every dump asks for --leave-running, which a warm dump is not)
    if (
      !cfg.checkpoint.warm || cfg.criu.leave_running || row.type !== "process" || row.gpu ||
      row.state !== "running" || row.pid === null || row.details.pidNamespace || this.#pool.has(row.jid) ||
      this.#pool.full || this.#gaveUp.has(gaveUpKey(row))
    ) return;
    let root: string | null = null;
    let fifo = -1;
    let run: WarmDump["run"] | null = null;
    try {
      root = Deno.makeTempDirSync({ dir: cfg.checkpoint.dir, prefix: WORK_PREFIX });
      this.host.db.addTemp(root, "work");
      const images = join(root, IMAGES), work = join(images, WORK_SUBDIR);
      Deno.mkdirSync(images, { mode: 0o700 }); // (as the dump's own: the images hold the job's memory)
      Deno.mkdirSync(work);
      const args = this.argsOf(row, images);
      if (!args) throw new Error("the job cannot be dumped as it is");
      fifo = openFifo(join(work, IRMAP_CACHE));
      // (its log by path in the images dir, as a dump's is: the fd follows the dir's rename)
      const log = args.indexOf("-o") + 1;
      const argv = args.map((a, i) => i === log ? join(images, a) : a).concat("-W", work);
      const stamp = criuStamp(criu);
      run = spawnCriu(criu, argv);
      const w: WarmDump = {
        jid: row.jid,
        pid: row.pid,
        startTime: row.startTime,
        root,
        criu: stamp,
        args,
        fifo,
        run,
        exited: false,
        timer: 0,
      };
      // (before the pool's own handler, which drops it)
      run.done.then((r) => {
        if (!this.#pool.has(w.jid) || w.fifo < 0) return;
        this.#gaveUp.add(gaveUpKey(w));
        this.host.log.debug("warm dump ended on its own; none again for this job", {
          jid: w.jid,
          code: r.code,
          output: r.output.slice(-500),
        });
      });
      this.#pool.add(w);
      this.host.log.debug("dump prepared", { jid: row.jid, criu: run.pid });
    } catch (e) {
      // (a CRIU started must not go on: with no irmap cache it would dump)
      if (run) endRun({ jid: row.jid, run, exited: false, timer: 0 }, 0, true);
      if (fifo >= 0) closeFd(fifo);
      if (root) this.#removeDir(root);
      this.host.log.debug("no warm dump", { jid: row.jid, error: String(e) });
    }
  }

  /** The warm dump for this dump of job `row`, if it is of the job's process now; any other goes. */
  take(row: JobRow, req: DumpRequest, criu: string): WarmDump | null {
    const w = this.#pool.take(row.jid);
    if (!w) return null;
    if (
      !w.exited && w.pid === row.pid && w.startTime === row.startTime && w.criu === criuStamp(criu) &&
      plainDump(req, this.host.config.checkpoint.dir)
    ) return w;
    this.#end(w).catch(() => {}); // (best effort, as the pool's)
    return null;
  }

  /** Whether the warm dump has the options the dump chose (with its images in `imagesDir`). */
  fits(w: WarmDump, args: (imagesDir: string) => string[]): boolean {
    return JSON.stringify(args(join(w.root, IMAGES))) === JSON.stringify(w.args);
  }

  /**
   * Its images dir becomes the dump's temporary dir `tmpDir`, CRIU still waiting. Throws
   * Deno.errors.AlreadyExists when `tmpDir` is there (as mkdir would: rename replaces an empty dir).
   */
  adopt(w: WarmDump, tmpDir: string): void {
    if (exists(tmpDir)) throw new Deno.errors.AlreadyExists(tmpDir);
    Deno.renameSync(join(w.root, IMAGES), tmpDir);
  }

  /** Lets an adopted warm dump go: CRIU dumps the job. Returns how it ended (see criuOutcome). */
  go(w: WarmDump): Promise<CriuRun & { output: string }> {
    writeFd(w.fifo, EMPTY_IRMAP_CACHE); // (on failure the fd stays ours: release kills CRIU)
    const fifo = w.fifo;
    w.fifo = -1;
    closeWhenRead(w, { read: fifo, write: fifo });
    return w.run.done;
  }

  /**
   * After a warm dump's CRIU is done (or the dump did not use it): its stats go with its images
   * (CRIU wrote them into its work dir, .work in there), and its scratch dir goes.
   */
  async release(w: WarmDump, tmpDir?: string): Promise<void> {
    await this.#end(w);
    if (tmpDir) {
      const work = join(tmpDir, WORK_SUBDIR);
      try {
        Deno.renameSync(join(work, "stats-dump"), join(tmpDir, "stats-dump"));
      } catch { /* none written */ }
      try {
        Deno.removeSync(work, { recursive: true });
      } catch { /* gone */ }
    }
    this.#removeDir(w.root);
  }

  /** Whether job `row` could be given a warm dump now (none yet, none that gave up). */
  wants(row: JobRow): boolean {
    return !this.#pool.has(row.jid) && !this.#gaveUp.has(gaveUpKey(row));
  }

  /** How many more warm dumps there may be now. */
  get free(): number {
    return MAX - this.#pool.size;
  }

  /** The job ended or is deleted. */
  drop(jid: string): void {
    this.#pool.drop(jid);
    for (const k of this.#gaveUp) if (k.startsWith(`${jid}\0`)) this.#gaveUp.delete(k);
  }

  dropAll(): void {
    this.#pool.dropWhere(() => true);
  }

  /**
   * Kills a warm dump that was not let go (it has touched nothing) and clears its dir, at once (a
   * daemon stopping does not wait for more), then waits for CRIU to be gone.
   */
  async #end(w: WarmDump): Promise<void> {
    if (w.fifo < 0) {
      await w.run.done;
      return;
    }
    const gone = endRun(w, 2000, true); // (killed now)
    closeFd(w.fifo);
    w.fifo = -1;
    this.#removeDir(w.root);
    await gone;
  }

  #removeDir(dir: string): void {
    removeScratch(this.host, dir);
  }
}
