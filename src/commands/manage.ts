// `cedana manage process PID`: adopt a running process as a job.
import { Command } from "@commander-js/extra-typings";
import type { Job, ManageContainerdRequest, ManageProcessRequest, ManageRuncRequest } from "../api/types.ts";
import { resolve } from "node:path";
import { invalidArgument } from "../errors.ts";
import { clientOf } from "./context.ts";
import { printJson } from "./render.ts";
import { isValidPid } from "../proc/mod.ts";

export function parsePid(s: string): number {
  if (!/^\d+$/.test(s) || !isValidPid(Number(s))) throw invalidArgument(`invalid PID "${s}"`);
  return Number(s);
}

export function manageCommand() {
  const manage = new Command("manage").description("Adopt an existing process or container as a managed job");
  manage.command("process")
    .description("Manage a running process (its exit is noticed; its exit code cannot be known)")
    .argument("<pid>", "process ID")
    .option("-j, --jid <jid>", "job ID (default: a random name)")
    .option("--gpu-enabled", "mark the job as a GPU job")
    .option("--json", "print the job as JSON")
    .action(async (pid, opts, cmd) => {
      const req: ManageProcessRequest = { pid: parsePid(pid), jid: opts.jid, gpu: !!opts.gpuEnabled };
      const job = await clientOf(cmd).post<Job>("/v1/manage/process", req);
      if (opts.json) printJson(job);
      else {
        console.log(`managing PID ${job.pid} as job ${job.jid}`);
        console.log("note: the process is not a child of the daemon, so its exit code will not be known");
      }
    });
  manage.command("runc")
    .description("Manage a running runc container (its exit is noticed; its exit code cannot be known)")
    .argument("<cid>", "container ID")
    .option("-j, --jid <jid>", "job ID (default: a random name)")
    .option("-r, --root <dir>", "runc state root (default /run/runc)")
    .option("-b, --bundle <dir>", "bundle directory (default: from runc state)")
    .option("--json", "print the job as JSON")
    .action(async (cid, opts, cmd) => {
      const req: ManageRuncRequest = {
        id: cid,
        jid: opts.jid,
        root: opts.root ? resolve(opts.root) : undefined,
        bundle: opts.bundle ? resolve(opts.bundle) : undefined,
      };
      const job = await clientOf(cmd).post<Job>("/v1/manage/runc", req);
      if (opts.json) printJson(job);
      else console.log(`managing container ${cid} (pid ${job.pid}) as job ${job.jid}`);
    });
  manage.command("containerd")
    .description("Manage a running containerd container (its exit is noticed; its exit code cannot be known)")
    .argument("<cid>", "container ID")
    .option("-j, --jid <jid>", "job ID (default: a random name)")
    .option("--address <socket>", "containerd socket (config: containerd.address)")
    .option("-n, --namespace <ns>", "containerd namespace (config: containerd.namespace)")
    .option("--json", "print the job as JSON")
    .action(async (cid, opts, cmd) => {
      const req: ManageContainerdRequest = {
        id: cid,
        jid: opts.jid,
        address: opts.address,
        namespace: opts.namespace,
      };
      const job = await clientOf(cmd).post<Job>("/v1/manage/containerd", req);
      if (opts.json) printJson(job);
      else console.log(`managing container ${cid} (pid ${job.pid}) as job ${job.jid}`);
    });
  return manage;
}
