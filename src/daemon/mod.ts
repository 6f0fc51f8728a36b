// `cedana daemon start`: open the DB, reconcile jobs against /proc, serve the API on the Unix
// socket. Jobs are never children that die with us: stopping the daemon leaves them running.

import { dirname } from "node:path";
import type { Config } from "../config/mod.ts";
import { alreadyExists, failedPrecondition } from "../errors.ts";
import { DaemonClient } from "../client/mod.ts";
import { VERSION } from "../version.ts";
import { JobDb } from "./db.ts";
import { JobService } from "./job_service.ts";
import { Logger } from "./log.ts";
import { daemonMetrics, metricsHandler, parseListenAddress } from "./metrics.ts";
import { createApp } from "./server.ts";
import { tryLockFile } from "../sys/mod.ts";

/**
 * One daemon per job DB: a second one would take the first one's dumps in progress for leftovers
 * of a crash, and both would watch (and record) the same jobs. The lock is an flock on DB.lock,
 * held until this process ends; the file says who holds it.
 */
function claimDb(dbPath: string, address: string): void {
  // (keyed on the DB file itself: a symlink to it is the same DB)
  let real = dbPath;
  try {
    real = Deno.realPathSync(dbPath);
  } catch { /* a new DB */ }
  const lockPath = `${real}.lock`;
  let fd: number | null;
  try {
    fd = tryLockFile(lockPath);
  } catch (e) {
    throw failedPrecondition(`cannot lock the job DB (${lockPath}): ${(e as Error).message}`);
  }
  if (fd === null) {
    let holder: { pid?: number; address?: string } = {};
    try {
      holder = JSON.parse(Deno.readTextFileSync(lockPath));
    } catch { /* being written */ }
    if (holder.address === address) {
      throw alreadyExists(`a cedana daemon is already running on ${address} (pid ${holder.pid ?? "?"})`);
    }
    throw alreadyExists(
      `another cedana daemon (pid ${holder.pid ?? "?"}, socket ${
        holder.address ?? "?"
      }) uses the job DB ${dbPath}; ` +
        `stop it, or give this daemon its own DB (CEDANA_DB_PATH or db.path in config.json)`,
    );
  }
  Deno.writeTextFileSync(lockPath, JSON.stringify({ pid: Deno.pid, address }) + "\n");
}

async function claimSocket(path: string): Promise<void> {
  let st: Deno.FileInfo;
  try {
    st = Deno.lstatSync(path);
  } catch {
    Deno.mkdirSync(dirname(path), { recursive: true });
    return;
  }
  if (!st.isSocket) throw failedPrecondition(`${path} exists and is not a socket; refusing to replace it`);
  // Stale only when nobody listens (connection refused): a socket someone serves is never removed,
  // cedana's or another program's (a mistyped --address must not take containerd's).
  try {
    (await Deno.connect({ transport: "unix", path })).close();
  } catch (e) {
    if (e instanceof Deno.errors.ConnectionRefused) {
      Deno.removeSync(path);
      return;
    }
    throw failedPrecondition(`cannot check the socket ${path}: ${(e as Error).message}`);
  }
  const client = new DaemonClient(path);
  try {
    const h = await client.health(1000);
    throw alreadyExists(`a cedana daemon is already running on ${path} (pid ${h.pid})`);
  } catch (e) {
    if ((e as { code?: string }).code === "already_exists") throw e;
    throw failedPrecondition(
      `another program listens on ${path} (not a cedana daemon); refusing to replace it`,
    );
  } finally {
    client.close();
  }
}

export async function startDaemon(config: Config): Promise<void> {
  const log = new Logger(config.log_level);
  // A daemon holds every job's I/O and records: a bug in a background task (a watcher, a pump)
  // is logged, and the daemon keeps serving instead of taking all of that down with it.
  globalThis.addEventListener("unhandledrejection", (e) => {
    e.preventDefault();
    log.error("unhandled rejection (the daemon goes on)", { error: String(e.reason?.stack ?? e.reason) });
  });
  globalThis.addEventListener("error", (e) => {
    e.preventDefault();
    log.error("uncaught error (the daemon goes on)", { error: String(e.error?.stack ?? e.message) });
  });
  const address = config.address;
  // a bad metrics.address fails before anything is claimed or opened
  const metricsAt = config.metrics.address ? parseListenAddress(config.metrics.address) : null;
  Deno.mkdirSync(dirname(config.db.path), { recursive: true });
  // where jobs' logs go by default: a missing one would fail every log-mode job
  try {
    Deno.mkdirSync(config.output_dir, { recursive: true });
  } catch (e) {
    log.warn("cannot create output_dir: log-mode jobs will fail to start", {
      dir: config.output_dir,
      error: String(e),
    });
  }
  claimDb(config.db.path, address);
  await claimSocket(address);
  let db: JobDb;
  try {
    db = new JobDb(config.db.path);
  } catch (e) {
    throw failedPrecondition(`cannot open job DB ${config.db.path}: ${(e as Error).message}`);
  }
  const svc = new JobService(db, config, log);
  svc.start();
  const rec = svc.reconcile();
  const metrics = daemonMetrics({ version: VERSION, jobs: () => svc.list() });
  svc.onOperation(metrics.record);
  let metricsServer: Deno.HttpServer | null = null;
  if (metricsAt) {
    try {
      metricsServer = Deno.serve({ ...metricsAt, onListen() {} }, metricsHandler(metrics.registry));
    } catch (e) {
      // a daemon asked for metrics that silently has none would look healthy to everyone but Prometheus
      svc.shutdown();
      db.close();
      throw failedPrecondition(`cannot serve metrics on ${config.metrics.address}: ${(e as Error).message}`);
    }
    log.info("metrics listening", { address: config.metrics.address });
  }
  let stopping = false;
  const control = { stop: () => void stop("request"), stopping: () => stopping };
  const app = createApp(svc, { address, db: config.db.path }, log, metrics.registry, control);
  let server: Deno.HttpServer;
  try {
    server = Deno.serve({ path: address, transport: "unix", onListen() {} }, app.fetch);
  } catch (e) {
    svc.shutdown();
    db.close();
    if (e instanceof Deno.errors.AddrInUse) {
      throw alreadyExists(`another cedana daemon started on ${address} at the same time`);
    }
    throw failedPrecondition(`cannot listen on ${address}: ${(e as Error).message}`);
  }
  Deno.chmodSync(address, 0o600);
  log.info("cedana daemon listening", { address, db: config.db.path, pid: Deno.pid, ...rec });

  const stop = async (why: string) => {
    const waiting = svc.operations();
    if (stopping) {
      if (!waiting.length) return; // (stopping already)
      // Asked again while waiting: stop now. CRIU goes on without the daemon; the next one
      // salvages the dump's images or records the restored job, as after a crash.
      log.warn("stopping now, not waiting for the operations in progress", { signal: why, waiting });
      try {
        Deno.removeSync(address);
      } catch { /* already gone */ }
      Deno.exit(0);
    }
    stopping = true;
    log.info("stopping daemon; jobs keep running", { signal: why, ...(waiting.length ? { waiting } : {}) });
    await svc.idle();
    svc.shutdown();
    await Promise.all([server.shutdown(), metricsServer?.shutdown()]);
    try {
      Deno.removeSync(address);
    } catch { /* already gone */ }
    db.close();
    Deno.exit(0);
  };
  for (const sig of ["SIGTERM", "SIGINT"] as const) Deno.addSignalListener(sig, () => void stop(sig));
  // `cedana daemon start &` in a terminal: closing the terminal must not take the daemon down
  Deno.addSignalListener("SIGHUP", () => log.info("SIGHUP ignored (stop the daemon with SIGTERM)"));
  await server.finished;
}
