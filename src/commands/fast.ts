// The fast path of the CLI: `dump job JID` and `restore job JID` (the commands whose latency users
// and benchmarks feel, next to CRIU's own time) and `ps` (the one typed most) are parsed here
// without loading the full command framework: commander pulls in Deno's Node compatibility layer,
// ~20 ms of start-up. Anything else, any other flag, or a global option, goes to the full CLI
// (mod.ts), so behaviour is the same either way.
// Only what sending the request needs is loaded before it goes out; the rest (rendering, progress)
// loads while the daemon works.
import type { DumpResult, Job, RestoreResult } from "../api/types.ts";
import { DaemonClient } from "../client/mod.ts";
import { loadConfig } from "../config/mod.ts";
import { JID_PATTERN } from "../daemon/names.ts";

interface Fast {
  op: "dump" | "restore";
  jid: string;
  json: boolean;
  leaveRunning: boolean;
}

function parse(args: string[]): Fast | null {
  const [op, kind, jid, ...rest] = args;
  if ((op !== "dump" && op !== "restore") || kind !== "job" || !jid || !JID_PATTERN.test(jid)) return null;
  let json = false, leaveRunning = false;
  for (const a of rest) {
    if (a === "--json") json = true;
    else if (a === "--leave-running" && op === "dump") leaveRunning = true;
    else return null;
  }
  return { op, jid, json, leaveRunning };
}

/** Ctrl-C while the daemon dumps or restores: that work is the daemon's and goes on; say so (exit 130). */
export function noticeInterrupt(op: "dump" | "restore", what: string): () => void {
  const onInt = () => {
    console.error(`\ninterrupted: the ${op} of ${what} goes on in the daemon (see cedana ps)`);
    Deno.exit(130);
  };
  Deno.addSignalListener("SIGINT", onInt);
  return () => Deno.removeSignalListener("SIGINT", onInt);
}

/** As the full CLI's clientOf makes it, from the config (client.timeout included). */
function daemonClient(): DaemonClient {
  const cfg = loadConfig();
  return new DaemonClient(cfg.address, cfg.client.timeout * 1000);
}

/** `ps`, `jobs`, `job list|ls`, each with or without `--json`: whether to print JSON; else null. */
function parseList(args: string[]): { json: boolean } | null {
  const rest = args[0] === "ps" || args[0] === "jobs"
    ? args.slice(1)
    : args[0] === "job" && (args[1] === "list" || args[1] === "ls")
    ? args.slice(2)
    : null;
  if (!rest || rest.length > 1 || (rest.length === 1 && rest[0] !== "--json")) return null;
  return { json: rest.length === 1 };
}

async function list(json: boolean): Promise<number> {
  const client = daemonClient();
  try {
    const jobs = client.get<Job[]>("/v1/jobs");
    jobs.catch(() => {}); // (awaited below, after the import)
    const { printJobs } = await import("./render.ts");
    printJobs(await jobs, json);
    return 0;
  } finally {
    client.close();
  }
}

/** Runs the command and returns the exit status, or null when the full CLI must handle it. */
export async function fastPath(args: string[]): Promise<number | null> {
  const l = parseList(args);
  if (l) return await list(l.json);
  const f = parse(args);
  if (!f) return null;
  const client = daemonClient();
  const quiet = noticeInterrupt(f.op, `job ${f.jid}`);
  try {
    const body = f.op === "dump" && f.leaveRunning ? { jid: f.jid, leaveRunning: true } : { jid: f.jid };
    const answer = client.post<DumpResult | RestoreResult>(`/v1/${f.op}`, body);
    answer.catch(() => {}); // (awaited below, after the imports)
    const render = import("./cr_render.ts");
    let done = () => {};
    if (!f.json && Deno.stderr.isTerminal()) {
      done = (await import("./progress.ts")).showProgress(client, f.jid, f.json);
    }
    const r = await answer.finally(done);
    const { printDump, printRestore } = await render;
    if (f.op === "dump") printDump(r as DumpResult, `job ${f.jid}`, f.json);
    else printRestore(r as RestoreResult, f.json);
    return 0;
  } finally {
    quiet();
    client.close();
  }
}
