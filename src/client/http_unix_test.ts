import { assert, assertEquals, assertRejects, assertThrows } from "../testing/asserts.ts";
import { HttpProtocolError, parseResponse, unixRequest } from "./http_unix.ts";

const enc = new TextEncoder();

Deno.test("HTTP responses: Content-Length and chunked bodies", () => {
  const plain = parseResponse(
    enc.encode('HTTP/1.1 201 Created\r\nContent-Length: 7\r\nX-A: b\r\n\r\n{"a":1}'),
  );
  assertEquals([plain.status, plain.body, plain.headers.get("x-a")], [201, '{"a":1}', "b"]);
  const chunked = parseResponse(
    enc.encode('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{"a"\r\n3;x=y\r\n:1}\r\n0\r\n\r\n'),
  );
  assertEquals([chunked.status, chunked.body], [200, '{"a":1}']);
  const empty = parseResponse(enc.encode("HTTP/1.1 204 No Content\r\n\r\n"));
  assertEquals([empty.status, empty.body], [204, ""]);
});

Deno.test("unixRequest talks to Deno.serve on a Unix socket; refused and timed-out calls reject", async () => {
  const dir = Deno.makeTempDirSync();
  const path = `${dir}/s.sock`;
  const big = "x".repeat(300_000); // more than one read
  const server = Deno.serve({ transport: "unix", path, onListen() {} }, async (req) => {
    if (req.url.endsWith("/slow")) await new Promise((r) => setTimeout(r, 400));
    if (req.url.endsWith("/stream")) {
      // a body of unknown length goes out chunked
      return new Response(
        new ReadableStream({
          start(c) {
            c.enqueue(enc.encode('{"s":'));
            c.enqueue(enc.encode('"ok"}'));
            c.close();
          },
        }),
      );
    }
    const body = req.method === "POST" ? await req.text() : big;
    return Response.json({ method: req.method, body }, { status: 201 });
  });
  try {
    const r = await unixRequest(path, "POST", "/echo", '{"jid":"é"}');
    assertEquals([r.status, JSON.parse(r.body)], [201, { method: "POST", body: '{"jid":"é"}' }]);
    assertEquals(JSON.parse((await unixRequest(path, "GET", "/big")).body).body.length, big.length);
    assertEquals(JSON.parse((await unixRequest(path, "GET", "/stream")).body), { s: "ok" });
    await assertRejects(() => unixRequest(path, "GET", "/slow", undefined, AbortSignal.timeout(100)));
    await assertRejects(() => unixRequest(`${dir}/none.sock`, "GET", "/"), Deno.errors.NotFound);
  } finally {
    await server.shutdown();
  }
});

Deno.test("unixRequest: a whole answer on a connection left open; truncation, silence and aborts", async () => {
  const dir = Deno.makeTempDirSync();
  const path = `${dir}/raw.sock`;
  const listener = Deno.listen({ transport: "unix", path });
  const held: Deno.Conn[] = [];
  (async () => {
    for await (const conn of listener) {
      held.push(conn);
      const buf = new Uint8Array(4096);
      const n = await conn.read(buf) ?? 0;
      const req = new TextDecoder().decode(buf.subarray(0, n));
      if (req.startsWith("GET /open ")) {
        await conn.write(enc.encode('HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n{"a":1}\n')); // and no close
      } else if (req.startsWith("GET /short ")) {
        await conn.write(enc.encode('HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{"a":'));
        conn.close();
      } // "/silent": never answers
    }
  })().catch(() => {});
  try {
    assertEquals((await unixRequest(path, "GET", "/open")).body, '{"a":1}\n');
    await assertRejects(
      () => unixRequest(path, "GET", "/short"),
      HttpProtocolError,
      "before its answer was complete",
    );
    const t = performance.now();
    await assertRejects(() => unixRequest(path, "GET", "/silent", undefined, AbortSignal.timeout(100)));
    assert(performance.now() - t < 2000, "the timeout ends a silent call");
    const gone = new AbortController();
    gone.abort(new Error("already"));
    await assertRejects(() => unixRequest(path, "GET", "/silent", undefined, gone.signal), Error, "already");
    assertThrows(
      () => parseResponse(enc.encode("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{}")),
      HttpProtocolError,
    );
    assertThrows(() => parseResponse(enc.encode("SSH-2.0-x\r\n\r\n")), HttpProtocolError, "status line");
  } finally {
    listener.close();
    for (const c of held) {
      try {
        c.close();
      } catch { /* closed */ }
    }
  }
});
