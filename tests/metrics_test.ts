// Prometheus /metrics of a real daemon: on the Unix socket always, on TCP when metrics.address is set.
import type { DumpResult, Job } from "../src/api/types.ts";
import { assert, assertEquals, assertStringIncludes } from "../src/testing/asserts.ts";
import { crOpts, startWorkload } from "./cr_helpers.ts";
import { opts, TestDaemon, waitFor, withDaemon } from "./helpers.ts";

/** `promtool check metrics` on a text; null when promtool is not installed. */
async function promtool(text: string): Promise<{ ok: boolean; out: string } | null> {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command("promtool", {
      args: ["check", "metrics"],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    })
      .spawn();
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

/** promtool, installed by scripts/setup.sh (Debian package prometheus); apt-get it once when missing. */
async function ensurePromtool(): Promise<boolean> {
  if (await promtool("")) return true;
  if (Deno.uid() !== 0) return false;
  const apt = await new Deno.Command("apt-get", {
    args: ["install", "-y", "-qq", "--no-install-recommends", "prometheus"],
    env: { DEBIAN_FRONTEND: "noninteractive" },
    stdout: "null",
    stderr: "null",
  }).output().catch(() => null);
  return apt?.success === true && (await promtool("")) !== null;
}

async function scrapeSocket(socket: string): Promise<Response> {
  const client = Deno.createHttpClient({ proxy: { transport: "unix", path: socket } });
  try {
    const r = await fetch("http://localhost/metrics", { client });
    // read before the client goes away
    return new Response(await r.text(), { status: r.status, headers: r.headers });
  } finally {
    client.close();
  }
}

/** Sample value of a series written exactly like `name{labels}`; undefined when absent. */
function sample(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(series + " "));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

/** Sum of all samples of a metric name whose labels include every `k="v"` given. */
function sum(text: string, name: string, ...labels: string[]): number {
  return text.split("\n")
    .filter((l) => l.startsWith(name + "{") || l.startsWith(name + " "))
    .filter((l) => labels.every((x) => l.includes(x)))
    .reduce((s, l) => s + Number(l.slice(l.lastIndexOf(" ") + 1)), 0);
}

async function validate(text: string): Promise<void> {
  if (!(await ensurePromtool())) {
    console.warn("promtool cannot be installed here: exposition not validated by it");
    return;
  }
  const r = await promtool(text);
  assert(r!.ok, `promtool check metrics failed:\n${r!.out}\n---\n${text}`);
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

Deno.test(
  "metrics: dump and restore are counted, timed and sized; output passes promtool",
  crOpts,
  withDaemon(async (d) => {
    const before = await scrapeSocket(d.socket);
    assertEquals(before.status, 200);
    assert(before.headers.get("content-type")!.startsWith("text/plain; version=0.0.4"));
    const t0 = await before.text();
    assertEquals(sample(t0, 'cedana_operations_total{op="dump",type="process",outcome="success"}'), 0);
    await validate(t0);

    await startWorkload(d, "met", "counter");
    const dump = await d.json<DumpResult>("dump", "job", "met");
    const t1 = await (await scrapeSocket(d.socket)).text();
    assertEquals(sample(t1, 'cedana_jobs{type="process",status="halted"}'), 1);
    assertEquals(sample(t1, 'cedana_operations_total{op="dump",type="process",outcome="success"}'), 1);
    assertEquals(sample(t1, 'cedana_checkpoint_bytes_total{op="dump"}'), dump.checkpoint.size);
    assert(dump.checkpoint.size > 0);

    await d.json<Job>("restore", "job", "met");
    // a restore that fails inside the operation (no such checkpoint) is counted with its reason
    const bad = await d.cli("restore", "process", "--path", `${d.dir}/no-such-checkpoint`, "--jid", "bad");
    assert(bad.code !== 0, "restore of a missing checkpoint succeeded");
    // and so are requests refused before any work: a restore of a running job, a dump of no job
    assertEquals((await d.cli("restore", "job", "met")).code, 5);
    assertEquals((await d.cli("dump", "job", "nosuch")).code, 3);

    const res = await scrapeSocket(d.socket);
    const text = await res.text();
    // the restored job is alive again (running or sleeping), nothing is halted
    assertEquals(sum(text, "cedana_jobs", 'type="process"'), 1);
    assertEquals(sum(text, "cedana_jobs", 'type="process"', 'status="halted"'), 0);
    assertEquals(sample(text, 'cedana_operations_total{op="dump",type="process",outcome="success"}'), 1);
    assertEquals(sample(text, 'cedana_operations_total{op="restore",type="process",outcome="success"}'), 1);
    assertEquals(sample(text, 'cedana_operations_total{op="restore",type="process",outcome="failure"}'), 2);
    assertEquals(sum(text, "cedana_operation_failures_total", 'op="restore"'), 2);
    assertEquals(
      sum(text, "cedana_operation_failures_total", 'op="restore"', 'reason="failed_precondition"'),
      1,
    );
    assertEquals(sum(text, "cedana_operation_failures_total", 'op="dump"', 'reason="not_found"'), 1);
    for (const op of ["dump", "restore"]) {
      const l = `{op="${op}",type="process"}`;
      assertEquals(sample(text, `cedana_operation_duration_seconds_count${l}`), op === "dump" ? 2 : 3);
      const inf = sample(
        text,
        `cedana_operation_duration_seconds_bucket{op="${op}",type="process",le="+Inf"}`,
      );
      assertEquals(inf, op === "dump" ? 2 : 3);
      assert(sample(text, `cedana_operation_duration_seconds_sum${l}`)! > 0);
    }
    // the restore read the checkpoint the dump wrote
    assertEquals(sample(text, 'cedana_checkpoint_bytes_total{op="restore"}'), dump.checkpoint.size);
    assertEquals(sample(text, 'cedana_build_info{version="0.1.0"}'), 1);
    await validate(text);
  }),
);

Deno.test(
  "metrics: jobs gauge without CRIU, and HELP/TYPE for every family",
  opts,
  withDaemon(async (d) => {
    await d.json<Job>("run", "process", "--jid", "s1", "--", "sleep", "300");
    await d.json<Job>("run", "process", "--jid", "s2", "--", "true");
    await waitFor(async () => {
      const t = await (await scrapeSocket(d.socket)).text();
      return sample(t, 'cedana_jobs{type="process",status="halted"}') === 1 ? t : "";
    }, "s2 halted in cedana_jobs");
    const text = await (await scrapeSocket(d.socket)).text();
    assertEquals(sum(text, "cedana_jobs", 'type="process"'), 2);
    for (
      const [name, type] of [
        ["cedana_jobs", "gauge"],
        ["cedana_operations_total", "counter"],
        ["cedana_operation_failures_total", "counter"],
        ["cedana_operation_duration_seconds", "histogram"],
        ["cedana_checkpoint_bytes_total", "counter"],
        ["cedana_build_info", "gauge"],
        ["process_start_time_seconds", "gauge"],
      ]
    ) {
      assertStringIncludes(text, `# HELP ${name} `);
      assertStringIncludes(text, `# TYPE ${name} ${type}\n`);
    }
    const start = sample(text, "process_start_time_seconds")!;
    assert(Math.abs(start - Date.now() / 1000) < 120, `process_start_time_seconds ${start}`);
    await validate(text);
  }),
);

Deno.test("metrics: opt-in TCP listener serves /metrics only", opts, async () => {
  const port = freePort();
  const d = new TestDaemon({ CEDANA_METRICS_ADDRESS: `127.0.0.1:${port}` });
  await d.start();
  try {
    await d.json<Job>("run", "process", "--jid", "tcp1", "--", "sleep", "300");
    const r = await fetch(`http://127.0.0.1:${port}/metrics`);
    assertEquals(r.status, 200);
    assert(r.headers.get("content-type")!.startsWith("text/plain; version=0.0.4"));
    const text = await r.text();
    assertEquals(sum(text, "cedana_jobs", 'type="process"'), 1);
    await validate(text);
    // the job API never leaves the root-only socket
    const api = await fetch(`http://127.0.0.1:${port}/v1/jobs`);
    assertEquals(api.status, 404);
    await api.body?.cancel();
    const post = await fetch(`http://127.0.0.1:${port}/metrics`, { method: "POST" });
    assertEquals(post.status, 405);
    await post.body?.cancel();
  } catch (e) {
    console.error(`--- daemon log (${d.dir}) ---\n${d.daemonLog}`);
    throw e;
  } finally {
    await d.cleanup();
  }
  // stopping the daemon closes the port too
  const gone = await fetch(`http://127.0.0.1:${port}/metrics`).then(() => false, () => true);
  assert(gone, "metrics port still open after the daemon stopped");
});

Deno.test(
  "metrics: off by default; a taken or bad metrics.address stops the daemon from starting",
  opts,
  async () => {
    // default: the daemon has no listening TCP socket at all
    const d0 = new TestDaemon();
    await d0.start();
    try {
      const tcp = Deno.readTextFileSync(`/proc/${d0.pid}/net/tcp`);
      const inodes = new Set(
        [...Deno.readDirSync(`/proc/${d0.pid}/fd`)].flatMap((f) => {
          try {
            const m = /^socket:\[(\d+)\]$/.exec(Deno.readLinkSync(`/proc/${d0.pid}/fd/${f.name}`));
            return m ? [m[1]] : [];
          } catch {
            return [];
          }
        }),
      );
      // column 10 of /proc/net/tcp is the socket inode; st 0A is LISTEN
      const listening = tcp.split("\n").slice(1).map((l) => l.trim().split(/\s+/)).filter((c) =>
        c[3] === "0A" && inodes.has(c[9])
      );
      assertEquals(listening.length, 0, "the daemon listens on TCP without metrics.address");
    } finally {
      await d0.cleanup();
    }

    const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (taken.addr as Deno.NetAddr).port;
    try {
      for (const [addr, want] of [[`127.0.0.1:${port}`, "cannot serve metrics"], ["nonsense", "HOST:PORT"]]) {
        const d = new TestDaemon({ CEDANA_METRICS_ADDRESS: addr });
        try {
          let err = "";
          await d.start().catch((e) => err = String(e));
          assertStringIncludes(err, "daemon exited early");
          assertStringIncludes(err, want);
        } finally {
          await d.cleanup();
        }
      }
    } finally {
      taken.close();
    }
  },
);
