// `cedana job list|kill|delete|inspect|attach` and the top-level shortcuts (ps, jobs, attach).
import { Command, Option } from "@commander-js/extra-typings";
import type { DeleteResult, Job, JobInspect, KillResult } from "../api/types.ts";
import { invalidArgument } from "../errors.ts";
import { SIGNALS } from "../daemon/signals.ts";
import { attachAndExit } from "./attach_client.ts";
import { completeWith } from "./completion.ts";
import { checkpointCommand, checkpointsCommand } from "./cr.ts";
import { clientOf } from "./context.ts";
import { parsePid } from "./manage.ts";
import { humanSize, printJobs, printJson, statusText } from "./render.ts";

function listCommand(name: string) {
  return new Command(name)
    .description("List managed jobs")
    .option("--json", "machine-readable output")
    .action(async (opts, cmd) => {
      printJobs(await clientOf(cmd).get<Job[]>("/v1/jobs"), !!opts.json);
    });
}

function attachJidCommand() {
  return new Command("attach")
    .description("Attach to an attachable job's stdio (Ctrl+C detaches; Ctrl+P Ctrl+Q for tty jobs)")
    .argument("<jid>")
    .option("--no-stdin", "do not forward stdin")
    .action(async (jid, opts, cmd) => {
      await attachAndExit(clientOf(cmd), jid, { stdin: opts.stdin });
    });
}

function inspectText(j: JobInspect): string {
  // (a copy restored into a new PID namespace is not our child: CRIU's init there is its parent)
  const inPidNs = j.details.pidNamespace === true;
  const unknowable = inPidNs ? "unknowable (restored into a new PID namespace)" : "unknowable (adopted)";
  const rows: [string, string][] = [
    ["JID", j.jid],
    ["Type", j.type],
    ["PID", j.pid === null ? "-" : String(j.pid)],
    ["Status", statusText(j)],
    [
      "Exit code",
      j.status !== "halted"
        ? "- (running)"
        : j.exitCode !== null
        ? String(j.exitCode)
        : j.exitSignal ?? (j.adopted ? unknowable : "-"),
    ],
    ["Command", j.cmdline.map(shellQuote).join(" ")],
    ["Working dir", j.cwd],
    ["Started", j.startedAt ?? ""],
    ["Created", j.createdAt],
    [
      "Log",
      j.attachable ? `[Attachable]${j.ioAvailable ? "" : " (I/O lost: daemon restarted)"}` : j.log ?? "-",
    ],
    ["TTY", j.tty ? "yes" : "no"],
    ["GPU", j.gpu ? "yes" : "no"],
    ["Adopted", j.adopted && !inPidNs ? "yes" : "no"],
    [
      "Checkpoint",
      j.checkpoint ? `${j.checkpoint.path} (${humanSize(j.checkpoint.size)}, ${j.checkpoint.time})` : "none",
    ],
    ["Children", j.children.join(" ") || "none"],
  ];
  if (j.cuda) {
    rows.push([
      "CUDA",
      "error" in j.cuda
        ? j.cuda.error
        : j.cuda.map((p) => `${p.pid}: ${p.state}`).join(", ") || "no CUDA processes",
    ]);
  }
  for (const [k, v] of Object.entries(j.details)) {
    if (HIDDEN_DETAILS.has(k) || v === undefined || v === null) continue;
    const text = typeof v === "string" ? v : typeof v === "boolean" ? (v ? "yes" : "no") : JSON.stringify(v);
    rows.push([DETAIL_LABELS[k] ?? k, text]);
  }
  const width = Math.max(...rows.map(([k]) => k.length)) + 2;
  const out = rows.map(([k, v]) => `${(k + ":").padEnd(width)}${v}`);
  if (j.fds.length) {
    out.push(
      "Open files:",
      ...j.fds.map((f) => `  ${String(f.fd).padStart(4)}  ${f.target}`),
    );
  }
  return out.join("\n");
}

// deno-lint-ignore no-control-regex
const CONTROL = /[\x00-\x1f\x7f]/;
// deno-lint-ignore no-control-regex
const TO_ESCAPE = /[\x00-\x1f\x7f\\']/g;
const ESCAPES: Record<string, string> = { "\n": "\\n", "\t": "\\t", "\r": "\\r", "\\": "\\\\", "'": "\\'" };

/** One argument as a shell would take it back, on one line ($'...' when it holds control characters). */
export function shellQuote(a: string): string {
  if (/^[\w@%+=:,./-]+$/.test(a)) return a;
  if (!CONTROL.test(a)) return `'${a.replaceAll("'", `'\\''`)}'`;
  const hex = (c: string) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`;
  return `$'${a.replace(TO_ESCAPE, (c) => ESCAPES[c] ?? hex(c))}'`;
}

/** The daemon's own bookkeeping in a job's details: not for users. */
const HIDDEN_DETAILS = new Set(["ioKeepers"]);
const DETAIL_LABELS: Record<string, string> = {
  restoredFrom: "Restored from",
  pidNamespace: "Own PID namespace",
  incompleteDump: "Unfinished dump",
  haltedBy: "Halted by checkpoint",
  id: "Container",
  root: "Runc root",
  bundle: "Bundle",
  systemdCgroup: "Systemd cgroup",
  noPivot: "No pivot_root",
  address: "containerd",
  namespace: "Namespace",
  image: "Image",
  args: "Args",
  env: "Env",
};

export function jobCommand() {
  const job = new Command("job").description("Manage jobs");
  job.addCommand(listCommand("list").alias("ls"));
  job.command("kill")
    .description("Send a signal to jobs (default SIGKILL, to the process group each job leads)")
    .argument("[jids...]")
    .addOption(
      completeWith(
        new Option("-s, --signal <signal>", "signal name or number").default("SIGKILL"),
        Object.keys(SIGNALS),
      ),
    )
    .option("--all", "every running job")
    .option("--json", "machine-readable output")
    .action(async (jids, opts, cmd) => {
      if (!jids.length && !opts.all) throw invalidArgument("name one or more jobs, or use --all");
      const r = await clientOf(cmd).post<KillResult>("/v1/jobs/kill", {
        jids,
        all: !!opts.all,
        signal: opts.signal,
      });
      if (opts.json) return printJson(r);
      for (const j of r.killed) console.log(`sent ${r.signal} to job ${j}`);
      for (const b of r.busy ?? []) console.error(`job ${b.jid} not signalled: a ${b.op} is in progress`);
      if (opts.all && !r.killed.length && !r.busy?.length) console.log("no running jobs");
    });
  job.command("delete")
    .alias("rm")
    .description("Delete halted jobs from the DB (a running job is refused: kill it first)")
    .argument("[jids...]")
    .option("--all", "every halted job")
    .option("--json", "machine-readable output")
    .action(async (jids, opts, cmd) => {
      if (!jids.length && !opts.all) throw invalidArgument("name one or more jobs, or use --all");
      const r = await clientOf(cmd).post<DeleteResult>("/v1/jobs/delete", { jids, all: !!opts.all });
      if (opts.json) return printJson(r);
      for (const j of r.deleted) {
        const n = r.checkpointsKept?.[j];
        console.log(
          `deleted job ${j}${
            n ? ` (its ${n === 1 ? "checkpoint is" : `${n} checkpoints are`} kept: cedana checkpoints)` : ""
          }`,
        );
      }
      if (opts.all && !r.deleted.length) console.log("no halted jobs to delete");
    });
  job.command("inspect")
    .description("Show everything known about a job")
    .argument("<jid>")
    .option("--json", "machine-readable output")
    .action(async (jid, opts, cmd) => {
      const j = await clientOf(cmd).get<JobInspect>(`/v1/jobs/${encodeURIComponent(jid)}`);
      if (opts.json) return printJson(j);
      console.log(inspectText(j));
    });
  job.addCommand(attachJidCommand());
  job.addCommand(checkpointCommand());
  job.addCommand(checkpointsCommand());
  return job;
}

export const psCommand = () => listCommand("ps").description("List managed jobs (alias of `job list`)");
export const jobsCommand = () => listCommand("jobs").description("List managed jobs (alias of `job list`)");

export function attachPidCommand() {
  return new Command("attach")
    .description("Attach to the attachable job running as PID")
    .argument("<pid>")
    .option("--no-stdin", "do not forward stdin")
    .action(async (pid, opts, cmd) => {
      const client = clientOf(cmd);
      const job = await client.get<Job>(`/v1/pids/${parsePid(pid)}`);
      await attachAndExit(client, job.jid, { stdin: opts.stdin });
    });
}
