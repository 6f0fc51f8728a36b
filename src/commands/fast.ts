// The fast path of the CLI: `dump job JID` and `restore job JID` (the commands whose latency users
// and benchmarks feel, next to CRIU's own time) are parsed here without loading the full command
// framework, which costs ~20 ms of start-up. Anything else, any other flag, or a global option,
// goes to the full CLI (mod.ts), so behaviour is the same either way.
import type { DumpResult, RestoreResult } from "../api/types.ts";
import { DaemonClient } from "../client/mod.ts";
import { loadConfig } from "../config/mod.ts";
import { printDump, printRestore } from "./cr_render.ts";
import { showProgress } from "./progress.ts";
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

/** Runs the command and returns the exit status, or null when the full CLI must handle it. */
export async function fastPath(args: string[]): Promise<number | null> {
  const f = parse(args);
  if (!f) return null;
  const client = new DaemonClient(loadConfig().address);
  const done = showProgress(client, f.jid, f.json);
  try {
    if (f.op === "dump") {
      const body = f.leaveRunning ? { jid: f.jid, leaveRunning: true } : { jid: f.jid };
      printDump(await client.post<DumpResult>("/v1/dump", body).finally(done), `job ${f.jid}`, f.json);
    } else {
      printRestore(await client.post<RestoreResult>("/v1/restore", { jid: f.jid }).finally(done), f.json);
    }
    return 0;
  } finally {
    client.close();
  }
}
