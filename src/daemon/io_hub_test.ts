import { assertEquals } from "../testing/asserts.ts";
import type { ExitStatus, JobIo } from "../plugins/mod.ts";
import { IoHub } from "./io_hub.ts";

function fakeIo() {
  let out: (s: number, d: Uint8Array) => void = () => {};
  let end = () => {};
  const written: string[] = [];
  const io: JobIo = {
    onOutput(cb, e) {
      out = cb;
      end = e;
    },
    write: (d) => written.push(new TextDecoder().decode(d)),
    endInput: () => written.push("<eof>"),
  };
  return {
    io,
    emit: (s: number, t: string) => out(s, new TextEncoder().encode(t)),
    end: () => end(),
    written,
  };
}

function collector() {
  const got: string[] = [];
  let exit: ExitStatus | null = null;
  return {
    sub: {
      output: (s: number, d: Uint8Array) => got.push(`${s}:${new TextDecoder().decode(d)}`),
      exit: (st: ExitStatus) => exit = st,
    },
    got,
    exit: () => exit,
  };
}

Deno.test("io hub: broadcast, replay from an offset, exit after output drained", () => {
  const f = fakeIo();
  const hub = new IoHub(f.io);
  f.emit(1, "hello ");
  const a = collector();
  hub.attach(a.sub); // default: only new output
  const b = collector();
  hub.attach(b.sub, 0); // replay from the start
  f.emit(2, "err");
  f.emit(1, "world");
  assertEquals(a.got, ["2:err", "1:world"]);
  assertEquals(b.got, ["1:hello ", "2:err", "1:world"]);
  const c = collector();
  hub.attach(c.sub, 3); // from the middle of a chunk
  assertEquals(c.got, ["1:lo ", "2:err", "1:world"]);
  hub.exited({ code: 3, signal: null });
  assertEquals(a.exit(), null, "not before the output has ended");
  f.end();
  assertEquals(a.exit(), { code: 3, signal: null });
  assertEquals(b.exit(), { code: 3, signal: null });
  const late = collector();
  hub.attach(late.sub, 0);
  assertEquals(late.exit(), { code: 3, signal: null });
  hub.input(new TextEncoder().encode("ignored after exit"));
  assertEquals(f.written, []);
});

Deno.test("io hub: input and end of input reach the job", () => {
  const f = fakeIo();
  const hub = new IoHub(f.io);
  hub.input(new TextEncoder().encode("x"));
  hub.endInput();
  assertEquals(f.written, ["x", "<eof>"]);
});

Deno.test("io hub: a held job's output is not read until the first client attaches; its exit waits too", () => {
  let reading = false;
  const f = fakeIo();
  const io: JobIo = {
    ...f.io,
    onOutput(cb, e) {
      reading = true;
      f.io.onOutput(cb, e);
    },
  };
  const hub = new IoHub(io, { hold: true });
  assertEquals(reading, false, "nothing read before a client is there (the job blocks on its pipe)");
  hub.exited({ code: 0, signal: null }); // a short job can end while held
  assertEquals(hub.finished, null, "its output is still to be read");
  const c = collector();
  hub.attach(c.sub, 0);
  assertEquals(reading, true);
  f.emit(1, "all of it");
  f.end();
  assertEquals(c.got, ["1:all of it"]);
  assertEquals(c.exit(), { code: 0, signal: null });
});

Deno.test("io hub: a job that ends while a client holds its output up keeps its tail until it is read", async () => {
  const f = fakeIo();
  let paused = 0;
  f.io.pause = () => paused++;
  f.io.resume = () => paused--;
  const hub = new IoHub(f.io);
  const c = collector();
  hub.attach(c.sub);
  hub.pause(); // (a client behind)
  hub.exited({ code: 3, signal: null });
  await new Promise((r) => setTimeout(r, 2600)); // the 2 s fallback would have ended it here
  assertEquals([c.exit(), paused], [null, 1]);
  hub.resume();
  f.emit(1, "TAIL");
  f.end();
  assertEquals([c.got.at(-1), c.exit()?.code], ["1:TAIL", 3]);
});
