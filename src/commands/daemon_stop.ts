// `cedana daemon stop`: the daemon is asked over its socket (a signal from here could reach the
// wrong process: the CLI's PID namespace need not be the daemon's), then watched until it is gone.
import type { StopResponse } from "../api/types.ts";
import { DaemonClient } from "../client/mod.ts";
import { CedanaError, failedPrecondition, unavailable } from "../errors.ts";

const POLL_MS = 100;

export async function stopDaemon(address: string, timeoutS: number): Promise<void> {
  const client = new DaemonClient(address, 10_000);
  let r: StopResponse;
  try {
    r = await client.post<StopResponse>("/v1/daemon/stop", {});
  } catch (e) {
    // (stopping a stopped daemon is done: scripts and unit files may stop it twice)
    if (isGone(e)) {
      console.log(`no cedana daemon is running at ${address}`);
      return;
    }
    if (e instanceof CedanaError && e.code === "not_found" && /no route/.test(e.message)) {
      // (a daemon from before this command, still running after an upgrade)
      const pid = await client.health(2_000).then((h) => h.pid, () => null);
      throw failedPrecondition(
        `the daemon at ${address} is an older version without \`daemon stop\`: ` +
          `stop it with kill -TERM ${pid ?? "<its pid>"} (its jobs keep running)`,
      );
    }
    throw e;
  }
  if (r.waitingFor.length) {
    console.error(`waiting for ${r.waitingFor.join(", ")} to end (\`cedana daemon stop\` again: stop now)`);
  }
  const until = Date.now() + timeoutS * 1000;
  while (Date.now() < until) {
    try {
      await client.health(2_000);
    } catch (e) {
      if (isGone(e)) {
        console.log(`stopped the cedana daemon (pid ${r.pid}); jobs keep running`);
        return;
      }
      // (no answer, or a connection closed as it shuts down: not gone yet)
      if (!(e instanceof CedanaError && e.code === "unavailable")) throw e;
    }
    await new Promise((res) => setTimeout(res, POLL_MS));
  }
  throw unavailable(`the cedana daemon (pid ${r.pid}) is still stopping after ${timeoutS} s; see its log`);
}

/** Its socket is gone or refuses connections (a daemon that does not answer yet is not gone). */
function isGone(e: unknown): boolean {
  // (not a socket we may not open: that daemon may well run)
  return e instanceof CedanaError && e.code === "unavailable" &&
    /cannot reach .*\((no such socket|connection refused)\)/.test(e.message);
}
