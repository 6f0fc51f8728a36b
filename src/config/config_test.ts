import { assertEquals, assertThrows } from "../testing/asserts.ts";
import { envName, loadConfig } from "./mod.ts";

function dirWith(config?: unknown): string {
  const dir = Deno.makeTempDirSync();
  if (config !== undefined) Deno.writeTextFileSync(`${dir}/config.json`, JSON.stringify(config));
  return dir;
}

Deno.test("env names follow Cedana's CEDANA_<KEY> scheme", () => {
  assertEquals(envName("db.path"), "CEDANA_DB_PATH");
  assertEquals(envName("criu.binary_path"), "CEDANA_CRIU_BINARY_PATH");
});

Deno.test("precedence: defaults < file < env < flags", () => {
  const dir = dirWith({ address: "/file.sock", db: { path: "/file.db" }, checkpoint: { dir: "/ck" } });
  const env = { CEDANA_DB_PATH: "/env.db", CEDANA_GPU_LOCK_TIMEOUT: "500" };
  const cfg = loadConfig({ configDir: dir, env, flags: { "db.path": "/flag.db" } });
  assertEquals(cfg.address, "/file.sock");
  assertEquals(cfg.db.path, "/flag.db");
  assertEquals(cfg.checkpoint.dir, "/ck");
  assertEquals(cfg.gpu.lock_timeout, 500);
  assertEquals(cfg.log_level, "info");
  assertEquals(loadConfig({ configDir: dir, env }).db.path, "/env.db");
});

Deno.test("bad config gives a clear error", () => {
  const bad = Deno.makeTempDirSync();
  Deno.writeTextFileSync(`${bad}/config.json`, "{nope");
  assertThrows(() => loadConfig({ configDir: bad, env: {} }), Error, "not valid JSON");
  assertThrows(
    () => loadConfig({ configDir: dirWith({ adress: "x" }), env: {} }),
    Error,
    'unknown key "adress"',
  );
  assertThrows(
    () => loadConfig({ configDir: dirWith({ db: { path: 3 } }), env: {} }),
    Error,
    "must be a string",
  );
  assertThrows(
    () => loadConfig({ configDir: dirWith(), env: { CEDANA_GPU_LOCK_TIMEOUT: "soon" } }),
    Error,
    "must be a number",
  );
  assertThrows(
    () => loadConfig({ configDir: dirWith(), env: { CEDANA_LOG_LEVEL: "loud" } }),
    Error,
    "log_level",
  );
});

Deno.test("config.json takes keys as the docs write them (dotted) too; values are checked at load", () => {
  const cfg = loadConfig({
    configDir: dirWith({ "checkpoint.compression": "zstd", "criu.log_level": 4 }),
    env: {},
  });
  assertEquals([cfg.checkpoint.compression, cfg.criu.log_level], ["zstd", 4]);
  assertEquals(loadConfig({ configDir: dirWith({ log_level: "DEBUG" }), env: {} }).log_level, "debug");
  assertThrows(
    () => loadConfig({ configDir: dirWith({ "checkpoint.compresion": "zstd" }), env: {} }),
    Error,
    'unknown key "checkpoint.compresion"',
  );
  assertThrows(
    () => loadConfig({ configDir: dirWith({ "bogus.key": 1 }), env: {} }),
    Error,
    'unknown key "bogus.key"',
  );
  assertThrows(
    () =>
      loadConfig({
        configDir: dirWith({ "checkpoint.compression": "zstd", checkpoint: { compression: "gzip" } }),
        env: {},
      }),
    Error,
    '"checkpoint.compression" is given twice',
  );
  assertThrows(
    () => loadConfig({ configDir: dirWith({ checkpoint: { compression: "bogus" } }), env: {} }),
    Error,
    'checkpoint.compression must be one of none, tar, gzip, lz4, zstd (got "bogus")',
  );
  assertThrows(
    () => loadConfig({ configDir: dirWith({ gpu: { lock_timeout: -5 } }), env: {} }),
    Error,
    "gpu.lock_timeout",
  );
  assertThrows(
    () => loadConfig({ configDir: dirWith(), env: { CEDANA_CRIU_LOG_LEVEL: "9" } }),
    Error,
    "criu.log_level",
  );
});

Deno.test("paths are never empty, and relative ones are made absolute once", () => {
  const dir = dirWith();
  assertThrows(
    () => loadConfig({ configDir: dir, env: { CEDANA_DB_PATH: "" } }),
    Error,
    "db.path must not be empty",
  );
  assertThrows(() => loadConfig({ configDir: dir, env: { CEDANA_OUTPUT_DIR: " " } }), Error, "output_dir");
  const cfg = loadConfig({ configDir: dir, env: { CEDANA_CHECKPOINT_DIR: "./ck" } });
  assertEquals(cfg.checkpoint.dir, `${Deno.cwd()}/ck`);
});

Deno.test("inherited names are unknown keys, not config", () => {
  for (const bad of [{ toString: "a" }, JSON.parse('{"__proto__": {"x": 1}}')]) {
    assertThrows(() => loadConfig({ configDir: dirWith(bad), env: {} }), Error, "unknown key");
  }
});
