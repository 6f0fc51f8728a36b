// Warm CRIUs. CRIU spends its first ~25 ms (on a 2-core VM) before it does anything to a process
// or reads a checkpoint: it starts, loads its libraries and probes the kernel (it makes a network
// namespace and a veth pair among other things; it keeps what it learns only where /run is a
// tmpfs). So the daemon starts the CRIU of a job's next dump (warm_dump.ts) or restore
// (warm_restore.ts) ahead, with the options that operation will use, and holds it at the first file
// it reads, which leads to a pipe or FIFO of the daemon's. The dump or restore then lets it go on,
// and costs only its own work. A warm CRIU whose operation asks for something else (other options,
// another checkpoint, the job changed) is ended, having done nothing, and the operation runs as
// before. Config checkpoint.warm turns this off.

import type { CriuRun } from "../../criu/run.ts";
import { closeFd, pendingBytes } from "../../sys/mod.ts";
import type { CrHost } from "./host.ts";

/** What every warm CRIU is. */
export interface Held {
  jid: string;
  run: { pid: number; done: Promise<CriuRun & { output: string }> };
  /** CRIU has exited (used, failed, or ended). */
  exited: boolean;
  timer: number;
}

/** Warm CRIUs by job, each dropped after `ttlMs` unused (0: kept); at most `max` (the oldest goes). */
export class WarmPool<W extends Held> {
  readonly #byJid = new Map<string, W>();

  constructor(
    readonly ttlMs: number,
    readonly max: number,
    readonly end: (w: W) => Promise<void>,
    readonly onFree: () => void = () => {},
  ) {}

  add(w: W): void {
    this.drop(w.jid);
    if (this.ttlMs) {
      w.timer = setTimeout(() => this.drop(w.jid), this.ttlMs) as unknown as number;
      Deno.unrefTimer(w.timer);
    }
    // (one that ends on its own, before anything wanted it, is cleared away)
    w.run.done.then(() => {
      w.exited = true;
      if (this.#byJid.get(w.jid) === w) this.drop(w.jid);
    });
    this.#byJid.set(w.jid, w);
    if (this.#byJid.size > this.max) this.drop(this.#byJid.keys().next().value!);
  }

  /** Out of the pool: the caller uses it or ends it. */
  take(jid: string): W | null {
    const w = this.#byJid.get(jid);
    if (!w) return null;
    this.#byJid.delete(jid);
    clearTimeout(w.timer);
    queueMicrotask(this.onFree); // (after the caller is done with it)
    return w;
  }

  has(jid: string): boolean {
    return this.#byJid.has(jid);
  }

  get full(): boolean {
    return this.#byJid.size >= this.max;
  }

  get size(): number {
    return this.#byJid.size;
  }

  drop(jid: string): void {
    const w = this.take(jid);
    // (its cleanup is best effort: an unhandled rejection would end the daemon)
    if (w) this.end(w).catch(() => {});
  }

  dropWhere(pred: (w: W) => boolean): void {
    for (const w of [...this.#byJid.values()]) if (pred(w)) this.drop(w.jid);
  }
}

/**
 * Closes the daemon's ends of a pipe or FIFO once CRIU has read what was written into it (or has
 * exited): closed before CRIU opened it, it would drop what it holds.
 */
export function closeWhenRead(w: Held, wait: { read: number; write: number }): void {
  (async () => {
    // (a dump's CRIU reads on to end-of-file: as soon as it has read, it waits for that; a restore's
    // that opened the real file instead never reads it: checked less and less often)
    for (let ms = 0; !w.exited && pendingBytes(wait.read) > 0; ms = Math.min(50, ms * 2 || 1)) {
      await new Promise((r) => setTimeout(r, ms));
    }
    closeFd(wait.read);
    if (wait.write !== wait.read) closeFd(wait.write);
  })();
}

/** Waits for a warm CRIU that was told to end (`kill`: SIGKILL now); SIGKILL if not gone within `ms`. */
export async function endRun(w: Held, ms: number, kill = false): Promise<void> {
  const hard = () => {
    if (w.exited) return; // (its PID may be another process's by now)
    try {
      // (its process group: CRIU leads one, and a child it forked to probe the kernel would be
      // left stopped for ever without it)
      Deno.kill(-w.run.pid, "SIGKILL");
    } catch { /* gone */ }
  };
  if (kill) hard();
  const t = setTimeout(hard, ms);
  await w.run.done;
  w.exited = true;
  clearTimeout(t);
}

/** A CRIU binary as it is now (path and mtime): a warm CRIU of an older one is not used. */
export function criuStamp(bin: string): string {
  try {
    return `${bin}@${Deno.statSync(bin).mtime?.getTime() ?? 0}`;
  } catch {
    return `${bin}@?`;
  }
}

/** Removes a warm CRIU's scratch dir and its record; never throws (cleanups run unawaited). */
export function removeScratch(host: CrHost, dir: string): void {
  try {
    Deno.removeSync(dir, { recursive: true });
  } catch { /* gone */ }
  try {
    host.db.removeTemp(dir);
  } catch { /* the DB busy: the next daemon clears the record */ }
}

export function inode(path: string): number | null {
  try {
    return Deno.statSync(path).ino ?? null;
  } catch {
    return null;
  }
}
