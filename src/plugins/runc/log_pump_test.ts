import assert from "node:assert/strict";
import { dirname } from "node:path";
import {
  closeFd,
  openAppend,
  openLog,
  openpty,
  pipe,
  queuedWriter,
  setNonBlocking,
  writeFd,
  writeNow,
} from "../../sys/mod.ts";
import { logPump, LogTarget } from "./log_pump.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function tmpLog(): string {
  return `${Deno.makeTempDirSync({ prefix: "cedana-pump-" })}/out.log`;
}

Deno.test("log pump: both pipes into the log in order, done when their writers are gone", async () => {
  const log = tmpLog();
  Deno.writeTextFileSync(log, "earlier\n");
  const out = pipe(), err = pipe();
  const done = logPump([out.read, err.read], new LogTarget(log));
  writeFd(out.write, enc("one\n"));
  await sleep(50);
  writeFd(err.write, enc("two\n"));
  await sleep(50);
  const w = queuedWriter(out.write);
  w.write(enc("x".repeat(200_000) + "\n")); // more than a pipe holds
  await w.close(); // (closes out.write once all of it is in)
  closeFd(err.write);
  await done;
  assert.equal(Deno.readTextFileSync(log), "earlier\none\ntwo\n" + "x".repeat(200_000) + "\n");
  Deno.removeSync(dirname(log), { recursive: true });
});

Deno.test("log pump: a log truncated meanwhile (logrotate copytruncate) gets no hole", async () => {
  const log = tmpLog();
  const out = pipe();
  const done = logPump([out.read], new LogTarget(log));
  writeFd(out.write, enc("before\n"));
  await sleep(50);
  Deno.truncateSync(log, 0);
  writeFd(out.write, enc("after\n"));
  closeFd(out.write);
  await done;
  assert.equal(Deno.readTextFileSync(log), "after\n");
  Deno.removeSync(dirname(log), { recursive: true });
});

Deno.test("log pump: a log renamed (logrotate create) or removed: the output goes to the file at the path", async () => {
  const log = tmpLog();
  const out = pipe();
  const done = logPump([out.read], new LogTarget(log));
  writeFd(out.write, enc("one\n"));
  await sleep(50);
  Deno.renameSync(log, `${log}.1`);
  Deno.writeTextFileSync(log, ""); // (what logrotate's create does)
  await sleep(300);
  writeFd(out.write, enc("two\n"));
  await sleep(50);
  Deno.removeSync(log);
  await sleep(300);
  writeFd(out.write, enc("three\n"));
  closeFd(out.write);
  await done;
  assert.equal(Deno.readTextFileSync(`${log}.1`), "one\n");
  assert.equal(Deno.readTextFileSync(log), "three\n");
  Deno.removeSync(dirname(log), { recursive: true });
});

Deno.test("log pump: a target splice refuses (an O_APPEND fd) is written by copy instead", async () => {
  const log = tmpLog();
  const out = pipe();
  const done = logPump([out.read], new LogTarget(log, openAppend(log))); // splice(2): EINVAL
  writeFd(out.write, enc("a\n"));
  await sleep(50);
  writeFd(out.write, enc("b\n"));
  closeFd(out.write);
  await done;
  assert.equal(Deno.readTextFileSync(log), "a\nb\n");
  Deno.removeSync(dirname(log), { recursive: true });
});

Deno.test("log: a FIFO with no reader is refused at once, not waited on", () => {
  const dir = Deno.makeTempDirSync({ prefix: "cedana-pump-" });
  new Deno.Command("mkfifo", { args: [`${dir}/f`] }).outputSync();
  assert.throws(() => openLog(`${dir}/f`), /cannot open log file .*\/f: a FIFO with no reader/);
  Deno.removeSync(dir, { recursive: true });
});

Deno.test("log pump: a terminal nobody reads stalls the job's output, not the daemon", async () => {
  const pty = openpty();
  const out = pipe();
  const done = logPump([out.read], new LogTarget(pty.slavePath, openLog(pty.slavePath)));
  const w = queuedWriter(out.write);
  w.write(new Uint8Array(1 << 20).fill(0x61)); // far more than a tty holds
  const writing = w.close(); // (closes out.write once all of it is in)
  await sleep(200);
  const t0 = performance.now();
  await sleep(50);
  assert.ok(performance.now() - t0 < 1000, "the event loop runs on");
  closeFd(pty.master); // (the pump's blocked write now fails: the rest is drained and dropped)
  await writing;
  await done;
  closeFd(pty.slave);
});

Deno.test("log pump: output it cannot write is drained and dropped, said once, and said again when it lands", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "cedana-pump-" });
  const log = `${dir}/gone/out.log`; // its directory does not exist (yet)
  const said: string[] = [];
  const note = { warn: (m: string) => said.push(`warn: ${m}`), info: (m: string) => said.push(`info: ${m}`) };
  const out = pipe();
  const done = logPump([out.read], new LogTarget(log, null, { log: note, jid: "j" }));
  for (const line of ["one\n", "two\n"]) {
    writeFd(out.write, enc(line));
    await sleep(50);
  }
  Deno.mkdirSync(`${dir}/gone`);
  await sleep(250);
  writeFd(out.write, enc("three\n"));
  closeFd(out.write);
  await done;
  assert.equal(Deno.readTextFileSync(log), "three\n");
  assert.deepEqual(said, [
    "warn: a job's output is dropped: its log cannot be written",
    "info: a job's output reaches its log again",
  ]);
  Deno.removeSync(dir, { recursive: true });
});

Deno.test("log pump: 60 containers' pipes at once, each into its own log (one poll loop, no thread each)", async () => {
  // (one blocked poll per job held a thread of Deno's 32-thread blocking pool: job 33's log stayed empty)
  const dir = Deno.makeTempDirSync({ prefix: "cedana-pump-" });
  const jobs = Array.from(
    { length: 60 },
    (_, i) => ({ i, out: pipe(), err: pipe(), log: `${dir}/${i}.log` }),
  );
  const done = jobs.map((j) => logPump([j.out.read, j.err.read], new LogTarget(j.log)));
  for (const j of jobs) writeFd(j.out.write, enc(`job ${j.i} out\n`));
  const deadline = Date.now() + 5000;
  const written = () => jobs.filter((j) => Deno.readTextFileSync(j.log) === `job ${j.i} out\n`).length;
  while (written() < jobs.length && Date.now() < deadline) await sleep(20);
  assert.equal(written(), jobs.length);
  for (const j of jobs) {
    closeFd(j.out.write);
    closeFd(j.err.write);
  }
  await Promise.all(done);
  Deno.removeSync(dir, { recursive: true });
});

Deno.test("log pump: 40 FIFO logs nobody reads stall only their own jobs; a file log next to them flows", async () => {
  // (a blocked copy into such a log held a thread of Deno's 32-thread blocking pool: from 32 on,
  // every stream of the daemon stopped)
  const dir = Deno.makeTempDirSync({ prefix: "cedana-pump-" });
  const threads = () => [...Deno.readDirSync("/proc/self/task")].length;
  const before = threads();
  const stalled = Array.from({ length: 40 }, (_, i) => {
    const path = `${dir}/f${i}`;
    new Deno.Command("mkfifo", { args: [path] }).outputSync();
    const reader = Deno.openSync(path, { read: true, write: true }); // (held, never read)
    const out = pipe();
    const done = logPump([out.read], new LogTarget(path, openLog(path)));
    return { reader, out, done };
  });
  // more than a FIFO and a pipe hold, without a blocked thread here either
  for (let round = 0; round < 4; round++) {
    for (const s of stalled) {
      setNonBlocking(s.out.write);
      writeNow(s.out.write, new Uint8Array(64 << 10));
    }
    await sleep(50);
  }
  const log = `${dir}/file.log`;
  const out = pipe();
  const done = logPump([out.read], new LogTarget(log));
  writeFd(out.write, enc("flows\n"));
  const deadline = Date.now() + 3000;
  while (Deno.readTextFileSync(log) !== "flows\n" && Date.now() < deadline) await sleep(20);
  assert.equal(Deno.readTextFileSync(log), "flows\n");
  assert.ok(threads() - before < 40, `threads grew from ${before} to ${threads()}`);
  closeFd(out.write);
  await done;
  for (const s of stalled) s.reader.close(); // (their copies fail now: drained and dropped)
  for (const s of stalled) closeFd(s.out.write);
  await Promise.all(stalled.map((s) => s.done));
  Deno.removeSync(dir, { recursive: true });
});
