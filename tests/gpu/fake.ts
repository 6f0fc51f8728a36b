/**
 * Builds the test doubles of libcuda (fake_cuda.c) and NVML (fake_nvml.c) with gcc. Each build
 * is cached by a hash of its source and flags under $TMPDIR/cedana-fake-gpu, so a test run
 * compiles each at most once, and parallel test processes agree on the result (each compiles
 * to a private name and renames into place).
 */
import { fileURLToPath } from "node:url";

const HERE = new URL(".", import.meta.url);
const CACHE = `${Deno.env.get("TMPDIR") || "/tmp"}/cedana-fake-gpu`;

/** Builds a shared library from tests/gpu/<source> once per source+flags; returns its path. */
async function build(source: string, output: string, flags: string[] = []): Promise<string> {
  const src = fileURLToPath(new URL(source, HERE));
  const text = await Deno.readFile(src);
  const digest = await crypto.subtle.digest(
    "SHA-256",
    new Uint8Array([...text, ...new TextEncoder().encode("\0" + flags.join(" "))]),
  );
  const hash = Array.from(new Uint8Array(digest).subarray(0, 8), (b) => b.toString(16).padStart(2, "0"))
    .join("");
  const dir = `${CACHE}/${hash}`;
  const path = `${dir}/${output}`;
  try {
    await Deno.stat(path);
    return path;
  } catch {
    // not built yet
  }
  await Deno.mkdir(dir, { recursive: true });
  const tmp = `${path}.${Deno.pid}.tmp`;
  const out = await new Deno.Command("gcc", {
    args: ["-shared", "-fPIC", "-O2", "-Wall", "-Wextra", ...flags, "-o", tmp, src],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new Error(`gcc failed to build ${source}:\n${new TextDecoder().decode(out.stderr)}`);
  }
  await Deno.rename(tmp, path);
  return path;
}

export interface FakeCudaOptions {
  /** Build without cuGetErrorName/cuGetErrorString (they are optional for the caller). */
  noErrorNames?: boolean;
}

/** Path of libfake_cuda.so, the libcuda test double (see fake_cuda.c for its environment). */
export function buildFakeCuda(opts: FakeCudaOptions = {}): Promise<string> {
  return opts.noErrorNames
    ? build("fake_cuda.c", "libfake_cuda.so", ["-DFAKE_CUDA_NO_ERROR_NAMES"])
    : build("fake_cuda.c", "libfake_cuda.so");
}

/** Path of libfake_nvml.so, the NVML test double (see fake_nvml.c for its environment). */
export function buildFakeNvml(): Promise<string> {
  return build("fake_nvml.c", "libfake_nvml.so");
}

/** One line of $FAKE_CUDA_STATE_DIR/calls.log. */
export interface FakeCall {
  op: string;
  pid: number;
  rc: number;
}

/** The calls the fake logged in `stateDir`, oldest first ([] before the first call). */
export function readCalls(stateDir: string): FakeCall[] {
  let text = "";
  try {
    text = Deno.readTextFileSync(`${stateDir}/calls.log`);
  } catch {
    return [];
  }
  return text.split("\n").filter((l) => l !== "").map((line) => {
    const [op, pid, , rc] = line.split(" ");
    return { op, pid: Number(pid), rc: Number(rc) };
  });
}

/** The fake's state of `pid` as stored in `stateDir` (0 running .. 3 failed), null when none. */
export function readFakeState(stateDir: string, pid: number): { state: number; poisoned: boolean } | null {
  try {
    const [state, poisoned] = Deno.readTextFileSync(`${stateDir}/${pid}`).trim().split(" ").map(Number);
    return { state, poisoned: poisoned === 1 };
  } catch {
    return null;
  }
}

/**
 * Runs one of the GPU-machine scripts (cedana_on_gpu.sh, container_on_gpu.sh) here with the fake
 * driver, with WORK a new directory `w` that also holds `lib/libcuda.so.1` (the fake, for LD_PRELOAD into the
 * workload: `appCmd(w)` gives the workload's command), `state/` (the fake's state) and a `cedana`
 * launcher for this checkout. Returns the exit code and everything the script printed.
 */
export async function runGpuScript(
  script: string,
  appCmd: (w: string) => string,
  env: Record<string, string> = {},
): Promise<{ code: number; text: string }> {
  const cuda = await buildFakeCuda();
  const nvml = await buildFakeNvml();
  const w = Deno.makeTempDirSync({ prefix: "cedana-fakegpu-" });
  try {
    Deno.mkdirSync(`${w}/lib`);
    Deno.mkdirSync(`${w}/state`);
    Deno.copyFileSync(cuda, `${w}/lib/libcuda.so.1`);
    const main = new URL("../../main.ts", import.meta.url).pathname;
    Deno.writeTextFileSync(
      `${w}/cedana`,
      `#!/bin/sh\nexec "${Deno.execPath()}" run -A --quiet ${main} "$@"\n`,
      {
        mode: 0o755,
      },
    );
    const out = await new Deno.Command("bash", {
      args: [new URL(script, import.meta.url).pathname],
      env: {
        CEDANA: `${w}/cedana`,
        CEDANA_CUDA_LIB: cuda,
        CEDANA_NVML_LIB: nvml,
        FAKE_CUDA_STATE_DIR: `${w}/state`,
        FAKE_GPU: "1",
        WORK: w, // (a container sees it at the same path: the fake library must be in it)
        APP_CMD: appCmd(w),
        ...env,
      },
      stdout: "piped",
      stderr: "piped",
    }).output();
    let text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    if (out.code !== 0) { // (the work dir goes: keep what tells why)
      try {
        text += `\n--- daemon log ---\n${Deno.readTextFileSync(`${w}/daemon.log`).slice(-8000)}`;
      } catch { /* none */ }
    }
    return { code: out.code, text };
  } finally {
    Deno.removeSync(w, { recursive: true });
  }
}

/**
 * A torch-less stand-in for app.py for runGpuScript: one process (no children) preloading the
 * fake libcuda, printing app.py's step lines ("i i i 7") every 0.1 s.
 */
export const tickingApp = (w: string) =>
  `exec env LD_PRELOAD=${w}/lib/libcuda.so.1 python3 -u -c 'import time
i = 0
while True:
    i += 1; print(i, i, i, 7, flush=True); time.sleep(0.1)'`;
