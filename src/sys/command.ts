// Run a helper program to completion (tar, criu --version, ...). Its pid is registered so the
// orphan reaper leaves it to Deno, which waits for it.

import { trackSpawn } from "./reaper.ts";

export interface CommandResult {
  success: boolean;
  code: number;
  stdout: string;
  stderr: string;
}

/** The exit code runCommand reports for a program it killed after `timeoutMs`. */
export const TIMED_OUT = 124;

export async function runCommand(
  cmd: string,
  args: string[],
  env?: Record<string, string>,
  timeoutMs?: number,
): Promise<CommandResult> {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(cmd, { args, env, stdin: "null", stdout: "piped", stderr: "piped" }).spawn();
  } catch (e) {
    return { success: false, code: 127, stdout: "", stderr: `${cmd}: ${(e as Error).message}` };
  }
  trackSpawn(child.pid, child.status);
  let timedOut = false;
  const timer = timeoutMs === undefined ? undefined : setTimeout(() => {
    timedOut = true;
    try {
      child.kill("SIGKILL");
    } catch { /* ended meanwhile */ }
  }, timeoutMs);
  const out = await child.output().finally(() => clearTimeout(timer));
  if (timedOut) {
    return { success: false, code: TIMED_OUT, stdout: "", stderr: `${cmd}: killed after ${timeoutMs} ms` };
  }
  const dec = new TextDecoder();
  return {
    success: out.success,
    code: out.code,
    stdout: dec.decode(out.stdout),
    stderr: dec.decode(out.stderr),
  };
}
