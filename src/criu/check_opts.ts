// --criu-opts checked by CRIU itself before they are used: `criu --version` reads a config file
// named by CRIU_CONFIG_FILE and refuses an option it does not know, in a few ms and before anything
// is frozen. (Through runc a bad option only shows as "CRIU version check failed"; on a dump's
// command line it ends the dump with CRIU's usage text.)

import { invalidArgument } from "../errors.ts";
import { runCommand } from "../sys/mod.ts";
import { criuConfigFile } from "./options.ts";

/** Writes `extra` (CRIU long options) to `path` as a CRIU config file, checked by `criu`. */
export async function writeCheckedCriuConfig(criu: string, path: string, extra: string[]): Promise<void> {
  Deno.writeTextFileSync(path, criuConfigFile(extra));
  const check = await runCommand(criu, ["--version"], { CRIU_CONFIG_FILE: path });
  if (!check.success) {
    const why = check.stderr.split("\n").filter((l) => l.startsWith("criu:")).map((l) => l.slice(6));
    throw invalidArgument(`--criu-opts: CRIU refused them: ${why.join("; ") || `criu exit ${check.code}`}`);
  }
}

/**
 * Checks `extra` with `criu` (a config file in a scratch directory, removed after). Values a config
 * file cannot hold (quotes, backslashes) are left to CRIU's command line, unchecked.
 */
export async function checkCriuOpts(criu: string, extra: string[]): Promise<void> {
  try {
    criuConfigFile(extra);
  } catch {
    return;
  }
  const dir = Deno.makeTempDirSync({ prefix: "cedana-criu-opts-" });
  try {
    await writeCheckedCriuConfig(criu, `${dir}/criu-opts.conf`, extra);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}
