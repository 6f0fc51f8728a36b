// What every command needs: the effective config (global flags applied) and a daemon client.
import { type Command, InvalidArgumentError } from "@commander-js/extra-typings";
import { type Config, loadConfig } from "../config/mod.ts";
import { DaemonClient } from "../client/mod.ts";

export interface GlobalOptions {
  address?: string;
  configDir?: string;
}

// deno-lint-ignore no-explicit-any
type AnyCommand = Command<any, any, any>;

/** The root program's own options: a subcommand's option of the same name (e.g. `run containerd
 * --address`, containerd's socket) must not be taken for the global one (the daemon's socket). */
function globals(cmd: AnyCommand): GlobalOptions {
  let root = cmd;
  while (root.parent) root = root.parent;
  return root.opts() as GlobalOptions;
}

export function configOf(cmd: AnyCommand, flags: Record<string, unknown> = {}): Config {
  const g = globals(cmd);
  // (a subcommand's own flag left unset must not hide the global one)
  const set = Object.fromEntries(Object.entries(flags).filter(([, v]) => v !== undefined));
  return loadConfig({ configDir: g.configDir, flags: { address: g.address, ...set } });
}

export function clientOf(cmd: AnyCommand): DaemonClient {
  const cfg = configOf(cmd);
  return new DaemonClient(cfg.address, cfg.client.timeout * 1000);
}

/** `-o FILE`: a value that starts with "-" is a flag taken for the file (`-o $EMPTY -- cmd`). */
export function fileArg(v: string): string {
  if (v === "") {
    throw new InvalidArgumentError("expected a file name, got an empty string (an empty variable?)");
  }
  if (v.startsWith("-")) {
    throw new InvalidArgumentError(`expected a file name, got "${v}" (an empty variable?)`);
  }
  return v;
}

/** An option value that cannot be empty (`run` takes empty arguments for its job, not for these). */
export function nonEmpty(v: string): string {
  if (v === "") throw new InvalidArgumentError("expected a value, got an empty string (an empty variable?)");
  return v;
}
