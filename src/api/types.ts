// Request and response types shared by the CLI (client) and the daemon: one source of truth for
// the wire format of the HTTP API served on the daemon's Unix socket.

export type JobType = "process" | "runc" | "containerd";

/** Live status of a job's process; `halted` when it no longer runs. */
/** `paused`: its cgroup is frozen (`runc pause`). */
export type JobStatus = "running" | "sleeping" | "stopped" | "paused" | "zombie" | "halted";

export interface CheckpointSummary {
  id: string;
  path: string;
  time: string;
  size: number;
}

export interface Job {
  jid: string;
  type: JobType;
  pid: number | null;
  status: JobStatus;
  /** A dump or restore of the job in progress (e.g. "dump"): `ps` shows it as the job's status. */
  operation?: string;
  exitCode: number | null;
  /** Signal name when the job was killed by a signal (e.g. "SIGKILL"). */
  exitSignal: string | null;
  /** True when the job was adopted and is not the daemon's child: no exit code can be known. */
  adopted: boolean;
  log: string | null;
  attachable: boolean;
  tty: boolean;
  gpu: boolean;
  cmdline: string[];
  cwd: string;
  /** When the job's process started (ISO time). */
  startedAt: string | null;
  createdAt: string;
  updatedAt: string;
  /** Plugin specific facts (bundle, container id, ...). */
  details: Record<string, unknown>;
  checkpoint: CheckpointSummary | null;
}

export interface FdInfo {
  fd: number;
  target: string;
}

export interface JobInspect extends Job {
  fds: FdInfo[];
  children: number[];
  /** Whether the daemon holds the job's I/O (for attach). */
  ioAvailable: boolean;
  /** Its output is still being read: the main process ended, processes it left in its group print on. */
  outputOpen?: boolean;
  /** GPU jobs: each CUDA process's checkpoint state, or why it cannot be read. */
  cuda?: { pid: number; state: string }[] | { error: string };
}

export interface RunProcessRequest {
  jid?: string;
  /** Command and arguments. */
  args: string[];
  cwd: string;
  env: Record<string, string>;
  /** Keep the job's I/O in the daemon for `attach` (instead of a log file). */
  attachable?: boolean;
  /** Read none of its output until the first client attaches (up to 10 s): `run --attach`. */
  waitForAttach?: boolean;
  tty?: boolean;
  cols?: number;
  rows?: number;
  /** Log file for a non-attachable job; default `<output_dir>/cedana-output-<JID>.log`. */
  log?: string;
  pidFile?: string;
  gpu?: boolean;
}

export interface ManageProcessRequest {
  pid: number;
  jid?: string;
  gpu?: boolean;
}

export interface KillRequest {
  jids: string[];
  all?: boolean;
  /** Signal name or number; default SIGKILL. */
  signal?: string;
}

export interface KillResult {
  /** The signal sent, by name. */
  signal: string;
  killed: string[];
  /** JIDs that were not running (nothing to signal), or busy. */
  skipped: string[];
  /** Of those, the jobs passed over by --all because a dump or restore was in progress on them. */
  busy: { jid: string; op: string }[];
}

export interface DeleteRequest {
  jids: string[];
  all?: boolean;
}

export interface DeleteResult {
  deleted: string[];
  /** Checkpoints of the deleted jobs, kept (files and records): JID -> how many. */
  checkpointsKept?: Record<string, number>;
}

export interface HealthResponse {
  version: string;
  pid: number;
  db: string;
  address: string;
}

/** POST /v1/daemon/stop: the daemon stops once the operations named here have ended. */
export interface StopResponse {
  pid: number;
  /** Dumps and restores in progress ("dump of job web"): the daemon waits for them. */
  waitingFor: string[];
}

export interface ErrorBody {
  error: { code: string; message: string; details?: string[] };
}

// Attach protocol (WebSocket at /v1/jobs/:jid/attach?since=N):
// server -> client binary frames: 1 byte stream id (STREAM_STDOUT / STREAM_STDERR) + data;
// server -> client text frames: AttachServerMessage as JSON;
// client -> server binary frames: stdin data; text frames: AttachClientMessage as JSON.
export const STREAM_STDOUT = 1;
export const STREAM_STDERR = 2;

export type AttachServerMessage =
  | { type: "exit"; exitCode: number | null; exitSignal: string | null; checkpointed?: boolean }
  | { type: "error"; message: string }
  // Input flow control: `hello` says the daemon acknowledges input; `input-ack` counts the bytes of
  // this client's input the job took (or that were dropped). A client keeps at most
  // ATTACH_INPUT_WINDOW bytes unacknowledged, so a job that reads slowly slows the client down
  // instead of the daemon queueing its input without end.
  // (outputAcks: it holds the job up by the client's output-acks; an older daemon does not, and
  // its client must block on its own output instead, or it would queue without end)
  | { type: "hello"; inputAcks: true; outputAcks?: true }
  | { type: "input-ack"; bytes: number };

export const ATTACH_INPUT_WINDOW = 1 << 20;

export type AttachClientMessage =
  | { type: "resize"; cols: number; rows: number }
  | { type: "eof" }
  // Output flow control: the client counts the output bytes it has written out (to its stdout or
  // stderr), sending 0 as soon as it is attached. The daemon then holds the job's output up while
  // the client is ATTACH_OUTPUT_WINDOW behind, so the client writes without blocking (and stays
  // responsive to Ctrl-C) and queues at most that much.
  | { type: "output-ack"; bytes: number };

export const ATTACH_OUTPUT_WINDOW = 4 << 20;

// ---- checkpoint/restore --------------------------------------------------------------------

export const COMPRESSION_NAMES = ["none", "tar", "gzip", "lz4", "zstd"] as const;
export type CompressionName = typeof COMPRESSION_NAMES[number];

export interface DumpRequest {
  /** Dump a managed job ... */
  jid?: string;
  /** ... or any process by PID (recorded under its job if it is one). */
  pid?: number;
  dir?: string;
  name?: string;
  leaveRunning?: boolean;
  compression?: CompressionName;
  tcpEstablished?: boolean;
  fileLocks?: boolean;
  shellJob?: boolean;
  linkRemap?: boolean;
  external?: string[];
  /** JSON object of extra CRIU long options. */
  criuOpts?: string;
  /**
   * Containers: dump the job running this container (`cedana dump runc CID`); root (runc) or
   * address/namespace (containerd) pick one when jobs in several share the ID.
   */
  container?: { type: JobType; id: string; root?: string; address?: string; namespace?: string };
  /** Containers: do not save the rootfs. */
  ignoreRootfs?: boolean;
}

export interface CheckpointInfo {
  id: string;
  jid: string | null;
  path: string;
  time: string;
  size: number;
  compression: CompressionName;
  /** Its files are gone from disk (removed by hand): the record stays until deleted. */
  missing?: boolean;
}

/** Milliseconds per named step, plus CRIU's own numbers where it reports them. */
export type Timings = Record<string, number>;

export interface DumpResult {
  checkpoint: CheckpointInfo;
  leftRunning: boolean;
  /** Flags cedana added on its own after looking at the process tree. */
  detected: string[];
  timings: Timings;
  /** CRIU's dump statistics (stats-dump), times in microseconds. */
  criuStats: Record<string, number> | null;
  /** GPU jobs: the CUDA processes checkpointed and the GPU memory moved into host memory. */
  gpu?: { pids: number[]; total: number };
  /** CRIU had been started ahead, when the daemon began watching the job (src/daemon/cr/warm_dump.ts). */
  warm?: boolean;
}

export interface RestoreRequest {
  /** Restore this job from its latest checkpoint (or `path`). */
  jid?: string;
  path?: string;
  /** For `restore process`: the new job's ID. */
  newJid?: string;
  attachable?: boolean;
  /** Read none of its output until the first client attaches (up to 10 s): `restore --attach`. */
  waitForAttach?: boolean;
  log?: string;
  /** `restore runc|containerd`: the job type of the new job (default: from the checkpoint). */
  type?: JobType;
  /** Containers: the new container's ID, bundle and runc root. */
  id?: string;
  bundle?: string;
  root?: string;
  /** containerd: which one, and its namespace (default: the dumped container's). */
  address?: string;
  namespace?: string;
}

export interface RestoreResult {
  job: Job;
  checkpoint: string;
  /** True when the original PIDs were taken and the job was restored in a new PID namespace. */
  pidNamespace: boolean;
  timings: Timings;
  criuStats: Record<string, number> | null;
  /** What the user should know about how the job came back (e.g. it has a new terminal). */
  notes?: string[];
  /** CRIU had been started ahead, when the dump ended the job (see src/daemon/cr/warm.ts). */
  warm?: boolean;
}

export interface CheckpointInspect extends CheckpointInfo {
  manifest: Record<string, unknown>;
}

// ---- containers ----------------------------------------------------------------------------

export interface RunRuncRequest {
  jid?: string;
  bundle: string;
  /** Container ID (default: the JID). */
  id?: string;
  /** runc state root (default /run/runc). */
  root?: string;
  attachable?: boolean;
  /** As for process jobs: hold the output until the first client attaches. */
  waitForAttach?: boolean;
  log?: string;
  noPivot?: boolean;
  systemdCgroup?: boolean;
}

export interface ManageRuncRequest {
  jid?: string;
  id: string;
  root?: string;
  bundle?: string;
}

export interface RunContainerdRequest {
  jid?: string;
  image: string;
  /** Command and arguments (default: the image's). */
  args?: string[];
  id?: string;
  /** containerd's socket and namespace (config: containerd.address, containerd.namespace). */
  address?: string;
  namespace?: string;
  env?: string[];
  log?: string;
}

export interface ManageContainerdRequest {
  jid?: string;
  id: string;
  address?: string;
  namespace?: string;
}
