// GPU steps of a dump and a restore, through the CUDA driver's process checkpoint API:
//   dump:    lock -> checkpoint (GPU memory moves into host memory) -> [CRIU dump] -> (leave
//            running, or failure: restore -> unlock, so the job goes on as before)
//   restore: enough free GPU memory? -> [CRIU restore] -> restore -> unlock; a failed GPU
//            restore cannot be retried in that process: the job is killed and reported failed.
// The driver is loaded once per daemon (cuInit costs ~200 ms) and only when a GPU job is touched.

import { CudaDriver, findCudaPids, freeGpuMemory, processGpuMemory } from "../../gpu/mod.ts";
import { failedPrecondition } from "../../errors.ts";
import { descendants, killAll } from "../../proc/mod.ts";
import { humanBytes } from "./format.ts";
import type { CrHost } from "./host.ts";
import type { JobRow } from "../db.ts";

export interface GpuManifest {
  pids: number[];
  /** Each CUDA process's PID inside its own PID namespace: a container restored by runc or
   * containerd gets new host PIDs but the same in-namespace ones, which tell them apart. */
  nspids?: Record<string, number>;
  /** GPU memory each process held before the checkpoint (bytes; null when NVML cannot tell). */
  memory: Record<string, number | null>;
  total: number;
  driverVersion: number;
}

export interface GpuDump {
  driver: CudaDriver;
  pids: number[];
  manifest: GpuManifest;
}

/** The CUDA processes of a tree, or null when it has none (then no GPU step runs). */
/** (A job marked --gpu-enabled that holds no CUDA context right now gets a plain dump.) */
export function detectGpu(rootPid: number): GpuDump | null {
  const pids = findCudaPids(rootPid);
  if (!pids.length) return null;
  const driver = CudaDriver.load();
  const memory: Record<string, number | null> = {};
  for (const pid of pids) memory[pid] = processGpuMemory(pid);
  const total = Object.values(memory).reduce<number>((a, b) => a + (b ?? 0), 0);
  const nspids: Record<string, number> = {};
  for (const pid of pids) nspids[pid] = nsPid(pid) ?? pid;
  return { driver, pids, manifest: { pids, memory, total, driverVersion: driver.version, nspids } };
}

export async function lockAll(g: GpuDump, timeoutMs: number, undo: (fn: () => Promise<void>) => void) {
  for (const pid of g.pids) {
    await g.driver.lock(pid, timeoutMs);
    undo(() => g.driver.unlock(pid));
  }
}

export async function checkpointAll(g: GpuDump, undo: (fn: () => Promise<void>) => void) {
  for (const pid of g.pids) {
    await g.driver.checkpoint(pid);
    undo(() => g.driver.restore(pid));
  }
}

/** After a leave-running dump: the processes continue on the GPU. */
export async function resumeAll(g: GpuDump) {
  for (const pid of g.pids) await g.driver.restore(pid);
  for (const pid of g.pids) await g.driver.unlock(pid);
}

/** Before CRIU restores anything: refuse early when the GPU cannot take the job back. */
export function checkGpuRoom(m: GpuManifest): CudaDriver {
  const driver = CudaDriver.load();
  const free = freeGpuMemory();
  if (free !== null && m.total > free) {
    throw failedPrecondition(
      `not enough free GPU memory to restore: the checkpoint needs ${humanBytes(m.total)}, the GPU has ${
        humanBytes(free)
      } free`,
    );
  }
  return driver;
}

/** The innermost PID of a process (last field of NSpid in /proc/PID/status). */
function nsPid(pid: number): number | null {
  try {
    const line = Deno.readTextFileSync(`/proc/${pid}/status`).split("\n").find((l) => l.startsWith("NSpid:"));
    return line ? Number(line.trim().split(/\s+/).at(-1)) : null;
  } catch {
    return null;
  }
}

/**
 * The host PIDs of the dumped CUDA processes now. A process restore keeps them; a container's
 * restored tree (rooted at `root`) is matched by in-namespace PID.
 */
export function currentPids(m: GpuManifest, root: number, samePids: boolean): number[] {
  if (samePids || !m.nspids) return m.pids;
  const byNs = new Map<number, number>();
  for (const pid of [root, ...descendants(root)]) {
    const ns = nsPid(pid);
    if (ns !== null) byNs.set(ns, pid);
  }
  return m.pids.map((p) => byNs.get(m.nspids![p]) ?? p);
}

/** After CRIU restored the tree: GPU state back, then let the processes run. */
export async function restoreAll(driver: CudaDriver, pids: number[], timings: Record<string, number>) {
  let t = performance.now();
  for (const pid of pids) await driver.restore(pid);
  timings.gpu_restore = +(performance.now() - t).toFixed(1);
  t = performance.now();
  for (const pid of pids) await driver.unlock(pid);
  timings.gpu_unlock = +(performance.now() - t).toFixed(1);
}

/**
 * After a daemon restart: GPU state a dead daemon left held. Each CUDA process still checkpointed
 * gets its GPU state back, one still locked is unlocked (a dump cut short before CRIU ended the
 * job, or a restore cut short after CRIU). `kill`: a restored job whose GPU state cannot come back
 * is killed, as in a restore (its checkpoint is intact).
 */
export async function gpuBack(host: CrHost, row: JobRow, pids: number[], kill: boolean): Promise<void> {
  try {
    const driver = CudaDriver.load();
    const held = pids.map((pid) => ({ pid, state: driver.state(pid) }));
    for (const h of held) if (h.state === "checkpointed") await driver.restore(h.pid);
    for (const h of held) if (h.state !== "running") await driver.unlock(h.pid);
    const touched = held.some((h) => h.state !== "running");
    if (touched) host.log.warn("GPU state a killed daemon left held is back", { jid: row.jid, pids });
  } catch (e) {
    if (kill) killAll([...descendants(row.pid!), row.pid!]);
    host.log.error(
      kill
        ? "cannot bring back the GPU state of a restored job: killed it (restore it again)"
        : "cannot bring back the GPU state a killed daemon left held",
      { jid: row.jid, error: String(e) },
    );
  }
}
