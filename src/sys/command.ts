// Run a helper program to completion (tar, criu --version, ...). Its pid is registered so the
// orphan reaper leaves it to Deno, which waits for it.

import { trackSpawn } from "./reaper.ts";

export interface CommandResult {
  success: boolean;
  code: number;
  stdout: string;
  stderr: string;
}

export async function runCommand(
  cmd: string,
  args: string[],
  env?: Record<string, string>,
): Promise<CommandResult> {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(cmd, { args, env, stdin: "null", stdout: "piped", stderr: "piped" }).spawn();
  } catch (e) {
    return { success: false, code: 127, stdout: "", stderr: `${cmd}: ${(e as Error).message}` };
  }
  trackSpawn(child.pid, child.status);
  const out = await child.output();
  const dec = new TextDecoder();
  return {
    success: out.success,
    code: out.code,
    stdout: dec.decode(out.stdout),
    stderr: dec.decode(out.stderr),
  };
}
