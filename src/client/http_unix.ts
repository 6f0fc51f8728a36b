// A minimal HTTP/1.1 client over a Unix socket, for the CLI's JSON calls. Deno's fetch costs
// 6-9 ms on its first request in a process (client set-up); this costs under 1 ms, and every CLI
// command makes exactly one or two requests. One request per connection (Connection: close); the
// response ends with its Content-Length or its last chunk (or, without either, at EOF).

export interface RawResponse {
  status: number;
  headers: Map<string, string>;
  body: string;
}

/** The daemon answered, but not with a whole HTTP response (it died mid-answer, say). */
export class HttpProtocolError extends Error {}

const enc = new TextEncoder();
const dec = new TextDecoder();

export async function unixRequest(
  socket: string,
  method: string,
  path: string,
  body?: string,
  signal?: AbortSignal,
): Promise<RawResponse> {
  signal?.throwIfAborted();
  const conn = await Deno.connect({ transport: "unix", path: socket });
  const abort = () => conn.close();
  try {
    // (a timeout that fired while connecting would never call the listener)
    signal?.throwIfAborted();
    signal?.addEventListener("abort", abort, { once: true });
    const payload = body === undefined ? new Uint8Array() : enc.encode(body);
    const head = `${method} ${path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n` +
      (body === undefined ? "" : "Content-Type: application/json\r\n") +
      `Content-Length: ${payload.length}\r\n\r\n`;
    await writeAll(conn, concat([enc.encode(head), payload]));
    return await readResponse(conn);
  } catch (e) {
    if (signal?.aborted) throw signal.reason ?? new Error("aborted");
    throw e;
  } finally {
    signal?.removeEventListener("abort", abort);
    try {
      conn.close();
    } catch { /* closed by abort */ }
  }
}

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.length) off += await conn.write(data.subarray(off));
}

/** Reads until the response is whole (so a server keeping the connection open cannot stall us). */
async function readResponse(conn: Deno.Conn): Promise<RawResponse> {
  let acc = new Uint8Array(64 << 10);
  let len = 0;
  let head: Head | null = null;
  for (;;) {
    if (len === acc.length) {
      const bigger = new Uint8Array(acc.length * 2);
      bigger.set(acc);
      acc = bigger;
    }
    const n = await conn.read(acc.subarray(len));
    if (n !== null) len += n;
    const raw = acc.subarray(0, len);
    head ??= parseHead(raw);
    const body = head ? bodyOf(head, raw.subarray(head.bodyAt), n === null) : null;
    if (head && body) return { status: head.status, headers: head.headers, body: dec.decode(body) };
    if (n === null) {
      throw new HttpProtocolError("the daemon closed the connection before its answer was complete");
    }
  }
}

interface Head {
  status: number;
  headers: Map<string, string>;
  bodyAt: number;
}

/** Parses a whole HTTP/1.1 response; throws when it is not one (incomplete, or not HTTP). */
export function parseResponse(raw: Uint8Array): RawResponse {
  const head = parseHead(raw);
  const body = head ? bodyOf(head, raw.subarray(head.bodyAt), true) : null;
  if (!head || !body) throw new HttpProtocolError("incomplete HTTP response from the daemon");
  return { status: head.status, headers: head.headers, body: dec.decode(body) };
}

/** Status line and headers, or null while they are not all there. */
function parseHead(raw: Uint8Array): Head | null {
  let end = -1;
  for (let i = 0; i + 3 < raw.length; i++) {
    if (raw[i] === 13 && raw[i + 1] === 10 && raw[i + 2] === 13 && raw[i + 3] === 10) {
      end = i;
      break;
    }
  }
  if (end < 0) return null;
  const lines = dec.decode(raw.subarray(0, end)).split("\r\n");
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0]);
  if (!m) throw new HttpProtocolError(`bad HTTP status line from the daemon: ${lines[0].slice(0, 80)}`);
  const headers = new Map<string, string>();
  for (const l of lines.slice(1)) {
    const i = l.indexOf(":");
    if (i > 0) headers.set(l.slice(0, i).trim().toLowerCase(), l.slice(i + 1).trim());
  }
  return { status: Number(m[1]), headers, bodyAt: end + 4 };
}

/** The body, or null while more bytes are needed (`eof`: no more will come). */
function bodyOf(head: Head, rest: Uint8Array, eof: boolean): Uint8Array | null {
  if (head.headers.get("transfer-encoding")?.toLowerCase().includes("chunked")) return dechunk(rest);
  if (head.headers.has("content-length")) {
    const len = Number(head.headers.get("content-length"));
    return rest.length >= len ? rest.subarray(0, len) : null;
  }
  return eof ? rest : null; // no length: the body ends with the connection
}

function concat(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0];
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** A chunked body, or null until its last (zero-size) chunk has arrived. */
function dechunk(data: Uint8Array): Uint8Array | null {
  const parts: Uint8Array[] = [];
  let off = 0;
  while (off < data.length) {
    let eol = off;
    while (eol + 1 < data.length && !(data[eol] === 13 && data[eol + 1] === 10)) eol++;
    if (eol + 1 >= data.length) return null;
    const size = parseInt(dec.decode(data.subarray(off, eol)).split(";")[0], 16);
    if (!Number.isFinite(size)) throw new HttpProtocolError("bad chunked body from the daemon");
    if (size === 0) return concat(parts);
    if (eol + 2 + size + 2 > data.length) return null;
    parts.push(data.subarray(eol + 2, eol + 2 + size));
    off = eol + 2 + size + 2;
  }
  return null;
}
