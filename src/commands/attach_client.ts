// The terminal side of `attach`: job output to our stdout/stderr, our stdin to the job, window
// size changes to a tty job. Resolves with the job's exit code, or null when the user detached.

import type { AttachServerMessage, JobInspect } from "../api/types.ts";
import { ATTACH_INPUT_WINDOW, STREAM_STDERR } from "../api/types.ts";
import type { DaemonClient } from "../client/mod.ts";
import { failedPrecondition, unavailable } from "../errors.ts";
import { SIGNALS } from "../daemon/signals.ts";

function writeAll(w: { writeSync(p: Uint8Array): number }, data: Uint8Array) {
  let off = 0;
  while (off < data.length) off += w.writeSync(data.subarray(off));
}

const CTRL_P = 0x10, CTRL_Q = 0x11;

export interface AttachOptions {
  /** Replay buffered output from this byte offset (0 = from the job's start). */
  since?: number;
  /** Forward our stdin (default true). */
  stdin?: boolean;
}

/** How an attachment ended: the job's exit code, a detach (null), or the job was checkpointed. */
export type AttachEnd = number | null | "checkpointed";

/** Attaches until the job ends (then exits with its exit code), the client detaches, or a dump. */
export async function attachAndExit(client: DaemonClient, jid: string, opts: AttachOptions = {}) {
  const end = await attachJob(client, jid, opts);
  if (end === "checkpointed") {
    // not an end: the job waits in its checkpoint
    console.error(`job ${jid} was checkpointed; restore it with: cedana restore job ${jid} --attach`);
  } else if (end === null) console.error(`detached from job ${jid} (still running)`);
  else Deno.exit(end);
}

export async function attachJob(
  client: DaemonClient,
  jid: string,
  opts: AttachOptions = {},
): Promise<AttachEnd> {
  const job = await client.get<JobInspect>(`/v1/jobs/${encodeURIComponent(jid)}`);
  if (!job.attachable) {
    throw failedPrecondition(`job ${jid} is not attachable (it was not started with --attachable)`);
  }
  // (a halted job says how it ended, whether or not this daemon still holds its I/O)
  if (!job.ioAvailable && job.status !== "halted") {
    throw failedPrecondition(`job ${jid}'s I/O is gone: it was held by a daemon that has since stopped`);
  }
  // (a job whose main process ended while what it left in its group prints on: attach to that)
  if ((opts.since === undefined || !job.ioAvailable) && job.status === "halted" && !job.outputOpen) {
    // (run/restore --attach replay from byte 0, so a job that ended at once still shows its output)
    if (job.checkpoint && job.exitCode === null && job.exitSignal === null) {
      throw failedPrecondition(
        `job ${jid} was dumped and is not running: restore it first (cedana restore job ${jid} --attach)`,
      );
    }
    const how = job.exitCode !== null
      ? ` (exit code ${job.exitCode})`
      : job.exitSignal
      ? ` (${job.exitSignal})`
      : "";
    throw failedPrecondition(`job ${jid} has exited${how}: nothing to attach to`);
  }
  const q = opts.since !== undefined ? `?since=${opts.since}` : "";
  const ws = client.websocket(`/v1/jobs/${encodeURIComponent(jid)}/attach${q}`);
  const rawMode = job.tty && Deno.stdin.isTerminal();
  const cleanups: (() => void)[] = [];

  // Input flow control (see AttachServerMessage): at most ATTACH_INPUT_WINDOW bytes the job has not
  // taken yet are in flight; a job that reads slowly slows this client down.
  const flow = { on: false, sent: 0, acked: 0, wake: () => {} };
  const result = new Promise<AttachEnd>((resolve, reject) => {
    let done = false;
    const finish = (v: AttachEnd | Error) => {
      if (done) return;
      done = true;
      flow.wake();
      v instanceof Error ? reject(v) : resolve(v);
    };
    ws.onmessage = (e) => {
      if (typeof e.data === "string") {
        const m = JSON.parse(e.data) as AttachServerMessage;
        if (m.type === "exit") {
          if (m.checkpointed) finish("checkpointed");
          else if (m.exitCode === null && m.exitSignal === null) {
            // e.g. the job outlived an earlier daemon, so it is no longer our child; not 0: a
            // script must not take an ending nobody can vouch for as a success
            console.error(`job ${jid} exited; its exit code is unknown (it is not a child of this daemon)`);
            finish(1);
          } else finish(m.exitCode ?? 128 + (SIGNALS[m.exitSignal ?? ""] ?? 0));
        } else if (m.type === "error") finish(unavailable(m.message));
        else if (m.type === "hello") flow.on = m.inputAcks;
        else if (m.type === "input-ack") {
          flow.acked = m.bytes;
          flow.wake();
        }
        return;
      }
      const frame = new Uint8Array(e.data as ArrayBuffer);
      try {
        writeAll(frame[0] === STREAM_STDERR ? Deno.stderr : Deno.stdout, frame.subarray(1));
      } catch (err) {
        // our reader went away (`... | head`): detach quietly, the job goes on
        // (or our terminal is gone: EIO)
        if (err instanceof Deno.errors.BrokenPipe || rawMode) finish(null);
        else finish(err as Error);
      }
    };
    ws.onerror = () => finish(unavailable(`lost the connection to the daemon while attached to ${jid}`));
    ws.onclose = () => finish(unavailable(`the daemon closed the connection to job ${jid}`));
    const detach = () => finish(null);
    if (!rawMode) {
      // Without a pty, Ctrl+C belongs to us: it detaches and leaves the job running.
      Deno.addSignalListener("SIGINT", detach);
      cleanups.push(() => Deno.removeSignalListener("SIGINT", detach));
    }
    ws.onopen = () => {
      if (job.tty) sendSize();
      if (opts.stdin !== false) void pumpStdin(detach);
    };
  });

  const sendSize = () => {
    if (!Deno.stdout.isTerminal() || ws.readyState !== WebSocket.OPEN) return;
    const { columns, rows } = Deno.consoleSize();
    ws.send(JSON.stringify({ type: "resize", cols: columns, rows }));
  };
  if (job.tty) {
    Deno.addSignalListener("SIGWINCH", sendSize);
    cleanups.push(() => Deno.removeSignalListener("SIGWINCH", sendSize));
  }
  if (rawMode) {
    Deno.stdin.setRaw(true);
    cleanups.push(() => Deno.stdin.setRaw(false));
  }

  async function pumpStdin(detach: () => void) {
    let prev = -1;
    const buf = new Uint8Array(8192);
    for (;;) {
      let n: number | null;
      try {
        n = await Deno.stdin.read(buf);
      } catch {
        return detach(); // our terminal is gone (hangup): that ends the attachment, not the job's input
      }
      if (ws.readyState !== WebSocket.OPEN) return;
      if (n === null) {
        // Our terminal hung up (in raw mode Ctrl+D is a byte, not an end): detach, the job goes
        // on. A pipe's end is the job's end of input, as with `docker run -i` (--no-stdin: none).
        if (rawMode) return detach();
        ws.send(JSON.stringify({ type: "eof" }));
        return;
      }
      const chunk = buf.slice(0, n);
      if (rawMode) {
        // Ctrl+P Ctrl+Q detaches (as in docker); Ctrl+C goes to the job.
        const i = chunk.findIndex((b, k) => b === CTRL_Q && (k ? chunk[k - 1] : prev) === CTRL_P);
        if (i >= 0) return detach();
        prev = chunk[n - 1];
      }
      while (flow.on && flow.sent - flow.acked > ATTACH_INPUT_WINDOW && ws.readyState === WebSocket.OPEN) {
        await new Promise<void>((r) => flow.wake = r);
      }
      if (ws.readyState !== WebSocket.OPEN) return;
      ws.send(chunk);
      flow.sent += chunk.length;
    }
  }

  try {
    return await result;
  } finally {
    for (const c of cleanups) c();
    if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) ws.close();
  }
}
