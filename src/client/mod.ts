// The CLI's side of the API: JSON over HTTP on the daemon's Unix socket. Errors come back as
// CedanaErrors with the daemon's code, so main.ts maps them to the same exit codes.

import type { HealthResponse } from "../api/types.ts";
import { CedanaError, isErrorCode, unavailable } from "../errors.ts";
import { HttpProtocolError, type RawResponse, unixRequest } from "./http_unix.ts";

/** Dumps, restores, starting a job (a container), deleting jobs (a container's cleanup): no limit. */
const LONG = /^\/v1\/(dump|restore|run\/|jobs\/delete)/;

// The URL's host is never used to connect (the client goes to the Unix socket), but Deno still
// resolves it: "localhost" needs no DNS query (another name stalled 5 s now and then).
export class DaemonClient {
  #http: Deno.HttpClient | null = null;

  /** queryTimeoutMs: how long a GET (a query) may wait for the answer; 0: no limit. */
  constructor(readonly address: string, readonly queryTimeoutMs = 30_000) {}

  /** Deno's HTTP client on the socket: only for WebSockets (JSON calls use unixRequest). */
  get http(): Deno.HttpClient {
    return this.#http ??= Deno.createHttpClient({ proxy: { transport: "unix", path: this.address } });
  }

  #unreachable(e: unknown): CedanaError {
    let why: string;
    try {
      const st = Deno.statSync(this.address);
      why = !st.isSocket
        ? "not a socket"
        : (e as Error).message.includes("refused")
        ? "connection refused"
        : (e as Error).message;
    } catch {
      why = "no such socket";
    }
    return unavailable(
      `cannot reach the cedana daemon at ${this.address} (${why}); start it with: cedana daemon start`,
    );
  }

  async call<T>(method: string, path: string, body?: unknown, timeoutMs?: number): Promise<T> {
    let res: RawResponse;
    try {
      res = await unixRequest(
        this.address,
        method,
        path,
        body !== undefined ? JSON.stringify(body) : undefined,
        timeoutMs ? AbortSignal.timeout(timeoutMs) : undefined,
      );
    } catch (e) {
      if ((e as Error)?.name === "TimeoutError") {
        // (connecting works even when the daemon is stopped: the kernel queues the connection)
        const knob = timeoutMs === this.queryTimeoutMs ? "; config client.timeout sets this wait" : "";
        throw unavailable(
          `the cedana daemon at ${this.address} did not answer in ${timeoutMs! / 1000} s ` +
            `(stopped or overloaded? see its log${knob})`,
        );
      }
      if (e instanceof HttpProtocolError) {
        throw new CedanaError("unavailable", `${e.message} (daemon at ${this.address}; see its log)`);
      }
      throw this.#unreachable(e);
    }
    const text = res.body;
    let data: unknown;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      throw new CedanaError("internal", `daemon sent a non-JSON response (HTTP ${res.status})`);
    }
    if (res.status < 200 || res.status > 299) {
      const err = (data as { error?: { code?: string; message?: string; details?: string[] } })?.error;
      throw new CedanaError(
        isErrorCode(err?.code) ? err.code : "internal",
        err?.message ?? `daemon answered HTTP ${res.status}`,
        err?.details ?? [],
      );
    }
    return data as T;
  }

  get<T>(path: string): Promise<T> {
    return this.call<T>("GET", path, undefined, this.queryTimeoutMs || undefined);
  }

  /** Bounded by the query timeout too, except work that takes as long as it takes (see LONG). */
  post<T>(path: string, body: unknown): Promise<T> {
    return this.call<T>("POST", path, body, LONG.test(path) ? undefined : this.queryTimeoutMs || undefined);
  }

  health(timeoutMs?: number): Promise<HealthResponse> {
    return this.call<HealthResponse>("GET", "/v1/health", undefined, timeoutMs);
  }

  websocket(path: string): WebSocket {
    // Deno's WebSocket accepts the same unix-socket HTTP client as fetch.
    const ws = new WebSocket(`ws://localhost${path}`, { client: this.http } as unknown as string[]);
    ws.binaryType = "arraybuffer";
    return ws;
  }

  close(): void {
    this.#http?.close();
    this.#http = null;
  }
}
