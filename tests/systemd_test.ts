// `cedana daemon install|uninstall`: the unit file, checked by systemd-analyze where it exists, and its
// ExecStart actually starting a daemon. Units go to temp dirs, which systemd never loads, so these tests
// never touch a host's real cedana service even where systemd runs.
import { assert, assertEquals, assertStringIncludes, assertThrows } from "../src/testing/asserts.ts";
import { quoteExecArg, renderUnit, startArgv } from "../src/daemon/systemd.ts";
import { defaults } from "../src/config/mod.ts";
import { MAIN, opts, pidAlive, TestDaemon, waitFor } from "./helpers.ts";

const SYSTEMD_RUNNING = (() => {
  try {
    return Deno.statSync("/run/systemd/system").isDirectory;
  } catch {
    return false;
  }
})();

/** `systemd-analyze verify`, or null where systemd-analyze is not installed. */
async function verifyUnit(path: string): Promise<{ ok: boolean; out: string } | null> {
  try {
    const r = await new Deno.Command("systemd-analyze", {
      args: ["verify", path],
      stdout: "piped",
      stderr: "piped",
    })
      .output();
    const dec = new TextDecoder();
    return { ok: r.success, out: dec.decode(r.stdout) + dec.decode(r.stderr) };
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
}

/** The unit's [Section] Key=value lines as "Key" -> value. */
function unitKeys(text: string): Map<string, string> {
  return new Map(
    text.split("\n").filter((l) => /^[A-Za-z]+=/.test(l)).map((
      l,
    ) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
  );
}

Deno.test("systemd: ExecStart quoting and argv", () => {
  assertEquals(quoteExecArg("/usr/local/bin/cedana"), "/usr/local/bin/cedana");
  assertEquals(quoteExecArg("127.0.0.1:9464"), "127.0.0.1:9464");
  assertEquals(quoteExecArg("/a b"), '"/a b"');
  assertEquals(quoteExecArg('x"y\\z'), '"x\\"y\\\\z"');
  // specifiers and variables would be expanded by systemd
  assertEquals(quoteExecArg("50%"), "50%%");
  assertEquals(quoteExecArg("$HOME"), '"$$HOME"');
  const cfg = defaults();
  cfg.metrics.address = "127.0.0.1:9464";
  assertEquals(startArgv(["/bin/cedana"], cfg), [
    "/bin/cedana",
    "daemon",
    "start",
    "--address",
    "/run/cedana.sock",
    "--db",
    "/tmp/cedana.db",
    "--metrics-address",
    "127.0.0.1:9464",
  ]);
  assertEquals(startArgv(["/bin/cedana"], defaults(), "/srv/cedana").slice(0, 3), [
    "/bin/cedana",
    "--config-dir",
    "/srv/cedana",
  ]);
  assertThrows(() => renderUnit(["cedana", "daemon", "start"]), Error, "absolute");
});

Deno.test(
  "systemd: install writes a unit that verifies and starts the daemon; uninstall removes it",
  opts,
  async () => {
    const d = new TestDaemon();
    const unit = `${d.dir}/units/cedana.service`;
    try {
      const r = await d.cli("daemon", "install", "--unit-path", unit);
      assertEquals(r.code, 0, r.stderr);
      assertStringIncludes(r.stdout, `wrote ${unit}`);
      // a temp dir is never loaded by systemd: the command must say why it did nothing more
      assertStringIncludes(
        r.stdout,
        SYSTEMD_RUNNING ? "systemd does not load units from" : "systemd is not running here",
      );
      const text = Deno.readTextFileSync(unit);
      assertEquals(Deno.statSync(unit).mode! & 0o777, 0o644);
      const keys = unitKeys(text);
      assertEquals(keys.get("Type"), "simple");
      assertEquals(keys.get("KillMode"), "process");
      assertEquals(keys.get("Restart"), "on-failure");
      assertEquals(keys.get("After"), "network.target");
      assertEquals(keys.get("WantedBy"), "multi-user.target");
      for (const section of ["[Unit]", "[Service]", "[Install]"]) {
        assert(
          text.includes(`\n${section}\n`),
          section,
        );
      }

      // temp paths have no spaces, so splitting on blanks is how systemd reads this ExecStart
      const argv = keys.get("ExecStart")!.split(" ");
      assert(argv[0].startsWith("/"), `ExecStart is not absolute: ${argv[0]}`);
      assert(Deno.statSync(argv[0]).isFile, `${argv[0]} does not exist`);
      const tail = argv.slice(argv.indexOf("daemon"));
      // CEDANA_LOG_LEVEL=debug of the test env is part of the effective config too
      assertEquals(tail, [
        "daemon",
        "start",
        "--address",
        d.socket,
        "--db",
        d.env.CEDANA_DB_PATH,
        "--log-level",
        "debug",
      ]);
      // the config dir came from the environment (CEDANA_CONFIG_DIR), which the service will not have
      assertEquals(argv.slice(argv.indexOf("--config-dir"), argv.indexOf("--config-dir") + 2), [
        "--config-dir",
        d.env.CEDANA_CONFIG_DIR,
      ]);

      // settings that only the installer's environment had go into the unit too
      for (const k of ["CEDANA_OUTPUT_DIR", "CEDANA_CHECKPOINT_DIR"]) {
        assertStringIncludes(text, `\nEnvironment=${k}=${d.env[k]}\n`);
      }

      const v = await verifyUnit(unit);
      if (v) assert(v.ok, `systemd-analyze verify ${unit}:\n${v.out}`);
      else console.warn("systemd-analyze not installed: unit not verified");

      // what systemd would run, the way it runs it: from /, with none of this shell's environment
      const svc = new Deno.Command(argv[0], {
        args: argv.slice(1),
        cwd: "/",
        clearEnv: true,
        env: { PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", NO_COLOR: "1" },
        stdout: "null",
        stderr: "piped",
      }).spawn();
      try {
        await waitFor(
          async () => (await d.cli("daemon", "check", "--json")).code === 0,
          "the unit's daemon",
          20_000,
        );
      } finally {
        const sock = d.socket; // the daemon removes its socket on SIGTERM, as systemd's stop sends
        svc.kill("SIGTERM");
        const out = await svc.output();
        assertEquals(out.code, 0, new TextDecoder().decode(out.stderr));
        assert(!pidAlive(svc.pid));
        assertThrows(() => Deno.statSync(sock));
      }

      // running install again updates the unit in place
      const again = await d.cli("daemon", "install", "--unit-path", unit, "--enable");
      assertEquals(again.code, 0, again.stderr);
      assertStringIncludes(again.stdout, `updated ${unit}`);
      if (!SYSTEMD_RUNNING) assertStringIncludes(again.stdout, "nor enabled");

      const un = await d.cli("daemon", "uninstall", "--unit-path", unit);
      assertEquals(un.code, 0, un.stderr);
      assertStringIncludes(un.stdout, `removed ${unit}`);
      assertThrows(() => Deno.statSync(unit));
      const twice = await d.cli("daemon", "uninstall", "--unit-path", unit);
      assertEquals(twice.code, 3, "uninstalling a missing unit is not_found");
      // a file cedana did not write is never removed
      const foreign = `${d.dir}/units/other.service`;
      Deno.writeTextFileSync(foreign, "[Unit]\n");
      const no = await d.cli("daemon", "uninstall", "--unit-path", foreign);
      assertEquals(no.code, 5, no.stderr);
      assertStringIncludes(no.stderr, "was not written by `cedana daemon install`");
      assert(Deno.statSync(foreign).isFile);
      // nor is a unit written whose daemon would refuse its metrics address at every restart
      const bad = await d.cli("daemon", "install", "--unit-path", unit, "--metrics-address", "bad");
      assertEquals(bad.code, 2, bad.stderr);
      assertThrows(() => Deno.statSync(unit));
    } finally {
      await d.cleanup();
    }
  },
);

Deno.test("systemd: unusual paths are quoted so systemd reads them back", opts, async () => {
  const d = new TestDaemon();
  const odd = `${d.dir}/conf dir 100%`;
  Deno.mkdirSync(odd);
  const unit = `${d.dir}/cedana.service`;
  try {
    const r = await d.cli(
      "--config-dir",
      odd,
      "daemon",
      "install",
      "--unit-path",
      unit,
      "--metrics-address",
      "127.0.0.1:9464",
    );
    assertEquals(r.code, 0, r.stderr);
    const exec = unitKeys(Deno.readTextFileSync(unit)).get("ExecStart")!;
    assertStringIncludes(exec, ` --config-dir "${d.dir}/conf dir 100%%" `);
    assertStringIncludes(exec, " --metrics-address 127.0.0.1:9464");
    const v = await verifyUnit(unit);
    if (v) assert(v.ok, `systemd-analyze verify ${unit}:\n${v.out}`);
  } finally {
    await d.cleanup();
  }
});

Deno.test("systemd: a unit path must name a .service", opts, async () => {
  const d = new TestDaemon();
  try {
    const r = await d.cli("daemon", "install", "--unit-path", `${d.dir}/cedana.conf`);
    assertEquals(r.code, 2);
    assertStringIncludes(r.stderr, ".service");
  } finally {
    await d.cleanup();
  }
});

Deno.test("systemd: without cedana on PATH, ExecStart is deno run of this checkout", opts, async () => {
  const d = new TestDaemon();
  const unit = `${d.dir}/cedana.service`;
  const emptyPath = Deno.makeTempDirSync();
  try {
    const r = await d.cliWith({ env: { PATH: emptyPath } }, "daemon", "install", "--unit-path", unit);
    assertEquals(r.code, 0, r.stderr);
    const argv = unitKeys(Deno.readTextFileSync(unit)).get("ExecStart")!.split(" ");
    assertEquals(argv.slice(0, 4), [Deno.execPath(), "run", "-A", MAIN]);
    const v = await verifyUnit(unit);
    if (v) assert(v.ok, `systemd-analyze verify ${unit}:\n${v.out}`);
  } finally {
    Deno.removeSync(emptyPath);
    await d.cleanup();
  }
});
