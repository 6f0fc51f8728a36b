// `cedana daemon install|uninstall`: a systemd unit that runs the daemon. The rendering is pure
// (renderUnit, startArgv); install/uninstall do the file and systemctl work around it.

import { existsSync } from "node:fs";
import { basename, dirname, isAbsolute, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { Config } from "../config/mod.ts";
import { configKeys, DEFAULT_CONFIG_DIR, envName } from "../config/mod.ts";
import { parseListenAddress } from "./metrics.ts";
import { failedPrecondition, invalidArgument, notFound } from "../errors.ts";

export const DEFAULT_UNIT_PATH = "/etc/systemd/system/cedana.service";

/** Directories systemd loads system units from: only a unit there is worth a daemon-reload/enable. */
const UNIT_DIRS = [
  "/etc/systemd/system",
  "/run/systemd/system",
  "/usr/local/lib/systemd/system",
  "/usr/lib/systemd/system",
  "/lib/systemd/system",
];

/** One ExecStart word. systemd splits on whitespace, honours quotes and C escapes, expands % specifiers
 * and $VARS; anything beyond a plain word is double-quoted and those characters are doubled/escaped. */
export function quoteExecArg(s: string): string {
  const t = s.replaceAll("%", "%%").replaceAll("$", "$$$$");
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(t)) return t;
  return `"${t.replaceAll("\\", "\\\\").replaceAll('"', '\\"').replaceAll("\n", "\\n")}"`;
}

/** argv of the daemon as the unit runs it: `<cedana> [--config-dir D] daemon start --address A --db P ...`. */
export function startArgv(
  cedana: readonly string[],
  config: Config,
  configDir: string = DEFAULT_CONFIG_DIR,
): string[] {
  // systemd starts the service in /, so relative paths would point elsewhere than they do here
  const abs = (p: string) => resolve(p);
  const argv = [...cedana];
  if (abs(configDir) !== DEFAULT_CONFIG_DIR) argv.push("--config-dir", abs(configDir));
  argv.push("daemon", "start", "--address", abs(config.address), "--db", abs(config.db.path));
  if (config.metrics.address) argv.push("--metrics-address", config.metrics.address);
  if (config.log_level !== "info") argv.push("--log-level", config.log_level);
  return argv;
}

/**
 * One Environment= assignment, quoted: systemd expands % specifiers there but, unlike in ExecStart,
 * no $ variables, so `$` stays as it is (quoteExecArg would double it).
 */
function quoteEnvironment(assignment: string): string {
  const t = assignment.replaceAll("%", "%%");
  if (/^[A-Za-z0-9_@%+=:,./$-]+$/.test(t)) return t;
  return `"${t.replaceAll("\\", "\\\\").replaceAll('"', '\\"').replaceAll("\n", "\\n")}"`;
}

/** The unit file. `exec[0]` must be an absolute path: systemd-analyze verify and older systemd want it. */
export function renderUnit(exec: readonly string[], env: Record<string, string> = {}): string {
  if (!exec.length || !isAbsolute(exec[0])) {
    throw invalidArgument(`ExecStart needs an absolute executable path (got ${JSON.stringify(exec[0])})`);
  }
  const environment = Object.entries(env).map(([k, v]) => `Environment=${quoteEnvironment(`${k}=${v}`)}`);
  return [
    "# Written by `cedana daemon install`; `cedana daemon uninstall` removes it.",
    "[Unit]",
    "Description=cedana checkpoint/restore daemon",
    "Documentation=https://github.com/cedana/cedana",
    "After=network.target",
    "",
    "[Service]",
    "Type=simple",
    ...environment,
    `ExecStart=${exec.map(quoteExecArg).join(" ")}`,
    // Jobs are the daemon's children (same cgroup): stopping or restarting the daemon must kill only
    // the daemon, which re-adopts its running jobs when it comes back.
    "KillMode=process",
    // A stop waits for the dumps and restores in progress (systemd's 90 s would cut a big one: its
    // images are salvaged then, but the stop should not cost a finished checkpoint).
    "TimeoutStopSec=15min",
    "Restart=on-failure",
    "RestartSec=2",
    "",
    "[Install]",
    "WantedBy=multi-user.target",
    "",
  ].join("\n");
}

function which(name: string): string | null {
  for (const d of (Deno.env.get("PATH") ?? "").split(":")) {
    if (!d || !isAbsolute(d)) continue;
    const p = join(d, name);
    try {
      const st = Deno.statSync(p);
      if (st.isFile && st.mode !== null && (st.mode & 0o111) !== 0) return p;
    } catch { /* next */ }
  }
  return null;
}

/** How to run this cedana again: the self-extracting file when this runs from one (its unpacked copy
 * in a cache goes away with the next version), else the offline bundle's launcher (it brings its
 * Deno, dependencies and CRIU), else `cedana` on PATH when there is one (it survives checkouts moving),
 * else this very executable (a `deno compile` binary), else `deno run -A <main.ts>`. */
export function cedanaCommand(): string[] {
  const sfx = Deno.env.get("CEDANA_SFX");
  if (sfx && isAbsolute(sfx) && existsSync(sfx)) return [sfx];
  const launcher = Deno.env.get("CEDANA_LAUNCHER");
  if (launcher && isAbsolute(launcher)) return [launcher];
  const onPath = which("cedana");
  if (onPath) return [onPath];
  const exe = Deno.execPath();
  if (!/^deno(\.exe)?$/.test(basename(exe))) return [exe];
  const main = new URL("../../main.ts", import.meta.url);
  if (main.protocol !== "file:") throw failedPrecondition(`cannot run cedana from ${main} under systemd`);
  return [exe, "run", "-A", fileURLToPath(main)];
}

export const systemdRunning = (): boolean => {
  try {
    return Deno.statSync("/run/systemd/system").isDirectory; // what sd_booted() checks
  } catch {
    return false;
  }
};

async function systemctl(...args: string[]): Promise<void> {
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command("systemctl", { args, stdout: "piped", stderr: "piped" }).output();
  } catch (e) {
    throw failedPrecondition(`cannot run systemctl: ${(e as Error).message}`);
  }
  if (!out.success) {
    const err = new TextDecoder().decode(out.stderr).trim();
    throw failedPrecondition(`systemctl ${args.join(" ")} failed${err ? `: ${err}` : ""}`);
  }
}

/** CEDANA_<KEY> settings of the installer's environment that the flags in ExecStart do not carry. */
function settingsFromEnv(env: Record<string, string> = Deno.env.toObject()): Record<string, string> {
  const inFlags = new Set([
    "CEDANA_CONFIG_DIR",
    "CEDANA_ADDRESS",
    "CEDANA_DB_PATH",
    "CEDANA_METRICS_ADDRESS",
    "CEDANA_LOG_LEVEL",
  ]);
  const known = new Set(configKeys().map(envName));
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (known.has(k) && !inFlags.has(k)) out[k] = v;
  return out;
}

function checkUnitPath(unitPath: string): { path: string; name: string; loaded: boolean } {
  const path = resolve(unitPath);
  const name = basename(path);
  if (!name.endsWith(".service")) throw invalidArgument(`unit path must end in .service (got ${unitPath})`);
  return { path, name, loaded: UNIT_DIRS.includes(dirname(path)) };
}

export interface InstallOptions {
  unitPath: string;
  enable: boolean;
  config: Config;
  configDir?: string;
  /** The installer's environment: its CEDANA_<KEY> settings go into the unit. Default: this process's. */
  env?: Record<string, string>;
  /** Defaults to cedanaCommand(). */
  cedana?: string[];
}

/** Writes the unit (atomically) and, where systemd runs and loads it, reloads and maybe enables it.
 * Returns the lines to show the user. */
export async function install(o: InstallOptions): Promise<string[]> {
  const { path, name, loaded } = checkUnitPath(o.unitPath);
  // a unit that fails at every restart helps no one: the daemon would refuse this address
  if (o.config.metrics.address) parseListenAddress(o.config.metrics.address);
  const text = renderUnit(
    startArgv(o.cedana ?? cedanaCommand(), o.config, o.configDir),
    settingsFromEnv(o.env),
  );
  const existed = (() => {
    try {
      return Deno.statSync(path).isFile;
    } catch {
      return false;
    }
  })();
  const tmp = `${path}.tmp-${Deno.pid}`;
  try {
    Deno.mkdirSync(dirname(path), { recursive: true });
    Deno.writeTextFileSync(tmp, text, { mode: 0o644 });
    Deno.chmodSync(tmp, 0o644); // writeTextFile's mode is masked by the umask
    Deno.renameSync(tmp, path);
  } catch (e) {
    try {
      Deno.removeSync(tmp);
    } catch { /* never written */ }
    throw failedPrecondition(`cannot write ${path}: ${(e as Error).message}`);
  }
  const msgs = [`${existed ? "updated" : "wrote"} ${path}`];
  const unit = name.replace(/\.service$/, "");
  if (!systemdRunning()) {
    msgs.push(
      `note: systemd is not running here (no /run/systemd/system): the unit was written but not loaded` +
        (o.enable ? " nor enabled" : "") + "; on a systemd host run: systemctl daemon-reload && " +
        `systemctl enable --now ${unit}`,
    );
    return msgs;
  }
  if (!loaded) {
    msgs.push(
      `note: systemd does not load units from ${dirname(path)}: not reloaded` +
        (o.enable ? " nor enabled" : ""),
    );
    return msgs;
  }
  await systemctl("daemon-reload");
  if (o.enable) {
    await systemctl("enable", "--now", name);
    msgs.push(`enabled and started ${name}`);
  } else msgs.push(`systemd reloaded; start it with: systemctl enable --now ${unit}`);
  return msgs;
}

/** Stops and disables the service (where systemd runs) and removes the unit. Jobs keep running. */
export async function uninstall(unitPath: string): Promise<string[]> {
  const { path, name, loaded } = checkUnitPath(unitPath);
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch {
    throw notFound(`no unit at ${path}`);
  }
  if (!text.startsWith("# Written by `cedana daemon install`")) {
    throw failedPrecondition(`${path} was not written by \`cedana daemon install\`: not removing it`);
  }
  const msgs: string[] = [];
  const manage = loaded && systemdRunning();
  if (manage) {
    await systemctl("disable", "--now", name);
    msgs.push(`stopped and disabled ${name} (its jobs keep running)`);
  }
  try {
    Deno.removeSync(path);
  } catch (e) {
    throw failedPrecondition(`cannot remove ${path}: ${(e as Error).message}`);
  }
  msgs.push(`removed ${path}`);
  if (manage) await systemctl("daemon-reload");
  return msgs;
}
