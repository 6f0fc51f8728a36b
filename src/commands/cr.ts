// `cedana dump job|process`, `cedana restore job|process`, and checkpoint listing/inspection.
import { Command, Option } from "@commander-js/extra-typings";
import { resolve } from "node:path";
import { COMPRESSION_NAMES } from "../api/types.ts";
import type {
  CheckpointInfo,
  CheckpointInspect,
  DumpRequest,
  DumpResult,
  RestoreRequest,
  RestoreResult,
} from "../api/types.ts";
import { attachAndExit } from "./attach_client.ts";
import { msText, printDump, printRestore } from "./cr_render.ts";
import { showProgress } from "./progress.ts";
import { noticeInterrupt } from "./fast.ts";
import { clientOf, fileArg } from "./context.ts";
import { parsePid } from "./manage.ts";
import { ago, humanSize, printJson, table } from "./render.ts";

// The flag helpers work on untyped commands: the typed builder cannot express "add these flags
// to whatever command this is"; the action handlers below declare the option types instead.
// deno-lint-ignore no-explicit-any
type AnyCmd = any;

function dumpFlags(c: AnyCmd): AnyCmd {
  return c
    .option("--dir <dir>", "directory for the checkpoint (config: checkpoint.dir)")
    .option("--name <name>", "checkpoint name (default dump-<type>-<jid>-<unixtime>)")
    .option("--leave-running", "keep it running after the dump (default: config criu.leave_running)")
    .option("--no-leave-running", "stop the job with the dump, whatever criu.leave_running says")
    .addOption(
      new Option("--compression <c>", "none, tar, gzip, lz4 or zstd (config: checkpoint.compression)")
        .choices(COMPRESSION_NAMES),
    )
    .option("--tcp-established", "checkpoint established TCP connections (detected automatically)")
    .option("--file-locks", "checkpoint file locks (detected automatically)")
    .option("--shell-job", "the process is a shell job (detected automatically)")
    .option("--link-remap", "allow link remapping of deleted-but-open files")
    .option(
      "--external <res>",
      "external resource (CRIU --external), repeatable",
      (v: string, p: string[] = []) => [...p, v],
    )
    .option(
      "--criu-opts <json>",
      'extra CRIU options as JSON, e.g. {"ghost-limit":"10M"} (runc jobs: through a CRIU config file; not for containerd jobs)',
    )
    .option("--json", "print the full result (with CRIU's statistics) as JSON");
}

/** The dump flags as commander gives them: the request's own fields, plus --json. */
type DumpCliOpts = Omit<DumpRequest, "jid" | "pid" | "container" | "ignoreRootfs"> & { json?: boolean };

function dumpRequest(o: DumpCliOpts): DumpRequest {
  return {
    dir: o.dir ? resolve(o.dir) : undefined,
    name: o.name,
    leaveRunning: o.leaveRunning,
    compression: o.compression,
    tcpEstablished: o.tcpEstablished,
    fileLocks: o.fileLocks,
    shellJob: o.shellJob,
    linkRemap: o.linkRemap,
    external: o.external,
    criuOpts: o.criuOpts,
  };
}

export function dumpCommand() {
  const dump = new Command("dump").description("Checkpoint a job or a process with CRIU");
  dump.addCommand(
    dumpFlags(new Command("job").argument("<jid>").description("Checkpoint a managed job"))
      .option("--ignore-rootfs", "container jobs: do not save the container's file changes")
      .action(async (jid: string, o: DumpCliOpts & { ignoreRootfs?: boolean }, cmd: Command) => {
        const client = clientOf(cmd);
        const done = showProgress(client, jid, o.json), quiet = noticeInterrupt("dump", `job ${jid}`);
        const r = await client.post<DumpResult>("/v1/dump", {
          ...dumpRequest(o),
          jid,
          ignoreRootfs: o.ignoreRootfs,
        })
          .finally(() => (done(), quiet()));
        printDump(r, `job ${jid}`, o.json);
      }) as unknown as Command,
  );
  dump.addCommand(
    dumpFlags(new Command("process").argument("<pid>").description("Checkpoint any process by PID"))
      .action(async (pid: string, o: DumpCliOpts, cmd: Command) => {
        const quiet = noticeInterrupt("dump", `process ${pid}`);
        const r = await clientOf(cmd).post<DumpResult>("/v1/dump", { ...dumpRequest(o), pid: parsePid(pid) })
          .finally(quiet);
        printDump(r, `process ${pid}`, o.json);
      }) as unknown as Command,
  );
  for (const type of ["runc", "containerd"] as const) {
    const sub = dumpFlags(
      new Command(type).argument("<cid>").description(`Checkpoint the ${type} container CID (a managed job)`),
    );
    sub.option("--ignore-rootfs", "do not save the container's file changes");
    if (type === "runc") {
      sub.option("-r, --root <dir>", "runc state root (when jobs in several have a container CID)");
    } else {
      sub.option("--address <socket>", "containerd's socket (when jobs in several have a container CID)")
        .option("--namespace <ns>", "containerd namespace (likewise)");
    }
    dump.addCommand(
      sub.action(
        async (cid: string, o: DumpCliOpts & ContainerPick & { ignoreRootfs?: boolean }, cmd: Command) => {
          const quiet = noticeInterrupt("dump", `container ${cid}`);
          const r = await clientOf(cmd).post<DumpResult>("/v1/dump", {
            ...dumpRequest(o),
            container: {
              type,
              id: cid,
              root: o.root ? resolve(o.root) : undefined,
              address: o.address ? resolve(o.address) : undefined,
              namespace: o.namespace,
            },
            ignoreRootfs: o.ignoreRootfs,
          }).finally(quiet);
          printDump(r, `container ${cid}`, o.json);
        },
      ) as unknown as Command,
    );
  }
  return dump;
}

interface ContainerPick {
  root?: string;
  address?: string;
  namespace?: string;
}

interface RestoreCliOpts {
  path?: string;
  jid?: string;
  attach?: boolean;
  attachable?: boolean;
  out?: string;
  json?: boolean;
  stdin?: boolean;
}

async function doRestore(req: RestoreRequest, o: RestoreCliOpts, cmd: Command) {
  const client = clientOf(cmd as never);
  const done = req.jid ? showProgress(client, req.jid, o.json) : () => {};
  const quiet = noticeInterrupt("restore", req.jid ? `job ${req.jid}` : o.path ?? "the checkpoint");
  const r = await client.post<RestoreResult>("/v1/restore", {
    ...req,
    path: o.path ? resolve(o.path) : undefined,
    attachable: !!(o.attach || o.attachable) || undefined,
    waitForAttach: o.attach || undefined,
    log: o.out ? resolve(o.out) : undefined,
  }).finally(() => (done(), quiet()));
  printRestore(r, o.json);
  if (o.attach) {
    await attachAndExit(client, r.job.jid, { since: 0, stdin: o.stdin });
  }
}

function restoreFlags(c: AnyCmd): AnyCmd {
  return c
    .option("-a, --attach", "attach to the restored job's stdio")
    .option("--attachable", "restore with stdio held by the daemon, for attach")
    .option("--no-stdin", "with --attach: do not forward stdin")
    .option("-o, --out <file>", "log file for the restored job's output", fileArg)
    .addOption(new Option("--json", "print the result as JSON").conflicts("attach"));
}

export function restoreCommand() {
  const restore = new Command("restore").description("Restore a job or a process from a checkpoint");
  restore.addCommand(
    restoreFlags(
      new Command("job").argument("<jid>").description("Restore a job from its latest checkpoint (or --path)")
        .option("-p, --path <path>", "checkpoint to restore (default: the job's latest)"),
    ).action(async (jid: string, o: RestoreCliOpts, cmd: Command) =>
      await doRestore({ jid }, o, cmd as never)
    ) as unknown as Command,
  );
  restore.addCommand(
    restoreFlags(
      new Command("process").description("Restore a process checkpoint as a new job")
        .requiredOption("-p, --path <path>", "checkpoint directory or archive")
        .option("-j, --jid <jid>", "ID of the new job (default: a random name)"),
    ).action(async (o: RestoreCliOpts, cmd: Command) =>
      await doRestore({ newJid: o.jid, type: "process" }, o, cmd as never)
    ) as unknown as Command,
  );
  restore.addCommand(
    restoreFlags(
      new Command("runc").description("Restore a runc checkpoint as a new job (a new container)")
        .requiredOption("-p, --path <path>", "checkpoint directory or archive")
        .option("-b, --bundle <dir>", "bundle to restore into (default: the dumped container's)")
        .option("-i, --id <cid>", "new container ID (default: the dumped one)")
        .option("-r, --root <dir>", "runc state root")
        .option("-j, --jid <jid>", "ID of the new job (default: a random name)"),
    ).action(async (o: RestoreCliOpts & { bundle?: string; id?: string; root?: string }, cmd: Command) =>
      await doRestore(
        {
          newJid: o.jid,
          type: "runc",
          bundle: o.bundle ? resolve(o.bundle) : undefined,
          id: o.id,
          root: o.root ? resolve(o.root) : undefined,
        },
        o,
        cmd as never,
      )
    ) as unknown as Command,
  );
  restore.addCommand(
    restoreFlags(
      new Command("containerd").description("Restore a containerd checkpoint as a new job")
        .requiredOption("-p, --path <path>", "checkpoint directory or archive")
        .option("-i, --id <cid>", "new container ID (default: the dumped one)")
        .option("-j, --jid <jid>", "ID of the new job (default: a random name)")
        .option("--address <socket>", "containerd's socket (default: the dumped container's)")
        .option("--namespace <ns>", "containerd namespace (default: the dumped container's)"),
    ).action(async (
      o: RestoreCliOpts & { id?: string; address?: string; namespace?: string },
      cmd: Command,
    ) =>
      await doRestore(
        { newJid: o.jid, type: "containerd", id: o.id, address: o.address, namespace: o.namespace },
        o,
        cmd as never,
      )
    ) as unknown as Command,
  );
  return restore;
}

function listCheckpoints(name: string) {
  return new Command(name)
    .description("List a job's checkpoints (without JID: every checkpoint, with its job), newest first")
    .argument("[jid]")
    .option("--json", "machine-readable output")
    .action(async (jid, o, cmd) => {
      const cs = await clientOf(cmd).get<CheckpointInfo[]>(
        jid ? `/v1/jobs/${encodeURIComponent(jid)}/checkpoints` : "/v1/checkpoints",
      );
      if (o.json) return printJson(cs);
      const row = (c: CheckpointInfo) => [
        c.id,
        `${c.time} (${ago(c.time)})`,
        humanSize(c.size),
        c.missing ? `${c.path} (missing)` : c.path,
      ];
      console.log(
        jid ? table(["ID", "TIME", "SIZE", "PATH"], cs.map(row)) : table(
          ["ID", "JOB", "TIME", "SIZE", "PATH"],
          cs.map((c) => [c.id, c.jid ?? "-", ...row(c).slice(1)]),
        ),
      );
    });
}

export function checkpointCommand() {
  const cp = new Command("checkpoint").description("Manage checkpoints of jobs");
  cp.addCommand(listCheckpoints("list").alias("ls"));
  cp.command("inspect")
    .description("Show a checkpoint's manifest and CRIU statistics")
    .argument("<id>")
    .option("--json", "machine-readable output")
    .action(async (id, o, cmd) => {
      const c = await clientOf(cmd).get<CheckpointInspect>(`/v1/checkpoints/${encodeURIComponent(id)}`);
      if (o.json) return printJson(c);
      const m = c.manifest as {
        criu?: { version: string; flags: Record<string, boolean> };
        kernel?: string;
        files?: { name: string; size: number }[];
        stats?: Record<string, number>;
      };
      console.log(
        `ID:          ${c.id}\nJob:         ${c.jid ?? ""}\nPath:        ${c.path}${
          c.missing ? " (missing)" : ""
        }\nTime:        ${c.time}`,
      );
      console.log(`Size:        ${humanSize(c.size)}\nCompression: ${c.compression}`);
      if (m.criu) {
        const flags = Object.entries(m.criu.flags).filter(([, v]) => v).map(([k]) => k).join(", ");
        console.log(`CRIU:        ${m.criu.version}${flags ? ` (${flags})` : ""}\nKernel:      ${m.kernel}`);
      }
      if (m.stats) {
        const s = m.stats;
        console.log(
          `Stats:       frozen ${msText(s.frozenTimeUs / 1000)}, memory dump ${
            msText(s.memdumpTimeUs / 1000)
          }, write ${msText(s.memwriteTimeUs / 1000)}, pages written ${s.pagesWritten} (${
            humanSize(s.pagesWritten * 4096)
          })`,
        );
      }
      if (m.files) {
        console.log(`Files:       ${m.files.length} (${humanSize(m.files.reduce((a, f) => a + f.size, 0))})`);
      }
    });
  cp.command("delete")
    .alias("rm")
    .description("Delete a checkpoint: its record and its files")
    .argument("<id>")
    .action(async (id, _o, cmd) => {
      const c = await clientOf(cmd).call<CheckpointInfo>(
        "DELETE",
        `/v1/checkpoints/${encodeURIComponent(id)}`,
      );
      console.log(`deleted checkpoint ${c.id} (${c.path})`);
    });
  return cp;
}

export const checkpointsCommand = () =>
  listCheckpoints("checkpoints").description(
    "List a job's checkpoints, or every checkpoint without JID (alias of `job checkpoint list`)",
  );
