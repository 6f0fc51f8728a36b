// `cedana daemon start`: open the DB, reconcile jobs against /proc, serve the API on the Unix
// socket. Jobs are never children that die with us: stopping the daemon leaves them running.

import { dirname } from "node:path";
import type { Config } from "../config/mod.ts";
import { alreadyExists, failedPrecondition } from "../errors.ts";
import { DaemonClient } from "../client/mod.ts";
import { JobDb } from "./db.ts";
import { JobService } from "./job_service.ts";
import { Logger } from "./log.ts";
import { createApp } from "./server.ts";

async function claimSocket(path: string): Promise<void> {
  let st: Deno.FileInfo;
  try {
    st = Deno.lstatSync(path);
  } catch {
    Deno.mkdirSync(dirname(path), { recursive: true });
    return;
  }
  if (!st.isSocket) throw failedPrecondition(`${path} exists and is not a socket; refusing to replace it`);
  const client = new DaemonClient(path);
  try {
    const h = await client.health(1000);
    throw alreadyExists(`a cedana daemon is already running on ${path} (pid ${h.pid})`);
  } catch (e) {
    if ((e as { code?: string }).code === "already_exists") throw e;
    Deno.removeSync(path); // stale: nobody answers on it
  } finally {
    client.close();
  }
}

export async function startDaemon(config: Config): Promise<void> {
  const log = new Logger(config.log_level);
  const address = config.address;
  await claimSocket(address);
  Deno.mkdirSync(dirname(config.db.path), { recursive: true });
  let db: JobDb;
  try {
    db = new JobDb(config.db.path);
  } catch (e) {
    throw failedPrecondition(`cannot open job DB ${config.db.path}: ${(e as Error).message}`);
  }
  const svc = new JobService(db, config, log);
  svc.start();
  const rec = svc.reconcile();
  const app = createApp(svc, { address, db: config.db.path }, log);
  const server = Deno.serve({ path: address, transport: "unix", onListen() {} }, app.fetch);
  Deno.chmodSync(address, 0o600);
  log.info("cedana daemon listening", { address, db: config.db.path, pid: Deno.pid, ...rec });

  const stop = async (sig: string) => {
    log.info("stopping daemon; jobs keep running", { signal: sig });
    svc.shutdown();
    await server.shutdown();
    try {
      Deno.removeSync(address);
    } catch { /* already gone */ }
    db.close();
    Deno.exit(0);
  };
  for (const sig of ["SIGTERM", "SIGINT"] as const) Deno.addSignalListener(sig, () => void stop(sig));
  await server.finished;
}
