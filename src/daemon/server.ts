// HTTP API of the daemon (Hono). Routes only parse and validate; the job service does the work.
// Every error leaves here as { error: { code, message, details } } with the status for its code.

import { Hono } from "hono";
import type { Context } from "hono";
import { upgradeWebSocket } from "hono/deno";
import type {
  AttachClientMessage,
  AttachServerMessage,
  DeleteRequest,
  DumpRequest,
  ErrorBody,
  HealthResponse,
  JobType,
  KillRequest,
  ManageProcessRequest,
  RestoreRequest,
  RunProcessRequest,
  StopResponse,
} from "../api/types.ts";
import { ATTACH_OUTPUT_WINDOW } from "../api/types.ts";
import {
  CedanaError,
  HTTP_STATUS,
  invalidArgument,
  notFound,
  toCedanaError,
  unavailable,
} from "../errors.ts";
import { VERSION } from "../version.ts";
import type { JobService } from "./job_service.ts";
import type { Logger } from "./log.ts";
import { metricsResponse, type Registry } from "./metrics.ts";
import { isValidPid } from "../proc/mod.ts";

async function body<T>(c: Context, check: (b: Record<string, unknown>) => void): Promise<T> {
  let b: unknown;
  try {
    b = await c.req.json();
  } catch {
    throw invalidArgument("request body is not valid JSON");
  }
  if (typeof b !== "object" || b === null || Array.isArray(b)) {
    throw invalidArgument("request body must be a JSON object");
  }
  check(b as Record<string, unknown>);
  return b as T;
}

const isStrArray = (v: unknown) => Array.isArray(v) && v.every((x) => typeof x === "string");
function expect(cond: boolean, msg: string) {
  if (!cond) throw invalidArgument(msg);
}
const optional = (v: unknown, type: string) => v === undefined || typeof v === type;

function checkRun(b: Record<string, unknown>) {
  expect(isStrArray(b.args), "args must be an array of strings");
  expect(typeof b.cwd === "string", "cwd must be a string");
  expect(typeof b.env === "object" && b.env !== null, "env must be an object");
  for (const k of ["jid", "log", "pidFile"]) expect(optional(b[k], "string"), `${k} must be a string`);
  for (const k of ["attachable", "tty", "gpu"]) expect(optional(b[k], "boolean"), `${k} must be a boolean`);
  for (const k of ["cols", "rows"]) expect(optional(b[k], "number"), `${k} must be a number`);
}

function checkRunRunc(b: Record<string, unknown>) {
  expect(typeof b.bundle === "string", "bundle must be a string");
  for (const k of ["jid", "id", "root", "log"]) expect(optional(b[k], "string"), `${k} must be a string`);
  for (const k of ["attachable", "noPivot", "systemdCgroup"]) {
    expect(optional(b[k], "boolean"), `${k} must be a boolean`);
  }
}

function checkRunContainerd(b: Record<string, unknown>) {
  expect(typeof b.image === "string", "image must be a string");
  for (const k of ["jid", "id", "address", "namespace", "log"]) {
    expect(optional(b[k], "string"), `${k} must be a string`);
  }
  for (const k of ["args", "env"]) {
    expect(b[k] === undefined || isStrArray(b[k]), `${k} must be an array of strings`);
  }
}

const RUN_CHECKS: Record<string, (b: Record<string, unknown>) => void> = {
  process: checkRun,
  runc: checkRunRunc,
  containerd: checkRunContainerd,
};

const MANAGE_CHECKS: Record<string, (b: Record<string, unknown>) => void> = {
  process: (b) => {
    expect(typeof b.pid === "number", "pid must be a number");
    expect(optional(b.jid, "string"), "jid must be a string");
    expect(optional(b.gpu, "boolean"), "gpu must be a boolean");
  },
  runc: (b) => {
    expect(typeof b.id === "string", "id must be a string");
    for (const k of ["jid", "root", "bundle"]) expect(optional(b[k], "string"), `${k} must be a string`);
  },
  containerd: (b) => {
    expect(typeof b.id === "string", "id must be a string");
    for (const k of ["jid", "address", "namespace"]) {
      expect(optional(b[k], "string"), `${k} must be a string`);
    }
  },
};

function checkerFor(table: Record<string, (b: Record<string, unknown>) => void>, type: string) {
  const check = table[type];
  if (!check) throw notFound(`unknown job type "${type}" (known: ${Object.keys(table).join(", ")})`);
  return check;
}

function checkJids(b: Record<string, unknown>) {
  expect(b.jids === undefined || isStrArray(b.jids), "jids must be an array of strings");
  expect(optional(b.all, "boolean"), "all must be a boolean");
  b.jids ??= [];
}

/** A client this far behind on a job's output pauses the job's output; it resumes below LOW. */
const CLIENT_HIGH = ATTACH_OUTPUT_WINDOW, CLIENT_LOW = 1 << 20;
/** How long a client may read nothing while it holds a job's output up before it is let go. */
const STALL_MS = 10_000;

/**
 * The end of an attachment, its last message sent: the client closes once it has taken it. Closed
 * from here only when it does not: all that was queued for it gone for 2 s (the rest waits in the
 * socket), or `maxMs` on (an hour for a job's end, so a client stopped meanwhile still gets it). (A close from here with output still queued dropped the end of the
 * output and the exit code for a client that was stopped and came back; one that crossed a
 * message from the client reached the client as a broken connection, its output lost.)
 */
function closeLater(
  ws: { readyState: number; close(code: number, reason: string): void },
  raw: WebSocket | undefined,
  code: number,
  reason: string,
  maxMs: number,
): void {
  const since = Date.now();
  let idle = 0;
  const t = setInterval(() => {
    if (ws.readyState !== WebSocket.OPEN) return clearInterval(t);
    const now = Date.now();
    idle = raw?.bufferedAmount ? 0 : idle || now;
    if (now - since < maxMs && (!idle || now - idle < 2000)) return;
    clearInterval(t);
    ws.close(code, reason);
  }, 100);
}

export function createApp(
  svc: JobService,
  info: { address: string; db: string },
  log: Logger,
  metrics?: Registry,
  /** Stopping the daemon (POST /v1/daemon/stop), and whether it is. */
  control: { stop(): void; stopping(): boolean } = { stop() {}, stopping: () => false },
): Hono {
  const app = new Hono();

  // Every request is logged with its duration and outcome; polling (health, metrics, progress)
  // only at debug level, so that an info log stays readable.
  const QUIET = /^\/(v1\/health|metrics|v1\/jobs\/[^/]+\/progress)$/;
  app.use(async (c, next) => {
    const t0 = performance.now();
    await next();
    const status = c.res.status;
    const fields = {
      method: c.req.method,
      path: c.req.path,
      status,
      outcome: status < 400 ? "ok" : status < 500 ? "refused" : "error",
      ms: +(performance.now() - t0).toFixed(1),
      // (why, for whoever reads the log: the client alone saw the message)
      ...(status >= 400 && c.error ? { error: c.error.message } : {}),
    };
    if (QUIET.test(c.req.path)) log.debug("request", fields);
    else log.info("request", fields);
  });

  // A stopping daemon waits for the dumps and restores in progress: it starts no new work meanwhile.
  app.use(async (c, next) => {
    if (control.stopping() && c.req.method !== "GET" && c.req.path !== "/v1/daemon/stop") {
      throw unavailable("the cedana daemon is stopping (it waits for the dumps and restores in progress)");
    }
    await next();
  });

  app.onError((err, c) => {
    const e = toCedanaError(err);
    if (!(err instanceof CedanaError)) {
      log.error("request failed", { path: c.req.path, error: String(err?.stack ?? err) });
    }
    const b: ErrorBody = { error: { code: e.code, message: e.message, details: e.details } };
    return c.json(b, HTTP_STATUS[e.code]);
  });
  app.notFound((c) =>
    c.json({ error: { code: "not_found", message: `no route ${c.req.method} ${c.req.path}` } }, 404)
  );

  app.get("/v1/health", (c) => c.json<HealthResponse>({ version: VERSION, pid: Deno.pid, ...info }));
  // (not a signal from the client: its PID namespace may not be the daemon's)
  app.post("/v1/daemon/stop", (c) => {
    const waitingFor = svc.operations();
    setTimeout(() => control.stop(), 0); // (the answer goes out first)
    return c.json<StopResponse>({ pid: Deno.pid, waitingFor });
  });

  // Prometheus scrapes a fixed path, outside the versioned API
  if (metrics) app.get("/metrics", (c) => metricsResponse(metrics, c.req.method));

  app.get("/v1/jobs", (c) => c.json(svc.list()));
  app.get("/v1/jobs/:jid", (c) => c.json(svc.inspect(c.req.param("jid"))));
  app.get("/v1/pids/:pid", (c) => {
    const pid = Number(c.req.param("pid"));
    if (!isValidPid(pid)) throw invalidArgument(`invalid PID ${c.req.param("pid")}`);
    return c.json(svc.byPid(pid));
  });

  app.post("/v1/run/:type", async (c) => {
    const type = c.req.param("type");
    const req = await body<RunProcessRequest>(c, checkerFor(RUN_CHECKS, type));
    return c.json(await svc.run(type as JobType, req), 201);
  });
  app.post("/v1/manage/:type", async (c) => {
    const type = c.req.param("type");
    const req = await body<ManageProcessRequest>(c, checkerFor(MANAGE_CHECKS, type));
    return c.json(await svc.manage(type as JobType, req), 201);
  });
  app.post("/v1/jobs/kill", async (c) => {
    const req = await body<KillRequest>(c, (b) => {
      checkJids(b);
      expect(optional(b.signal, "string"), "signal must be a string");
    });
    return c.json(svc.kill(req));
  });
  app.post("/v1/jobs/delete", async (c) => c.json(await svc.delete(await body<DeleteRequest>(c, checkJids))));

  app.post("/v1/dump", async (c) => {
    const req = await body<DumpRequest>(c, (b) => {
      expect(b.jid === undefined || typeof b.jid === "string", "jid must be a string");
      expect(b.pid === undefined || typeof b.pid === "number", "pid must be a number");
      for (const k of ["dir", "name", "compression", "criuOpts"]) {
        expect(optional(b[k], "string"), `${k} must be a string`);
      }
      for (const k of ["leaveRunning", "tcpEstablished", "fileLocks", "shellJob", "linkRemap"]) {
        expect(optional(b[k], "boolean"), `${k} must be a boolean`);
      }
      expect(b.external === undefined || isStrArray(b.external), "external must be an array of strings");
      expect(optional(b.ignoreRootfs, "boolean"), "ignoreRootfs must be a boolean");
      const ct = b.container as Record<string, unknown> | undefined;
      expect(
        ct === undefined || (typeof ct?.type === "string" && typeof ct?.id === "string"),
        "bad container",
      );
      for (const k of ["root", "address", "namespace"]) {
        expect(ct === undefined || optional(ct[k], "string"), `container.${k} must be a string`);
      }
    });
    return c.json(await svc.dump(req), 201);
  });
  app.post("/v1/restore", async (c) => {
    const req = await body<RestoreRequest>(c, (b) => {
      for (const k of ["jid", "path", "newJid", "log", "id", "bundle", "root", "address", "namespace"]) {
        expect(optional(b[k], "string"), `${k} must be a string`);
      }
      expect(optional(b.attachable, "boolean"), "attachable must be a boolean");
    });
    return c.json(await svc.restore(req), 201);
  });
  app.get("/v1/jobs/:jid/progress", (c) => c.json(svc.currentProgress(c.req.param("jid"))));
  app.get("/v1/jobs/:jid/checkpoints", (c) => c.json(svc.checkpoints(c.req.param("jid"))));
  app.get("/v1/checkpoints", (c) => c.json(svc.allCheckpoints()));
  app.get("/v1/checkpoints/:id", async (c) => c.json(await svc.checkpoint(c.req.param("id"))));
  app.delete("/v1/checkpoints/:id", async (c) => c.json(await svc.deleteCheckpoint(c.req.param("id"))));

  app.get(
    "/v1/jobs/:jid/attach",
    async (c, next) => {
      svc.hub(c.req.param("jid")!); // refuse before upgrading, so the client gets a clear error
      await next();
    },
    upgradeWebSocket((c) => {
      const hub = svc.hub(c.req.param("jid")!);
      const since = c.req.query("since");
      let detach = () => {};
      let unpause = () => {};
      // (input flow control, see AttachServerMessage: acknowledged in steps, and when all is taken)
      let received = 0, taken = 0, acked = 0;
      // (output: what went out, and what the client says it wrote; a client that does not ack is
      // measured by what the socket still holds for it)
      let sent = 0, written = 0, acks = false;
      let wsRef: { send(s: string): void; readyState: number } | null = null;
      const input = (data: Uint8Array) => {
        received += data.length;
        hub.input(data, () => {
          taken += data.length;
          if (taken - acked < 64 << 10 && taken !== received) return;
          acked = taken;
          const m: AttachServerMessage = { type: "input-ack", bytes: taken };
          try {
            if (wsRef?.readyState === 1) wsRef.send(JSON.stringify(m));
          } catch { /* closed meanwhile */ }
        });
      };
      return {
        onOpen(_e, ws) {
          wsRef = ws;
          const raw = ws.raw as WebSocket | undefined;
          // A client behind on the job's output (a slow link, `| less`): the daemon stops reading
          // the job until it caught up, so the job waits on its pipe as it would on a slow
          // terminal, and nothing piles up in the daemon. One that reads nothing for STALL_MS
          // (stopped, Ctrl-Z'd) is let go, and the job goes on.
          let pausedAt = 0;
          let timer: ReturnType<typeof setInterval> | undefined;
          unpause = () => {
            if (!pausedAt) return;
            pausedAt = 0;
            clearInterval(timer);
            hub.resume();
          };
          // (what the socket still holds counts too: a client may acknowledge what it never took)
          const behind = () => Math.max(acks ? sent - written : 0, raw?.bufferedAmount ?? 0);
          const hello: AttachServerMessage = { type: "hello", inputAcks: true, outputAcks: true };
          ws.send(JSON.stringify(hello));
          detach = hub.attach({
            output(stream, data) {
              const frame = new Uint8Array(data.length + 1);
              frame[0] = stream;
              frame.set(data, 1);
              ws.send(frame);
              sent += data.length;
              if (pausedAt || behind() < CLIENT_HIGH) return;
              pausedAt = Date.now();
              let left = behind();
              hub.pause();
              timer = setInterval(() => {
                if (ws.readyState !== WebSocket.OPEN || behind() < CLIENT_LOW) return unpause();
                // (a slow reader still reads: only one that took nothing for STALL_MS is let go)
                if (behind() < left) [left, pausedAt] = [behind(), Date.now()];
                if (Date.now() - pausedAt < STALL_MS) return;
                const m: AttachServerMessage = {
                  type: "error",
                  message: `detached: this client read none of job ${c.req.param("jid")}'s output for ${
                    STALL_MS / 1000
                  } s (the job goes on; attach again to follow it)`,
                };
                ws.send(JSON.stringify(m));
                unpause();
                detach(); // (the job goes on now)
                closeLater(ws, raw, 1008, "client stalled", 60_000); // (its ~4 MiB held a minute at most)
              }, 20);
            },
            exit(status) {
              const m: AttachServerMessage = {
                type: "exit",
                exitCode: status.code,
                exitSignal: status.signal,
                checkpointed: status.checkpointed || undefined,
              };
              ws.send(JSON.stringify(m));
              closeLater(ws, raw, 1000, "job exited", 3_600_000);
            },
          }, since !== undefined ? Number(since) : undefined);
        },
        // A throw in a WebSocket handler would end the daemon: nothing a client sends may throw.
        onMessage(e) {
          try {
            if (typeof e.data === "string") {
              const m = JSON.parse(e.data) as AttachClientMessage | null;
              if (m?.type === "resize" && Number.isInteger(m.cols) && Number.isInteger(m.rows)) {
                hub.resize(m.cols, m.rows);
              } else if (m?.type === "eof") hub.endInput();
              else if (m?.type === "output-ack" && Number.isSafeInteger(m.bytes)) {
                acks = true;
                written = Math.min(Math.max(written, m.bytes), sent);
              }
            } else if (e.data instanceof ArrayBuffer) input(new Uint8Array(e.data));
            else if (e.data instanceof Blob) {
              e.data.arrayBuffer().then((b) => input(new Uint8Array(b))).catch(() => {});
            }
          } catch (err) {
            log.debug("attach message dropped", { error: String(err) });
          }
        },
        onClose() {
          unpause();
          detach();
        },
      };
    }),
  );

  return app;
}
