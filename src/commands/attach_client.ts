// The terminal side of `attach`: job output to our stdout/stderr, our stdin to the job, window
// size changes to a tty job. Resolves with the job's exit code, or null when the user detached.

import type { AttachClientMessage, AttachServerMessage, JobInspect } from "../api/types.ts";
import { ATTACH_INPUT_WINDOW, STREAM_STDERR } from "../api/types.ts";
import type { DaemonClient } from "../client/mod.ts";
import { failedPrecondition, unavailable } from "../errors.ts";
import { SIGNALS } from "../daemon/signals.ts";

/** (asynchronous: a blocked stdout, `| less` paused, must not stop us handling Ctrl-C) */
async function writeAll(w: { write(p: Uint8Array): Promise<number> }, data: Uint8Array) {
  let off = 0;
  while (off < data.length) off += await w.write(data.subarray(off));
}

/** Output written out is acknowledged in steps of this much, and whenever the queue empties. */
const ACK_STEP = 256 << 10;

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
    // Output frames, and the ends that must come after them (the exit, a close), in order. The
    // daemon keeps us at most ATTACH_OUTPUT_WINDOW behind (see AttachClientMessage).
    const queue: (Uint8Array | (() => void))[] = [];
    let draining = false, written = 0, ackedOut = 0;
    const ackOutput = () => {
      ackedOut = written;
      const m: AttachClientMessage = { type: "output-ack", bytes: written };
      if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(m));
    };
    const drain = async () => {
      if (draining) return;
      draining = true;
      try {
        while (queue.length && !done) {
          const item = queue.shift()!;
          if (typeof item === "function") {
            item();
            continue;
          }
          // (frames of one stream waiting together go out in one write: a write costs a trip
          // through Deno's blocking pool)
          const parts = [item.subarray(1)];
          let size = parts[0].length;
          for (let next = queue[0]; next instanceof Uint8Array && next[0] === item[0] && size < 1 << 20;) {
            parts.push(next.subarray(1));
            size += next.length - 1;
            queue.shift();
            next = queue[0];
          }
          const data = parts.length === 1 ? parts[0] : new Uint8Array(size);
          if (parts.length > 1) parts.reduce((off, p) => (data.set(p, off), off + p.length), 0);
          await writeAll(item[0] === STREAM_STDERR ? Deno.stderr : Deno.stdout, data);
          written += size;
          if (written - ackedOut >= ACK_STEP || (!queue.length && written > ackedOut)) ackOutput();
        }
      } catch (err) {
        // our reader went away (`... | head`): detach quietly, the job goes on
        // (or our terminal is gone: EIO)
        if (err instanceof Deno.errors.BrokenPipe || rawMode) finish(null);
        else finish(err as Error);
      } finally {
        draining = false;
      }
    };
    const after = (end: () => void) => {
      queue.push(end);
      void drain();
    };
    ws.onmessage = (e) => {
      if (typeof e.data === "string") {
        const m = JSON.parse(e.data) as AttachServerMessage;
        if (m.type === "exit") {
          after(() => {
            if (m.checkpointed) finish("checkpointed");
            else if (m.exitCode === null && m.exitSignal === null) {
              // e.g. the job outlived an earlier daemon, so it is no longer our child; not 0: a
              // script must not take an ending nobody can vouch for as a success
              console.error(`job ${jid} exited; its exit code is unknown (it is not a child of this daemon)`);
              finish(1);
            } else finish(m.exitCode ?? 128 + (SIGNALS[m.exitSignal ?? ""] ?? 0));
          });
        } else if (m.type === "error") finish(unavailable(m.message));
        else if (m.type === "hello") flow.on = m.inputAcks;
        else if (m.type === "input-ack") {
          flow.acked = m.bytes;
          flow.wake();
        }
        return;
      }
      queue.push(new Uint8Array(e.data as ArrayBuffer));
      void drain();
    };
    ws.onerror = () =>
      after(() => finish(unavailable(`lost the connection to the daemon while attached to ${jid}`)));
    ws.onclose = () => after(() => finish(unavailable(`the daemon closed the connection to job ${jid}`)));
    const detach = () => finish(null);
    if (!rawMode) {
      // Without a pty, Ctrl+C belongs to us: it detaches and leaves the job running.
      Deno.addSignalListener("SIGINT", detach);
      cleanups.push(() => Deno.removeSignalListener("SIGINT", detach));
    }
    ws.onopen = () => {
      ackOutput(); // (0: says we acknowledge output)
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
