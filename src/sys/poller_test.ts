import { assert, assertEquals } from "../testing/asserts.ts";
import { closeFd, openpty, pipe, writeFd } from "./libc.ts";
import { Poller, queuedWriter, readAll } from "./poller.ts";

const threads = () => [...Deno.readDirSync("/proc/self/task")].length;

Deno.test("poller: 200 streams read at once by one thread (Deno's blocking pool has 32)", async () => {
  const p = new Poller();
  const before = threads();
  const pipes = Array.from({ length: 200 }, () => pipe());
  const got = pipes.map(() => "");
  const done = pipes.map((q, i) =>
    readAll(q.read, (d) => got[i] += new TextDecoder().decode(d), p).then(() => closeFd(q.read))
  );
  assertEquals(p.size, 200);
  // every stream gets its data while all the others are still open
  pipes.forEach((q, i) => writeFd(q.write, new TextEncoder().encode(`stream ${i}\n`)));
  const deadline = Date.now() + 5000;
  while (got.some((g, i) => g !== `stream ${i}\n`) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 10));
  }
  assertEquals(got.filter((g, i) => g === `stream ${i}\n`).length, 200);
  assert(threads() - before < 8, `threads grew from ${before} to ${threads()}`);
  for (const q of pipes) closeFd(q.write);
  await Promise.all(done);
  assertEquals(p.size, 0);
});

Deno.test("poller: a writer queues what a full pipe cannot take, in order, and closes after it", async () => {
  const p = new Poller();
  const q = pipe();
  const w = queuedWriter(q.write, p);
  const data = new Uint8Array(1 << 20).map((_, i) => i % 251);
  w.write(data.subarray(0, 300_000)); // more than a pipe holds: the rest waits for the reader
  w.write(data.subarray(300_000));
  const closed = w.close();
  const chunks: Uint8Array[] = [];
  await readAll(q.read, (d) => chunks.push(d), p); // ends when the writer closed its end
  await closed;
  closeFd(q.read);
  const all = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let off = 0;
  for (const c of chunks) all.set(c, (off += c.length) - c.length);
  assertEquals(all.length, data.length);
  assert(all.every((b, i) => b === data[i]), "bytes out of order");
  assertEquals(p.size, 0);
});

Deno.test("poller: a held writer writes nothing and keeps its queue (a copy on request), then goes on", async () => {
  const p = new Poller();
  const q = pipe();
  const w = queuedWriter(q.write, p);
  const release = w.hold();
  w.write(new TextEncoder().encode("held "));
  w.write(new TextEncoder().encode("input"));
  assertEquals(new TextDecoder().decode(w.queued()), "held input");
  closeFd(q.read); // (the reader gone while held, as a job a dump ended: the queue is still there)
  assertEquals(w.queued().length, 10);
  release();
  await w.close(); // (EPIPE once released: dropped, not thrown)
  assertEquals(p.size, 0);
});

Deno.test("poller: a writer whose reader is gone drops the rest; a pty's reads end when its slave closes", async () => {
  const p = new Poller();
  const q = pipe();
  closeFd(q.read);
  const w = queuedWriter(q.write, p);
  w.write(new Uint8Array(10)); // EPIPE (Deno ignores SIGPIPE): dropped, not thrown
  await w.close();

  const pty = openpty();
  const out: string[] = [];
  const ended = readAll(pty.master, (d) => out.push(new TextDecoder().decode(d)), p);
  writeFd(pty.slave, new TextEncoder().encode("bye\n"));
  await new Promise((r) => setTimeout(r, 50));
  closeFd(pty.slave);
  await ended; // EIO on the master
  closeFd(pty.master);
  assert(out.join("").includes("bye"), out.join(""));
  assertEquals(p.size, 0);
});

Deno.test("poller: an fd unwatched, closed and its number reused is not handed to the old watch", async () => {
  const p = new Poller();
  const a = pipe();
  let stale = 0;
  const stop = p.watch(a.read, "in", () => stale++);
  stop();
  closeFd(a.read);
  closeFd(a.write);
  const b = pipe(); // (likely the same numbers)
  let fresh = "";
  const done = readAll(b.read, (d) => fresh += new TextDecoder().decode(d), p);
  writeFd(b.write, new TextEncoder().encode("x"));
  closeFd(b.write);
  await done;
  closeFd(b.read);
  assertEquals([stale, fresh], [0, "x"]);
});
