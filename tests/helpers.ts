// Black-box test harness: a real daemon on a temp socket with a temp DB and config dir, driven
// through the real CLI (`deno run -A main.ts ...`).

import { spawn } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { fileURLToPath as fromFileUrl } from "node:url";

export const MAIN = fromFileUrl(new URL("../main.ts", import.meta.url));
export const ROOT = fromFileUrl(new URL("..", import.meta.url));

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export class TestDaemon {
  readonly dir: string;
  readonly env: Record<string, string>;
  pid = 0;
  #exited: Promise<number | null> | null = null;

  constructor(extraEnv: Record<string, string> = {}) {
    this.dir = Deno.makeTempDirSync({ prefix: "cedana-test-" });
    this.env = {
      CEDANA_ADDRESS: `${this.dir}/cedana.sock`,
      CEDANA_DB_PATH: `${this.dir}/cedana.db`,
      CEDANA_CONFIG_DIR: `${this.dir}/config`,
      CEDANA_OUTPUT_DIR: `${this.dir}/logs`,
      CEDANA_CHECKPOINT_DIR: `${this.dir}/checkpoints`,
      CEDANA_LOG_LEVEL: "debug",
      NO_COLOR: "1",
      ...extraEnv,
    };
    for (const d of ["config", "logs", "checkpoints"]) Deno.mkdirSync(`${this.dir}/${d}`);
  }

  get socket(): string {
    return this.env.CEDANA_ADDRESS;
  }

  get daemonLog(): string {
    try {
      return Deno.readTextFileSync(`${this.dir}/daemon.log`);
    } catch {
      return "";
    }
  }

  /** Starts `cedana daemon start` in its own session and waits until it answers. */
  async start(): Promise<void> {
    const fd = openSync(`${this.dir}/daemon.log`, "a");
    const child = spawn(Deno.execPath(), ["run", "-A", "--quiet", MAIN, "daemon", "start"], {
      env: { ...Deno.env.toObject(), ...this.env },
      detached: true,
      stdio: ["ignore", fd, fd],
    });
    closeSync(fd);
    this.pid = child.pid!;
    this.#exited = new Promise((res) => child.once("exit", (code) => res(code)));
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline) {
      if (
        (await this.cli("daemon", "check", "--json")).stdout.includes('"name": "daemon",\n      "ok": true')
      ) return;
      const r = await Promise.race([this.#exited, new Promise((res) => setTimeout(() => res("wait"), 100))]);
      if (r !== "wait") throw new Error(`daemon exited early (code ${r}):\n${this.daemonLog}`);
    }
    throw new Error(`daemon did not come up:\n${this.daemonLog}`);
  }

  /** SIGTERM, like systemd would; resolves with the daemon's exit code. */
  async stop(signal: Deno.Signal = "SIGTERM"): Promise<number | null> {
    if (!this.#exited) return null;
    try {
      Deno.kill(this.pid, signal);
    } catch { /* already gone */ }
    const code = await this.#exited;
    this.#exited = null;
    return code;
  }

  /** Resolves with the exit code of a daemon that stops by itself (`daemon stop`); null in `ms`. */
  async exited(ms = 15_000): Promise<number | null | "running"> {
    if (!this.#exited) return null;
    const r = await Promise.race([this.#exited, sleep(ms).then(() => "running" as const)]);
    if (r !== "running") this.#exited = null;
    return r;
  }

  async cli(...args: string[]): Promise<CliResult> {
    return await this.cliWith({}, ...args);
  }

  async cliWith(opts: { stdin?: string; cwd?: string; env?: Record<string, string> }, ...args: string[]) {
    const cmd = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--quiet", MAIN, ...args],
      env: { ...this.env, ...opts.env },
      cwd: opts.cwd ?? this.dir,
      stdin: opts.stdin !== undefined ? "piped" : "null",
      stdout: "piped",
      stderr: "piped",
    });
    const child = cmd.spawn();
    if (opts.stdin !== undefined) {
      const w = child.stdin.getWriter();
      await w.write(new TextEncoder().encode(opts.stdin));
      await w.close();
    }
    const out = await child.output();
    const dec = new TextDecoder();
    return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
  }

  /** `cli` that must succeed; returns stdout. */
  async ok(...args: string[]): Promise<string> {
    const r = await this.cli(...args);
    if (r.code !== 0) throw new Error(`cedana ${args.join(" ")} failed (${r.code}):\n${r.stderr}${r.stdout}`);
    return r.stdout;
  }

  async json<T>(...args: string[]): Promise<T> {
    const i = args.indexOf("--");
    const withJson = i < 0 ? [...args, "--json"] : [...args.slice(0, i), "--json", ...args.slice(i)];
    return JSON.parse(await this.ok(...withJson)) as T;
  }

  readonly #cleanups: (() => void)[] = [];

  /** Runs `fn` at cleanup (before the jobs are killed): for what a test started itself. */
  onCleanup(fn: () => void): void {
    this.#cleanups.push(fn);
  }

  /** Kills every job and stops the daemon; keeps the temp dir when KEEP_TEST_DIRS is set. */
  async cleanup(): Promise<void> {
    for (const fn of this.#cleanups.splice(0)) {
      try {
        fn();
      } catch { /* (what it stops may be gone already: the daemon and its jobs still go below) */ }
    }
    if (this.#exited) {
      await this.cli("job", "kill", "--all");
      // let the daemon see the exits (and release the jobs' keepers) before it stops
      const deadline = Date.now() + 5000;
      while (Date.now() < deadline) {
        const r = await this.cli("ps", "--json");
        if (
          r.code !== 0 || (JSON.parse(r.stdout) as { status: string }[]).every((j) => j.status === "halted")
        ) break;
        await sleep(100);
      }
    }
    await this.stop();
    if (!Deno.env.get("KEEP_TEST_DIRS")) Deno.removeSync(this.dir, { recursive: true });
  }
}

/** A test body with a fresh daemon, cleaned up afterwards whatever happens. */
/**
 * `args` run by a daemon that SIGKILLs itself at `fault` (see src/daemon/fault.ts) and fail; then a
 * healthy daemon starts on the same DB, as after a crash.
 */
export async function crashDuring(d: TestDaemon, fault: string, ...args: string[]): Promise<void> {
  await d.stop();
  d.env.CEDANA_FAULT = fault;
  try {
    await d.start();
    const r = await d.cli(...args);
    if (r.code === 0) {
      throw new Error(`cedana ${args.join(" ")} succeeded: the daemon did not die at ${fault}`);
    }
  } finally {
    delete d.env.CEDANA_FAULT;
  }
  await d.start();
}

export function withDaemon(fn: (d: TestDaemon) => Promise<void>): () => Promise<void> {
  return async () => {
    const d = new TestDaemon();
    await d.start();
    try {
      await fn(d);
    } catch (e) {
      console.error(`--- daemon log (${d.dir}) ---\n${d.daemonLog}`);
      throw e;
    } finally {
      await d.cleanup();
    }
  };
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `fn` until it returns a truthy value or the time is up. */
export async function waitFor<T>(
  fn: () => T | Promise<T>,
  what: string,
  timeoutMs = 10_000,
): Promise<Exclude<T, false | null | undefined | 0 | "">> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v as Exclude<T, false | null | undefined | 0 | "">;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

export function pidAlive(pid: number): boolean {
  try {
    const st = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return !/\) [ZX] /.test(st);
  } catch {
    return false;
  }
}

export const opts = { sanitizeOps: false, sanitizeResources: false } as const;

/** What `cedana job attach JID --no-stdin` prints, until `enough` says so or `timeoutMs` pass. */
export async function attachedOutput(
  d: TestDaemon,
  jid: string,
  enough: (text: string) => boolean,
  timeoutMs = 20_000,
): Promise<string> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", MAIN, "job", "attach", jid, "--no-stdin"],
    env: d.env,
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const reader = child.stdout.getReader();
  const dec = new TextDecoder();
  let text = "";
  const deadline = Date.now() + timeoutMs;
  try {
    while (Date.now() < deadline) {
      const r = await Promise.race([reader.read(), sleep(deadline - Date.now()).then(() => null)]);
      if (!r || r.done) break;
      text += dec.decode(r.value, { stream: true });
      if (enough(text)) break;
    }
  } finally {
    child.kill("SIGKILL");
    await child.status;
  }
  return text;
}

/** `cedana job attach jid` with its stdin a pipe the test writes to (its output is dropped). */
export function typingClient(d: TestDaemon, jid: string): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", MAIN, "job", "attach", jid],
    env: d.env,
    stdin: "piped",
    stdout: "null",
    stderr: "null",
  }).spawn();
}
