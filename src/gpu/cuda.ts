/**
 * FFI to the CUDA driver's process checkpoint API (`cuCheckpointProcess*` in libcuda.so.1), with
 * which a controller process (the daemon) moves another process's GPU state into that process's
 * host memory and back, so that CRIU can dump and restore it like any other process:
 *
 *   lock -> checkpoint -> (criu dump ... criu restore) -> restore -> unlock
 *
 * States (cuCheckpointProcessGetState): running -> locked -> checkpointed -> locked -> running.
 *
 * The library is opened lazily, once per process, and cuInit(0) runs once right after (it took
 * 214 ms on an H200 machine): machines without a GPU never load libcuda, and GPU operations do
 * not pay for initialisation again. The path is `$CEDANA_CUDA_LIB` or "libcuda.so.1" (found
 * through ldconfig); tests point the variable at a fake (tests/gpu/fake_cuda.c), or use
 * `CudaDriver.open(path)`, which bypasses the per-process cache.
 */

import { CedanaError, type ErrorCode } from "../errors.ts";
import { descendants, readFds } from "../proc/mod.ts";

export const CUDA_LIB_ENV = "CEDANA_CUDA_LIB";
const DEFAULT_LIB = "libcuda.so.1";

// Every call takes (int pid, struct *args) where args is 64 bytes, reserved fields zeroed.
const PID_ARGS = { parameters: ["i32", "buffer"], result: "i32" } as const;
// Lock waits for running GPU work (up to its timeout); checkpoint and restore copy all of the
// process's GPU memory (4.2 s and 1.9 s for 8 GiB on an H200). They run on Deno's blocking
// thread pool so that the daemon keeps serving meanwhile. The driver is thread-safe.
const SLOW_PID_ARGS = { ...PID_ARGS, nonblocking: true } as const;

const SYMBOLS = {
  cuInit: { parameters: ["u32"], result: "i32" },
  cuDriverGetVersion: { parameters: ["buffer"], result: "i32" },
  // Optional: only used to word error messages; a static table stands in without them.
  cuGetErrorName: { parameters: ["i32", "buffer"], result: "i32", optional: true },
  cuGetErrorString: { parameters: ["i32", "buffer"], result: "i32", optional: true },
  // Optional in dlopen so that a driver without the checkpoint API (before CUDA 12.8) yields a
  // clear GpuUnavailable instead of dlopen's bare "undefined symbol".
  cuCheckpointProcessGetState: { ...PID_ARGS, optional: true },
  cuCheckpointProcessGetRestoreThreadId: { ...PID_ARGS, optional: true },
  cuCheckpointProcessLock: { ...SLOW_PID_ARGS, optional: true },
  cuCheckpointProcessCheckpoint: { ...SLOW_PID_ARGS, optional: true },
  cuCheckpointProcessRestore: { ...SLOW_PID_ARGS, optional: true },
  cuCheckpointProcessUnlock: { ...SLOW_PID_ARGS, optional: true },
  // Deno 2.9 turns a missing optional *nonblocking* symbol into a function that rejects with
  // "Invalid FFI symbol name" rather than into null, so presence is tested on blocking aliases.
  hasLock: { ...PID_ARGS, name: "cuCheckpointProcessLock", optional: true },
  hasCheckpoint: { ...PID_ARGS, name: "cuCheckpointProcessCheckpoint", optional: true },
  hasRestore: { ...PID_ARGS, name: "cuCheckpointProcessRestore", optional: true },
  hasUnlock: { ...PID_ARGS, name: "cuCheckpointProcessUnlock", optional: true },
} as const;

type Symbols = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

/** The checkpoint functions a driver must have for cedana to use it, by their presence probe. */
const REQUIRED = {
  cuCheckpointProcessGetState: "cuCheckpointProcessGetState",
  cuCheckpointProcessLock: "hasLock",
  cuCheckpointProcessCheckpoint: "hasCheckpoint",
  cuCheckpointProcessRestore: "hasRestore",
  cuCheckpointProcessUnlock: "hasUnlock",
} as const;

/** CUresult values cedana reacts to or reports (cuda.h `cudaError_enum`). */
export const CUresult = {
  SUCCESS: 0,
  INVALID_VALUE: 1,
  OUT_OF_MEMORY: 2,
  NOT_INITIALIZED: 3,
  DEINITIALIZED: 4,
  STUB_LIBRARY: 34,
  DEVICE_UNAVAILABLE: 46,
  NO_DEVICE: 100,
  INVALID_DEVICE: 101,
  INVALID_CONTEXT: 201,
  OPERATING_SYSTEM: 304,
  INVALID_HANDLE: 400,
  ILLEGAL_STATE: 401,
  NOT_FOUND: 500,
  NOT_READY: 600,
  ILLEGAL_ADDRESS: 700,
  LAUNCH_FAILED: 719,
  NOT_PERMITTED: 800,
  NOT_SUPPORTED: 801,
  SYSTEM_NOT_READY: 802,
  SYSTEM_DRIVER_MISMATCH: 803,
  TIMEOUT: 909,
  UNKNOWN: 999,
} as const;

const NAMES = new Map<number, string>(
  Object.entries(CUresult).map(([k, v]) => [v, k === "SUCCESS" ? "CUDA_SUCCESS" : `CUDA_ERROR_${k}`]),
);

/** Static name of a CUresult, for when the driver cannot be asked (or lacks cuGetErrorName). */
export function cuResultName(code: number): string {
  return NAMES.get(code) ?? `CUresult ${code}`;
}

export type CudaProcessState = "running" | "locked" | "checkpointed" | "failed";
const STATES: readonly CudaProcessState[] = ["running", "locked", "checkpointed", "failed"];

export type CudaOp = "state" | "lock" | "checkpoint" | "restore" | "unlock" | "restoreThreadId";

const OPS: Record<CudaOp, { fn: string; what: string; from?: CudaProcessState }> = {
  state: { fn: "cuCheckpointProcessGetState", what: "GPU state query" },
  restoreThreadId: { fn: "cuCheckpointProcessGetRestoreThreadId", what: "GPU restore thread query" },
  lock: { fn: "cuCheckpointProcessLock", what: "GPU lock", from: "running" },
  checkpoint: { fn: "cuCheckpointProcessCheckpoint", what: "GPU checkpoint", from: "locked" },
  restore: { fn: "cuCheckpointProcessRestore", what: "GPU restore", from: "checkpointed" },
  unlock: { fn: "cuCheckpointProcessUnlock", what: "GPU unlock", from: "locked" },
};

/** Where a CUresult lands in the program's error vocabulary (and so the HTTP status). */
function errorCodeOf(result: number): ErrorCode {
  switch (result) {
    case CUresult.INVALID_VALUE: // the pid is not a CUDA process (or is gone)
    case CUresult.ILLEGAL_STATE:
      return "failed_precondition";
    case CUresult.OUT_OF_MEMORY:
    case CUresult.NO_DEVICE:
    case CUresult.DEVICE_UNAVAILABLE:
    case CUresult.TIMEOUT: // lock timed out waiting for the job's GPU work: try again later
      return "unavailable";
    default:
      return "internal";
  }
}

/**
 * A failed cuCheckpointProcess* call. `result` is the CUresult (`code` is the program-wide
 * ErrorCode that CedanaError carries), `resultName` its name, e.g. "CUDA_ERROR_ILLEGAL_STATE".
 */
export class CudaError extends CedanaError {
  constructor(
    readonly op: CudaOp,
    readonly pid: number,
    readonly result: number,
    readonly resultName: string,
    description: string,
  ) {
    super(errorCodeOf(result), description);
    this.name = "CudaError";
  }
}

/** No usable CUDA driver: no libcuda, cuInit failed, or no checkpoint API. Message is one line. */
export class GpuUnavailable extends CedanaError {
  constructor(message: string) {
    // (no driver or no device is not going to pass by retrying: a precondition, not "unavailable")
    super("failed_precondition", `GPU support unavailable: ${message.replace(/\s*\n\s*/g, "; ")}`);
    this.name = "GpuUnavailable";
  }
}

/** The path the per-process driver loads: `$CEDANA_CUDA_LIB` or "libcuda.so.1". */
export function cudaLibPath(): string {
  try {
    return Deno.env.get(CUDA_LIB_ENV) || DEFAULT_LIB;
  } catch {
    return DEFAULT_LIB; // no --allow-env: the default is all we can do
  }
}

function readCString(ptrBuf: BigUint64Array): string | null {
  const ptr = Deno.UnsafePointer.create(ptrBuf[0]);
  return ptr === null ? null : new Deno.UnsafePointerView(ptr).getCString();
}

let shared: { driver: CudaDriver } | { error: GpuUnavailable } | null = null;

export class CudaDriver {
  private constructor(
    private readonly sym: Symbols,
    /** The library path it was opened from. */
    readonly path: string,
    /** cuDriverGetVersion, e.g. 13000 for CUDA 13.0. */
    readonly version: number,
  ) {}

  /**
   * The process's driver: opened and initialised on the first call, the same object (or the
   * same GpuUnavailable) afterwards. cuInit is not retried: a daemon started before the driver
   * was ready must be restarted.
   */
  static load(): CudaDriver {
    if (shared === null) {
      try {
        shared = { driver: CudaDriver.open(cudaLibPath()) };
      } catch (e) {
        if (!(e instanceof GpuUnavailable)) throw e;
        shared = { error: e };
      }
    }
    if ("error" in shared) throw shared.error;
    return shared.driver;
  }

  /**
   * Opens `path` and calls cuInit(0), outside the per-process cache (for tests and probes).
   * Each call is a new dlopen reference and a new cuInit; the library is never closed, since a
   * nonblocking call may still be running in it.
   */
  static open(path: string): CudaDriver {
    let lib: Deno.DynamicLibrary<typeof SYMBOLS>;
    try {
      lib = Deno.dlopen(path, SYMBOLS);
    } catch (e) {
      // (Deno says "Could not open library: Could not open library: ...")
      const why = (e instanceof Error ? e.message : String(e)).replace(/^(Could not open library: )+/, "");
      throw new GpuUnavailable(`cannot load the CUDA driver ${path} (set ${CUDA_LIB_ENV}): ${why}`);
    }
    const sym = lib.symbols;
    const ver = new Int32Array(1);
    const version = sym.cuDriverGetVersion(ver) === 0 ? ver[0] : 0;
    const missing = Object.entries(REQUIRED).filter(([, probe]) => sym[probe] === null).map(([fn]) => fn);
    if (missing.length > 0) {
      lib.close();
      throw new GpuUnavailable(
        `the CUDA driver ${path} (version ${formatVersion(version)}) lacks the checkpoint API ` +
          `(${missing.join(", ")}); it needs CUDA 12.8 or newer (driver 570+)`,
      );
    }
    const rc = sym.cuInit(0);
    if (rc !== 0) {
      throw new GpuUnavailable(
        `cuInit failed: ${describe(sym, rc)} (driver ${path}, version ${formatVersion(version)})`,
      );
    }
    return new CudaDriver(sym, path, version);
  }

  /** e.g. "13.0" */
  get versionString(): string {
    return formatVersion(this.version);
  }

  /** The process's checkpoint state; a number for a state this code does not know. */
  state(pid: number): CudaProcessState | number {
    const out = new Int32Array([-1]);
    this.check("state", pid, this.sym.cuCheckpointProcessGetState!(pid, out));
    return STATES[out[0]] ?? out[0];
  }

  /**
   * Stops the process from submitting new GPU work and waits (up to `timeoutMs`; 0: the
   * driver's default, no timeout) for the work in flight. running -> locked.
   */
  async lock(pid: number, timeoutMs: number): Promise<void> {
    if (!Number.isInteger(timeoutMs) || timeoutMs < 0 || timeoutMs > 0xffff_ffff) {
      throw new RangeError(`lock timeout must be a whole number of ms in 0..2^32-1, got ${timeoutMs}`);
    }
    const args = argsBuffer();
    new DataView(args.buffer).setUint32(0, timeoutMs, true); // CUcheckpointLockArgs.timeoutMs
    await this.slow("lock", pid, this.sym.cuCheckpointProcessLock!, args);
  }

  /** Copies the GPU memory into host memory and releases the GPU. locked -> checkpointed. */
  checkpoint(pid: number): Promise<void> {
    return this.slow("checkpoint", pid, this.sym.cuCheckpointProcessCheckpoint!);
  }

  /**
   * Re-acquires the GPU and copies the memory back. checkpointed -> locked. A failed restore
   * cannot be retried in the same process (seen on an H200: 2, then 304 on retry).
   */
  restore(pid: number): Promise<void> {
    return this.slow("restore", pid, this.sym.cuCheckpointProcessRestore!);
  }

  /** Lets the process submit GPU work again. locked -> running. */
  unlock(pid: number): Promise<void> {
    return this.slow("unlock", pid, this.sym.cuCheckpointProcessUnlock!);
  }

  /** One call on the blocking thread pool (the symbol is nonblocking). */
  private async slow(
    op: CudaOp,
    pid: number,
    fn: (pid: number, args: Uint8Array) => Promise<number>,
    args = argsBuffer(),
  ): Promise<void> {
    const rc = await fn(pid, args);
    // The pool thread reads `args` while the promise is pending; using it after the await keeps
    // it reachable (and so not collected) until the call has returned.
    if (args.length !== 64) throw new Error("unreachable");
    this.check(op, pid, rc);
  }

  /** The tid of the driver's restore thread inside `pid` (cuCheckpointProcessGetRestoreThreadId). */
  restoreThreadId(pid: number): number {
    const fn = this.sym.cuCheckpointProcessGetRestoreThreadId;
    if (fn === null) {
      throw new GpuUnavailable(`the CUDA driver ${this.path} lacks cuCheckpointProcessGetRestoreThreadId`);
    }
    const out = new Int32Array([-1]);
    this.check("restoreThreadId", pid, fn(pid, out));
    return out[0];
  }

  /** Name and description of a CUresult, from the driver when it can tell. */
  describe(result: number): string {
    return describe(this.sym, result);
  }

  private check(op: CudaOp, pid: number, rc: number): void {
    if (rc === 0) return;
    const { fn, what, from } = OPS[op];
    let hint = "";
    if (rc === CUresult.ILLEGAL_STATE && from) {
      // The state tells which step was skipped or repeated; it may itself fail (process gone).
      const out = new Int32Array([-1]);
      const now = this.sym.cuCheckpointProcessGetState!(pid, out) === 0 ? STATES[out[0]] ?? out[0] : null;
      hint = now === null ? `; it must be ${from}` : `; the process is ${now}, it must be ${from}`;
    }
    if (op === "restore") {
      hint += "; a failed GPU restore cannot be retried in this process: kill it and restore again " +
        "from the checkpoint images";
    }
    throw new CudaError(
      op,
      pid,
      rc,
      resultName(this.sym, rc),
      `${what} of pid ${pid} failed (${fn}): ${describe(this.sym, rc)}${hint}`,
    );
  }
}

/** Zeroed CUcheckpoint*Args: 64 bytes, every field reserved except Lock's timeoutMs. */
function argsBuffer(): Uint8Array {
  return new Uint8Array(64);
}

function formatVersion(v: number): string {
  return v > 0 ? `${Math.floor(v / 1000)}.${Math.floor((v % 1000) / 10)}` : "unknown";
}

function resultName(sym: Symbols, rc: number): string {
  const out = new BigUint64Array(1);
  if (sym.cuGetErrorName !== null && sym.cuGetErrorName(rc, out) === 0) {
    const name = readCString(out);
    if (name) return name;
  }
  return cuResultName(rc);
}

/** "CUDA_ERROR_OUT_OF_MEMORY (2): out of memory" */
function describe(sym: Symbols, rc: number): string {
  const out = new BigUint64Array(1);
  let text: string | null = null;
  if (sym.cuGetErrorString !== null && sym.cuGetErrorString(rc, out) === 0) text = readCString(out);
  return `${resultName(sym, rc)} (${rc})${text ? `: ${text}` : ""}`;
}

/** True when the CUDA driver loads and initialises in this process. Never throws. */
export function gpuAvailable(): boolean {
  try {
    CudaDriver.load();
    return true;
  } catch {
    return false;
  }
}

const NVIDIA_DEVICE = /^\/dev\/nvidia/;
const LIBCUDA_MAPPING = /\/libcuda\.so(\.|$)/m;

/**
 * Whether a process with these open fds and this /proc/PID/maps text uses CUDA: it holds a GPU
 * device open (/dev/nvidia0, nvidiactl, nvidia-uvm) or has the driver library mapped. The second
 * covers checkpointed processes, which hold no /dev/nvidia* fds.
 */
export function usesCuda(fdTargets: readonly string[], maps: string): boolean {
  return fdTargets.some((t) => NVIDIA_DEVICE.test(t)) || LIBCUDA_MAPPING.test(maps);
}

/**
 * The processes of the tree rooted at `rootPid` (the root first, then descendants breadth-first)
 * that use CUDA (see usesCuda). Processes that vanish while being looked at are left out.
 */
export function findCudaPids(rootPid: number): number[] {
  return [rootPid, ...descendants(rootPid)].filter((pid) => {
    // fds first: a live CUDA process shows it there, and maps can be long (PyTorch: ~1000 lines).
    if (usesCuda(readFds(pid).map((f) => f.target), "")) return true;
    try {
      return usesCuda([], Deno.readTextFileSync(`/proc/${pid}/maps`));
    } catch {
      return false; // gone, or not ours to read
    }
  });
}
