// Shared helpers for the benchmarks in bench/ (not part of the test suite).
import { MAIN, TestDaemon } from "../tests/helpers.ts";

export { MAIN, TestDaemon };

export interface Stats {
  n: number;
  min: number;
  median: number;
  p90: number;
  max: number;
  mean: number;
}

export function stats(xs: number[]): Stats {
  const s = [...xs].sort((a, b) => a - b);
  // Nearest-rank percentiles.
  const q = (p: number) => s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))];
  return {
    n: s.length,
    min: s[0],
    median: s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2,
    p90: q(0.9),
    max: s[s.length - 1],
    mean: s.reduce((a, b) => a + b, 0) / s.length,
  };
}

export function row(name: string, xs: number[], goal?: number): string {
  const st = stats(xs);
  const f = (v: number) => v.toFixed(1).padStart(7);
  const verdict = goal === undefined
    ? ""
    : st.median < goal
    ? `  PASS (< ${goal} ms)`
    : `  MISS (goal < ${goal} ms)`;
  return `${name.padEnd(48)} n=${String(st.n).padStart(3)}  median ${f(st.median)}  p90 ${f(st.p90)}  min ${
    f(st.min)
  }  max ${f(st.max)} ms${verdict}`;
}

/**
 * JSON over HTTP on the daemon's Unix socket, like src/client does (same URL host, "cedana", by
 * default). Note: Deno resolves the URL's host name through DNS even though it connects to the
 * Unix socket; pass host "127.0.0.1" to skip that.
 */
export class Api {
  readonly client: Deno.HttpClient;
  constructor(readonly socket: string, readonly host = "cedana") {
    this.client = Deno.createHttpClient({ proxy: { transport: "unix", path: socket } });
  }
  async call<T>(
    method: string,
    path: string,
    body?: unknown,
  ): Promise<{ status: number; data: T; bytes: number }> {
    const res = await fetch(`http://${this.host}${path}`, {
      method,
      client: this.client,
      headers: body !== undefined ? { "content-type": "application/json" } : undefined,
      body: body !== undefined ? JSON.stringify(body) : undefined,
    });
    const text = await res.text();
    const data = JSON.parse(text) as T;
    if (!res.ok) throw new Error(`${method} ${path}: HTTP ${res.status} ${text}`);
    return { status: res.status, data, bytes: text.length };
  }
  close() {
    this.client.close();
  }
}

/** Wall time of one whole CLI invocation (`deno run -A main.ts ARGS`), stdout/stderr discarded. */
export async function timeCli(d: TestDaemon, ...args: string[]): Promise<number> {
  const cmd = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", MAIN, ...args],
    env: d.env,
    cwd: d.dir,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  });
  const t0 = performance.now();
  const out = await cmd.output();
  const ms = performance.now() - t0;
  if (out.code !== 0) {
    throw new Error(`cedana ${args.join(" ")} failed (${out.code}): ${new TextDecoder().decode(out.stderr)}`);
  }
  return ms;
}

/** A daemon like the tests', but logging at info (debug logs a line per request). */
export async function startDaemon(): Promise<TestDaemon> {
  const d = new TestDaemon({ CEDANA_LOG_LEVEL: Deno.env.get("CEDANA_LOG_LEVEL") ?? "info" });
  await d.start();
  return d;
}

export function machine(): string {
  const cpus =
    Deno.readTextFileSync("/proc/cpuinfo").split("\n").filter((l) => l.startsWith("processor")).length;
  const model = /model name\s*:\s*(.*)/.exec(Deno.readTextFileSync("/proc/cpuinfo"))?.[1] ?? "?";
  let os = "?";
  try {
    os = /PRETTY_NAME="([^"]*)"/.exec(Deno.readTextFileSync("/etc/os-release"))?.[1] ?? "?";
  } catch { /* */ }
  return `${os}, kernel ${Deno.osRelease()}, ${cpus} CPU (${model}), deno ${Deno.version.deno}`;
}

export const intEnv = (name: string, dflt: number) => Number(Deno.env.get(name) ?? dflt);
