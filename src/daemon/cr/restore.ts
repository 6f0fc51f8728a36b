// `cedana restore`: bring a checkpoint back as ordered steps. The job's log is handed to CRIU
// (--inherit-fd, opened for appending, so a log that grew since the dump is fine), an attachable
// job gets fresh pipes or a fresh pty, and the restored root becomes the daemon's own child
// (--restore-sibling) so its real exit code is known. When the original PIDs are taken, the
// restore happens in a new PID namespace instead.

import { closeSync, existsSync } from "node:fs";
import { join } from "node:path";
import type { RestoreRequest, RestoreResult } from "../../api/types.ts";
import { detectCompression, extractArchive } from "../../checkpoint/archive.ts";
import {
  type FileStdio,
  type Manifest,
  type PipeStdio,
  readManifest,
  STDIN_QUEUED,
  type TtyStdio,
  verifySizes,
} from "../../checkpoint/manifest.ts";
import { criuPipeData } from "../../criu/images.ts";
import { restoreArgs } from "../../criu/options.ts";
import { criuErrorLines, criuOutcome, runCriu, spawnCriu } from "../../criu/run.ts";
import { readRestoreStats } from "../../criu/stats.ts";
import { type CedanaError, failedPrecondition, invalidArgument, notFound } from "../../errors.ts";
import { type IoKeep, keptPipes, keptPty, releaseIo } from "../../plugins/process/io.ts";
import { type JobIo, plugin } from "../../plugins/mod.ts";
import type { CudaDriver } from "../../gpu/mod.ts";
import { checkGpuRoom, currentPids, restoreAll } from "./gpu.ts";
import { defaultLogPath } from "../../plugins/process/mod.ts";
import { children, holdsPtyMaster, isSameProcess, killAll, readStat } from "../../proc/mod.ts";
import { closeFd, dupFd, openAppend, openpty, openWriteAt, pipe, writeFd } from "../../sys/mod.ts";
import type { JobRow } from "../db.ts";
import { exists, WORK_PREFIX } from "./salvage.ts";
import { GATE_DIR, PID_FILE, writeIntent } from "./restore_intent.ts";
import { faultActive, faultPoint, faultPointWhen } from "../fault.ts";
import type { CrHost } from "./host.ts";
import { runSteps, type Step } from "./steps.ts";
import { requireCriu } from "./dump.ts";
import { restoreInSession } from "./session.ts";
import type { WarmArgs, WarmCriu } from "./warm_restore.ts";

interface RestoreCtx {
  req: RestoreRequest;
  host: CrHost;
  /** The job being restored (exists for `restore job`; built for `restore process`). */
  row: JobRow;
  isNew: boolean;
  path: string;
  criu: string;
  imagesDir: string;
  workDir: string;
  manifest?: Manifest;
  verified?: Promise<void>;
  /** The checksums must be checked before the restored tasks may run (CRIU's pre-resume gate). */
  gated: boolean;
  pidNamespace: boolean;
  /** fds CRIU gets as 3, 4, ...; closed in the daemon once CRIU has them. */
  childFds: number[];
  inherit: { fd: number; resource: string }[];
  io: JobIo | null;
  keep?: IoKeep;
  /** A shell job's new terminal (pty slave): CRIU restores it in a session of its own (session.ts). */
  sessionTty?: number;
  ourFds: number[];
  pid: number;
  /** The restored root is our child (restore-sibling, or via the subreaper): reap it. */
  reap: boolean;
  gpuDriver: CudaDriver | null;
  stats: Record<string, number> | null;
  notes: string[];
  /** The CRIU started ahead for this restore (warm.ts), while the restore may still use it. */
  warm: WarmCriu | null;
  /** A warm CRIU restored it. */
  warmed?: boolean;
}

function restoreOptions(req: RestoreRequest) {
  const { id, bundle, root, attachable, address, namespace } = req;
  return { id, bundle, root, attachable, address, namespace };
}

/** The checkpoint is of a shell job on a terminal (see session.ts). */
function shellTty(m: Manifest): boolean {
  return Object.values(m.stdio ?? {}).some((s) => s.kind === "tty" && s.shell);
}

function pidTaken(pid: number): boolean {
  try {
    Deno.statSync(`/proc/${pid}`);
    return true;
  } catch {
    return false;
  }
}

/** Resolve whether every PID of the checkpoint is free, reaping and waiting briefly for zombies. */
async function pidsFree(c: RestoreCtx): Promise<boolean> {
  const pids = c.manifest!.pids;
  // Zombies of other parents go when PID 1 reaps them, which can take a while on some machines.
  // A process can take a new PID namespace instead of waiting; a GPU job cannot (the driver knows
  // it by its PID), so it waits longer for them.
  // (5 s: some machines' PID 1 reaps slowly, and a job restored in a new namespace cannot be
  // checkpointed again)
  const deadline = Date.now() + (c.manifest!.gpu ? 60_000 : 5000);
  for (;;) {
    const taken = pids.filter(pidTaken);
    if (!taken.length) return true;
    // Zombies go away once reaped (we reap our own orphans); anything alive keeps its PID.
    if (taken.some((p) => readStat(p)?.state !== "Z") || Date.now() > deadline) return false;
    c.host.reapOrphans();
    await new Promise((r) => setTimeout(r, 20));
  }
}

// CRIU 4.2 logs but ignores a failing pre-resume script, so a damaged checkpoint is stopped here
// by killing the restored tree while it is still held (not one instruction of it has run). So is
// a restore whose daemon died before the verdict (CRIU outlives it: killed, it would let the
// tasks go unverified); the daemon is known by its PID and start time (a reused PID is not it).
/** Background hashing waits this long after a restore's CRIU (see Checksums.hold). */
const HASHING_RESUMES_MS = 300;

/** In a new PID namespace the hook cannot see the daemon's PID: the daemon touches this file. */
const HEARTBEAT = "heartbeat";
const HEARTBEAT_STALE_S = 5;

const ACTION_SCRIPT = (gate: string, daemon: { pid: number; startTime: number }) =>
  `#!/bin/sh
# cedana: hold the restored tasks before they resume until the checkpoint's checksums are verified
daemon_alive() {
  if [ -e '${gate}/${HEARTBEAT}' ]; then
    # (restoring in a new PID namespace: this /proc is the namespace's; the daemon touches the file)
    [ $(($(date +%s) - $(stat -c %Y '${gate}/${HEARTBEAT}' 2>/dev/null || echo 0))) -lt ${HEARTBEAT_STALE_S} ]
  else
    [ "$(sed 's/.*) //' /proc/${daemon.pid}/stat 2>/dev/null | cut -d' ' -f20)" = "${daemon.startTime}" ]
  fi
}
case "$CRTOOLS_SCRIPT_ACTION" in
pre-resume)
  while :; do
    [ -e '${gate}/ok' ] && exit 0
    if [ -e '${gate}/bad' ] || ! daemon_alive; then
      kill -KILL -- "-$CRTOOLS_INIT_PID" 2>/dev/null
      kill -KILL "$CRTOOLS_INIT_PID" 2>/dev/null
      exit 1
    fi
    sleep 0.02
  done ;;
post-resume) : > '${gate}/resumed' ;;
esac
exit 0
`;

/** Input an attachable job had not read when dumped: its pipe's, then what the daemon queued. */
function unreadInput(imagesDir: string, ino: number): Uint8Array {
  const inPipe = criuPipeData(imagesDir, ino) ?? new Uint8Array();
  let queued = new Uint8Array();
  try {
    queued = Deno.readFileSync(join(imagesDir, STDIN_QUEUED));
  } catch { /* none queued */ }
  const all = new Uint8Array(inPipe.length + queued.length);
  all.set(inPipe);
  all.set(queued, inPipe.length);
  return all;
}

function isDir(path: string): boolean {
  try {
    return Deno.statSync(path).isDirectory;
  } catch {
    return false;
  }
}

function closeSessionTty(c: RestoreCtx): void {
  if (c.sessionTty === undefined) return;
  closeFd(c.sessionTty);
  c.sessionTty = undefined;
}

const steps: Step<RestoreCtx>[] = [
  {
    name: "unpack",
    // (a directory is images whatever its name: one named like an archive was never packed)
    when: (c) => detectCompression(c.path) !== "none" && !isDir(c.path),
    async run(c, undo) {
      c.imagesDir = join(c.workDir, "images");
      Deno.mkdirSync(c.imagesDir);
      undo(() => Deno.removeSync(c.imagesDir, { recursive: true }));
      await extractArchive(c.path, c.imagesDir);
    },
  },
  {
    name: "verify",
    async run(c) {
      const m = c.manifest = readManifest(c.imagesDir);
      verifySizes(c.imagesDir, m);
      if (!c.isNew && m.job.jid !== c.row.jid) {
        // another job's state in this job's record: its command, log and exit would not be its own
        const of = m.job.jid ? `job ${m.job.jid}` : `process ${m.job.pid} (not a job)`;
        throw invalidArgument(
          `${c.path} is a checkpoint of ${of}, not of job ${c.row.jid}: restore it as a new job with ` +
            `cedana restore ${m.job.type} --path ${c.path}${m.job.type === "process" ? "" : " --id NEW_ID"}`,
        );
      }
      if (!c.isNew && m.job.createdAt !== undefined && m.job.createdAt !== c.row.createdAt) {
        // (a job deleted, and its name given to a new one: the checkpoint is the old job's)
        throw invalidArgument(
          `${c.path} is a checkpoint of an earlier job named ${c.row.jid} (recorded ${
            new Date(m.job.createdAt).toISOString()
          }), not of this one: restore it as a new job with cedana restore ${m.job.type} --path ${c.path}` +
            (m.job.type === "process" ? " --jid NEW" : " --id NEW_ID"),
        );
      }
      if (c.isNew) {
        const j = m.job;
        if (c.req.type && j.type !== c.req.type) {
          const hint = j.type === "process" ? "" : " --id NEW_ID";
          throw invalidArgument(
            `${c.path} is a ${j.type} checkpoint: restore it with cedana restore ${j.type} --path ${c.path}${hint}`,
          );
        }
        if (c.req.log && j.tty) {
          throw invalidArgument(
            `${c.path} is of a job with a terminal: restore it without -o (it gets a new one)`,
          );
        }
        c.row = {
          ...c.row,
          type: j.type as JobRow["type"],
          // a new job gets a log of its own, the original's keeps being the original's
          log: c.row.log ?? (j.log ? defaultLogPath(c.host.config.output_dir, c.row.jid) : null),
          // (-o: an attachable job's copy writes to that log instead; it was kept attachable, and the
          // log it was said to have stayed empty)
          attachable: j.attachable && !c.req.log,
          tty: j.tty,
          gpu: j.gpu,
          cmdline: j.cmdline,
          cwd: j.cwd,
          details: j.details,
        };
      }
      // Keepers recorded for the job's previous process are gone: the restore makes new ones.
      const { ioKeepers: _old, ...details } = c.row.details;
      c.row = { ...c.row, details };
      // Checksums are verified while CRIU restores; the tasks resume only if they match.
      const check = await c.host.checksums.verifier(
        c.imagesDir,
        c.imagesDir === c.path ? c.path : null,
        c.host.config.checkpoint.verify,
      );
      const slow = faultActive("slow-checksums");
      c.gated = check !== null || slow;
      c.verified = slow
        ? new Promise<void>((r) => setTimeout(r, 2000)).then(() => check?.())
        : check
        ? check()
        : Promise.resolve();
      c.verified.catch(() => {});
      // (a warm CRIU has no gate: one to hold the tasks at means a CRIU with the action script)
      if (c.gated) await dropWarm(c);
      // A restore refused at the gate comes after CRIU rebuilt the TCP connections: killing the tree
      // then resets them for good. With established connections, check first.
      if (check && m.criu.flags.tcpEstablished) await c.verified;
    },
  },
  {
    name: "gpu_check",
    when: (c) => !!c.manifest!.gpu,
    run(c) {
      c.gpuDriver = checkGpuRoom(c.manifest!.gpu!);
    },
  },
  {
    name: "pids",
    // a container gets a PID namespace of its own anyway
    when: (c) => !plugin(c.row.type).restore,
    async run(c) {
      c.pidNamespace = !(await pidsFree(c));
      if (c.pidNamespace) await dropWarm(c);
      if (c.pidNamespace && shellTty(c.manifest!)) {
        // (CRIU would have to be both the namespace's init and a member of the terminal's session)
        throw failedPrecondition(
          `a process from a terminal can only be restored under its original PIDs, and they are taken (${
            c.manifest!.pids.filter(pidTaken).join(", ")
          })`,
        );
      }
      if (c.pidNamespace && c.manifest!.gpu) {
        // the driver's restore addresses processes by their original PIDs
        throw failedPrecondition(
          "a GPU job can only be restored under its original PIDs, and they are taken",
        );
      }
    },
  },
  {
    name: "plugin_restore",
    when: (c) => !!plugin(c.row.type).restore,
    async run(c) {
      // No pre-resume hook through runc: verify the checksums first.
      await c.verified!;
      // (if the daemon dies from here on, the next one finds the container: see restore_intent.ts)
      const intent = {
        row: c.row,
        gated: false,
        checkpoint: c.path,
        options: restoreOptions(c.req),
        dumped: c.manifest!.job.details,
        time: Date.now(),
      };
      writeIntent(c.workDir, intent);
      const release = c.host.checksums.hold();
      let r;
      try {
        r = await plugin(c.row.type).restore!({
          config: c.host.config,
          log: c.host.log,
          jid: c.row.jid,
          row: c.row,
          imagesDir: c.imagesDir,
          workDir: c.workDir,
          flags: c.manifest!.criu.flags,
          options: restoreOptions(c.req),
          dumped: c.manifest!.job.details,
          dumpedAt: Date.parse(c.manifest!.time),
          criu: c.criu,
          isNew: c.isNew,
        });
      } finally {
        release(HASHING_RESUMES_MS);
      }
      c.pid = r.pid;
      c.io = r.io;
      c.reap = r.reap;
      // runc/containerd make CRIU write its stats into the work dir
      c.stats = readRestoreStats(c.workDir) as unknown as Record<string, number> | null;
      if (r.attachable && !c.row.attachable && c.row.log) {
        c.notes.push(
          `its output goes to attached clients from now on, not to ${c.row.log} ` +
            `(restore it with -o ${c.row.log} to write to a log again)`,
        );
      }
      c.row = { ...c.row, attachable: r.attachable, log: r.log, details: { ...c.row.details, ...r.details } };
      writeIntent(c.workDir, { ...intent, row: c.row, pid: r.pid });
    },
  },
  {
    name: "io",
    when: (c) => !plugin(c.row.type).restore,
    run(c, undo) {
      undo(() => {
        releaseIo(c.keep);
        for (const fd of [...c.childFds, ...c.ourFds]) {
          try {
            closeFd(fd);
          } catch { /* closed */ }
        }
      });
      if (c.warm) {
        // (a warm CRIU has the job's output files already: see warm.ts; they are ours to close now)
        c.inherit.push(...c.warm.inherit);
        c.childFds.push(...c.warm.childFds.splice(0));
        faultPoint("restore-io-ready");
        return;
      }
      const give = (fd: number, resource: string) => {
        c.inherit.push({ fd: 3 + c.childFds.length, resource });
        c.childFds.push(fd);
      };
      const stdio = c.manifest!.stdio ?? {};
      const log = c.row.log;
      const files = new Map<string, FileStdio>();
      for (const s of Object.values(stdio)) if (s.kind === "file") files.set(s.path, s);
      const ttys = Object.values(stdio).filter((s) => s.kind === "tty") as TtyStdio[];
      // (a log that is a terminal, restored --attachable: a new terminal too)
      const tty = ttys.find((t) => t.path === undefined) ?? (c.req.attachable ? ttys[0] : undefined);
      // (a job with a terminal has that as its attachable I/O: its files stay files)
      if (files.size && c.req.attachable && !c.row.attachable && !tty) {
        // A log-mode job restored as attachable: one pipe stands in for its log file.
        const p = pipe();
        c.ourFds.push(p.read);
        for (const path of files.keys()) give(p.write, path.replace(/^\//, ""));
        ({ io: c.io, keep: c.keep } = keptPipes(null, p.read, null));
        c.notes.push(
          `its output goes to attached clients from now on, not to ${c.row.log ?? "its log"} ` +
            `(restore it with -o ${c.row.log ?? "FILE"} to write to a log again)`,
        );
        c.row = { ...c.row, attachable: true, log: null };
        files.clear();
      }
      for (const [path, s] of files) {
        // The log may have grown since the dump; CRIU would refuse its size, so hand it over.
        const target = path === c.manifest!.job.log && log ? log : path;
        let fd: number;
        try {
          // (a file the job wrote at an offset (`> file`, not appending): opened there again)
          const at = s.append === false && target === path ? s.pos : undefined;
          fd = at !== undefined ? openWriteAt(target, at) : openAppend(target);
          const size = at !== undefined ? Deno.statSync(target).size : 0;
          if (at !== undefined && size < at) {
            c.notes.push(
              `${target} is shorter than where the job was writing (${size} < ${at} bytes: rotated or ` +
                "truncated since the dump?); it writes on at its offset, after a gap of zero bytes",
            );
          }
        } catch (e) {
          throw failedPrecondition((e as Error).message);
        }
        give(fd, path.replace(/^\//, ""));
      }
      for (const t of tty ? [] : ttys) {
        // A terminal that was the job's log (-o /dev/pts/N): the same one again. (CRIU restores a
        // terminal as a terminal: another log file cannot stand in for it.)
        const path = t.path!;
        if (ttys.find((x) => x.path === path) !== t) continue;
        if (c.isNew && !c.req.log) c.row = { ...c.row, log: path }; // (a copy writes where it did)
        else if (log !== path) {
          throw invalidArgument(
            `job ${c.row.jid} wrote to the terminal ${path}: restore it onto that terminal (without -o), ` +
              "or with --attachable (a new terminal)",
          );
        }
        const there = existsSync(path);
        const h = t.holder;
        if (!there || (h && !(isSameProcess(h.pid, h.startTime) && holdsPtyMaster(h.pid, path)))) {
          throw failedPrecondition(
            `the terminal ${path} the job wrote to is ${there ? "another terminal now" : "gone"}: ` +
              "restore it with --attachable (a new terminal)",
          );
        }
        try {
          give(openAppend(path), t.id);
        } catch (e) {
          throw failedPrecondition((e as Error).message);
        }
      }
      let pty: { master: number; slave: number } | null = null;
      if (tty) {
        // The job's terminal (the daemon's pty, or the one it was started in): a new pty, which
        // the daemon holds, so the job is attachable (`cedana job attach`).
        if (c.req.log) {
          throw invalidArgument(
            "the job's output went to a terminal: restore it without -o; it gets a new terminal " +
              `(cedana job attach ${c.row.jid}, or restore with --attach)`,
          );
        }
        pty = openpty();
        c.ourFds.push(pty.master);
        if (tty.shell) {
          c.sessionTty = pty.slave;
          undo(() => closeSessionTty(c));
        } else give(pty.slave, tty.id);
        for (const t of ttys) if (t.id !== tty.id) give(dupFd(pty.slave), t.id); // (one terminal)
        ({ io: c.io, keep: c.keep } = keptPty(pty.master));
        if (!c.row.tty) {
          c.notes.push(
            tty.path
              ? `it wrote to the terminal ${tty.path}; it has a new one: cedana job attach ${c.row.jid}`
              : `its terminal stays with the session it was started in; the job has a new one: cedana job attach ${c.row.jid}`,
          );
        }
        c.row = { ...c.row, attachable: true, tty: true, log: tty.path ? null : c.row.log };
      }
      const pipes = Object.entries(stdio).filter(([, s]) => s.kind === "pipe") as [string, PipeStdio][];
      if (pipes.length && !pty && c.req.log && !c.row.attachable) {
        // Pipes (an attachable job's, or to a process outside the job) restored with -o: their
        // ends are the log now, and an input that ends at once.
        const given = new Set<number>();
        for (const [fd, s] of pipes) {
          if (given.has(s.ino)) continue;
          given.add(s.ino);
          let end: number;
          if (fd === "0") {
            // (what it had not read yet is still read first, then its input ends)
            const p = pipe();
            // (at most what a pipe holds: nothing writes the rest once its input has ended)
            const pending = unreadInput(c.imagesDir, s.ino).subarray(0, 64 << 10);
            if (pending.length) writeFd(p.write, pending);
            closeFd(p.write);
            end = p.read;
            c.notes.push(
              "its input ends at once (it took attached clients' input; with -o there are none)" +
                (pending.length ? `, after the ${pending.length} bytes it had not read yet` : ""),
            );
          } else {
            try {
              end = openAppend(c.req.log);
            } catch (e) {
              throw failedPrecondition((e as Error).message);
            }
          }
          give(end, `pipe:[${s.ino}]`);
        }
      } else if (pipes.length && pty) {
        // pipes to processes outside the job, on a job with a terminal: to the terminal as well
        for (const ino of new Set(pipes.map(([, s]) => s.ino))) give(dupFd(pty.slave), `pipe:[${ino}]`);
      } else if (pipes.length) {
        // The daemon's pipes (an attachable job), or the job's pipes to processes outside it,
        // whose far ends are not in the checkpoint: fresh pipes, held by the daemon.
        const byFd = new Map(pipes.map(([fd, s]) => [Number(fd), s.ino]));
        const given = new Set<number>();
        const made = [0, 1, 2].map(() => pipe());
        for (const fd of [0, 1, 2]) {
          const ino = byFd.get(fd);
          const p = made[fd];
          const childEnd = fd === 0 ? p.read : p.write;
          const ourEnd = fd === 0 ? p.write : p.read;
          c.ourFds.push(ourEnd);
          // (`2>&1 | tee`: one pipe for both; CRIU takes one fd per resource)
          if (ino !== undefined && !given.has(ino)) give(childEnd, `pipe:[${ino}]`);
          else closeFd(childEnd);
          if (ino !== undefined) given.add(ino);
        }
        const ino0 = byFd.get(0);
        ({ io: c.io, keep: c.keep } = keptPipes(made[0].write, made[1].read, made[2].read));
        // Input it had not read when dumped, there again first: what its pipe held (CRIU saved it,
        // but puts nothing into a pipe it is handed) and what the daemon still queued for it. The
        // pipe takes what fits now, the daemon writes the rest as the job reads.
        const pending = ino0 === undefined ? new Uint8Array() : unreadInput(c.imagesDir, ino0);
        if (pending.length) {
          c.io!.write(pending);
          c.notes.push(`the ${pending.length} bytes of input it had not read yet are there for it again`);
        }
        if (!c.row.attachable) {
          c.notes.push(
            "its pipe to a process outside it (not in the checkpoint) is the daemon's now: " +
              `cedana job attach ${c.row.jid}`,
          );
          c.row = { ...c.row, attachable: true, log: null };
        }
      }
      faultPoint("restore-io-ready");
    },
  },
  {
    name: "criu_restore",
    when: (c) => !plugin(c.row.type).restore,
    async run(c) {
      const m = c.manifest!;
      const gate = join(c.workDir, GATE_DIR);
      Deno.mkdirSync(gate);
      const script = join(c.workDir, "action.sh");
      Deno.writeTextFileSync(
        script,
        ACTION_SCRIPT(gate, { pid: Deno.pid, startTime: readStat(Deno.pid)?.startTime ?? 0 }),
        { mode: 0o755 },
      );
      const pidFile = join(c.workDir, PID_FILE);
      const args = (ns: boolean) =>
        criuArgs(m, {
          imagesDir: c.imagesDir,
          workDir: c.workDir,
          inherit: c.inherit,
          verbosity: c.host.config.criu.log_level,
          // The script costs CRIU a shell per hook (~6 ms a restore): only when something must
          // wait at the gate, or (in a new PID namespace) to learn that the tasks resumed.
          script: c.gated || ns ? script : undefined,
          ns,
          // (a shell job's root is CRIU's child, re-parented to the daemon: see session.ts)
          sibling: !ns && c.sessionTty === undefined,
        });
      c.verified!.then(
        () => Deno.writeTextFileSync(join(gate, "ok"), ""),
        () => Deno.writeTextFileSync(join(gate, "bad"), ""),
      );
      const logPath = join(c.workDir, "restore.log");
      const closeChildFds = () => {
        for (const fd of c.childFds.splice(0)) {
          try {
            closeSync(fd);
          } catch {
            try {
              closeFd(fd);
            } catch { /* already closed */ }
          }
        }
      };
      // (if the daemon dies from here on, the next one finishes the record: see restore_intent.ts)
      const intent = () =>
        writeIntent(c.workDir, {
          row: { ...c.row, details: { ...c.row.details, ioKeepers: c.keep ?? c.row.details.ioKeepers } },
          gated: c.gated,
          checkpoint: c.path,
          gpuPids: m.gpu?.pids,
        });
      intent();
      const release = c.host.checksums.hold();
      try {
        if (c.sessionTty !== undefined) {
          c.keep!.session = await restoreInSession({
            criu: c.criu,
            args: args(false),
            extraFds: c.childFds,
            tty: c.sessionTty,
            workDir: c.workDir,
            logPath,
            onKeeper: (ref) => {
              closeSessionTty(c);
              c.keep!.session = ref;
              intent(); // (a daemon killed from here on finds the keeper there, not as a stray)
              faultPoint("restore-criu-started");
            },
          });
          c.pid = Number(Deno.readTextFileSync(pidFile).trim());
        } else if (!c.pidNamespace) {
          try {
            if (c.warm) {
              // (started with the same options when the dump ended the job: see warm.ts)
              const done = c.host.warm.go(c.warm);
              c.warm = null;
              c.warmed = true;
              faultPoint("restore-criu-started");
              criuOutcome(await done, logPath, "criu restore");
            } else {
              // (CRIU outlives the daemon: the restore finishes, the next daemon adopts or kills it)
              await runCriu(c.criu, args(false), logPath, "criu restore", {
                extraFds: c.childFds,
                pdeathsig: false,
                onSpawn: () => {
                  faultPoint("restore-criu-started");
                  faultPointWhen("restore-criu-holding", () => exists(pidFile));
                },
              });
            }
            c.pid = Number(Deno.readTextFileSync(pidFile).trim());
          } catch (e) {
            // A PID can look free in /proc yet still be allocated (someone holds a pidfd of the
            // dead process): CRIU's fork then fails with EEXIST. A new namespace sidesteps it.
            if (!(e as CedanaError).details?.some((l) => /Can't fork for \d+: File exists/.test(l))) throw e;
            c.pidNamespace = true;
            c.host.log.info("original PIDs still allocated; restoring in a new PID namespace", {
              jid: c.row.jid,
            });
            c.pid = await restoreInNamespace(c, args(true), gate, logPath);
          }
        } else {
          c.pid = await restoreInNamespace(c, args(true), gate, logPath);
        }
      } catch (e) {
        await c.verified!; // a damaged checkpoint is the real cause when both fail: report that
        throw e;
      } finally {
        release(HASHING_RESUMES_MS);
        closeChildFds();
      }
      // CRIU goes on after the gate killed the tree: a damaged checkpoint surfaces here.
      await c.verified!;
      c.stats = readRestoreStats(c.workDir) as unknown as Record<string, number> | null;
    },
  },
];

/** CRIU's restore options for checkpoint `m`; `ns`: as init of a new PID namespace. */
function criuArgs(
  m: Manifest,
  o: WarmArgs & { verbosity: number; script?: string; ns: boolean; sibling: boolean },
): string[] {
  return restoreArgs({
    imagesDir: o.imagesDir,
    workDir: o.workDir,
    logFile: "restore.log",
    verbosity: o.verbosity,
    shellJob: !!m.criu.flags.shellJob,
    tcpEstablished: !!m.criu.flags.tcpEstablished,
    fileLocks: !!m.criu.flags.fileLocks,
    extUnixSk: !!m.criu.flags.extUnixSk,
    linkRemap: !!m.criu.flags.linkRemap,
    actionScript: o.script,
    detach: !o.ns,
    restoreSibling: o.sibling,
    pidFile: o.ns ? undefined : join(o.workDir, PID_FILE),
    inheritFds: o.inherit,
  });
}

/** A warm CRIU's options (warm.ts): a restore under the original PIDs, nothing held at a gate. */
export function warmCriuArgs(m: Manifest, a: WarmArgs, verbosity: number): string[] {
  return criuArgs(m, { ...a, verbosity, ns: false, sibling: true });
}

/** The restore will not use its warm CRIU after all (it must wait at a gate, or take new PIDs). */
async function dropWarm(c: RestoreCtx): Promise<void> {
  if (!c.warm) return;
  const w = c.warm;
  c.warm = null;
  await c.host.warm.release(w, true);
}

/**
 * CRIU as init of a new PID namespace (it must stay alive as long as the job runs). The host PID
 * of the restored root is the child of that CRIU once the post-resume hook has run.
 */
async function restoreInNamespace(
  c: RestoreCtx,
  args: string[],
  gate: string,
  logPath: string,
): Promise<number> {
  // No daemon-death signal here: this CRIU is the namespace's init and must outlive the daemon.
  const heartbeat = join(gate, HEARTBEAT);
  Deno.writeTextFileSync(heartbeat, "");
  let beat = Date.now();
  const run = spawnCriu(c.criu, args, {
    extraFds: c.childFds,
    wrapper: ["unshare", "--pid", "--fork", "--mount-proc"],
    pdeathsig: false,
  });
  const unsharePid = run.pid;
  const resumed = () => {
    try {
      return Deno.statSync(join(gate, "resumed")).isFile;
    } catch {
      return false;
    }
  };
  let failed: Error | null = null;
  run.done.then((r) => {
    if (!resumed()) failed = criuFailure(logPath, r.code ?? r.signal);
  });
  // On any failure from here on, the namespace (CRIU is its init) goes: nothing half-restored may
  // live on unrecorded.
  const killNamespace = () => killAll([...children(unsharePid), unsharePid]);
  const deadline = Date.now() + 120_000;
  while (!resumed()) {
    if (failed) throw failed;
    if (Date.now() - beat > 250) {
      beat = Date.now();
      const now = new Date();
      Deno.utimeSync(heartbeat, now, now);
    }
    if (Date.now() > deadline) {
      killNamespace();
      throw failedPrecondition("restore in a new PID namespace timed out");
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  const criuPid = children(unsharePid)[0];
  const root = criuPid ? children(criuPid)[0] : undefined;
  if (!root) {
    killNamespace();
    throw failedPrecondition("restored in a new PID namespace, but cannot find the restored process");
  }
  return root;
}

function criuFailure(logPath: string, code: number | string | null): Error {
  let log = "";
  try {
    log = Deno.readTextFileSync(logPath);
  } catch { /* none */ }
  return failedPrecondition(
    `criu restore failed (criu exit ${code}); CRIU log: ${logPath}`,
    criuErrorLines(log).slice(-15),
  );
}

/** After CRIU: the GPU state back. A failure here cannot be retried in this process: kill it. */
async function gpuRestore(c: RestoreCtx, timings: Record<string, number>): Promise<void> {
  // containers come back under new host PIDs (their own PID namespace); processes keep theirs
  const pids = currentPids(c.manifest!.gpu!, c.pid, !plugin(c.row.type).restore);
  try {
    await restoreAll(c.gpuDriver!, pids, timings);
  } catch (e) {
    for (const pid of [c.pid, ...pids]) {
      try {
        Deno.kill(-pid, "SIGKILL");
      } catch {
        try {
          Deno.kill(pid, "SIGKILL");
        } catch { /* gone */ }
      }
    }
    // the steps all succeeded, so no undo closed our ends of the job's I/O: nobody reads them now
    for (const fd of c.ourFds) {
      try {
        closeFd(fd);
      } catch { /* already closed */ }
    }
    (e as Error).message += "; the restored job was killed (its checkpoint is intact: restore it again)";
    throw e;
  }
}

export interface RestoreTarget {
  row: JobRow;
  isNew: boolean;
  path: string;
}

export async function restore(
  host: CrHost,
  req: RestoreRequest,
  target: RestoreTarget,
): Promise<RestoreResult> {
  const { bin } = await requireCriu(host);
  // (a CRIU started ahead when the dump ended the job, if it fits this restore: see warm.ts)
  const warm = target.isNew ? null : host.warm.take(target.row, target.path, req, bin);
  try {
    Deno.statSync(target.path);
  } catch {
    if (warm) await host.warm.release(warm, false); // (its checkpoint removed by hand)
    throw notFound(`checkpoint ${target.path} does not exist`);
  }
  const workDir = warm?.workDir ??
    Deno.makeTempDirSync({ dir: host.config.checkpoint.dir, prefix: WORK_PREFIX });
  if (!warm) host.db.addTemp(workDir, "work");
  const c: RestoreCtx = {
    req,
    host,
    row: target.row,
    isNew: target.isNew,
    path: target.path,
    criu: bin,
    imagesDir: target.path,
    workDir,
    gated: true,
    pidNamespace: false,
    childFds: [],
    inherit: [],
    io: null,
    ourFds: [],
    pid: 0,
    gpuDriver: null,
    reap: true,
    stats: null,
    notes: [],
    warm,
  };
  const timings: Record<string, number> = {};
  // a restored container's init is our orphan until recorded (see JobService.pauseReaping)
  const resume = plugin(target.row.type).restore ? host.pauseReaping() : () => {};
  let restored = false;
  const t0 = performance.now();
  try {
    await runSteps(steps, c, timings, (step) => host.progress(target.row.jid, "restore", step));
    faultPoint("restore-before-gpu");
    if (c.gpuDriver) {
      await gpuRestore(c, timings);
      // (the total covers the GPU steps too: it is what the restore cost)
      timings.total = +(performance.now() - t0).toFixed(1);
    }
    restored = true;
    faultPoint("restore-before-record");
  } catch (e) {
    await dropWarm(c);
    // (a plugin's restore holds its keepers in the details: a GPU restore failing after it must
    // release them too, or a keeper outlives the killed job)
    releaseIo(c.keep ?? c.row.details.ioKeepers as IoKeep | undefined);
    // keep CRIU's log for the user; drop the unpacked images
    try {
      Deno.removeSync(join(workDir, "images"), { recursive: true });
    } catch { /* none */ }
    // (an unpacked archive: name the user's file, not the scratch dir)
    if (e instanceof Error && c.imagesDir !== target.path) {
      e.message = e.message.replaceAll(c.imagesDir, target.path);
    }
    const logPath = join(workDir, "restore.log");
    try {
      // (one per job, the latest failure: they piled up next to the checkpoints)
      const kept = join(host.config.checkpoint.dir, `restore-${target.row.jid}.log`);
      Deno.renameSync(logPath, kept);
      // (the message and CRIU's or runc's lines may name the log where it was)
      if (e instanceof Error) e.message = e.message.replaceAll(logPath, kept);
      const details = (e as { details?: string[] }).details;
      details?.splice(0, details.length, ...details.map((l) => l.replaceAll(logPath, kept)));
    } catch { /* no log */ }
    Deno.removeSync(workDir, { recursive: true });
    host.db.removeTemp(workDir);
    throw e;
  } finally {
    if (!restored) resume(); // (failed: nothing of ours to keep)
  }
  const st = readStat(c.pid);
  const row: JobRow = {
    ...c.row,
    pid: c.pid,
    startTime: st?.startTime ?? 0,
    state: "running",
    exitCode: null,
    exitSignal: null,
    adopted: c.pidNamespace, // not our child in a namespace: no exit code
    details: {
      ...c.row.details,
      // (a plugin's restore put its own keepers into the details already)
      ioKeepers: c.keep ?? c.row.details.ioKeepers,
      restoredFrom: target.path,
      haltedBy: undefined,
      pidNamespace: c.pidNamespace || undefined,
    },
    updatedAt: Date.now(),
  };
  try {
    host.restored(row, c.io, c.reap && !c.pidNamespace, !!c.req.waitForAttach);
  } finally {
    resume();
  }
  Deno.removeSync(workDir, { recursive: true });
  host.db.removeTemp(workDir);
  if (c.stats) {
    timings.criu_forking_time = c.stats.forkingTimeUs / 1000;
    timings.criu_restore_time = c.stats.restoreTimeUs / 1000;
  }
  host.log.info("restored", {
    jid: row.jid,
    pid: c.pid,
    from: target.path,
    ms: timings.total,
    pidns: c.pidNamespace,
    warm: !!c.warmed,
  });
  return {
    job: null as never, // filled in by the job service, which renders jobs
    checkpoint: target.path,
    pidNamespace: c.pidNamespace,
    timings,
    criuStats: c.stats,
    ...(c.notes.length ? { notes: c.notes } : {}),
    ...(c.warmed ? { warm: true } : {}),
  };
}
