// A minimal HTTP/1.1 client over a Unix socket, for the CLI's JSON calls. Deno's fetch costs
// 6-9 ms on its first request in a process (client set-up); this costs under 1 ms, and every CLI
// command makes exactly one or two requests. One request per connection (Connection: close), so
// the response ends at EOF; chunked and Content-Length bodies are both understood.

export interface RawResponse {
  status: number;
  headers: Map<string, string>;
  body: string;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

export async function unixRequest(
  socket: string,
  method: string,
  path: string,
  body?: string,
  signal?: AbortSignal,
): Promise<RawResponse> {
  const conn = await Deno.connect({ transport: "unix", path: socket });
  const abort = () => conn.close();
  signal?.addEventListener("abort", abort, { once: true });
  try {
    const payload = body === undefined ? new Uint8Array() : enc.encode(body);
    const head = `${method} ${path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n` +
      (body === undefined ? "" : "Content-Type: application/json\r\n") +
      `Content-Length: ${payload.length}\r\n\r\n`;
    await writeAll(conn, concat([enc.encode(head), payload]));
    const raw = await readAll(conn, signal);
    return parseResponse(raw);
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

async function readAll(conn: Deno.Conn, signal?: AbortSignal): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  while (true) {
    const buf = new Uint8Array(64 << 10);
    const n = await conn.read(buf);
    if (n === null) break;
    if (signal?.aborted) throw signal.reason;
    parts.push(buf.subarray(0, n));
  }
  return concat(parts);
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

/** Parses a whole HTTP/1.1 response (status line, headers, body). */
export function parseResponse(raw: Uint8Array): RawResponse {
  let end = -1;
  for (let i = 0; i + 3 < raw.length; i++) {
    if (raw[i] === 13 && raw[i + 1] === 10 && raw[i + 2] === 13 && raw[i + 3] === 10) {
      end = i;
      break;
    }
  }
  if (end < 0) throw new Error("incomplete HTTP response from the daemon");
  const lines = dec.decode(raw.subarray(0, end)).split("\r\n");
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0]);
  if (!m) throw new Error(`bad HTTP status line from the daemon: ${lines[0].slice(0, 80)}`);
  const headers = new Map<string, string>();
  for (const l of lines.slice(1)) {
    const i = l.indexOf(":");
    if (i > 0) headers.set(l.slice(0, i).trim().toLowerCase(), l.slice(i + 1).trim());
  }
  let bytes = raw.subarray(end + 4);
  if (headers.get("transfer-encoding")?.toLowerCase().includes("chunked")) bytes = dechunk(bytes);
  else if (headers.has("content-length")) bytes = bytes.subarray(0, Number(headers.get("content-length")));
  return { status: Number(m[1]), headers, body: dec.decode(bytes) };
}

function dechunk(data: Uint8Array): Uint8Array {
  const parts: Uint8Array[] = [];
  let off = 0;
  while (off < data.length) {
    let eol = off;
    while (eol + 1 < data.length && !(data[eol] === 13 && data[eol + 1] === 10)) eol++;
    const size = parseInt(dec.decode(data.subarray(off, eol)).split(";")[0], 16);
    if (!Number.isFinite(size)) throw new Error("bad chunked body from the daemon");
    if (size === 0) break;
    parts.push(data.subarray(eol + 2, eol + 2 + size));
    off = eol + 2 + size + 2;
  }
  return concat(parts);
}
