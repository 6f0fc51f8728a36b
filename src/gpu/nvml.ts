/**
 * GPU memory figures from NVML (libnvidia-ml.so.1), so that a GPU restore can be refused early
 * when the GPU lacks the memory the checkpoint needs: a GPU restore that fails for lack of
 * memory leaves the process checkpointed and not restorable again (seen on an H200).
 *
 * Everything here answers null rather than throwing when NVML is missing or a query fails: the
 * figures are advisory, and machines without a GPU must not be bothered. The library is opened
 * and nvmlInit_v2 called once per process, lazily; the path is `$CEDANA_NVML_LIB` or
 * "libnvidia-ml.so.1". Tests use `Nvml.open(path)` on tests/gpu/fake_nvml.c.
 */

export const NVML_LIB_ENV = "CEDANA_NVML_LIB";
const DEFAULT_LIB = "libnvidia-ml.so.1";

const SYMBOLS = {
  nvmlInit_v2: { parameters: [], result: "i32" },
  nvmlDeviceGetCount_v2: { parameters: ["buffer"], result: "i32" },
  nvmlDeviceGetHandleByIndex_v2: { parameters: ["u32", "buffer"], result: "i32" },
  nvmlDeviceGetMemoryInfo: { parameters: ["pointer", "buffer"], result: "i32" },
  nvmlDeviceGetComputeRunningProcesses_v3: { parameters: ["pointer", "buffer", "buffer"], result: "i32" },
} as const;

type Symbols = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

const NVML_SUCCESS = 0;
const NVML_ERROR_INSUFFICIENT_SIZE = 7;
/** usedGpuMemory when the driver cannot tell (e.g. without permission to see other processes). */
const NVML_VALUE_NOT_AVAILABLE = 0xffff_ffff_ffff_ffffn;
/** nvmlProcessInfo_t as filled by the _v3 query: u32 pid, u64 usedGpuMemory at 8, 2 x u32. */
const PROCESS_INFO_SIZE = 24;

export interface GpuMemory {
  index: number;
  total: number;
  free: number;
  used: number;
}

let shared: { nvml: Nvml | null } | null = null;

export class Nvml {
  private constructor(private readonly sym: Symbols, private readonly handles: Deno.PointerValue[]) {}

  /** The process's NVML, or null when it cannot be loaded or initialised (cached either way). */
  static load(): Nvml | null {
    shared ??= { nvml: Nvml.open(nvmlLibPath()) };
    return shared.nvml;
  }

  /** Opens `path` and initialises NVML outside the per-process cache; null when that fails. */
  static open(path: string): Nvml | null {
    let sym: Symbols;
    try {
      sym = Deno.dlopen(path, SYMBOLS).symbols;
    } catch {
      return null;
    }
    if (sym.nvmlInit_v2() !== NVML_SUCCESS) return null;
    const count = new Uint32Array(1);
    if (sym.nvmlDeviceGetCount_v2(count) !== NVML_SUCCESS) return null;
    // Handles stay valid until nvmlShutdown, which is never called: look them up once.
    const handles: Deno.PointerValue[] = [];
    const out = new BigUint64Array(1);
    for (let i = 0; i < count[0]; i++) {
      if (sym.nvmlDeviceGetHandleByIndex_v2(i, out) !== NVML_SUCCESS) return null;
      handles.push(Deno.UnsafePointer.create(out[0]));
    }
    return new Nvml(sym, handles);
  }

  /** Memory of every GPU, by NVML index; null when a query fails. */
  memory(): GpuMemory[] | null {
    const result: GpuMemory[] = [];
    for (const [index, handle] of this.handles.entries()) {
      const info = new BigUint64Array(3); // nvmlMemory_t: total, free, used
      if (this.sym.nvmlDeviceGetMemoryInfo(handle, info) !== NVML_SUCCESS) return null;
      result.push({ index, total: Number(info[0]), free: Number(info[1]), used: Number(info[2]) });
    }
    return result;
  }

  /**
   * GPU memory used by `pid`, summed over GPUs: 0 when it has none (a checkpointed process holds
   * none), null when NVML cannot tell. The pid is as the driver sees it (the host's pid
   * namespace when NVML runs there).
   */
  processMemory(pid: number): number | null {
    let total = 0;
    for (const handle of this.handles) {
      const procs = this.computeProcesses(handle);
      if (procs === null) return null;
      for (const p of procs) {
        if (p.pid !== pid) continue;
        if (p.used === NVML_VALUE_NOT_AVAILABLE) return null;
        total += Number(p.used);
      }
    }
    return total;
  }

  private computeProcesses(handle: Deno.PointerValue): { pid: number; used: bigint }[] | null {
    // Processes may come and go between the sizing call and the real one: retry a few times.
    let capacity = 16;
    for (let attempt = 0; attempt < 4; attempt++) {
      const count = new Uint32Array([capacity]);
      const infos = new Uint8Array(capacity * PROCESS_INFO_SIZE);
      const rc = this.sym.nvmlDeviceGetComputeRunningProcesses_v3(handle, count, infos);
      if (rc === NVML_ERROR_INSUFFICIENT_SIZE) {
        capacity = Math.max(count[0], capacity) * 2;
        continue;
      }
      if (rc !== NVML_SUCCESS) return null;
      const view = new DataView(infos.buffer);
      return Array.from({ length: count[0] }, (_, i) => ({
        pid: view.getUint32(i * PROCESS_INFO_SIZE, true),
        used: view.getBigUint64(i * PROCESS_INFO_SIZE + 8, true),
      }));
    }
    return null;
  }
}

/** The path the per-process NVML loads: `$CEDANA_NVML_LIB` or "libnvidia-ml.so.1". */
export function nvmlLibPath(): string {
  try {
    return Deno.env.get(NVML_LIB_ENV) || DEFAULT_LIB;
  } catch {
    return DEFAULT_LIB;
  }
}

/** Memory of every GPU; null without NVML. Never throws. */
export function gpuMemory(): GpuMemory[] | null {
  return Nvml.load()?.memory() ?? null;
}

/**
 * Free GPU memory in bytes, summed over GPUs (a process restores onto the GPUs it was
 * checkpointed on: on a machine with several, compare per GPU with gpuMemory()); null without
 * NVML. Never throws.
 */
export function freeGpuMemory(): number | null {
  const mem = gpuMemory();
  return mem === null ? null : mem.reduce((sum, m) => sum + m.free, 0);
}

/** GPU memory used by `pid` in bytes (see Nvml.processMemory); null without NVML. Never throws. */
export function processGpuMemory(pid: number): number | null {
  return Nvml.load()?.processMemory(pid) ?? null;
}
