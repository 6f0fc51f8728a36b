// Locating and probing CRIU. Checkpoint/restore option building lives beside this (next issue).

import type { Config } from "../config/mod.ts";
import { runCommand } from "../sys/command.ts";

export const MIN_CRIU = [4, 2] as const;

/** The CRIU binary to use: config criu.binary_path, else `criu` on PATH (also /usr/local/sbin etc). */
export function findCriu(config: Config): string | null {
  if (config.criu.binary_path) return config.criu.binary_path;
  const dirs = (Deno.env.get("PATH") ?? "").split(":").concat([
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/sbin",
  ]);
  for (const d of dirs) {
    try {
      if (Deno.statSync(`${d}/criu`).isFile) return `${d}/criu`;
    } catch { /* next */ }
  }
  return null;
}

async function output(bin: string, args: string[]): Promise<{ ok: boolean; text: string }> {
  const r = await runCommand(bin, args);
  return { ok: r.success, text: r.stdout + r.stderr };
}

export async function criuVersion(bin: string): Promise<string | null> {
  const { text } = await output(bin, ["--version"]);
  return /Version:\s*(\S+)/.exec(text)?.[1] ?? null;
}

export function versionAtLeast(v: string, min: readonly number[]): boolean {
  const parts = v.split(".").map((x) => parseInt(x, 10) || 0);
  for (let i = 0; i < min.length; i++) {
    if ((parts[i] ?? 0) !== min[i]) return (parts[i] ?? 0) > min[i];
  }
  return true;
}

/** `criu check`; the RLIMIT_NOFILE complaint without CAP_SYS_RESOURCE is harmless and dropped. */
export async function criuCheck(bin: string): Promise<{ ok: boolean; lines: string[] }> {
  const { ok, text } = await output(bin, ["check"]);
  const lines = text.split("\n").map((l) => l.trim()).filter((l) => l && !l.includes("RLIMIT_NOFILE"));
  return { ok, lines };
}
