/**
 * Drives one GPU checkpoint/restore of a live CUDA process through src/gpu, on a real GPU
 * machine (run_on_gpu.sh runs it; see README.md here), and prints the timing of each step:
 *
 *   lock -> checkpoint -> criu dump -j -t PID -> criu restore -j -d -> restore -> unlock
 *
 * With --gpu-only the CRIU steps are left out (the process stays alive throughout): a check of
 * the driver calls alone. Exits 1 on the first failure, after a best-effort attempt to leave the
 * process running. The last line is "RESULT {json}".
 *
 * Usage: deno run -A tests/gpu/probe.ts --pid PID [--images DIR] [--criu PATH] [--gpu-only]
 *        [--lock-timeout MS]
 */
import { parseArgs } from "node:util";
import { descendants, readStat } from "../../src/proc/mod.ts";
import {
  CudaDriver,
  type CudaProcessState,
  findCudaPids,
  freeGpuMemory,
  gpuMemory,
  processGpuMemory,
} from "../../src/gpu/mod.ts";

const { values } = parseArgs({
  options: {
    pid: { type: "string" },
    images: { type: "string" },
    criu: { type: "string", default: Deno.env.get("CRIU") || "criu" },
    "gpu-only": { type: "boolean", default: false },
    "lock-timeout": { type: "string", default: "10000" },
  },
});
const pid = Number(values.pid);
if (!Number.isInteger(pid) || pid <= 0) usage("--pid PID is required");
const gpuOnly = values["gpu-only"];
if (!gpuOnly && !values.images) usage("--images DIR is required unless --gpu-only");
const images = values.images ?? "";
const criu = values.criu;
const lockTimeout = Number(values["lock-timeout"]);

function usage(msg: string): never {
  console.error(`probe: ${msg}\nusage: probe.ts --pid PID [--images DIR] [--criu PATH] [--gpu-only]`);
  Deno.exit(2);
}

const timings: Record<string, number> = {};
const facts: Record<string, unknown> = { pid, gpuOnly };
const log = (msg: string) => console.log(`[probe +${(performance.now() / 1000).toFixed(2)}s] ${msg}`);

/** Runs `fn`, records its duration under `name`, and logs it. */
async function step<T>(name: string, fn: () => Promise<T> | T): Promise<T> {
  const t0 = performance.now();
  const result = await fn();
  timings[name] = performance.now() - t0;
  log(`${name}: ${fmtMs(timings[name])}`);
  return result;
}

function fmtMs(ms: number): string {
  return ms < 10 ? `${ms.toFixed(1)} ms` : ms < 1000 ? `${ms.toFixed(0)} ms` : `${(ms / 1000).toFixed(2)} s`;
}

const GIB = 2 ** 30;
const fmtBytes = (b: number | null) => b === null ? "n/a" : `${(b / GIB).toFixed(2)} GiB`;

function nvidiaFds(p: number): number {
  let n = 0;
  for (const e of Deno.readDirSync(`/proc/${p}/fd`)) {
    try {
      if (Deno.readLinkSync(`/proc/${p}/fd/${e.name}`).startsWith("/dev/nvidia")) n++;
    } catch { /* closed meanwhile */ }
  }
  return n;
}

function alive(p: number): boolean {
  try {
    // A zombie still has /proc/PID, but it holds the pid, which is what restore needs free.
    Deno.statSync(`/proc/${p}`);
    return true;
  } catch {
    return false;
  }
}

function expectState(cuda: CudaDriver, want: CudaProcessState): void {
  const got = cuda.state(pid);
  if (got !== want) throw new Error(`expected the process to be ${want}, the driver says ${got}`);
}

async function runCriu(args: string[]): Promise<void> {
  const out = await new Deno.Command(criu, { args, stdin: "null", stdout: "piped", stderr: "piped" })
    .output();
  if (out.success) return;
  const dec = new TextDecoder();
  const logName = args[args.indexOf("-o") + 1];
  let errors: string[] = [];
  try {
    errors = Deno.readTextFileSync(`${images}/${logName}`).split("\n").filter((l) => /Error|error/.test(l));
  } catch { /* no log */ }
  throw new Error(
    `criu ${args[0]} failed (exit ${out.code}):\n${dec.decode(out.stdout)}${dec.decode(out.stderr)}` +
      errors.slice(-20).join("\n"),
  );
}

function duBytes(dir: string): number {
  let total = 0;
  for (const e of Deno.readDirSync(dir)) if (e.isFile) total += Deno.statSync(`${dir}/${e.name}`).size;
  return total;
}

/** How many times a 10 ms timer fired while `p` ran: the driver call must not block the loop. */
async function withTicks<T>(p: () => Promise<T>): Promise<{ result: T; ticks: number }> {
  let ticks = 0;
  const timer = setInterval(() => ticks++, 10);
  try {
    return { result: await p(), ticks };
  } finally {
    clearInterval(timer);
  }
}

const cuda = await step("driver load + cuInit", () => CudaDriver.load());
log(`driver ${cuda.path}: CUDA ${cuda.versionString} (${cuda.version})`);
facts.driverVersion = cuda.version;
facts.gpus = gpuMemory();
const cudaPids = findCudaPids(pid);
log(`CUDA processes in the tree of ${pid}: ${cudaPids.join(" ") || "none"}`);
if (!cudaPids.includes(pid)) throw new Error(`findCudaPids(${pid}) does not find ${pid}`);
const used = processGpuMemory(pid);
facts.gpuMemoryBefore = used;
log(`process GPU memory ${fmtBytes(used)}, free GPU memory ${fmtBytes(freeGpuMemory())}`);
log(`nvidia fds before: ${nvidiaFds(pid)}`);
expectState(cuda, "running");

let phase: "running" | "locked" | "checkpointed" | "dumped" = "running";
try {
  await step("lock", () => cuda.lock(pid, lockTimeout));
  phase = "locked";
  expectState(cuda, "locked");
  const ck = await withTicks(() => step("gpu checkpoint", () => cuda.checkpoint(pid)));
  phase = "checkpointed";
  log(`event-loop ticks during the GPU checkpoint: ${ck.ticks} (10 ms timer)`);
  facts.ticksDuringCheckpoint = ck.ticks;
  expectState(cuda, "checkpointed");
  const fdsAfter = nvidiaFds(pid);
  facts.nvidiaFdsAfterCheckpoint = fdsAfter;
  log(`nvidia fds after checkpoint: ${fdsAfter}; process GPU memory ${fmtBytes(processGpuMemory(pid))}`);
  if (fdsAfter !== 0) log("WARNING: a checkpointed process should hold no /dev/nvidia* fds");
  if (!findCudaPids(pid).includes(pid)) throw new Error("findCudaPids misses the checkpointed process");

  if (!gpuOnly) {
    Deno.mkdirSync(images, { recursive: true });
    const tree = [pid, ...descendants(pid)];
    log(`process tree: ${tree.map((p) => `${p} (${readStat(p)?.comm})`).join(", ")}`);
    await step(
      "criu dump",
      () => runCriu(["dump", "-j", "-t", String(pid), "-D", images, "-o", "dump.log", "-v4"]),
    );
    phase = "dumped";
    facts.imageBytes = duBytes(images);
    log(`image: ${fmtBytes(facts.imageBytes as number)}`);
    // criu dump kills the tree; restore needs every pid of it back, so wait until all are reaped
    // (children of the root are orphans then: init may take seconds to reap them).
    await step("wait for the pids to be free", async () => {
      for (let i = 0; i < 1200 && tree.some(alive); i++) await new Promise((r) => setTimeout(r, 50));
      const left = tree.filter(alive);
      if (left.length) {
        throw new Error(`pids ${left.join(" ")} still exist 60 s after the dump (unreaped zombies?)`);
      }
    });
    // What a daemon should do before a restore: compare the GPU memory the process had with free.
    const free = freeGpuMemory();
    log(`free GPU memory before restore ${fmtBytes(free)}, needed ${fmtBytes(used)}`);
    if (free !== null && used !== null && free < used) {
      throw new Error("not enough free GPU memory to restore");
    }
    await step(
      "criu restore",
      () => runCriu(["restore", "-j", "-d", "-D", images, "-o", "restore.log", "-v4"]),
    );
    phase = "checkpointed";
    if (!alive(pid)) throw new Error(`criu restore succeeded but pid ${pid} is not there`);
    expectState(cuda, "checkpointed");
  }

  await step("gpu restore", () => cuda.restore(pid));
  phase = "locked";
  expectState(cuda, "locked");
  try {
    log(`restore thread id: ${cuda.restoreThreadId(pid)}`);
  } catch (e) {
    log(`restore thread id: ${e instanceof Error ? e.message : e}`);
  }
  await step("unlock", () => cuda.unlock(pid));
  phase = "running";
  expectState(cuda, "running");
  facts.gpuMemoryAfter = processGpuMemory(pid);
  log(
    `nvidia fds after: ${nvidiaFds(pid)}; process GPU memory ${
      fmtBytes(facts.gpuMemoryAfter as number | null)
    }`,
  );
} catch (e) {
  log(`FAILED in phase ${phase}: ${e instanceof Error ? e.message : e}`);
  // Leave the process running if we can, so the machine is not left with a stuck job.
  if (phase === "checkpointed") {
    await cuda.restore(pid).catch((err) => log(`cleanup restore: ${err.message}`));
  }
  if (phase === "locked" || phase === "checkpointed") {
    await cuda.unlock(pid).catch((err) => log(`cleanup unlock: ${err.message}`));
  }
  console.log(`RESULT ${JSON.stringify({ ok: false, phase, error: String(e), timings, facts })}`);
  Deno.exit(1);
}

console.log(`RESULT ${JSON.stringify({ ok: true, timings, facts })}`);
