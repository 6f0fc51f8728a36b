// What every command needs: the effective config (global flags applied) and a daemon client.
import type { Command } from "@commander-js/extra-typings";
import { type Config, loadConfig } from "../config/mod.ts";
import { DaemonClient } from "../client/mod.ts";

export interface GlobalOptions {
  address?: string;
  configDir?: string;
}

// deno-lint-ignore no-explicit-any
type AnyCommand = Command<any, any, any>;

export function configOf(cmd: AnyCommand, flags: Record<string, unknown> = {}): Config {
  const g = cmd.optsWithGlobals() as GlobalOptions;
  return loadConfig({ configDir: g.configDir, flags: { address: g.address, ...flags } });
}

export function clientOf(cmd: AnyCommand): DaemonClient {
  return new DaemonClient(configOf(cmd).address);
}
