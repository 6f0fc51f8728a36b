// The one-file distribution: built by scripts/bundle.sh --sfx, copied alone into an empty
// directory and run with a PATH that has no deno, node or npm.
import { assert, assertEquals, assertMatch, assertStringIncludes } from "../src/testing/asserts.ts";
import { HAVE_CRIU } from "./cr_helpers.ts";
import { ROOT, waitFor } from "./helpers.ts";

const TOOLS = [
  "sh",
  "bash",
  "tar",
  "gzip",
  "mktemp",
  "dirname",
  "readlink",
  "mkdir",
  "rm",
  "mv",
  "tail",
  "cut",
  "id",
  "cat",
  "sleep",
  "setsid",
  "setpriv",
  "unshare",
  "ls",
  "env",
  "true",
  "iptables",
  "iptables-restore",
  "ip6tables-restore",
  "nft",
];

Deno.test("dist: one self-extracting file runs without deno, node or npm", {
  sanitizeOps: false,
  sanitizeResources: false,
  ignore: !HAVE_CRIU,
}, async () => {
  const build = await new Deno.Command("bash", {
    args: ["scripts/bundle.sh", "--sfx"],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  assert(build.success, new TextDecoder().decode(build.stderr));
  const dir = Deno.makeTempDirSync({ prefix: "cedana-dist-" });
  const bin = `${dir}/bin`;
  Deno.mkdirSync(bin);
  for (const t of TOOLS) {
    for (const d of ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]) {
      try {
        Deno.statSync(`${d}/${t}`);
        Deno.symlinkSync(`${d}/${t}`, `${bin}/${t}`);
        break;
      } catch { /* next */ }
    }
  }
  const exe = `${dir}/cedana`;
  Deno.copyFileSync(`${ROOT}/dist/cedana-linux-${Deno.build.arch}`, exe);
  Deno.chmodSync(exe, 0o755);
  const env = {
    PATH: bin,
    HOME: dir,
    CEDANA_ADDRESS: `${dir}/c.sock`,
    CEDANA_DB_PATH: `${dir}/c.db`,
    CEDANA_OUTPUT_DIR: dir,
    CEDANA_CONFIG_DIR: dir,
    CEDANA_CHECKPOINT_DIR: dir,
  };
  const run = async (...args: string[]) => {
    const o = await new Deno.Command(exe, {
      args,
      env,
      clearEnv: true,
      cwd: dir,
      stdout: "piped",
      stderr: "piped",
    })
      .output();
    return { code: o.code, out: new TextDecoder().decode(o.stdout), err: new TextDecoder().decode(o.stderr) };
  };
  // an older version's unpacked copy, which no process runs from: the new one replaces it
  Deno.mkdirSync(`${dir}/.cache/cedana/0.0.1-0000000000000000/cedana`, { recursive: true });
  const v = await run("--version");
  assertEquals(v.code, 0, v.err);
  assertMatch(v.out, /^cedana \d+\.\d+\.\d+/);
  const cached = [...Deno.readDirSync(`${dir}/.cache/cedana`)].map((e) => e.name);
  assertEquals(cached.length, 1, `one unpacked version in the cache, not ${cached}`);
  assertMatch(cached[0], /^\d+\.\d+\.\d+-[0-9a-f]{16}$/);
  const check = await run("check");
  assertEquals(check.code, 0, check.out + check.err);
  assertStringIncludes(check.out, "ok    criu");
  const daemon = new Deno.Command(exe, {
    args: ["daemon", "start"],
    env,
    clearEnv: true,
    stdout: "null",
    stderr: "null",
  })
    .spawn();
  try {
    await waitFor(async () => (await run("ps")).code === 0, "daemon up", 30_000);
    const r = await run("run", "process", "--jid", "d1", "--", "sh", "-c", "echo from-dist; sleep 30");
    assertEquals(r.code, 0, r.err);
    await waitFor(() => {
      try {
        return Deno.readTextFileSync(`${dir}/cedana-output-d1.log`) === "from-dist\n";
      } catch {
        return false;
      }
    }, "job output");
    const dump = await run("dump", "job", "d1");
    assertEquals(dump.code, 0, dump.err);
    const restore = await run("restore", "job", "d1");
    assertEquals(restore.code, 0, restore.err);
    assertMatch((await run("ps")).out, /d1\s+process\s+\d+\s+sleeping/);
    await run("job", "kill", "--all");
  } finally {
    daemon.kill("SIGTERM");
    await daemon.status;
    Deno.removeSync(dir, { recursive: true });
  }
});
