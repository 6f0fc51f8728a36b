import { assert, assertEquals, assertThrows } from "../testing/asserts.ts";
import {
  IMG_SERVICE_MAGIC,
  parseStatsImage,
  readDumpStats,
  readRestoreStats,
  STATS_MAGIC,
  StatsImageError,
} from "./stats.ts";

// ---- hand-made images -------------------------------------------------------------------------

function varint(n: number): number[] {
  const out: number[] = [];
  // Arithmetic, not >>>, so values above 2^32 (uint64 page counters) encode correctly.
  while (n >= 0x80) {
    out.push((n % 0x80) | 0x80);
    n = Math.floor(n / 0x80);
  }
  out.push(n);
  return out;
}
const vField = (num: number, value: number) => [...varint(num * 8 + 0), ...varint(value)];
const lenField = (num: number, body: number[]) => [...varint(num * 8 + 2), ...varint(body.length), ...body];
const u32le = (v: number) => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff];

/** Wraps a StatsEntry body in the header and pb_write_one length prefix CRIU writes. */
function image(entry: number[], magic = [IMG_SERVICE_MAGIC, STATS_MAGIC]): Uint8Array {
  return new Uint8Array([...u32le(magic[0]), ...u32le(magic[1]), ...u32le(entry.length), ...entry]);
}

Deno.test("parseStatsImage decodes a dump entry and skips unknown fields of every wire type", () => {
  const dump = [
    ...vField(1, 85),
    ...vField(2, 3363),
    // Unknown fields a newer CRIU might add, one per wire type, between known ones.
    ...varint(50 * 8 + 5), // fixed32
    0xff,
    0xff,
    0xff,
    0xff,
    ...varint(51 * 8 + 1), // fixed64
    1,
    2,
    3,
    4,
    5,
    6,
    7,
    8,
    ...lenField(52, [0x08, 0x96, 0x01]),
    ...vField(53, 2 ** 40),
    ...vField(3, 348),
    ...vField(4, 85),
    ...vField(5, 5_000_000_000), // needs more than 32 bits
    ...vField(6, 0),
    ...vField(7, 30),
    ...vField(9, 0),
    ...vField(10, 6),
    ...vField(11, 7),
    ...vField(12, 1),
    ...vField(13, 2),
    ...vField(14, 3),
  ];
  const entry = [...vField(9, 1), ...lenField(1, dump), ...lenField(15, [1, 2, 3])];
  assertEquals(parseStatsImage(image(entry)), {
    dump: {
      freezingTimeUs: 85,
      frozenTimeUs: 3363,
      memdumpTimeUs: 348,
      memwriteTimeUs: 85,
      pagesScanned: 5_000_000_000,
      pagesSkippedParent: 0,
      pagesWritten: 30,
      pagesLazy: 0,
      pagePipes: 6,
      pagePipeBufs: 7,
      shpagesScanned: 1,
      shpagesSkippedParent: 2,
      shpagesWritten: 3,
    },
  });
});

Deno.test("parseStatsImage: missing fields default to 0, irmap_resolve stays absent", () => {
  const got = parseStatsImage(image(lenField(1, vField(7, 12))));
  assertEquals(got.dump?.pagesWritten, 12);
  assertEquals(got.dump?.pagePipes, 0);
  assert(got.dump && !("irmapResolveUs" in got.dump));
  assertEquals(parseStatsImage(image(lenField(1, vField(8, 0)))).dump?.irmapResolveUs, 0);
  assertEquals(parseStatsImage(image([])), {});
});

Deno.test("parseStatsImage merges a sub-message split over two occurrences, as protobuf does", () => {
  const entry = [...lenField(2, [...vField(3, 1), ...vField(5, 9)]), ...lenField(2, vField(5, 29))];
  assertEquals(parseStatsImage(image(entry)).restore, {
    pagesCompared: 0,
    pagesSkippedCow: 0,
    forkingTimeUs: 1,
    restoreTimeUs: 0,
    pagesRestored: 29,
  });
});

// Verbatim files written by CRIU 4.2.1 for `sleep 60`, so the decoder is pinned to real output even
// where CRIU cannot run.
const REAL_STATS_DUMP = [
  0x40,
  0x59,
  0x10,
  0x55,
  0x06,
  0x33,
  0x09,
  0x57,
  0x20,
  0x00,
  0x00,
  0x00,
  0x0a,
  0x1e,
  0x08,
  0x55,
  0x10,
  0xa3,
  0x1a,
  0x18,
  0xdc,
  0x02,
  0x20,
  0x55,
  0x28,
  0x39,
  0x30,
  0x00,
  0x38,
  0x1e,
  0x40,
  0x00,
  0x48,
  0x00,
  0x50,
  0x06,
  0x58,
  0x06,
  0x60,
  0x00,
  0x68,
  0x00,
  0x70,
  0x00,
];
const REAL_STATS_RESTORE = [
  0x40,
  0x59,
  0x10,
  0x55,
  0x06,
  0x33,
  0x09,
  0x57,
  0x0d,
  0x00,
  0x00,
  0x00,
  0x12,
  0x0b,
  0x08,
  0x00,
  0x10,
  0x00,
  0x18,
  0x01,
  0x20,
  0xbf,
  0x0e,
  0x28,
  0x1d,
];

Deno.test("parseStatsImage decodes files CRIU 4.2.1 wrote", () => {
  assertEquals(parseStatsImage(new Uint8Array(REAL_STATS_DUMP)), {
    dump: {
      freezingTimeUs: 85,
      frozenTimeUs: 3363,
      memdumpTimeUs: 348,
      memwriteTimeUs: 85,
      pagesScanned: 57,
      pagesSkippedParent: 0,
      pagesWritten: 30,
      irmapResolveUs: 0,
      pagesLazy: 0,
      pagePipes: 6,
      pagePipeBufs: 6,
      shpagesScanned: 0,
      shpagesSkippedParent: 0,
      shpagesWritten: 0,
    },
  });
  assertEquals(parseStatsImage(new Uint8Array(REAL_STATS_RESTORE)), {
    restore: {
      pagesCompared: 0,
      pagesSkippedCow: 0,
      forkingTimeUs: 1,
      restoreTimeUs: 1855,
      pagesRestored: 29,
    },
  });
});

Deno.test("parseStatsImage rejects malformed files with a clear error", () => {
  const bad = (bytes: Uint8Array, includes: string) =>
    assertThrows(() => parseStatsImage(bytes), StatsImageError, includes);
  bad(new Uint8Array([1, 2, 3]), "too short");
  // IMG_COMMON_MAGIC is what ordinary images carry; stats must have the service magic.
  bad(image([], [0x54564319, STATS_MAGIC]), "not a CRIU stats image: magic 0x54564319 0x57093306");
  bad(image([], [IMG_SERVICE_MAGIC, 0x57004059]), "not a CRIU stats image"); // irmap-cache
  bad(new Uint8Array([...u32le(IMG_SERVICE_MAGIC), ...u32le(STATS_MAGIC), ...u32le(10), 0x0a]), "truncated");
  bad(image([0x0a, 0x05, 0x08]), "runs past the end");
  bad(image(lenField(1, [0x08, 0x80])), "truncated varint");
  bad(image(lenField(1, [0x08, ...new Array(10).fill(0xff), 0x01])), "longer than 10 bytes");
  bad(image(lenField(1, [0x0b])), "unsupported wire type 3");
  bad(image(vField(1, 5)), "field 1 (dump) is not a message");
  bad(image([0x00, 0x00]), "field number 0");
});

Deno.test("readDumpStats/readRestoreStats: null without the file, path named on a bad one", () => {
  const dir = Deno.makeTempDirSync({ prefix: "cedana-stats-" });
  try {
    assertEquals(readDumpStats(dir), null);
    assertEquals(readRestoreStats(dir), null);
    Deno.writeFileSync(`${dir}/stats-dump`, new Uint8Array(REAL_STATS_RESTORE));
    assertThrows(() => readDumpStats(dir), StatsImageError, "stats-dump has no dump section");
    Deno.writeFileSync(`${dir}/stats-restore`, new Uint8Array(16));
    assertThrows(
      () => readRestoreStats(dir),
      StatsImageError,
      `${dir}/stats-restore: not a CRIU stats image`,
    );
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

// ---- real CRIU ---------------------------------------------------------------------------------

function commandWorks(cmd: string, args: string[]): string | null {
  try {
    const out = new Deno.Command(cmd, { args, stdin: "null", stdout: "piped", stderr: "null" }).outputSync();
    return out.success ? new TextDecoder().decode(out.stdout).trim() : null;
  } catch {
    return null;
  }
}

// The real python binary, not a pyenv shim, so the PID we spawn is the PID we dump.
const PYTHON = commandWorks("python3", ["-c", "import sys; print(sys.executable)"]);
const CAN_CRIU = Deno.uid() === 0 && commandWorks("criu", ["--version"]) !== null && PYTHON !== null;

async function eventually(probe: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!probe()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

const exists = (path: string) => {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
};

/** Whether `pid` is still the test's python (its argv names our marker file), so killing it is safe. */
function ownsPid(pid: number, marker: string): boolean {
  try {
    return Deno.readTextFileSync(`/proc/${pid}/cmdline`).split("\0").includes(marker);
  } catch {
    return false;
  }
}

async function criu(args: string[], dir: string, log: string): Promise<void> {
  const out = await new Deno.Command("criu", { args, stdin: "null", stdout: "piped", stderr: "piped" })
    .output();
  if (!out.success) {
    let text = "";
    try {
      text = Deno.readTextFileSync(`${dir}/${log}`);
    } catch { /* no log written */ }
    throw new Error(`criu ${args[0]} failed (${out.code}):\n${text}`);
  }
}

Deno.test({
  name: "stats from a real criu dump and restore",
  ignore: !CAN_CRIU,
  async fn() {
    const tmp = Deno.makeTempDirSync({ prefix: "cedana-stats-" });
    const images = `${tmp}/images`;
    Deno.mkdirSync(images);
    const ready = `${tmp}/ready`;
    const MIB = 50;
    // Writes every page (a zeroed bytearray would stay unfaulted and never be dumped), then
    // signals through a file because a stdout pipe would become part of the checkpoint.
    const code = `import sys, time\nb = b"\\x01" * (${MIB} << 20)\nopen(sys.argv[1], "w").close()\n` +
      `time.sleep(600)\n`;
    // Deno's children are not process-group leaders, so setsid execs in place: same PID, now a
    // session leader, which CRIU needs unless --shell-job; and Deno stays its parent to reap it.
    const child = new Deno.Command("setsid", {
      args: [PYTHON!, "-c", code, ready],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    const pid = child.pid;
    let restored = false;
    try {
      await eventually(() => exists(ready), "python to fill its memory");

      await criu(
        ["dump", "-t", `${pid}`, "-D", images, "-o", "dump.log", "--leave-running"],
        images,
        "dump.log",
      );
      const dump = readDumpStats(images);
      assert(dump, "stats-dump missing after criu dump");
      assert(dump.pagesWritten > 0, `pagesWritten ${dump.pagesWritten}`);
      assert(dump.frozenTimeUs > 0, `frozenTimeUs ${dump.frozenTimeUs}`);
      assert(dump.pagesScanned >= dump.pagesWritten, "scanned fewer pages than written");
      assert(dump.pagesWritten >= (MIB << 20) / 4096, `only ${dump.pagesWritten} pages for ${MIB} MiB`);
      // Every written page lands in a pages-*.img, so the counters must explain those files' size.
      let pageBytes = 0;
      for (const e of Deno.readDirSync(images)) {
        if (/^pages-\d+\.img$/.test(e.name)) pageBytes += Deno.statSync(`${images}/${e.name}`).size;
      }
      const expected = (dump.pagesWritten + dump.shpagesWritten) * 4096;
      assert(
        Math.abs(pageBytes - expected) <= 16 * 4096,
        `pages-*.img hold ${pageBytes} bytes, stats say ${expected}`,
      );
      assertEquals(readRestoreStats(images), null);

      // The original must be gone (reaped, not a zombie) or restore fails with "File exists" on its PID.
      child.kill("SIGKILL");
      await child.status;
      await eventually(() => !exists(`/proc/${pid}`), `PID ${pid} to disappear`);

      await criu(["restore", "-D", images, "-d", "-o", "restore.log"], images, "restore.log");
      restored = true;
      const state = Deno.readTextFileSync(`/proc/${pid}/stat`).split(") ")[1]?.[0];
      assert(state && state !== "Z", `restored process state ${state}`);
      const restore = readRestoreStats(images);
      assert(restore, "stats-restore missing after criu restore");
      assert(restore.pagesRestored > 0 || restore.restoreTimeUs > 0, JSON.stringify(restore));
      assert(restore.pagesRestored <= dump.pagesWritten + dump.shpagesWritten, JSON.stringify(restore));
      // The dump section stays in its own file.
      assertEquals(readDumpStats(images)?.pagesWritten, dump.pagesWritten);
    } finally {
      try {
        child.kill("SIGKILL");
      } catch { /* already exited */ }
      await child.status;
      // Only kill the PID while it still runs our script; a failed restore is cleaned up by CRIU itself.
      if (restored && ownsPid(pid, ready)) {
        // The detached restored task is re-parented to init, which reaps it once killed.
        try {
          Deno.kill(pid, "SIGKILL");
        } catch { /* already gone */ }
        await eventually(() => !exists(`/proc/${pid}`), `restored PID ${pid} to exit`).catch(() => {});
      }
      Deno.removeSync(tmp, { recursive: true });
    }
  },
});
