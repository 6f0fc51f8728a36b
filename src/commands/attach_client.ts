// The terminal side of `attach`: job output to our stdout/stderr, our stdin to the job, window
// size changes to a tty job. Resolves with the job's exit code, or null when the user detached.

import type { AttachClientMessage, AttachServerMessage, JobInspect } from "../api/types.ts";
import { ATTACH_INPUT_WINDOW, STREAM_STDERR } from "../api/types.ts";
import type { DaemonClient } from "../client/mod.ts";
import { failedPrecondition, unavailable } from "../errors.ts";
import { SIGNALS } from "../daemon/signals.ts";

/** Written-out output is acknowledged once this much is unacknowledged, or a second went by. */
const ACK_STEP = 256 << 10, ACK_MS = 1000;
/**
 * Writes go out in pieces of up to MAX_WRITE (a write costs a trip through Deno's blocking pool),
 * down to SLOW_WRITE for a reader that takes a while (`| pv -L 100k`): between pieces we
 * acknowledge, so a slow reader is never taken for a stopped one (the daemon lets those go).
 */
const MAX_WRITE = 256 << 10, SLOW_WRITE = 16 << 10;

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
  // (--no-stdin: no keys are read, so the terminal stays cooked: Ctrl+C detaches)
  const rawMode = job.tty && Deno.stdin.isTerminal() && opts.stdin !== false;
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
    let ended: AttachEnd | undefined, outAcks = false;
    let draining = false, written = 0, ackedOut = 0, ackedAt = 0, piece = 64 << 10;
    const ackOutput = () => {
      [ackedOut, ackedAt] = [written, Date.now()];
      const m: AttachClientMessage = { type: "output-ack", bytes: written };
      if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(m));
    };
    /** (asynchronous: a blocked stdout, `| less` paused, must not stop us handling Ctrl-C) */
    const writeOut = async (stream: number, data: Uint8Array) => {
      const w = stream === STREAM_STDERR ? Deno.stderr : Deno.stdout;
      if (!outAcks) {
        // A daemon that does not hold the job up by our acks (an older one): block on our output,
        // so that its socket backs up and it slows the job, as before.
        for (let off = 0; off < data.length;) off += w.writeSync(data.subarray(off));
        return;
      }
      for (let off = 0; off < data.length && !done;) {
        const t0 = Date.now();
        const n = await w.write(data.subarray(off, off + piece));
        off += n;
        written += n;
        const took = Date.now() - t0;
        piece = took > 100 ? SLOW_WRITE : took < 10 ? Math.min(piece * 2, MAX_WRITE) : piece;
        if (written - ackedOut >= ACK_STEP || (written > ackedOut && Date.now() - ackedAt >= ACK_MS)) {
          ackOutput();
        }
      }
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
          for (let next = queue[0]; next instanceof Uint8Array && next[0] === item[0] && size < piece;) {
            parts.push(next.subarray(1));
            size += next.length - 1;
            queue.shift();
            next = queue[0];
          }
          const data = parts.length === 1 ? parts[0] : new Uint8Array(size);
          if (parts.length > 1) parts.reduce((off, p) => (data.set(p, off), off + p.length), 0);
          await writeOut(item[0], data);
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
          // e.g. the job outlived an earlier daemon, so it is no longer our child; not 0: a
          // script must not take an ending nobody can vouch for as a success
          const unknown = !m.checkpointed && m.exitCode === null && m.exitSignal === null;
          const end: AttachEnd = m.checkpointed
            ? "checkpointed"
            : unknown
            ? 1
            : m.exitCode ?? 128 + (SIGNALS[m.exitSignal ?? ""] ?? 0);
          ended = end; // (a detach before its output is all out still reports it)
          after(() => {
            if (unknown) {
              console.error(`job ${jid} exited; its exit code is unknown (it is not a child of this daemon)`);
            }
            finish(end);
          });
        } else if (m.type === "error") finish(unavailable(m.message));
        else if (m.type === "hello") [flow.on, outAcks] = [m.inputAcks, !!m.outputAcks];
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
    const detach = () => finish(ended ?? null);
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

  async function send(chunk: Uint8Array): Promise<boolean> {
    while (flow.on && flow.sent - flow.acked > ATTACH_INPUT_WINDOW && ws.readyState === WebSocket.OPEN) {
      await new Promise<void>((r) => flow.wake = r);
    }
    if (ws.readyState !== WebSocket.OPEN) return false;
    ws.send(chunk);
    flow.sent += chunk.length;
    return true;
  }

  async function pumpStdin(detach: () => void) {
    // A Ctrl+P is held back until the next key: with Ctrl+Q it detaches and neither reaches the
    // job (in bash, a Ctrl+P sent ahead recalled the last command, run again by the next Enter).
    let held = false;
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
      let chunk = buf.slice(0, n);
      if (rawMode) {
        // Ctrl+P Ctrl+Q detaches (as in docker); Ctrl+C goes to the job.
        if (held) chunk = new Uint8Array([CTRL_P, ...chunk]);
        held = false;
        const i = chunk.findIndex((b, k) => b === CTRL_Q && k > 0 && chunk[k - 1] === CTRL_P);
        if (i >= 0) {
          if (i > 1) await send(chunk.subarray(0, i - 1)); // (typed before the detach keys)
          return detach();
        }
        if (chunk[chunk.length - 1] === CTRL_P) {
          held = true;
          chunk = chunk.subarray(0, -1);
        }
        if (!chunk.length) continue;
      }
      if (!await send(chunk)) return;
    }
  }

  try {
    return await result;
  } finally {
    for (const c of cleanups) c();
    if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) ws.close();
  }
}
