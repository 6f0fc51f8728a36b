// Configuration like Cedana's: defaults < <config dir>/config.json < CEDANA_<KEY> env vars < flags.
// A key's env name is its dotted path upper-cased with "_" (db.path -> CEDANA_DB_PATH).

import { COMPRESSION_NAMES } from "../api/types.ts";
import { invalidArgument } from "../errors.ts";

export interface Config {
  /** Unix socket of the daemon. */
  address: string;
  log_level: "debug" | "info" | "warn" | "error";
  /** Where log files of non-attachable jobs go by default. */
  output_dir: string;
  db: { path: string };
  /**
   * verify: "auto" re-hashes only images that changed since this daemon hashed them; "full" always.
   * warm: start the CRIU of a job's next dump or restore ahead (see daemon/cr/warm.ts).
   */
  checkpoint: { dir: string; compression: string; verify: string; warm: boolean };
  /** log_level: CRIU's -v (2: errors and warnings, CRIU's default; 4: everything, ~5% slower dumps). */
  criu: { binary_path: string; leave_running: boolean; log_level: number };
  gpu: { lock_timeout: number };
  containerd: { address: string; namespace: string };
  /** Prometheus /metrics on TCP too ("127.0.0.1:9464"); empty: only on the Unix socket. */
  metrics: { address: string };
  /** How long the CLI waits for the daemon's answer to a query (ps, inspect...), s; 0: no limit. */
  client: { timeout: number };
}

export const DEFAULT_CONFIG_DIR = "/etc/cedana";

export function defaults(): Config {
  return {
    address: "/run/cedana.sock",
    log_level: "info",
    output_dir: "/var/log",
    db: { path: "/tmp/cedana.db" },
    checkpoint: { dir: "/tmp", compression: "none", verify: "auto", warm: true },
    criu: { binary_path: "", leave_running: false, log_level: 2 },
    gpu: { lock_timeout: 10_000 },
    containerd: { address: "/run/containerd/containerd.sock", namespace: "default" },
    // off by default: the socket is root-only, a TCP port is readable by anyone who can reach it
    metrics: { address: "" },
    client: { timeout: 30 },
  };
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);

/** Flattened leaves of the defaults: "db.path" -> default value (its type drives env parsing). */
function leaves(o: Obj, prefix = ""): [string, unknown][] {
  return Object.entries(o).flatMap(([k, v]) =>
    isObj(v) ? leaves(v, `${prefix}${k}.`) : [[`${prefix}${k}`, v] as [string, unknown]]
  );
}

export const envName = (key: string) => `CEDANA_${key.replaceAll(".", "_").toUpperCase()}`;

/** Every config key, dotted ("checkpoint.compression"). */
export const configKeys = (): string[] => leaves(defaults() as unknown as Obj).map(([k]) => k);

function setPath(o: Obj, key: string, value: unknown) {
  const parts = key.split(".");
  let cur = o;
  for (const p of parts.slice(0, -1)) cur = (isObj(cur[p]) ? cur[p] : (cur[p] = {})) as Obj;
  cur[parts.at(-1)!] = value;
}

function parseValue(key: string, raw: string, like: unknown, source: string): unknown {
  if (typeof like === "number") {
    const n = Number(raw);
    if (raw.trim() === "" || !Number.isFinite(n)) throw invalidArgument(`${source}: ${key} must be a number`);
    return n;
  }
  if (typeof like === "boolean") {
    if (/^(1|true|yes|on)$/i.test(raw)) return true;
    if (/^(0|false|no|off)$/i.test(raw)) return false;
    throw invalidArgument(`${source}: ${key} must be true or false`);
  }
  return raw;
}

/**
 * Merge `over` into `base`, checking every key exists, has the default's type, and is given once
 * (`seen`: "checkpoint.compression" and {"checkpoint": {"compression"}} are the same key).
 */
function merge(base: Obj, over: Obj, source: string, prefix = "", seen = new Set<string>()): void {
  for (const [k, v] of Object.entries(over)) {
    // "checkpoint.compression": "zstd" as the docs write it, same as {"checkpoint": {"compression": ...}}
    if (k.includes(".") && !Object.hasOwn(base, k)) {
      const [head, ...rest] = k.split(".");
      if (!Object.hasOwn(base, head)) throw invalidArgument(`${source}: unknown key "${prefix}${k}"`);
      merge(base, { [head]: { [rest.join(".")]: v } }, source, prefix, seen);
      continue;
    }
    const key = `${prefix}${k}`;
    // (own keys only: "toString" or "__proto__" are unknown keys, not inherited ones)
    if (!Object.hasOwn(base, k)) throw invalidArgument(`${source}: unknown key "${key}"`);
    if (isObj(base[k])) {
      if (!isObj(v)) throw invalidArgument(`${source}: "${key}" must be an object`);
      merge(base[k] as Obj, v, source, `${key}.`, seen);
    } else if (typeof v !== typeof base[k]) {
      throw invalidArgument(`${source}: "${key}" must be a ${typeof base[k]}`);
    } else if (seen.has(key)) {
      throw invalidArgument(`${source}: "${key}" is given twice`);
    } else {
      seen.add(key);
      base[k] = v;
    }
  }
}

export interface LoadOptions {
  configDir?: string;
  env?: Record<string, string>;
  /** Flat overrides from flags, e.g. { address: "/tmp/x.sock", "db.path": "/tmp/x.db" }. */
  flags?: Record<string, unknown>;
}

export function configDir(opts: LoadOptions = {}): string {
  const env = opts.env ?? Deno.env.toObject();
  return opts.configDir ?? env.CEDANA_CONFIG_DIR ?? DEFAULT_CONFIG_DIR;
}

export function loadConfig(opts: LoadOptions = {}): Config {
  const env = opts.env ?? Deno.env.toObject();
  const cfg = defaults() as unknown as Obj;
  const file = `${configDir(opts).replace(/\/+$/, "")}/config.json`; // (no node:path: the CLI fast path avoids Node compat start-up)
  let text: string | undefined;
  try {
    text = Deno.readTextFileSync(file);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) {
      throw invalidArgument(`cannot read ${file}: ${(e as Error).message}`);
    }
  }
  if (text !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (e) {
      throw invalidArgument(`${file} is not valid JSON: ${(e as Error).message}`);
    }
    if (!isObj(parsed)) throw invalidArgument(`${file} must hold a JSON object`);
    merge(cfg, parsed, file);
  }
  for (const [key, like] of leaves(defaults() as unknown as Obj)) {
    const raw = env[envName(key)];
    if (raw !== undefined) setPath(cfg, key, parseValue(key, raw, like, envName(key)));
  }
  for (const [key, v] of Object.entries(opts.flags ?? {})) if (v !== undefined) setPath(cfg, key, v);
  try {
    return checked(cfg as unknown as Config);
  } catch (e) {
    // (a bad value says where it came from when that was the environment)
    const key = configKeys().find((k) => (e as Error).message.startsWith(`${k} `));
    const flagged = key !== undefined && opts.flags?.[key] !== undefined;
    if (key && !flagged && env[envName(key)] !== undefined) (e as Error).message += ` (from ${envName(key)})`;
    throw e;
  }
}

/** Values checked, paths made absolute. */
function checked(out: Config): Config {
  if (!["auto", "full"].includes(out.checkpoint.verify)) {
    throw invalidArgument(`checkpoint.verify must be auto or full (got "${out.checkpoint.verify}")`);
  }
  out.log_level = out.log_level.toLowerCase() as Config["log_level"];
  if (!["debug", "info", "warn", "error"].includes(out.log_level)) {
    throw invalidArgument(`log_level must be one of debug, info, warn, error (got "${out.log_level}")`);
  }
  // (checked here, where the daemon starts, rather than at the first dump that uses them)
  const compression = out.checkpoint.compression;
  if (!(COMPRESSION_NAMES as readonly string[]).includes(compression)) {
    throw invalidArgument(
      `checkpoint.compression must be one of ${COMPRESSION_NAMES.join(", ")} (got "${compression}")`,
    );
  }
  if (!Number.isInteger(out.gpu.lock_timeout) || out.gpu.lock_timeout <= 0) {
    throw invalidArgument(
      `gpu.lock_timeout must be a positive number of milliseconds (got ${out.gpu.lock_timeout})`,
    );
  }
  if (typeof out.client.timeout !== "number" || !(out.client.timeout >= 0)) {
    throw invalidArgument(
      `client.timeout must be a number of seconds, 0 for no limit (got ${out.client.timeout})`,
    );
  }
  if (!Number.isInteger(out.criu.log_level) || out.criu.log_level < 0 || out.criu.log_level > 4) {
    throw invalidArgument(`criu.log_level must be 0 to 4 (got ${out.criu.log_level})`);
  }
  // Paths: never empty (an empty DB path is a throw-away SQLite DB; an empty output_dir puts logs
  // in /); a relative one is taken from where cedana runs, once, so later uses agree.
  const cwd = () => Deno.cwd();
  const paths: [string, () => string, (v: string) => void][] = [
    ["address", () => out.address, (v) => out.address = v],
    ["db.path", () => out.db.path, (v) => out.db.path = v],
    ["output_dir", () => out.output_dir, (v) => out.output_dir = v],
    ["checkpoint.dir", () => out.checkpoint.dir, (v) => out.checkpoint.dir = v],
  ];
  for (const [key, get, set] of paths) {
    const v = get();
    if (v.trim() === "") throw invalidArgument(`${key} must not be empty`);
    if (!v.startsWith("/")) set(`${cwd().replace(/\/+$/, "")}/${v.replace(/^\.\//, "")}`);
  }
  return out;
}
