// `cedana dump`: the dump of a job (or any process) as ordered steps. The images are written into
// a temporary directory next to the destination and renamed into place only once CRIU succeeded
// and the manifest is written, so a checkpoint that is recorded is always complete.

import { dirname, join, resolve } from "node:path";
import type { CompressionName, DumpRequest, DumpResult } from "../../api/types.ts";
import {
  archiveExt,
  createArchive,
  detectCompression,
  parseCompression,
  requireCompressor,
} from "../../checkpoint/archive.ts";
import { DirHasher } from "../../checkpoint/hasher.ts";
import {
  MANIFEST,
  type Manifest,
  MANIFEST_DRAFT,
  newCheckpointId,
  stampFiles,
  STDIN_QUEUED,
  type StdioInfo,
  writeManifest,
} from "../../checkpoint/manifest.ts";
import { inspectTree, pipeLeavesTree, type TreeFacts, ttyExternalId } from "../../criu/detect.ts";
import { criuVersion, findCriu, MIN_CRIU, versionAtLeast } from "../../criu/mod.ts";
import { criuConfigFile, dumpArgs, parseCriuOpts } from "../../criu/options.ts";
import { checkCriuOpts } from "../../criu/check_opts.ts";
import { criuOutcome, runCriu } from "../../criu/run.ts";
import type { WarmDump } from "./warm_dump.ts";
import { readDumpStats } from "../../criu/stats.ts";
import { alreadyExists, failedPrecondition, invalidArgument, notFound, osReason } from "../../errors.ts";
import {
  adoptedOf,
  isRunning,
  isValidPid,
  jobProcess,
  ptyMasterHolder,
  readCmdline,
  readCwd,
  readStat,
  unmanageable,
} from "../../proc/mod.ts";
import type { JobRow } from "../db.ts";
import { checkpointAll, detectGpu, type GpuDump, lockAll, resumeAll } from "./gpu.ts";
import { type CriuFlags, type JobPlugin, plugin } from "../../plugins/mod.ts";
import type { CrHost } from "./host.ts";
import { faultPoint } from "../fault.ts";
import { sameOpenFile } from "../../sys/mod.ts";
import { criuFileOpens, criuPipeData } from "../../criu/images.ts";
import { exists, type Salvaged, salvageImages, TMP_PREFIX, WORK_SUBDIR } from "./salvage.ts";
import { runSteps, type Step } from "./steps.ts";

interface DumpCtx {
  req: DumpRequest;
  /** CRIU wrote the images (and, without --leave-running, ended the job). */
  imagesTaken?: boolean;
  /** A dump that failed after CRIU ended the job: where its images went. */
  salvaged?: Salvaged;
  gpu: GpuDump | null;
  plugin: JobPlugin | null;
  host: CrHost;
  row: JobRow | null;
  pid: number;
  criu: string;
  criuVersion: string;
  compression: CompressionName;
  facts?: TreeFacts;
  /** Processes of the job's process group outside its tree (reparented): CRIU cannot take them. */
  strays?: number[];
  /** `dump process` of a process that is no job: its command line and cwd, for the manifest. */
  proc?: { cmdline: string[]; cwd: string };
  flags: CriuFlags;
  external: string[];
  stdio: StdioInfo;
  detected: string[];
  id: string;
  name: string;
  baseDir: string;
  tmpDir: string;
  finalPath: string;
  hasher?: DirHasher;
  manifest?: Manifest;
  size: number;
  time: number;
  stats: Record<string, number> | null;
  /** The CRIU started ahead for this dump (warm_dump.ts), while the dump may still use it. */
  warm?: WarmDump | null;
  /** A warm CRIU dumped it. */
  warmed?: boolean;
}

const versionCache = new Map<string, string>();

export async function requireCriu(host: CrHost): Promise<{ bin: string; version: string }> {
  const bin = findCriu(host.config);
  if (!bin) throw failedPrecondition("criu not found: install CRIU >= 4.2 or set criu.binary_path");
  // `criu --version` costs a process start per operation: cache it per binary (path + mtime).
  let mtime = 0;
  try {
    mtime = Deno.statSync(bin).mtime?.getTime() ?? 0;
  } catch { /* reported below */ }
  const key = `${bin}@${mtime}`;
  const version = versionCache.get(key) ?? await criuVersion(bin);
  if (version) versionCache.set(key, version);
  if (!version) throw failedPrecondition(`${bin} does not run (criu --version failed)`);
  if (!versionAtLeast(version, MIN_CRIU)) {
    throw failedPrecondition(`CRIU ${version} at ${bin} is too old: cedana needs >= ${MIN_CRIU.join(".")}`);
  }
  return { bin, version };
}

const O_APPEND = 0o2000;

/**
 * The output files to hand over, decided on what CRIU saw at the freeze (the tree runs on until
 * then: a reader may open the file after the daemon looked). CRIU gives the one description it is
 * handed to EVERY open of the path in the tree, so only when all are written through one, or all
 * append (a reader, or a writer at its own offset, would get the wrong one); a non-appending one
 * gets its offset at the freeze. Otherwise (or unreadable) CRIU restores the file itself.
 */
function checkFilesAtFreeze(c: DumpCtx): void {
  for (const [fd, s] of Object.entries(c.stdio)) {
    if (s.kind !== "file") continue;
    let opens: { flags: number; pos: number }[] = [];
    try {
      opens = criuFileOpens(c.tmpDir, s.path);
    } catch { /* unreadable: left to CRIU */ }
    const writeOnly = opens.length > 0 && opens.every((o) => (o.flags & 3) === 1);
    if (writeOnly && s.append !== false && opens.every((o) => (o.flags & O_APPEND) !== 0)) continue;
    if (writeOnly && s.append === false && opens.length === 1) c.stdio[fd] = { ...s, pos: opens[0].pos };
    else delete c.stdio[fd];
  }
}

/**
 * A job on a terminal it does not own comes back on a new one (see restore's io step), which CRIU
 * can do only for the terminal as the job got it: refused up front, where CRIU would fail after
 * freezing the tree, or restore the extra open onto the old terminal (its shell's, by then).
 */
function checkTerminals(c: DumpCtx): void {
  const f = c.facts!;
  const ttys = Object.entries(c.stdio).filter(([, s]) => s.kind === "tty" && !s.path);
  if (!ttys.length) return;
  for (const file of f.files) {
    if (file.target === "/dev/tty") {
      throw failedPrecondition(
        `process ${file.pid} has its terminal open as /dev/tty (fd ${file.fd}; less, vim and ssh do that), ` +
          `which CRIU cannot move to a new terminal: end that program first`,
      );
    }
  }
  const shell = ttys.filter(([, s]) => s.kind === "tty" && s.shell).map(([fd]) => Number(fd));
  for (const fd of shell) {
    const path = f.stdio[fd];
    for (const file of f.files.filter((x) => x.target === path)) {
      if (sameOpenFile(c.pid, fd, file.pid, file.fd) === false) {
        throw failedPrecondition(
          `process ${file.pid} opened its terminal ${path} itself (fd ${file.fd}; less and vim do that): ` +
            `CRIU can move only the terminal a shell gave the job to a new one: end that program first`,
        );
      }
    }
  }
}

const steps: Step<DumpCtx>[] = [
  {
    name: "inspect",
    run(c) {
      const f = c.facts = inspectTree(c.pid);
      if (!c.row) c.proc = { cmdline: readCmdline(c.pid) ?? [], cwd: readCwd(c.pid) ?? "" };
      if (f.ioUring) {
        throw failedPrecondition(`process ${c.pid} uses io_uring, which CRIU cannot checkpoint`);
      }
      const auto = (flag: keyof DumpCtx["flags"], on: boolean, label: string) => {
        if (on && !c.flags[flag]) {
          c.flags[flag] = true;
          c.detected.push(label);
        }
      };
      if (f.sessionOutside && !c.plugin?.checkpoint) {
        // (what CRIU would say after freezing the tree: "A session leader of P is outside of its
        // pid namespace"; a process started from `kubectl exec`, a container's exec, some CI agents)
        throw failedPrecondition(
          `process ${c.pid}'s session leader is outside this PID namespace, which CRIU cannot checkpoint: ` +
            `start it in a session of its own (setsid ...), or with cedana run process`,
        );
      }
      // A container's init leads no session of its own; runc handles its terminal.
      auto("shellJob", !f.sessionLeader && !c.plugin?.checkpoint, "--shell-job (not a session leader)");
      const found = { tcpEstablished: f.tcpEstablished, leaveRunning: !!c.req.leaveRunning };
      const refusal = c.row ? c.plugin?.dumpRefusal?.(c.row, found) : null;
      if (refusal) throw failedPrecondition(refusal);
      auto("tcpEstablished", f.tcpEstablished, "--tcp-established (open TCP connections)");
      auto("extUnixSk", f.unixSockets, "--ext-unix-sk (unix sockets)");
      auto("fileLocks", f.fileLocks, "--file-locks (file locks held)");
      // A process whose parent exited was adopted by the daemon (a subreaper): it is the job's (its
      // process group), but no longer in the tree CRIU dumps. Say so; a dump that ends the job ends it too.
      if (c.row?.type === "process" && readStat(c.pid)?.pgrp === c.pid) {
        const tree = new Set(f.pids);
        c.strays = adoptedOf(c.pid).filter((p) => !tree.has(p));
        if (c.strays.length) {
          c.detected.push(
            `${c.strays.length} process(es) of the job outside its process tree (their parent exited: ` +
              `${c.strays.join(", ")}) are not in the checkpoint${
                c.req.leaveRunning ? "" : "; stopped with the job"
              }`,
          );
        }
      }
      // stdio the daemon holds (pipes of attachable jobs, a pty) is outside the dumped tree.
      // (A plugin with its own checkpoint, like runc, deals with its stdio itself.)
      const row = c.row;
      if (c.plugin?.checkpoint) return;
      for (const [fd, link] of Object.entries(f.stdio)) {
        // a deleted log: the restored job writes to a new one at the same path
        const target = link.endsWith(" (deleted)") ? link.slice(0, -" (deleted)".length) : link;
        const pipe = /^pipe:\[(\d+)\]$/.exec(target);
        if (row?.attachable && !row.tty && pipe) {
          c.stdio[fd] = { kind: "pipe", ino: Number(pipe[1]) };
          if (!c.external.includes(target)) c.external.push(target);
        } else if (pipe && !row?.attachable && pipeLeavesTree(f, target)) {
          // A pipe to a process outside the job (`job | tee log`, `producer | job`): that process
          // is not in the checkpoint, so the restored job's end goes to the daemon (or to its new
          // terminal) instead of to a pipe nobody is at the other end of.
          c.stdio[fd] = { kind: "pipe", ino: Number(pipe[1]), outside: true };
          if (!c.external.includes(target)) c.external.push(target);
          c.detected.push(
            `fd ${fd} is a pipe to a process outside the job: a restore gives it the daemon's instead`,
          );
        } else if (/^\/dev\/pts\/\d+$/.test(target) && (row?.tty || !row?.attachable)) {
          // A terminal: the job's own pty, or one the process was started in (adopted from a
          // shell, or -o /dev/pts/N). Its master is not in the tree: the restore gives a new pty
          // (or, for a log, the same terminal again). A session leader's terminal is external to
          // CRIU; a shell job's (the shell leads its session) is what CRIU's -j restores onto its
          // own terminal (see session.ts).
          const id = ttyExternalId(target);
          const log = row?.log === target
            ? { path: target, holder: ptyMasterHolder(target) ?? undefined }
            : {};
          if (f.sessionLeader || log.path) {
            c.stdio[fd] = { kind: "tty", id, ...log };
            if (!c.external.includes(id)) c.external.push(id);
          } else c.stdio[fd] = { kind: "tty", id, shell: true };
        } else if (
          row?.log === target || (fd !== "0" && target.startsWith("/") && !target.startsWith("/dev/"))
        ) {
          // A log file (ours, or any file a process writes its output to) is handed to CRIU at
          // restore, opened as it was: it may have grown in the meantime (CRIU would refuse its
          // size). Whether it can be is decided on CRIU's images (see checkFilesAtFreeze).
          const self = f.files.find((x) => x.pid === c.pid && x.fd === Number(fd));
          if (self) {
            const append = (self.flags & O_APPEND) !== 0;
            c.stdio[fd] = { kind: "file", path: target, ...(append ? {} : { append: false }) };
          }
        }
      }
      checkTerminals(c);
    },
  },
  {
    name: "prepare",
    async run(c, undo) {
      const inside = enclosingCheckpoint(c.baseDir);
      if (inside) throw invalidArgument(`${c.baseDir} is inside checkpoint ${inside}: choose another --dir`);
      try {
        Deno.mkdirSync(c.baseDir, { recursive: true });
      } catch (e) {
        if (e instanceof Deno.errors.AlreadyExists) throw invalidArgument(`${c.baseDir} is not a directory`);
        throw failedPrecondition(`cannot create checkpoint dir ${c.baseDir}: ${osReason(e)}`);
      }
      for (const p of [c.finalPath, join(c.baseDir, c.name)]) {
        try {
          Deno.lstatSync(p);
          throw alreadyExists(`checkpoint ${p} already exists`);
        } catch (e) {
          if (!(e instanceof Deno.errors.NotFound)) throw e;
        }
      }
      if (c.warm && !c.host.warmDumps.fits(c.warm, (dir) => criuDumpArgs(c, dir))) {
        // (the job changed since it was started: other options now)
        await c.host.warmDumps.release(c.warm);
        c.warm = null;
      }
      if (c.warm) {
        const w = c.warm;
        undo(() => c.host.warmDumps.release(w));
      }
      // 0700: the images hold the job's whole memory
      try {
        if (c.warm) {
          try {
            c.host.warmDumps.adopt(c.warm, c.tmpDir); // (its images dir, 0700 too)
          } catch (e) {
            if (e instanceof Deno.errors.AlreadyExists) throw e;
            // (its dir gone, say a /tmp cleaner took it: this dump goes without)
            await c.host.warmDumps.release(c.warm);
            c.warm = null;
          }
        }
        if (!c.warm) Deno.mkdirSync(c.tmpDir, { mode: 0o700 });
      } catch (e) {
        // (another dump with this --name, right now)
        if (e instanceof Deno.errors.AlreadyExists) {
          throw alreadyExists(`checkpoint ${c.finalPath} is being written`);
        }
        throw failedPrecondition(`cannot write a checkpoint into ${c.baseDir}: ${osReason(e)}`);
      }
      c.host.db.addTemp(c.tmpDir, "dump", c.finalPath, c.row?.jid ?? null);
      undo(() => {
        if (!c.imagesTaken || c.req.leaveRunning) Deno.removeSync(c.tmpDir, { recursive: true });
        else {
          // CRIU already ended the job: these images are all that is left of it (see salvage.ts).
          try {
            c.salvaged = salvageImages(c.host, c.tmpDir, null, c.row?.jid ?? null);
          } catch (e) {
            c.host.log.warn("cannot salvage a failed dump's images", { path: c.tmpDir, error: String(e) });
            c.salvaged = { kind: "kept", path: exists(c.tmpDir) ? c.tmpDir : c.baseDir, manifest: false };
          }
        }
        c.host.db.removeTemp(c.tmpDir);
      });
    },
  },
  {
    name: "hold",
    when: (c) => c.row !== null,
    run(c, undo) {
      c.host.unwatch(c.row!.jid);
      undo(() => c.host.rewatch(c.row!.jid));
    },
  },
  {
    name: "gpu_detect",
    run(c) {
      c.gpu = detectGpu(c.pid);
      if (c.gpu && c.row && !c.row.gpu) {
        c.host.db.updateJob(c.row.jid, { gpu: true });
        c.detected.push(`GPU (CUDA in ${c.gpu.pids.length} process(es))`);
      }
    },
  },
  {
    name: "gpu_lock",
    when: (c) => c.gpu !== null,
    async run(c, undo) {
      await lockAll(c.gpu!, c.host.config.gpu.lock_timeout, undo);
    },
  },
  {
    name: "gpu_checkpoint",
    when: (c) => c.gpu !== null,
    async run(c, undo) {
      await checkpointAll(c.gpu!, undo);
      faultPoint("dump-after-gpu-checkpoint");
    },
  },
  {
    name: "criu_dump",
    async run(c, undo) {
      const hasher = c.hasher = new DirHasher(c.tmpDir, new Set([MANIFEST, MANIFEST_DRAFT]));
      hasher.start();
      undo(() => hasher.abort());
      writeManifest(c.tmpDir, manifestFor(c, []), MANIFEST_DRAFT);
      if (c.plugin?.checkpoint) {
        // Inside the images' dir: if the daemon dies, runc finishes the dump on its own and CRIU's
        // stats (the proof that it finished) are found with the images (see salvage.ts).
        const workDir = join(c.tmpDir, WORK_SUBDIR);
        Deno.mkdirSync(workDir);
        try {
          await c.plugin.checkpoint({
            config: c.host.config,
            log: c.host.log,
            jid: c.row!.jid,
            row: c.row!,
            imagesDir: c.tmpDir,
            workDir,
            leaveRunning: !!c.req.leaveRunning,
            flags: c.flags,
            extra: [...parseCriuOpts(c.req.criuOpts), ...runtimeExtras(c.req)],
            ignoreRootfs: !!c.req.ignoreRootfs,
            criu: c.criu,
          });
          c.imagesTaken = true;
          // runc/containerd make CRIU write its stats and log into the work dir: keep them with the
          // images, as a process dump does
          for (const f of ["stats-dump", "dump.log"]) {
            try {
              Deno.copyFileSync(join(workDir, f), join(c.tmpDir, f));
            } catch { /* none written */ }
          }
        } catch (e) {
          criuFailed(c, e as Error, join(workDir, "dump.log"), workDir);
          throw e;
        } finally {
          Deno.removeSync(workDir, { recursive: true });
        }
        return;
      }
      // An attachable job's stdin pipe is the daemon's: CRIU saves what waits in it; what the
      // daemon still queues for it (the pipe was full) is kept beside. Nothing moves from the one
      // to the other meanwhile (and nothing is dropped when the dump ends the job).
      const stdin = c.stdio["0"];
      const input = c.row?.attachable && stdin?.kind === "pipe" && !stdin.outside ? stdin : null;
      const releaseInput = input ? c.host.holdInput(c.row!.jid) : () => {};
      try {
        if (c.warm) {
          // (started with these options when the daemon began watching the job: see warm_dump.ts)
          const w = c.warm;
          c.warm = null;
          c.warmed = true;
          try {
            criuOutcome(await c.host.warmDumps.go(w), join(c.tmpDir, "dump.log"), "criu dump");
            faultPoint("dump-after-criu"); // (its stats still in its work dir: see salvage.ts)
          } finally {
            await c.host.warmDumps.release(w, c.tmpDir);
          }
        } else {
          await runCriu(c.criu, criuDumpArgs(c, c.tmpDir), join(c.tmpDir, "dump.log"), "criu dump");
          faultPoint("dump-after-criu");
        }
        c.imagesTaken = true;
        checkFilesAtFreeze(c);
        if (input) {
          // (the restore gives both back)
          const queued = c.host.queuedInput(c.row!.jid) ?? new Uint8Array();
          if (queued.length) Deno.writeFileSync(join(c.tmpDir, STDIN_QUEUED), queued);
          const pending = (criuPipeData(c.tmpDir, input.ino)?.length ?? 0) + queued.length;
          if (pending) {
            c.detected.push(`${pending} bytes of input it had not read yet are kept for the restore`);
          }
        }
      } catch (e) {
        criuFailed(c, e as Error, join(c.tmpDir, "dump.log"));
        // CRIU may have killed the tree before failing (it does on some errors), or the process
        // died under it (killed by someone else): either way, say it is gone.
        if (!isRunning(readStat(c.pid))) {
          (e as Error).message +=
            `; the process ${c.pid} is gone (it died during the dump, or CRIU killed it)`;
        }
        throw e;
      } finally {
        releaseInput();
      }
    },
  },
  {
    name: "gpu_resume",
    when: (c) => c.gpu !== null && !!c.req.leaveRunning,
    async run(c) {
      await resumeAll(c.gpu!);
    },
  },
  {
    name: "manifest",
    async run(c) {
      const stats = readDumpStats(c.tmpDir);
      c.stats = stats as unknown as Record<string, number> | null;
      // Uncompressed: record now, finish the checksums in the background (see checksums.ts).
      // Compressed: the manifest goes into the archive, so it must be complete first. Either way a
      // manifest with the checksums pending is written at once: a dump killed while hashing leaves
      // images that salvage.ts can record.
      const listed = c.hasher!.list().map((f) => ({ ...f, sha256: "" }));
      c.manifest = manifestFor(c, listed);
      writeManifest(c.tmpDir, c.manifest);
      Deno.removeSync(join(c.tmpDir, MANIFEST_DRAFT));
      if (c.compression !== "none") {
        c.manifest = { ...c.manifest, files: await c.hasher!.finish(), checksums: undefined };
        writeManifest(c.tmpDir, c.manifest);
      }
      c.size = c.manifest.files.reduce((a, f) => a + f.size, 0);
    },
  },
  {
    name: "compress",
    when: (c) => c.compression !== "none",
    async run(c, undo) {
      const tmpArchive = `${c.tmpDir}${archiveExt(c.compression as Exclude<CompressionName, "none">)}`;
      undo(() => Deno.removeSync(tmpArchive));
      await createArchive(c.tmpDir, tmpArchive, c.compression as Exclude<CompressionName, "none">);
      Deno.renameSync(tmpArchive, c.finalPath);
      undo(() => Deno.removeSync(c.finalPath));
      // (the images stay until the archive is recorded: the commit removes them)
      c.size = Deno.statSync(c.finalPath).size;
    },
  },
  {
    name: "commit",
    run(c) {
      // Recorded first, moved into place after: a failure in between leaves the images in the
      // temporary dir for the undo (or, after a crash, the next start) to salvage.
      c.host.db.insertCheckpoint({
        id: c.id,
        jid: c.row?.jid ?? null,
        path: c.finalPath,
        time: c.time,
        size: c.size,
        manifest: {
          ...(c.manifest as unknown as Record<string, unknown>),
          compression: c.compression,
          // (a rename keeps inode, size and mtime)
          stamps: c.compression === "none" ? stampFiles(c.tmpDir, c.manifest!.files) : undefined,
        },
      });
      try {
        if (c.compression === "none") {
          Deno.renameSync(c.tmpDir, c.finalPath);
          c.hasher!.relocate(c.finalPath);
        } else Deno.removeSync(c.tmpDir, { recursive: true });
      } catch (e) {
        if (c.compression === "none") {
          c.host.db.deleteCheckpoint(c.id);
          throw e;
        }
        c.host.log.warn("cannot remove a dump's temporary dir", { path: c.tmpDir, error: String(e) });
      }
      c.host.db.removeTemp(c.tmpDir);
      // a newer whole checkpoint supersedes an unfinished dump's images (see salvage.ts)
      const cur = c.row ? c.host.db.getJob(c.row.jid) : null;
      if (cur?.details.incompleteDump) {
        const { incompleteDump: _, ...details } = cur.details;
        c.host.db.updateJob(cur.jid, { details });
      }
      if (c.manifest!.checksums === "pending") {
        c.host.checksums.complete(c.id, c.finalPath, c.manifest!, c.hasher!.finish(c.host.checksums.pace));
      }
      if (!c.row) return;
      if (c.req.leaveRunning) c.host.rewatch(c.row.jid);
      else {
        c.host.dumped(c.row.jid, c.id);
        for (const p of c.strays ?? []) {
          try {
            Deno.kill(p, "SIGKILL");
          } catch { /* gone */ }
        }
      }
    },
  },
];

/**
 * A failed CRIU (or runc) dump: its log moves out of the temporary dir (which goes) next to where
 * the checkpoint would have been, and the error names that path; a full disk is said first.
 */
/** The checkpoint's manifest, checksums pending (the draft before CRIU runs has no files yet). */
function manifestFor(c: DumpCtx, files: Manifest["files"]): Manifest {
  const r = c.row;
  return {
    format: 1,
    id: c.id,
    name: c.name,
    time: new Date(c.time).toISOString(),
    job: {
      jid: r?.jid ?? null,
      ...(r ? { createdAt: r.createdAt } : {}),
      type: r?.type ?? "process",
      pid: c.pid,
      cmdline: r?.cmdline ?? c.proc?.cmdline ?? [],
      cwd: r?.cwd ?? c.proc?.cwd ?? "",
      log: r?.log ?? null,
      attachable: r?.attachable ?? false,
      tty: r?.tty ?? false,
      gpu: r?.gpu ?? false,
      details: r?.details ?? {},
    },
    pids: c.facts!.pids,
    stdio: c.stdio,
    criu: { version: c.criuVersion, flags: { ...c.flags }, external: c.external },
    kernel: Deno.osRelease(),
    host: Deno.hostname(),
    files,
    checksums: "pending",
    gpu: c.gpu?.manifest,
    stats: c.stats ?? undefined,
    rootfs: c.plugin?.checkpoint ? (c.req.ignoreRootfs ? "ignored" : "saved") : undefined,
  };
}

/** The checkpoint dir that `dir` is in (or is), if any: a checkpoint nested in one would be lost with it. */
function enclosingCheckpoint(dir: string): string | null {
  for (let d = resolve(dir); d !== "/"; d = dirname(d)) {
    if (exists(join(d, MANIFEST))) return d;
  }
  return null;
}

function criuFailed(c: DumpCtx, e: Error, log: string, workDir?: string): void {
  const kept = join(c.baseDir, `${c.name}.dump.log`);
  const details = (e as { details?: string[] }).details ?? [];
  try {
    Deno.renameSync(log, kept);
    // (the message and CRIU's or runc's lines may name the log where it was)
    const moved = (s: string) => s.replaceAll(log, kept).replaceAll(workDir ?? log, kept);
    e.message = moved(e.message);
    details.splice(0, details.length, ...details.map(moved));
  } catch { /* no log written */ }
  if (details.some((l) => /No space left on device/.test(l))) {
    e.message = `not enough space in ${c.baseDir} for the checkpoint (${e.message})`;
  }
}

/**
 * --external and --link-remap for a runtime's CRIU (runc has no flags for them): they go into its
 * CRIU config file with --criu-opts. Only what the user asked; runc marks the container's own
 * externals (mounts, pipes) itself.
 */
function runtimeExtras(req: DumpRequest): string[] {
  return [
    ...(req.external ?? []).flatMap((e) => ["--external", e]),
    ...(req.linkRemap ? ["--link-remap"] : []),
  ];
}

/** CRIU's options for this dump, with its images in `imagesDir`. */
function criuDumpArgs(c: DumpCtx, imagesDir: string): string[] {
  return dumpArgs({
    pid: c.pid,
    imagesDir,
    logFile: "dump.log",
    verbosity: c.host.config.criu.log_level,
    leaveRunning: !!c.req.leaveRunning,
    ...c.flags,
    external: c.external,
    extra: parseCriuOpts(c.req.criuOpts),
  });
}

/**
 * The options a plain `cedana dump job` of `row` would give CRIU now (its inspection of the job,
 * as the dump runs it), or null when that dump would be refused: for a warm dump (warm_dump.ts).
 */
export function plainDumpArgs(host: CrHost, row: JobRow, imagesDir: string): string[] | null {
  const c = {
    req: { jid: row.jid, leaveRunning: false },
    host,
    row,
    pid: row.pid!,
    plugin: plugin(row.type),
    flags: { shellJob: false, tcpEstablished: false, fileLocks: false, extUnixSk: false, linkRemap: false },
    external: [],
    stdio: {},
    detected: [],
  } as unknown as DumpCtx;
  try {
    steps.find((s) => s.name === "inspect")!.run(c, () => {});
  } catch {
    return null;
  }
  return criuDumpArgs(c, imagesDir);
}

export async function dump(host: CrHost, request: DumpRequest, row: JobRow | null): Promise<DumpResult> {
  // config criu.leave_running is the default of --leave-running
  const req = { ...request, leaveRunning: request.leaveRunning ?? host.config.criu.leave_running };
  // a bad --criu-opts is refused before anything happens
  const extra = parseCriuOpts(req.criuOpts);
  if (row && plugin(row.type).checkpoint) {
    const why = plugin(row.type).noCriuOpts;
    if (why && extra.length) {
      throw invalidArgument(`--criu-opts cannot be used with ${row.type} jobs: ${why}`);
    }
    if (why && runtimeExtras(req).length) {
      throw invalidArgument(`--external and --link-remap cannot be used with ${row.type} jobs: ${why}`);
    }
    // (a runtime's CRIU gets them in a config file: what it cannot hold is refused now)
    criuConfigFile([...extra, ...runtimeExtras(req)]);
  }
  if (req.ignoreRootfs && (!row || row.type === "process")) {
    throw invalidArgument("--ignore-rootfs is for container jobs (runc, containerd)");
  }
  let pid: number;
  if (row) {
    if (row.pid === null || row.state !== "running") {
      throw failedPrecondition(`job ${row.jid} is not running`);
    }
    if (row.details.pidNamespace && row.type === "process") {
      // CRIU sees that tree's files through the mounts of a namespace it did not make ("Can't
      // lookup mount"), so say why up front rather than quote it
      throw failedPrecondition(
        `job ${row.jid} was restored into a new PID namespace (its original PIDs were taken): CRIU cannot ` +
          `checkpoint it again; restore it where its PIDs are free to dump it later`,
      );
    }
    pid = row.pid;
  } else {
    if (!isValidPid(req.pid!)) throw invalidArgument(`invalid PID ${req.pid}`);
    pid = req.pid!;
    const why = unmanageable(pid, "checkpoint");
    if (why) throw invalidArgument(why);
  }
  const st = row ? jobProcess(pid, row.startTime) : readStat(pid);
  if (!isRunning(st)) {
    throw row
      ? failedPrecondition(`job ${row.jid} is not running (its process has exited)`)
      : notFound(`no process with PID ${pid}`);
  }
  const compression = parseCompression(req.compression ?? host.config.checkpoint.compression);
  // before CRIU ends the job, not after: a missing compressor must not cost the job
  if (compression !== "none") requireCompressor(compression);
  const { bin, version } = await requireCriu(host);
  // (a container's CRIU gets them checked by its plugin, in its own config file)
  if (extra.length && !(row && plugin(row.type).checkpoint)) await checkCriuOpts(bin, extra);
  const time = Date.now();
  const type = row?.type ?? "process";
  if (req.name !== undefined && (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(req.name) || req.name.length > 200)) {
    throw invalidArgument(
      `invalid checkpoint name ${
        JSON.stringify(req.name.length > 210 ? req.name.slice(0, 210) + "..." : req.name)
      }: ` +
        "up to 200 letters, digits, '_', '.', '-', starting with a letter or digit",
    );
  }
  if (req.name !== undefined && detectCompression(req.name) !== "none") {
    // (a directory named like an archive would be taken for one)
    throw invalidArgument(
      `invalid checkpoint name ${JSON.stringify(req.name)}: the extension comes from --compression ` +
        `(--name ${req.name.replace(/\.tar(\.\w+)?$/, "")} --compression ${detectCompression(req.name)})`,
    );
  }
  const baseDir = req.dir ?? host.config.checkpoint.dir;
  const ext = compression === "none" ? "" : archiveExt(compression);
  // The default name has one-second resolution: two dumps in one second get a suffix (a failed
  // dump's kept log counts: the next checkpoint must not sit beside a log that is not its own).
  let name = req.name ?? `dump-${type}-${row?.jid ?? pid}-${Math.floor(time / 1000)}`;
  const taken = (n: string) => [n, n + ext, `${n}.dump.log`].some((f) => exists(join(baseDir, f)));
  for (let i = 2; req.name === undefined && taken(name); i++) {
    name = `dump-${type}-${row?.jid ?? pid}-${Math.floor(time / 1000)}-${i}`;
  }
  const c: DumpCtx = {
    req,
    gpu: null,
    plugin: row ? plugin(row.type) : null,
    host,
    row,
    pid,
    criu: bin,
    criuVersion: version,
    compression,
    flags: {
      shellJob: !!req.shellJob,
      tcpEstablished: !!req.tcpEstablished,
      fileLocks: !!req.fileLocks,
      extUnixSk: false,
      linkRemap: !!req.linkRemap,
    },
    external: [...(req.external ?? [])],
    stdio: {},
    detected: [],
    id: newCheckpointId(),
    name,
    baseDir,
    tmpDir: join(baseDir, `${TMP_PREFIX}${name}`),
    finalPath: join(baseDir, name + ext),
    size: 0,
    time,
    stats: null,
    // (a CRIU started ahead for this job's next dump, if it fits this one: see warm_dump.ts)
    warm: row ? host.warmDumps.take(row, req, bin) : null,
  };
  const timings: Record<string, number> = {};
  try {
    await runSteps(steps, c, timings, (step) => {
      if (row) host.progress(row.jid, "dump", step, step === "compress" ? undefined : c.tmpDir);
    });
  } catch (e) {
    if (c.warm) await host.warmDumps.release(c.warm); // (refused before it got to use it)
    const s = c.salvaged;
    if (s && s.kind !== "useless" && e instanceof Error) {
      e.message += s.kind === "recorded"
        ? `; the job was already ended by CRIU: its images were recorded uncompressed as checkpoint ${s.id} (${s.path})` +
          (s.jid
            ? `: \`cedana restore job ${s.jid}\` restores them`
            : `: cedana restore process --path ${s.path}`)
        : `; the job was already ended by CRIU: its images are kept in ${s.path}` +
          (s.manifest
            ? ` (restore them with: cedana restore process --path ${s.path})`
            : ` (no manifest: restore them with criu restore -D ${s.path})`);
    }
    throw e;
  }
  if (c.stats) {
    timings.criu_freezing_time = c.stats.freezingTimeUs / 1000;
    timings.criu_frozen_time = c.stats.frozenTimeUs / 1000;
    timings.criu_memdump_time = c.stats.memdumpTimeUs / 1000;
    timings.criu_memwrite_time = c.stats.memwriteTimeUs / 1000;
  }
  host.log.info("dumped", { jid: row?.jid, pid, path: c.finalPath, ms: timings.total, warm: !!c.warmed });
  return {
    checkpoint: {
      id: c.id,
      jid: row?.jid ?? null,
      path: c.finalPath,
      time: new Date(time).toISOString(),
      size: c.size,
      compression,
    },
    leftRunning: !!req.leaveRunning,
    detected: c.detected,
    gpu: c.gpu ? { pids: c.gpu.pids, total: c.gpu.manifest.total } : undefined,
    timings,
    criuStats: c.stats,
    ...(c.warmed ? { warm: true } : {}),
  };
}
