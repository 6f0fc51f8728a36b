import { assertEquals, assertThrows } from "../testing/asserts.ts";
import { criuConfigFile, dumpArgs, parseCriuOpts, restoreArgs } from "./options.ts";
import { criuErrorLines } from "./run.ts";
import { versionAtLeast } from "./mod.ts";

Deno.test("dump and restore argv", () => {
  assertEquals(
    dumpArgs({
      pid: 7,
      imagesDir: "/d",
      logFile: "dump.log",
      leaveRunning: true,
      tcpEstablished: true,
      external: ["pipe:[1]"],
    }),
    [
      "dump",
      "-t",
      "7",
      "-D",
      "/d",
      "-o",
      "dump.log",
      "-v4",
      "--tcp-established",
      "--external",
      "pipe:[1]",
      "--leave-running",
    ],
  );
  assertEquals(
    restoreArgs({
      imagesDir: "/d",
      workDir: "/w",
      logFile: "r.log",
      shellJob: true,
      detach: true,
      restoreSibling: true,
      pidFile: "/w/pid",
      inheritFds: [{ fd: 3, resource: "tmp/x.log" }],
    }),
    [
      "restore",
      "-D",
      "/d",
      "-o",
      "r.log",
      "-v4",
      "-W",
      "/w",
      "--shell-job",
      "-d",
      "--restore-sibling",
      "--pidfile",
      "/w/pid",
      "--inherit-fd",
      "fd[3]:tmp/x.log",
    ],
  );
});

Deno.test("--criu-opts JSON", () => {
  assertEquals(parseCriuOpts('{"ghost-limit":"10M","skip-in-flight":true,"x":false}'), [
    "--ghost-limit",
    "10M",
    "--skip-in-flight",
  ]);
  assertEquals(parseCriuOpts(undefined), []);
  assertThrows(() => parseCriuOpts("{"), Error, "not valid JSON");
  assertThrows(() => parseCriuOpts('{"a b":1}'), Error, "bad option name");
  assertThrows(() => parseCriuOpts("[]"), Error, "must be a JSON object");
  assertThrows(() => parseCriuOpts('{"images-dir":"/tmp/x"}'), Error, '"images-dir" is cedana\'s to set');
  assertThrows(() => parseCriuOpts('{"ghost-limit":{"a":1}}'), Error, "must be a string, number or boolean");
});

Deno.test("--criu-opts as a CRIU config file (for the CRIU runc starts)", () => {
  assertEquals(
    criuConfigFile(parseCriuOpts('{"ghost-limit":"10M","skip-in-flight":true,"lsm-profile":"a b"}')),
    'ghost-limit 10M\nskip-in-flight\nlsm-profile "a b"\n',
  );
  assertEquals(criuConfigFile([]), "");
  // a newline would start another option
  assertThrows(() => criuConfigFile(["--ghost-limit", "1M\nleave-running"]), Error, "newlines");
  assertThrows(() => criuConfigFile(["--lsm-profile", 'a"b']), Error, "quotes");
});

Deno.test("CRIU log Error lines, without the harmless rlimit one", () => {
  const log = [
    "(00.000001) Version: 4.2.1",
    "(00.000100) Error (criu/util.c:1534): rlimit: Can't setup RLIMIT_NOFILE for self: Operation not permitted",
    "(00.010000) Error (criu/cr-restore.c:1237): Can't fork for 123: File exists",
  ].join("\n");
  assertEquals(criuErrorLines(log), ["Error (criu/cr-restore.c:1237): Can't fork for 123: File exists"]);
});

Deno.test("version comparison", () => {
  assertEquals(versionAtLeast("4.2.1", [4, 2]), true);
  assertEquals(versionAtLeast("4.10", [4, 2]), true);
  assertEquals(versionAtLeast("4.1.1", [4, 2]), false);
  assertEquals(versionAtLeast("3.17.1", [4, 2]), false);
});
