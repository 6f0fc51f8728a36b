// A shell job (a process started from a shell in a terminal, then adopted with `manage process`)
// does not lead its session: the shell does, outside the checkpoint. CRIU's -j restores such a job
// into CRIU's own session, on CRIU's own terminal (its stdin), and makes it that terminal's
// foreground group. Run as a plain child of the daemon, CRIU has no terminal ("Don't have tty to
// inherit session from"); run as the leader of a session, its exit hangs up the job it just
// restored (the kernel sends SIGHUP to the foreground group when a session leader exits).
// So a keeper leads the session, with a new pty as its terminal, and runs CRIU inside it; it
// stays (a `sleep infinity`) as long as the job, whose terminal it holds. Without
// --restore-sibling the restored root is CRIU's child, and is re-parented to the daemon (a child
// subreaper) when CRIU exits, so the job's exit code is still known.

import { join } from "node:path";
import { criuErrorLines, criuLauncher } from "../../criu/run.ts";
import { failedPrecondition } from "../../errors.ts";
import type { KeeperRef } from "../keeper.ts";
import { startSessionKeeper, stopKeeper } from "../keeper.ts";

const STATUS_FILE = "criu.status";

export interface SessionRestore {
  criu: string;
  args: string[];
  /** fds CRIU gets as 3, 4, ... (--inherit-fd) */
  extraFds: number[];
  /** The pty slave that becomes the session's (and the job's) terminal. */
  tty: number;
  workDir: string;
  logPath: string;
  /** The session keeper, as soon as it runs (recorded before CRIU can finish). */
  onKeeper: (ref: KeeperRef) => void;
}

/** Runs CRIU's restore in a session of its own; the session keeper once CRIU succeeded. */
export async function restoreInSession(r: SessionRestore): Promise<KeeperRef> {
  const statusFile = join(r.workDir, STATUS_FILE);
  const { ref, exited } = startSessionKeeper(
    r.tty,
    [...criuLauncher(r.criu), ...r.args],
    r.extraFds,
    statusFile,
  );
  r.onKeeper(ref);
  let gone = false;
  exited.then(() => gone = true);
  const deadline = Date.now() + 600_000;
  for (;;) {
    let status: string | null = null;
    try {
      status = Deno.readTextFileSync(statusFile).trim();
    } catch { /* CRIU still runs */ }
    if (status === "0") return ref;
    if (status !== null || gone || Date.now() > deadline) {
      stopKeeper(ref);
      let log = "";
      try {
        log = Deno.readTextFileSync(r.logPath);
      } catch { /* CRIU did not get as far as its log */ }
      throw failedPrecondition(
        `criu restore failed (criu exit ${
          status ?? (gone ? "unknown" : "none: timed out")
        }); CRIU log: ${r.logPath}`,
        criuErrorLines(log).slice(-15),
      );
    }
    await new Promise((res) => setTimeout(res, 5));
  }
}
