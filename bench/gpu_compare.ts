// Compares cedana's GPU dump/restore with the raw sequence measured in the same run (issue 5's
// goal: within 1.10x). Reads work dirs of tests/gpu/run_on_gpu.sh (raw: driver API calls + criu,
// one RESULT line per probe-criu-<GiB>-<n>.log) and of tests/gpu/cedana_on_gpu.sh (results.tsv:
// the CLI's wall time and the daemon's step timings per dump/restore), in any order.
// No imports: runs on an offline GPU node with `deno run -A --no-config bench/gpu_compare.ts DIR...`.

const dirs = Deno.args;
if (dirs.length === 0) {
  console.error("usage: gpu_compare.ts WORK_DIR...");
  Deno.exit(2);
}
const exists = (p: string) => {
  try {
    Deno.statSync(p);
    return true;
  } catch {
    return false;
  }
};

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0
    ? NaN
    : s.length % 2
    ? s[(s.length - 1) / 2]
    : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const sum = (t: Record<string, number>, keys: string[]) => keys.reduce((a, k) => a + (t[k] ?? NaN), 0);

interface Samples {
  rawDump: number[];
  rawRestore: number[];
  dumpWall: number[];
  dumpDaemon: number[];
  restoreWall: number[];
  restoreDaemon: number[];
  image: number[];
}
const bySize = new Map<string, Samples>();
const of = (gib: string) => {
  if (!bySize.has(gib)) {
    bySize.set(gib, {
      rawDump: [],
      rawRestore: [],
      dumpWall: [],
      dumpDaemon: [],
      restoreWall: [],
      restoreDaemon: [],
      image: [],
    });
  }
  return bySize.get(gib)!;
};

for (const dir of dirs) {
  for (const e of Deno.readDirSync(dir)) {
    const m = e.name.match(/^probe-criu-([\d.]+)(?:-\d+)?\.log$/);
    if (!m) continue;
    const line = Deno.readTextFileSync(`${dir}/${e.name}`).split("\n").find((l) => l.startsWith("RESULT "));
    const r = line ? JSON.parse(line.slice(7)) : null;
    if (!r?.ok) continue;
    of(m[1]).rawDump.push(sum(r.timings, ["lock", "gpu checkpoint", "criu dump"]));
    of(m[1]).rawRestore.push(sum(r.timings, ["criu restore", "gpu restore", "unlock"]));
  }
}

// results.tsv: GiB, phase, wall ms, timings JSON, image bytes. Plain dump/restore cycles only
// (not --leave-running, not the restore of a copy).
const tsvs = dirs.map((d) => `${d}/results.tsv`).filter(exists);
for (const line of tsvs.flatMap((p) => Deno.readTextFileSync(p).split("\n"))) {
  const [gib, phase, wall, timings, size] = line.split("\t");
  if (!timings) continue;
  const t = JSON.parse(timings) as Record<string, number>;
  const s = of(gib);
  if (phase.trim() === "dump") {
    s.dumpWall.push(Number(wall));
    s.dumpDaemon.push(t.total);
    if (size) s.image.push(Number(size));
  } else if (phase === "restore") {
    s.restoreWall.push(Number(wall));
    s.restoreDaemon.push(t.total);
  }
}

const f = (ms: number) => (ms / 1000).toFixed(2);
const r = (a: number, b: number) => (a / b).toFixed(2);
console.log(
  "| GPU tensor | raw dump | cedana dump (CLI / daemon) | ratio | raw restore | cedana restore (CLI / daemon) | ratio | image | samples (raw/cedana) |",
);
console.log("|---|---|---|---|---|---|---|---|---|");
let ok = true;
for (const [gib, s] of [...bySize].sort((a, b) => Number(a[0]) - Number(b[0]))) {
  if (!s.rawDump.length || !s.dumpWall.length) continue; // (e.g. the 2-process job: no raw twin)
  const rd = median(s.rawDump), rr = median(s.rawRestore);
  const cd = median(s.dumpWall), cr = median(s.restoreWall);
  if (cd / rd > 1.1 || cr / rr > 1.1) ok = false;
  console.log(
    `| ${gib} GiB | ${f(rd)} s | ${f(cd)} / ${f(median(s.dumpDaemon))} s | ${r(cd, rd)} | ${f(rr)} s | ${
      f(cr)
    } / ${f(median(s.restoreDaemon))} s | ${r(cr, rr)} | ${
      (median(s.image) / 1e9).toFixed(1)
    } GB | ${s.rawDump.length}/${s.dumpWall.length} |`,
  );
}
console.log(
  ok ? "goal met: every ratio (CLI wall time / raw) <= 1.10" : "goal NOT met: a ratio is above 1.10",
);
