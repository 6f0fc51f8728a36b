// `cedana run process` (alias `cedana exec`): start a managed job.
import { Command, Option } from "@commander-js/extra-typings";
import type { Job, RunContainerdRequest, RunProcessRequest, RunRuncRequest } from "../api/types.ts";
import { invalidArgument } from "../errors.ts";
import { attachAndExit } from "./attach_client.ts";
import { clientOf, fileArg, nonEmpty } from "./context.ts";
import type { DaemonClient } from "../client/mod.ts";
import { printJson } from "./render.ts";
import { dirname, resolve } from "node:path";

/**
 * The environment a job gets: the user's, without what cedana's own launchers added to run cedana
 * (its Deno cache, its CRIU first on PATH: a job's `deno` or `criu` are the user's).
 */
export function userEnv(env = Deno.env.toObject()): Record<string, string> {
  const out = { ...env };
  delete out.CEDANA_SFX;
  const launcher = out.CEDANA_LAUNCHER;
  delete out.CEDANA_LAUNCHER;
  if (!launcher) return out;
  const bundle = dirname(launcher);
  if (out.DENO_DIR === `${bundle}/deno_dir`) {
    for (const k of ["DENO_DIR", "DENO_NO_UPDATE_CHECK", "DENO_NO_PROMPT"]) delete out[k];
  }
  if (out.PATH) out.PATH = out.PATH.split(":").filter((p) => p !== `${bundle}/criu/bin`).join(":");
  return out;
}

interface RunOpts {
  jid?: string;
  attach?: boolean;
  attachable?: boolean;
  tty?: boolean;
  out?: string;
  pidFile?: string;
  gpuEnabled?: boolean;
  json?: boolean;
  stdin?: boolean;
}

/** Starts a job; with --attach stays attached and exits with the job's exit code. */
async function startJob(
  client: DaemonClient,
  type: string,
  req: RunProcessRequest | RunRuncRequest | RunContainerdRequest,
  opts: { attach?: boolean; json?: boolean; stdin?: boolean },
  what: (job: Job) => string,
): Promise<void> {
  // attached from the first byte: the daemon holds the output until the client is there
  const job = await client.post<Job>(`/v1/run/${type}`, opts.attach ? { ...req, waitForAttach: true } : req);
  if (opts.attach) {
    await attachAndExit(client, job.jid, { since: 0, stdin: opts.stdin });
  } else if (opts.json) printJson(job);
  else console.log(`started job ${job.jid} (${what(job)})${job.log ? `, output in ${job.log}` : ""}`);
}

function processCommand(name: string) {
  return new Command(name)
    .description("Run a process as a managed job")
    .usage("[options] -- COMMAND [ARGS...]")
    .argument("<command...>", "command and its arguments")
    .option("-j, --jid <jid>", "job ID (default: a random name)", nonEmpty)
    .option("-a, --attach", "attach to the job's stdio; exit with its exit code (Ctrl+C detaches)")
    .option("--attachable", "keep the job's stdio in the daemon for `cedana job attach`")
    .option("-t, --tty", "give the job a pseudo-terminal (implies --attachable)")
    .addOption(
      new Option("-o, --out <file>", "log file for the job's output").argParser(fileArg).conflicts([
        "attach",
        "attachable",
      ]),
    )
    .option("--pid-file <file>", "write the job's PID to this file", fileArg)
    .option("--gpu-enabled", "mark the job as a GPU job")
    .option("--no-stdin", "with --attach: do not forward stdin")
    .addOption(new Option("--json", "print the job as JSON").conflicts("attach"))
    .passThroughOptions()
    .action(async (args: string[], opts: RunOpts, cmd) => {
      if (opts.tty && opts.out) throw invalidArgument("--tty jobs are attachable and have no log file");
      const attachable = !!(opts.attach || opts.attachable || opts.tty);
      const size = opts.tty && Deno.stdout.isTerminal() ? Deno.consoleSize() : undefined;
      const req: RunProcessRequest = {
        jid: opts.jid,
        args,
        cwd: Deno.cwd(),
        env: userEnv(),
        attachable,
        tty: !!opts.tty,
        cols: size?.columns,
        rows: size?.rows,
        log: opts.out ? resolve(opts.out) : undefined,
        pidFile: opts.pidFile ? resolve(opts.pidFile) : undefined,
        gpu: !!opts.gpuEnabled,
      };
      await startJob(clientOf(cmd), "process", req, opts, (job) => `pid ${job.pid}`);
    });
}

function runcCommand() {
  return new Command("runc")
    .description("Run an OCI bundle with runc as a managed job (stdio: pipes held by the daemon)")
    .requiredOption("-b, --bundle <dir>", "OCI bundle directory", nonEmpty)
    .option("-j, --jid <jid>", "job ID (default: a random name)", nonEmpty)
    .option("-i, --id <cid>", "container ID (default: the JID)", nonEmpty)
    .option("-r, --root <dir>", "runc state root (default /run/runc)", nonEmpty)
    .option("-a, --attach", "attach to the container's stdio; exit with its exit code")
    .option("--attachable", "keep the container's stdio in the daemon for `cedana job attach`")
    .addOption(
      new Option("-o, --out <file>", "log file for the container's output").argParser(fileArg).conflicts([
        "attach",
        "attachable",
      ]),
    )
    .option("--no-pivot", "do not use pivot_root (needed on a ramdisk)")
    .option("--systemd-cgroup", "use systemd for cgroups")
    .option("--no-stdin", "with --attach: do not forward stdin")
    .addOption(new Option("--json", "print the job as JSON").conflicts("attach"))
    .action(async (opts, cmd) => {
      const req: RunRuncRequest = {
        jid: opts.jid,
        bundle: resolve(opts.bundle),
        id: opts.id,
        root: opts.root ? resolve(opts.root) : undefined,
        attachable: !!(opts.attach || opts.attachable),
        log: opts.out ? resolve(opts.out) : undefined,
        noPivot: opts.pivot === false,
        systemdCgroup: !!opts.systemdCgroup,
      };
      await startJob(clientOf(cmd), "runc", req, opts, (job) => {
        return `container ${(job.details as { id?: string }).id}, pid ${job.pid}`;
      });
    });
}

function containerdCommand() {
  return new Command("containerd")
    .description("Run a container from an image already in containerd (output to a log, through the shim)")
    .usage("[options] IMAGE [-- COMMAND [ARGS...]]")
    .argument("<image>", "image reference (e.g. docker.io/library/busybox:latest)")
    .argument("[command...]", "command and arguments (default: the image's)")
    .option("-j, --jid <jid>", "job ID (default: a random name)", nonEmpty)
    .option("-i, --id <cid>", "container ID (default: the JID)", nonEmpty)
    .option("--address <socket>", "containerd socket (config: containerd.address)", nonEmpty)
    .option("-n, --namespace <ns>", "containerd namespace (config: containerd.namespace)", nonEmpty)
    .option(
      "-e, --env <KEY=VALUE>",
      "environment variable, repeatable",
      (v: string, p: string[] = []) => [...p, v],
    )
    .option("-o, --out <file>", "log file for the container's output", fileArg)
    .option("--json", "print the job as JSON")
    .action(async (image, command, opts, cmd) => {
      const req: RunContainerdRequest = {
        jid: opts.jid,
        image,
        args: command.length ? command : undefined,
        id: opts.id,
        address: opts.address,
        namespace: opts.namespace,
        env: opts.env,
        log: opts.out ? resolve(opts.out) : undefined,
      };
      await startJob(clientOf(cmd), "containerd", req, opts, (job) => {
        return `container ${(job.details as { id?: string }).id}, pid ${job.pid}`;
      });
    });
}

export function runCommand() {
  return new Command("run")
    .description("Run a managed job")
    .enablePositionalOptions()
    .addCommand(processCommand("process"))
    .addCommand(runcCommand() as unknown as Command)
    .addCommand(containerdCommand() as unknown as Command);
}

export function execCommand() {
  return processCommand("exec").description("Run a process as a managed job (alias of `run process`)");
}
