import { assert, assertEquals, assertStringIncludes, assertThrows } from "../testing/asserts.ts";
import {
  CONTENT_TYPE,
  daemonMetrics,
  escapeHelp,
  escapeLabelValue,
  formatValue,
  metricsHandler,
  parseListenAddress,
  Registry,
} from "./metrics.ts";

/** `promtool check metrics` on a text, or null when promtool is not installed. */
export async function promtool(text: string): Promise<{ ok: boolean; out: string } | null> {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command("promtool", {
      args: ["check", "metrics"],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
  const w = child.stdin.getWriter();
  await w.write(new TextEncoder().encode(text));
  await w.close();
  const r = await child.output();
  const dec = new TextDecoder();
  return { ok: r.success, out: dec.decode(r.stdout) + dec.decode(r.stderr) };
}

const lines = (text: string) => text.split("\n");

Deno.test("metrics: escaping of label values and help, special values", () => {
  assertEquals(escapeLabelValue('a\\b"c\nd'), 'a\\\\b\\"c\\nd');
  assertEquals(escapeHelp('say "hi"\\\nbye'), 'say "hi"\\\\\\nbye');
  assertEquals(formatValue(Infinity), "+Inf");
  assertEquals(formatValue(-Infinity), "-Inf");
  assertEquals(formatValue(NaN), "NaN");
  assertEquals(formatValue(0.05), "0.05");
  assertEquals(formatValue(3), "3");
});

Deno.test("metrics: counter, gauge and histogram exposition", () => {
  const r = new Registry();
  const c = r.counter("t_requests_total", "Requests.\nSecond line", ["path"]);
  c.inc({ path: '/a"b' });
  c.inc({ path: '/a"b' }, 2);
  c.inc({ path: "x\\y\nz" });
  const g = r.gauge("t_temp", "Temperature", []);
  g.set({}, 21.5);
  const h = r.histogram("t_seconds", "Durations", ["op"], [0.1, 1, 10]);
  for (const v of [0.05, 0.1, 0.5, 5, 100]) h.observe({ op: "dump" }, v);
  assertEquals(c.value({ path: '/a"b' }), 3);
  assertEquals(h.count({ op: "dump" }), 5);
  assertEquals(h.count({ op: "restore" }), 0);
  assertEquals(
    r.render(),
    [
      "# HELP t_requests_total Requests.\\nSecond line",
      "# TYPE t_requests_total counter",
      't_requests_total{path="/a\\"b"} 3',
      't_requests_total{path="x\\\\y\\nz"} 1',
      "# HELP t_temp Temperature",
      "# TYPE t_temp gauge",
      "t_temp 21.5",
      "# HELP t_seconds Durations",
      "# TYPE t_seconds histogram",
      // cumulative; 0.1 is in the 0.1 bucket (le is inclusive), 100 only in +Inf
      't_seconds_bucket{op="dump",le="0.1"} 2',
      't_seconds_bucket{op="dump",le="1"} 3',
      't_seconds_bucket{op="dump",le="10"} 4',
      't_seconds_bucket{op="dump",le="+Inf"} 5',
      't_seconds_sum{op="dump"} 105.65',
      't_seconds_count{op="dump"} 5',
      "",
    ].join("\n"),
  );
});

Deno.test("metrics: misuse is refused", () => {
  const r = new Registry();
  const c = r.counter("t_total", "x", ["a"]);
  assertThrows(() => c.inc({ a: "1" }, -1), Error, "only go up");
  assertThrows(() => c.inc({}), Error, "takes labels");
  assertThrows(() => c.inc({ a: "1", b: "2" } as Record<string, string>), Error, "takes labels");
  assertThrows(() => r.counter("t_total", "again"), Error, "registered twice");
  assertThrows(() => r.counter("bad-name", "x"), Error, "bad metric name");
  assertThrows(() => r.counter("t2_total", "x", ["le"]), Error, "bad label name");
  assertThrows(() => r.histogram("t_h", "x", [], [1, 1]), Error, "strictly increasing");
});

Deno.test("metrics: a collector that throws loses only its own family", () => {
  const r = new Registry();
  r.gauge("t_broken", "x", [], () => {
    throw new Error("db closed");
  });
  r.gauge("t_fine", "x").set({}, 1);
  assertEquals(r.render(), "# HELP t_fine x\n# TYPE t_fine gauge\nt_fine 1\n");
});

Deno.test("metrics: daemon families from operations and the job table", async () => {
  const jobs = [
    { type: "process" as const, status: "running" as const },
    { type: "process" as const, status: "running" as const },
    { type: "runc" as const, status: "halted" as const },
  ];
  const m = daemonMetrics({ version: '0.1.0-"rc"', jobs: () => jobs });
  m.record({ op: "dump", type: "process", ok: true, seconds: 0.3, bytes: 1000, reason: null });
  m.record({ op: "dump", type: "process", ok: true, seconds: 200, bytes: 24, reason: null });
  m.record({
    op: "dump",
    type: "process",
    ok: false,
    seconds: 0.01,
    bytes: 0,
    reason: "failed_precondition",
  });
  m.record({ op: "restore", type: "process", ok: true, seconds: 1.5, bytes: 1000, reason: null });
  m.record({ op: "restore", type: "runc", ok: false, seconds: 0.2, bytes: 0, reason: null });
  const text = m.registry.render();
  const has = (l: string) => assert(lines(text).includes(l), `missing ${l} in\n${text}`);
  has('cedana_jobs{type="process",status="running"} 2');
  has('cedana_jobs{type="runc",status="halted"} 1');
  has('cedana_jobs{type="containerd",status="running"} 0');
  has('cedana_operations_total{op="dump",type="process",outcome="success"} 2');
  has('cedana_operations_total{op="dump",type="process",outcome="failure"} 1');
  has('cedana_operations_total{op="restore",type="runc",outcome="failure"} 1');
  has('cedana_operations_total{op="restore",type="containerd",outcome="success"} 0');
  has('cedana_operation_failures_total{op="dump",type="process",reason="failed_precondition"} 1');
  has('cedana_operation_failures_total{op="restore",type="runc",reason="internal"} 1');
  has('cedana_operation_duration_seconds_bucket{op="dump",type="process",le="0.05"} 1');
  has('cedana_operation_duration_seconds_bucket{op="dump",type="process",le="120"} 2');
  has('cedana_operation_duration_seconds_bucket{op="dump",type="process",le="+Inf"} 3');
  has('cedana_operation_duration_seconds_count{op="restore",type="process"} 1');
  has('cedana_checkpoint_bytes_total{op="dump"} 1024');
  has('cedana_checkpoint_bytes_total{op="restore"} 1000');
  has('cedana_build_info{version="0.1.0-\\"rc\\""} 1');
  has("# TYPE cedana_operation_duration_seconds histogram");
  const start = Number(lines(text).find((l) => l.startsWith("process_start_time_seconds "))!.split(" ")[1]);
  assert(Math.abs(start - Date.now() / 1000) < 3600, `start time ${start}`);

  // the job table is read at each scrape
  jobs.pop();
  assertStringIncludes(m.registry.render(), 'cedana_jobs{type="runc",status="halted"} 0');

  const check = await promtool(text);
  if (check) assert(check.ok, `promtool check metrics:\n${check.out}\n${text}`);
  else console.warn("promtool not installed: exposition not validated by it");
});

Deno.test("metrics: TCP handler serves /metrics only", async () => {
  const m = daemonMetrics({ version: "x", jobs: () => [] });
  const h = metricsHandler(m.registry);
  const ok = h(new Request("http://h/metrics"));
  assertEquals(ok.status, 200);
  assertEquals(ok.headers.get("content-type"), CONTENT_TYPE);
  assertStringIncludes(await ok.text(), "# TYPE cedana_jobs gauge");
  const head = h(new Request("http://h/metrics", { method: "HEAD" }));
  assertEquals(head.status, 200);
  assertEquals(h(new Request("http://h/v1/jobs")).status, 404);
  assertEquals(h(new Request("http://h/metrics", { method: "POST" })).status, 405);
});

Deno.test("metrics: listen addresses", () => {
  assertEquals(parseListenAddress("127.0.0.1:9464"), { hostname: "127.0.0.1", port: 9464 });
  assertEquals(parseListenAddress("[::1]:9464"), { hostname: "::1", port: 9464 });
  assertEquals(parseListenAddress(":9464"), { hostname: "0.0.0.0", port: 9464 });
  assertEquals(parseListenAddress("localhost:80"), { hostname: "localhost", port: 80 });
  for (const bad of ["9464", "127.0.0.1", "127.0.0.1:0", "h:70000", "::1:9464", "h:p"]) {
    assertThrows(() => parseListenAddress(bad), Error, "metrics.address");
  }
});
