import { assertEquals } from "../testing/asserts.ts";
import { ExitWatcher } from "./exit_watcher.ts";

// A watch cancelled while poll(2) runs can see its fd number given to the next watch before the
// result comes back: that result is not the new watch's (a live job was once recorded as exited
// right after a leave-running dump's unwatch/rewatch).
Deno.test("ExitWatcher: a poll result for a cancelled watch's fd number does not end the watch that reuses it", async () => {
  const a = new Deno.Command("sleep", { args: ["30"] }).spawn();
  const b = new Deno.Command("sleep", { args: ["30"] }).spawn();
  let release!: (fds: number[]) => void;
  let polledFds: number[] = [];
  let calls = 0;
  const w = new ExitWatcher((fds) => {
    calls++;
    if (calls > 1) return new Promise((r) => setTimeout(() => r([]), 20));
    polledFds = fds;
    return new Promise((r) => release = r);
  });
  const exits: string[] = [];
  try {
    const cancelA = w.watch(a.pid, () => exits.push("a"))!;
    await new Promise((r) => setTimeout(r, 0)); // the loop is in its first poll now
    cancelA();
    w.watch(b.pid, () => exits.push("b"));
    release(polledFds); // "ready": what was A's number when the poll began
    await new Promise((r) => setTimeout(r, 50));
    assertEquals(exits, [], "neither watch ended: A was cancelled, B's process runs");
    assertEquals(w.size, 1);
  } finally {
    w.close();
    a.kill("SIGKILL");
    b.kill("SIGKILL");
    await a.status;
    await b.status;
  }
});
