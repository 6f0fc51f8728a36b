import assert from "node:assert/strict";
import { dirname } from "node:path";
import { closeFd, openAppend, pipe, writeFd, writeFdAsync } from "../../sys/mod.ts";
import { logPump, pump } from "./log_pump.ts";

const enc = (s: string) => new TextEncoder().encode(s);

function tmpLog(): string {
  return `${Deno.makeTempDirSync({ prefix: "cedana-pump-" })}/out.log`;
}

Deno.test("log pump: both pipes into the log in order, done when their writers are gone", async () => {
  const log = tmpLog();
  Deno.writeTextFileSync(log, "earlier\n");
  const out = pipe(), err = pipe();
  const done = logPump([out.read, err.read], log);
  writeFd(out.write, enc("one\n"));
  await new Promise((r) => setTimeout(r, 50));
  writeFd(err.write, enc("two\n"));
  await new Promise((r) => setTimeout(r, 50));
  await writeFdAsync(out.write, enc("x".repeat(200_000) + "\n")); // more than a pipe holds
  closeFd(out.write);
  closeFd(err.write);
  await done;
  const text = Deno.readTextFileSync(log);
  assert.equal(text, "earlier\none\ntwo\n" + "x".repeat(200_000) + "\n");
  Deno.removeSync(dirname(log), { recursive: true });
});

Deno.test("log pump: a log truncated meanwhile (logrotate copytruncate) gets no hole", async () => {
  const log = tmpLog();
  const out = pipe();
  const done = logPump([out.read], log);
  writeFd(out.write, enc("before\n"));
  await new Promise((r) => setTimeout(r, 50));
  Deno.truncateSync(log, 0);
  writeFd(out.write, enc("after\n"));
  closeFd(out.write);
  await done;
  assert.equal(Deno.readTextFileSync(log), "after\n");
  Deno.removeSync(dirname(log), { recursive: true });
});

Deno.test("log pump: a target splice refuses (an O_APPEND fd) is written by copy instead", async () => {
  const log = tmpLog();
  const out = pipe();
  const fd = openAppend(log); // O_APPEND: splice(2) says EINVAL
  const done = pump([out.read], fd);
  writeFd(out.write, enc("a\n"));
  await new Promise((r) => setTimeout(r, 50));
  writeFd(out.write, enc("b\n"));
  closeFd(out.write);
  await done;
  closeFd(fd);
  assert.equal(Deno.readTextFileSync(log), "a\nb\n");
  Deno.removeSync(dirname(log), { recursive: true });
});
