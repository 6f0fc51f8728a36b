// Prometheus metrics of the daemon, in the text exposition format 0.0.4 written by hand (no client
// library: the format is small and a dependency would be the only npm package of the daemon's hot path).
// Served at GET /metrics on the Unix socket and, when `metrics.address` is set, on a TCP port.

import type { Job } from "../api/types.ts";
import { invalidArgument } from "../errors.ts";
import type { OperationEvent } from "./job_service.ts";

export const CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

type Labels = Record<string, string>;

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** Label values may hold anything; the format only needs \, " and newline escaped. */
export function escapeLabelValue(v: string): string {
  return v.replaceAll("\\", "\\\\").replaceAll('"', '\\"').replaceAll("\n", "\\n");
}

/** HELP text escapes \ and newline, but not quotes. */
export function escapeHelp(v: string): string {
  return v.replaceAll("\\", "\\\\").replaceAll("\n", "\\n");
}

/** Go's ParseFloat spellings for the special values; JS prints every finite number parseably. */
export function formatValue(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}

function formatLabels(names: readonly string[], values: readonly string[], extra = ""): string {
  const parts = names.map((n, i) => `${n}="${escapeLabelValue(values[i])}"`);
  if (extra) parts.push(extra);
  return parts.length ? `{${parts.join(",")}}` : "";
}

abstract class Metric {
  abstract readonly type: "counter" | "gauge" | "histogram";

  constructor(readonly name: string, readonly help: string, readonly labelNames: readonly string[]) {
    if (!METRIC_NAME.test(name)) throw new Error(`bad metric name ${name}`);
    for (const l of labelNames) {
      // "le" is the histogram's own label; __ names are reserved by Prometheus
      if (!LABEL_NAME.test(l) || l.startsWith("__") || l === "le") throw new Error(`bad label name ${l}`);
    }
  }

  /** Label values in the declared order; every declared label must be given, and no other. */
  protected key(labels: Labels): string[] {
    const given = Object.keys(labels);
    if (given.length !== this.labelNames.length || !this.labelNames.every((n) => n in labels)) {
      throw new Error(`${this.name} takes labels {${this.labelNames.join(",")}}, got {${given.join(",")}}`);
    }
    return this.labelNames.map((n) => String(labels[n]));
  }

  abstract samples(): string[];

  render(): string {
    const lines = [`# HELP ${this.name} ${escapeHelp(this.help)}`, `# TYPE ${this.name} ${this.type}`];
    return [...lines, ...this.samples()].join("\n") + "\n";
  }
}

/** Series keyed by their label values, in first-seen order (stable output between scrapes). */
class Series<T> {
  readonly #map = new Map<string, { values: string[]; v: T }>();
  get(values: string[], init: () => T): T {
    const k = JSON.stringify(values);
    let s = this.#map.get(k);
    if (!s) this.#map.set(k, s = { values, v: init() });
    return s.v;
  }
  peek(values: string[]): T | undefined {
    return this.#map.get(JSON.stringify(values))?.v;
  }
  *entries(): Iterable<[string[], T]> {
    for (const s of this.#map.values()) yield [s.values, s.v];
  }
}

export class Counter extends Metric {
  readonly type = "counter";
  readonly #series = new Series<{ n: number }>();

  inc(labels: Labels = {}, by = 1): void {
    // a counter that goes down breaks rate(); refuse rather than publish nonsense
    if (!(by >= 0)) throw new Error(`${this.name}: counters only go up (got ${by})`);
    this.#series.get(this.key(labels), () => ({ n: 0 })).n += by;
  }

  /** Makes the series exist at 0, so rate() sees the first increment. */
  touch(labels: Labels): void {
    this.inc(labels, 0);
  }

  value(labels: Labels = {}): number {
    return this.#series.peek(this.key(labels))?.n ?? 0;
  }

  samples(): string[] {
    return [...this.#series.entries()].map(([v, s]) =>
      `${this.name}${formatLabels(this.labelNames, v)} ${formatValue(s.n)}`
    );
  }
}

export class Gauge extends Metric {
  readonly type = "gauge";
  readonly #series = new Series<{ n: number }>();

  /** `collect` computes the series at scrape time instead (e.g. from the job table). */
  constructor(
    name: string,
    help: string,
    labelNames: readonly string[],
    readonly collect?: () => Iterable<[Labels, number]>,
  ) {
    super(name, help, labelNames);
  }

  set(labels: Labels, v: number): void {
    this.#series.get(this.key(labels), () => ({ n: 0 })).n = v;
  }

  samples(): string[] {
    const series: [string[], number][] = this.collect
      ? [...this.collect()].map(([l, n]) => [this.key(l), n])
      : [...this.#series.entries()].map(([v, s]) => [v, s.n]);
    return series.map(([v, n]) => `${this.name}${formatLabels(this.labelNames, v)} ${formatValue(n)}`);
  }
}

export class Histogram extends Metric {
  readonly type = "histogram";
  readonly #series = new Series<{ counts: number[]; sum: number; count: number }>();
  readonly buckets: readonly number[];

  constructor(name: string, help: string, labelNames: readonly string[], buckets: readonly number[]) {
    super(name, help, labelNames);
    const b = buckets.filter((x) => x !== Infinity);
    if (!b.length || b.some((x, i) => !Number.isFinite(x) || (i > 0 && x <= b[i - 1]))) {
      throw new Error(`${name}: buckets must be finite and strictly increasing`);
    }
    this.buckets = b;
  }

  observe(labels: Labels, v: number): void {
    const s = this.#series.get(this.key(labels), () => ({
      counts: this.buckets.map(() => 0),
      sum: 0,
      count: 0,
    }));
    // per-bucket counts; made cumulative when rendered
    const i = this.buckets.findIndex((b) => v <= b);
    if (i >= 0) s.counts[i]++;
    s.sum += v;
    s.count++;
  }

  count(labels: Labels): number {
    return this.#series.peek(this.key(labels))?.count ?? 0;
  }

  samples(): string[] {
    const out: string[] = [];
    for (const [v, s] of this.#series.entries()) {
      let cum = 0;
      this.buckets.forEach((b, i) => {
        cum += s.counts[i];
        out.push(`${this.name}_bucket${formatLabels(this.labelNames, v, `le="${formatValue(b)}"`)} ${cum}`);
      });
      out.push(`${this.name}_bucket${formatLabels(this.labelNames, v, 'le="+Inf"')} ${s.count}`);
      out.push(`${this.name}_sum${formatLabels(this.labelNames, v)} ${formatValue(s.sum)}`);
      out.push(`${this.name}_count${formatLabels(this.labelNames, v)} ${s.count}`);
    }
    return out;
  }
}

export class Registry {
  readonly #metrics = new Map<string, Metric>();

  register<M extends Metric>(m: M): M {
    if (this.#metrics.has(m.name)) throw new Error(`metric ${m.name} registered twice`);
    this.#metrics.set(m.name, m);
    return m;
  }

  counter(name: string, help: string, labelNames: readonly string[] = []): Counter {
    return this.register(new Counter(name, help, labelNames));
  }

  gauge(
    name: string,
    help: string,
    labelNames: readonly string[] = [],
    collect?: () => Iterable<[Labels, number]>,
  ): Gauge {
    return this.register(new Gauge(name, help, labelNames, collect));
  }

  histogram(
    name: string,
    help: string,
    labelNames: readonly string[],
    buckets: readonly number[],
  ): Histogram {
    return this.register(new Histogram(name, help, labelNames, buckets));
  }

  /** The whole exposition. A collector that throws loses only its own metric, not the scrape. */
  render(): string {
    let out = "";
    for (const m of this.#metrics.values()) {
      try {
        out += m.render();
      } catch { /* e.g. the DB is closing: skip this family */ }
    }
    return out;
  }
}

/** Dumps of small jobs take tens of ms; large (GPU) ones minutes. */
export const DURATION_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120] as const;

// Known values get series at 0 from the start, so dashboards and rate() work before the first event.
const JOB_TYPES = ["process", "runc", "containerd"] as const;
const JOB_STATUSES = ["running", "sleeping", "stopped", "paused", "zombie", "halted"] as const;
const OPS = ["dump", "restore"] as const;

export interface DaemonMetrics {
  registry: Registry;
  operations: Counter;
  failures: Counter;
  duration: Histogram;
  bytes: Counter;
  /** Feed one dump/restore outcome (subscribe it to JobService.onOperation). */
  record(e: OperationEvent): void;
}

/** The daemon's metric families; `jobs` is read at every scrape. */
export function daemonMetrics(
  opts: { version: string; jobs: () => Pick<Job, "type" | "status">[] },
): DaemonMetrics {
  const registry = new Registry();
  registry.gauge("cedana_jobs", "Jobs known to the daemon, by type and status.", ["type", "status"], () => {
    const counts = new Map<string, [Labels, number]>();
    for (const type of JOB_TYPES) {
      for (const status of JOB_STATUSES) counts.set(`${type}\0${status}`, [{ type, status }, 0]);
    }
    for (const j of opts.jobs()) {
      const k = `${j.type}\0${j.status}`;
      const c = counts.get(k);
      if (c) c[1]++;
      else counts.set(k, [{ type: j.type, status: j.status }, 1]);
    }
    return counts.values();
  });
  const operations = registry.counter(
    "cedana_operations_total",
    "Checkpoint (dump) and restore operations, by outcome (success or failure).",
    ["op", "type", "outcome"],
  );
  const failures = registry.counter(
    "cedana_operation_failures_total",
    "Failed dump/restore operations, by error code.",
    ["op", "type", "reason"],
  );
  const duration = registry.histogram(
    "cedana_operation_duration_seconds",
    "Duration of dump/restore operations, failed ones included.",
    ["op", "type"],
    DURATION_BUCKETS,
  );
  const bytes = registry.counter(
    "cedana_checkpoint_bytes_total",
    "Checkpoint bytes written by dumps and read by restores.",
    ["op"],
  );
  registry.gauge("cedana_build_info", "Version of the running cedana daemon (value is always 1).", [
    "version",
  ]).set({ version: opts.version }, 1);
  registry.gauge("process_start_time_seconds", "Start time of the process since unix epoch in seconds.", [])
    // timeOrigin is when this runtime started: the daemon's start, to the millisecond
    .set({}, Math.round(performance.timeOrigin) / 1000);

  for (const op of OPS) {
    bytes.touch({ op });
    for (const type of JOB_TYPES) {
      for (const outcome of ["success", "failure"]) operations.touch({ op, type, outcome });
    }
  }

  const record = (e: OperationEvent) => {
    const l = { op: e.op, type: e.type };
    operations.inc({ ...l, outcome: e.ok ? "success" : "failure" });
    if (!e.ok) failures.inc({ ...l, reason: e.reason ?? "internal" });
    if (Number.isFinite(e.seconds) && e.seconds >= 0) duration.observe(l, e.seconds);
    if (e.bytes > 0) bytes.inc({ op: e.op }, e.bytes);
  };
  return { registry, operations, failures, duration, bytes, record };
}

/** GET (or HEAD) of the exposition. */
export function metricsResponse(registry: Registry, method = "GET"): Response {
  return new Response(method === "HEAD" ? null : registry.render(), {
    headers: { "content-type": CONTENT_TYPE, "cache-control": "no-store" },
  });
}

/** Handler of the opt-in TCP listener: /metrics and nothing else (the job API stays on the socket). */
export function metricsHandler(registry: Registry): (req: Request) => Response {
  return (req) => {
    const path = new URL(req.url).pathname;
    if (path !== "/metrics") {
      return new Response("not found: only /metrics is served here\n", { status: 404 });
    }
    if (req.method !== "GET" && req.method !== "HEAD") {
      return new Response("method not allowed\n", { status: 405, headers: { allow: "GET, HEAD" } });
    }
    return metricsResponse(registry, req.method);
  };
}

/** "host:port", "[v6]:port" or ":port" (all interfaces) -> Deno.serve's hostname/port. */
export function parseListenAddress(addr: string): { hostname: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d+)$/.exec(addr.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw invalidArgument(
      `metrics.address must be HOST:PORT, e.g. 127.0.0.1:9464 (got "${addr}")`,
    );
  }
  return { hostname: m[1] ?? (m[2] || "0.0.0.0"), port };
}
