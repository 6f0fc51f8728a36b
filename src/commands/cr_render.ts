// How dump and restore results are shown. No CLI framework here: the fast path (fast.ts) uses it.
import type { DumpResult, RestoreResult, Timings } from "../api/types.ts";
import { humanSize, printJson } from "./render.ts";

export function msText(v: number | undefined): string {
  if (v === undefined) return "-";
  return v >= 1000 ? `${(v / 1000).toFixed(2)} s` : `${v.toFixed(v < 10 ? 1 : 0)} ms`;
}

/** One line per phase, the way users read it: what took the time (a phase with a minimum: only above it). */
export function timingLine(t: Timings, keys: [string, string, number?][]): string {
  return keys.filter(([k, , min]) => t[k] !== undefined && t[k] >= (min ?? 0))
    .map(([k, label]) => `${label} ${msText(t[k])}`).join(" · ");
}

export function printDump(r: DumpResult, what: string, json?: boolean) {
  if (json) return printJson(r);
  console.log(
    `dumped ${what} to ${r.checkpoint.path} (${humanSize(r.checkpoint.size)}, id ${r.checkpoint.id})${
      r.leftRunning ? "; still running" : ""
    }`,
  );
  if (r.detected.length) console.log(`  detected: ${r.detected.join(", ")}`);
  console.log(
    "  " + timingLine(r.timings, [
      ["gpu_lock", "GPU lock"],
      ["gpu_checkpoint", "GPU checkpoint"],
      ["criu_freezing_time", "freeze"],
      ["criu_frozen_time", "frozen"],
      ["criu_memdump_time", "memory dump"],
      ["criu_memwrite_time", "write"],
      // (its CRIU started ahead: see src/daemon/cr/warm.ts)
      ["criu_dump", r.warm ? "criu (started ahead)" : "criu"],
      ["manifest", "checksums"],
      ["gpu_resume", "GPU resume"],
      ["compress", "compress"],
      ["total", "total"],
    ]),
  );
  if (r.gpu) {
    console.log(
      `  GPU: ${r.gpu.pids.length} CUDA process(es), ${
        humanSize(r.gpu.total)
      } of GPU memory moved to the images`,
    );
  }
}

export function printRestore(r: RestoreResult, json?: boolean) {
  if (json) return printJson(r);
  console.log(
    `restored job ${r.job.jid} (pid ${r.job.pid}) from ${r.checkpoint}${
      r.pidNamespace ? " in a new PID namespace (its original PIDs were taken)" : ""
    }`,
  );
  for (const n of r.notes ?? []) console.log(`  note: ${n}`);
  console.log(
    "  " + timingLine(r.timings, [
      ["unpack", "unpack"],
      ["verify", "verify"],
      // (zombies of the dumped tree not yet reaped by their parent: usually 0)
      ["pids", "waiting for the original PIDs", 5],
      ["criu_forking_time", "fork"],
      ["criu_restore_time", "restore"],
      ["criu_restore", r.warm ? "criu (started ahead)" : "criu"],
      ["plugin_restore", "runtime"],
      ["gpu_restore", "GPU restore"],
      ["gpu_unlock", "GPU unlock"],
      ["total", "total"],
    ]),
  );
}
