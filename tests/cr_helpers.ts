// Helpers for the checkpoint/restore matrix: self-checking workloads (tests/workloads) whose log
// tells whether they continued correctly after a restore.
import { existsSync } from "node:fs";
import type { Job } from "../src/api/types.ts";
import { assert, assertEquals } from "../src/testing/asserts.ts";
import { fileURLToPath } from "node:url";
import { type TestDaemon, waitFor } from "./helpers.ts";

export const WORKLOAD = fileURLToPath(new URL("./workloads/workload.py", import.meta.url));
/** Debian's python when present: a pyenv shim adds nothing but start-up time. */
export const PYTHON = (() => {
  try {
    Deno.statSync("/usr/bin/python3");
    return "/usr/bin/python3";
  } catch {
    return "python3";
  }
})();

export const HAVE_CRIU = (() => {
  if (Deno.uid() !== 0) return false;
  for (const d of (Deno.env.get("PATH") ?? "").split(":").concat(["/usr/local/bin", "/usr/local/sbin"])) {
    try {
      if (Deno.statSync(`${d}/criu`).isFile) return true;
    } catch { /* next */ }
  }
  return false;
})();

export const crOpts = { sanitizeOps: false, sanitizeResources: false, ignore: !HAVE_CRIU } as const;

export function readLog(path: string): string[] {
  try {
    return Deno.readTextFileSync(path).split("\n");
  } catch {
    return [];
  }
}

export function lastTick(lines: string[]): number {
  for (let i = lines.length - 1; i >= 0; i--) {
    const m = /^tick (\d+)$/.exec(lines[i]);
    if (m) return Number(m[1]);
  }
  return -1;
}

export async function startWorkload(
  d: TestDaemon,
  jid: string,
  kind: string,
  ...rest: string[]
): Promise<Job> {
  const i = rest.indexOf("--");
  const runFlags = i < 0 ? [] : rest.slice(i + 1);
  const args = i < 0 ? rest : rest.slice(0, i);
  const job = await d.json<Job>(
    "run",
    "process",
    "--jid",
    jid,
    ...runFlags,
    "--",
    PYTHON,
    WORKLOAD,
    kind,
    ...args,
  );
  // (random data takes its time to make: ~15 s for 1 GiB on a busy 2-core machine)
  await waitTicks(job.log!, 2, kind === "memory" ? 20_000 + 40 * Number(args[0]) : 20_000);
  return job;
}

export async function waitTicks(log: string, atLeast: number, timeoutMs = 20_000): Promise<number> {
  return await waitFor(
    () => {
      const lines = readLog(log);
      const fail = lines.find((l) => l.startsWith("FAIL"));
      if (fail) throw new Error(`workload failed: ${fail}`);
      const t = lastTick(lines);
      return t >= atLeast ? t : 0;
    },
    `tick ${atLeast} in ${log}`,
    timeoutMs,
  );
}

/** Asks the workload to check itself (SIGUSR1) and expects `verify ok`. */
export async function verify(d: TestDaemon, jid: string, log: string): Promise<void> {
  const before = readLog(log).filter((l) => l.startsWith("verify")).length;
  await d.ok("job", "kill", jid, "--signal", "USR1");
  const line = await waitFor(
    () => readLog(log).filter((l) => l.startsWith("verify"))[before],
    `verify in ${log}`,
  ).catch((e) => {
    throw new Error(`${(e as Error).message}; log tail:\n${readLog(log).slice(-8).join("\n")}`);
  });
  assertEquals(line, "verify ok", `${jid}: ${line}`);
}

/** Every tick in the log follows the one before it: nothing lost, nothing replayed, no restart. */
export function assertConsecutiveTicks(log: string, msg = "no gap, no restart"): void {
  const ticks = readLog(log).filter((l) => l.startsWith("tick ")).map((l) => Number(l.slice(5)));
  for (let k = 1; k < ticks.length; k++) assertEquals(ticks[k], ticks[k - 1] + 1, msg);
}

/** After a restore: the counter goes on past where it stopped, and the process was not restarted. */
export async function assertContinues(log: string, before: number): Promise<void> {
  const t = await waitTicks(log, before + 2);
  const lines = readLog(log);
  assertEquals(
    lines.filter((l) => l.startsWith("ready")).length,
    1,
    "the workload was restarted, not restored",
  );
  const ticks = lines.filter((l) => l.startsWith("tick ")).map((l) => Number(l.slice(5)));
  // ticks are strictly increasing: nothing replayed from an older state
  for (let i = 1; i < ticks.length; i++) {
    assert(ticks[i] > ticks[i - 1], `tick ${ticks[i]} after ${ticks[i - 1]}`);
  }
  assert(t > before);
}

export async function jobOf(d: TestDaemon, jid: string): Promise<Job> {
  return (await d.json<Job[]>("ps")).find((j) => j.jid === jid)!;
}

/**
 * What is in the daemon's checkpoint dir but the scratch dirs of warm dumps (src/daemon/cr/warm_dump.ts:
 * a running job gets one a second after the daemon starts watching it).
 */
export function checkpointDirEntries(d: TestDaemon): string[] {
  const dir = `${d.dir}/checkpoints`;
  return [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) =>
    !(n.startsWith(".cedana-work-") && existsSync(`${dir}/${n}/images/.work`))
  );
}
