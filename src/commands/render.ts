// Rendering helpers for the CLI: aligned tables, sizes, relative times, job status.
import type { Job } from "../api/types.ts";

export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (r: string[]) =>
    r.map((c, i) => i === r.length - 1 ? c : c.padEnd(widths[i])).join("  ").trimEnd();
  return [line(header), ...rows.map(line)].join("\n");
}

export function humanSize(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = bytes, i = 0;
  while (v >= 1024 && i < units.length - 1) v /= 1024, i++;
  return i === 0 ? `${v} B` : `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

export function ago(iso: string, now = Date.now()): string {
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

export function statusText(j: Job): string {
  // (a job being dumped is frozen, or already ended by CRIU while its images are compressed:
  // neither "sleeping" nor "halted" says what is going on)
  if (j.operation?.startsWith("dump")) return "dumping";
  if (j.operation?.startsWith("restore")) return "restoring";
  if (j.status !== "halted") return j.status;
  if (j.exitCode !== null) return `halted (${j.exitCode})`;
  if (j.exitSignal) return `halted (${j.exitSignal})`;
  return "halted";
}

export const JOB_HEADER = ["JOB", "TYPE", "PID", "STATUS", "GPU", "CHECKPOINT", "SIZE", "LOG"];

export function jobRow(j: Job): string[] {
  return [
    j.jid,
    j.type,
    j.pid === null ? "" : String(j.pid),
    statusText(j),
    j.gpu ? "yes" : "no",
    j.checkpoint ? ago(j.checkpoint.time) : "",
    j.checkpoint ? humanSize(j.checkpoint.size) : "",
    j.attachable ? "[Attachable]" : j.log ?? "",
  ];
}

export function printJson(v: unknown): void {
  console.log(JSON.stringify(v, null, 2));
}

/** `cedana ps` (and `jobs`, `job list`): the table, or the jobs as JSON. */
export function printJobs(jobs: Job[], json: boolean): void {
  if (json) printJson(jobs);
  else console.log(table(JOB_HEADER, jobs.map(jobRow)));
}
