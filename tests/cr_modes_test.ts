// C/R modes (leave-running, cycles, PID collisions, compression) and failure cases.
import { existsSync } from "node:fs";
import type { CheckpointInfo, CheckpointInspect, DumpResult, Job, RestoreResult } from "../src/api/types.ts";
import { assert, assertEquals, assertMatch, assertStringIncludes } from "../src/testing/asserts.ts";
import {
  assertContinues,
  checkpointDirEntries,
  crOpts,
  jobOf,
  lastTick,
  PYTHON,
  readLog,
  startWorkload,
  verify,
  waitTicks,
  WORKLOAD,
} from "./cr_helpers.ts";
import {
  attachedOutput,
  crashDuring,
  MAIN,
  pidAlive,
  sleep,
  TestDaemon,
  typingClient,
  waitFor,
  withDaemon,
} from "./helpers.ts";

Deno.test(
  "leave-running, then restore the copy after killing the original",
  crOpts,
  withDaemon(async (d) => {
    const job = await startWorkload(d, "lr", "memory", "32");
    const r = await d.json<DumpResult>("dump", "job", "lr", "--leave-running");
    assertEquals(r.leftRunning, true);
    assertEquals((await jobOf(d, "lr")).status !== "halted", true);
    const t = await waitTicks(job.log!, lastTick(readLog(job.log!)) + 2); // still running on its own
    await d.ok("job", "kill", "lr");
    await waitFor(async () => (await jobOf(d, "lr")).status === "halted", "original killed");
    const back = await d.json<RestoreResult>("restore", "job", "lr");
    assertEquals(back.pidNamespace, false);
    // the copy resumes from the dump's state: its counter restarts at the dump point, then grows
    await waitFor(() => lastTick(readLog(job.log!).slice(-3)) > 0, "copy ticking");
    await verify(d, "lr", job.log!);
    assert(t > 0);
  }),
);

Deno.test(
  "5 dump/restore cycles in a row",
  crOpts,
  withDaemon(async (d) => {
    const job = await startWorkload(d, "cyc", "pipes");
    for (let i = 0; i < 5; i++) {
      const before = lastTick(readLog(job.log!));
      await d.ok("dump", "job", "cyc");
      await d.ok("restore", "job", "cyc");
      await assertContinues(job.log!, before);
    }
    await verify(d, "cyc", job.log!);
    const cps = await d.json<CheckpointInfo[]>("job", "checkpoint", "list", "cyc");
    assertEquals(cps.length, 5);
    assert(cps[0].time >= cps[4].time, "newest first");
  }),
);

Deno.test(
  "restore while the original PIDs are taken: new PID namespace, side by side",
  crOpts,
  withDaemon(async (d) => {
    const job = await startWorkload(d, "orig", "counter");
    const dump = await d.json<DumpResult>("dump", "job", "orig", "--leave-running");
    const copies: RestoreResult[] = [];
    for (const jid of ["copy1", "copy2"]) {
      copies.push(
        await d.json<RestoreResult>("restore", "process", "--path", dump.checkpoint.path, "--jid", jid),
      );
    }
    for (const c of copies) {
      assertEquals(c.pidNamespace, true);
      assert(c.job.pid !== job.pid, "a copy has its own host PID");
      assert(pidAlive(c.job.pid!), "the copy runs");
    }
    // such a copy cannot be checkpointed again: said up front, and it keeps running
    const again = await d.cli("dump", "job", "copy1");
    assertEquals(again.code, 5, again.stderr);
    assertStringIncludes(again.stderr, "was restored into a new PID namespace");
    assert(pidAlive(copies[0].job.pid!));
    const ps = await d.json<Job[]>("ps");
    assertEquals(ps.filter((j) => j.status !== "halted").map((j) => j.jid).sort(), [
      "copy1",
      "copy2",
      "orig",
    ]);
    await d.ok("job", "kill", "copy1", "copy2");
    for (const c of copies) await waitFor(() => !pidAlive(c.job.pid!), "copy killed");
    assert(pidAlive(job.pid!), "the original is untouched");
  }),
);

Deno.test(
  "a copy in a new PID namespace waits at the gate for checksums slower than CRIU, then runs",
  crOpts,
  async () => {
    // The hook holding the restored tasks checked the daemon in its own /proc, where (in the new
    // namespace) the daemon is not: unless the verdict was already in, it killed the copy.
    const d = new TestDaemon({ CEDANA_FAULT: "slow-checksums" });
    await d.start();
    try {
      await startWorkload(d, "orig", "counter");
      const dump = await d.json<DumpResult>("dump", "job", "orig", "--leave-running");
      const c = await d.json<RestoreResult>(
        "restore",
        "process",
        "--path",
        dump.checkpoint.path,
        "--jid",
        "cp",
      );
      assertEquals(c.pidNamespace, true);
      assert(pidAlive(c.job.pid!), "the copy runs");
      await verify(d, "cp", c.job.log!);
    } finally {
      await d.cleanup();
    }
  },
);

for (const compression of ["tar", "gzip", "lz4", "zstd"]) {
  Deno.test(
    `compression ${compression}`,
    crOpts,
    withDaemon(async (d) => {
      const job = await startWorkload(d, "z", "memory", "16");
      const r = await d.json<DumpResult>("dump", "job", "z", "--compression", compression);
      const ext = { tar: ".tar", gzip: ".tar.gz", lz4: ".tar.lz4", zstd: ".tar.zst" }[compression]!;
      assert(r.checkpoint.path.endsWith(ext), r.checkpoint.path);
      assert(Deno.statSync(r.checkpoint.path).isFile, "one archive");
      assertEquals(r.checkpoint.size, Deno.statSync(r.checkpoint.path).size);
      const before = lastTick(readLog(job.log!));
      await d.ok("restore", "job", "z");
      await assertContinues(job.log!, before);
      await verify(d, "z", job.log!);
      const listed = (await d.ok("ps")).split("\n")[1];
      assertMatch(listed, /\d+s ago\s+[\d.]+ (KiB|MiB)/);
    }),
  );
}

Deno.test(
  "checkpoint inspect and delete (record and files)",
  crOpts,
  withDaemon(async (d) => {
    await startWorkload(d, "ins", "counter");
    const r = await d.json<DumpResult>("dump", "job", "ins", "--leave-running");
    const c = await d.json<CheckpointInspect>("job", "checkpoint", "inspect", r.checkpoint.id);
    const m = c.manifest as { criu: { version: string }; files: { name: string; sha256: string }[] };
    assertMatch(m.criu.version, /^4\./);
    assert(m.files.some((f) => /^pages-\d+\.img$/.test(f.name) && f.sha256.length === 64));
    assertStringIncludes(await d.ok("job", "checkpoint", "inspect", r.checkpoint.id), "pages written");
    await d.ok("job", "checkpoint", "delete", r.checkpoint.id);
    assertEquals((await d.json<CheckpointInfo[]>("checkpoints", "ins")).length, 0);
    let gone = false;
    try {
      Deno.statSync(r.checkpoint.path);
    } catch {
      gone = true;
    }
    assert(gone, "files removed");
  }),
);

Deno.test(
  "failures: missing or corrupted checkpoint, exited job, busy job",
  crOpts,
  withDaemon(async (d) => {
    const miss = await d.cli("restore", "process", "--path", `${d.dir}/nope`);
    assertEquals(miss.code, 3);
    assertStringIncludes(miss.stderr, "does not exist");
    Deno.writeTextFileSync(`${d.dir}/plain.txt`, "not a checkpoint");
    const plain = await d.cli("restore", "process", "--path", `${d.dir}/plain.txt`);
    assertEquals(plain.code, 5, plain.stderr);
    assertStringIncludes(
      plain.stderr,
      "plain.txt is not a checkpoint: a checkpoint is a directory, or a .tar",
    );

    await startWorkload(d, "c", "counter");
    const r = await d.json<DumpResult>("dump", "job", "c");
    await d.ok("job", "checkpoint", "inspect", r.checkpoint.id); // checksums are complete once inspect answers
    const pages = [...Deno.readDirSync(r.checkpoint.path)].find((e) => /^pages-\d+\.img$/.test(e.name))!.name;
    const file = `${r.checkpoint.path}/${pages}`;
    const bytes = Deno.readFileSync(file);
    bytes[100] ^= 0xff;
    Deno.writeFileSync(file, bytes);
    const bad = await d.cli("restore", "job", "c");
    assertEquals(bad.code, 5, bad.stderr);
    assertStringIncludes(bad.stderr, `${pages} does not match its checksum`);
    assertEquals((await jobOf(d, "c")).status, "halted");
    Deno.truncateSync(file, 10);
    const short = await d.cli("restore", "job", "c");
    assertStringIncludes(short.stderr, `${pages} has 10 bytes`);

    await d.ok("run", "process", "--jid", "gone", "--", "true");
    await waitFor(async () => (await jobOf(d, "gone")).status === "halted", "exit");
    const exited = await d.cli("dump", "job", "gone");
    assertEquals(exited.code, 5);
    assertStringIncludes(exited.stderr, "job gone is not running");

    // two operations on one job at once: one is refused, never interleaved
    await startWorkload(d, "busy", "memory", "256");
    const [a, b] = await Promise.all([
      d.cli("dump", "job", "busy", "--leave-running"),
      d.cli("dump", "job", "busy", "--leave-running"),
    ]);
    const codes = [a.code, b.code].sort();
    assertEquals(codes, [0, 5], a.stderr + b.stderr);
    assertStringIncludes(a.stderr + b.stderr, "busy");
  }),
);

Deno.test(
  "checkpoints are not mixed up: another job's, a deleted latest, a reused path, an unlisted image",
  crOpts,
  withDaemon(async (d) => {
    const a = await startWorkload(d, "ja", "counter");
    await startWorkload(d, "jb", "counter");
    const older = await d.json<DumpResult>("dump", "job", "ja", "--leave-running");
    const mine = await d.json<DumpResult>("dump", "job", "ja");
    const other = await d.json<DumpResult>("dump", "job", "jb", "--leave-running", "--compression", "tar");
    // another job's checkpoint is not restored into this job
    const wrong = await d.cli("restore", "job", "ja", "--path", other.checkpoint.path);
    assertEquals(wrong.code, 2, wrong.stderr);
    assertStringIncludes(wrong.stderr, "is a checkpoint of job jb, not of job ja");
    assertStringIncludes(wrong.stderr, `cedana restore process --path ${other.checkpoint.path}`);
    // nor a deleted job's into a new job of the same name
    await d.ok("job", "kill", "jb");
    await waitFor(async () => (await jobOf(d, "jb")).status === "halted", "jb halted");
    assertEquals(
      await d.ok("job", "delete", "jb"),
      "deleted job jb (its checkpoint is kept: cedana checkpoints)\n",
    );
    await d.ok("run", "process", "--jid", "jb", "--", "sleep", "60");
    await d.ok("job", "kill", "jb");
    await waitFor(async () => (await jobOf(d, "jb")).status === "halted", "the new jb halted");
    const reused = await d.cli("restore", "job", "jb", "--path", other.checkpoint.path);
    assertEquals(reused.code, 2, reused.stderr);
    assertStringIncludes(reused.stderr, "is a checkpoint of an earlier job named jb (recorded ");
    // the dump that ended the job is deleted: no silent step back to the older one
    await d.ok("job", "checkpoint", "delete", mine.checkpoint.id);
    const back = await d.cli("restore", "job", "ja");
    assertEquals(back.code, 5, back.stderr);
    assertStringIncludes(back.stderr, `cedana restore job ja --path ${older.checkpoint.path}`);
    await d.ok("restore", "job", "ja", "--path", older.checkpoint.path); // on purpose: fine
    await waitTicks(a.log!, 1);
    // no checkpoint inside another one; a delete removes the checkpoint's own files only
    const nested = await d.cli("dump", "job", "ja", "--leave-running", "--dir", older.checkpoint.path);
    assertEquals(nested.code, 2, nested.stderr);
    assertStringIncludes(nested.stderr, `is inside checkpoint ${older.checkpoint.path}`);
    Deno.writeTextFileSync(`${older.checkpoint.path}/notes.txt`, "mine");
    await d.ok("job", "checkpoint", "delete", older.checkpoint.id);
    assertEquals([...Deno.readDirSync(older.checkpoint.path)].map((e) => e.name), ["notes.txt"]);
    // an image the manifest does not list is not restored unchecked (a copy with an edited list)
    const cp = await d.json<DumpResult>("dump", "job", "ja", "--leave-running");
    await d.json("job", "checkpoint", "inspect", cp.checkpoint.id); // (its checksums are complete)
    const copy = `${d.dir}/copy`;
    await new Deno.Command("cp", { args: ["-a", cp.checkpoint.path, copy] }).output();
    const m = JSON.parse(Deno.readTextFileSync(`${copy}/manifest.json`));
    m.files = m.files.filter((f: { name: string }) => !f.name.startsWith("pages-"));
    Deno.writeTextFileSync(`${copy}/manifest.json`, JSON.stringify(m));
    const unlisted = await d.cli("restore", "process", "--path", copy);
    assertEquals(unlisted.code, 5, unlisted.stderr);
    assertMatch(unlisted.stderr, /pages-\d+\.img is not in its manifest\.json/);
    // a name is not an archive's: refused at the dump; a directory named like one is restored as images
    const named = await d.cli("dump", "job", "ja", "--leave-running", "--name", "mine.tar.gz");
    assertEquals(named.code, 2, named.stderr);
    assertStringIncludes(named.stderr, "(--name mine --compression gzip)");
    const dirLikeArchive = `${d.dir}/images.tar.gz`;
    await new Deno.Command("cp", { args: ["-a", cp.checkpoint.path, dirLikeArchive] }).output();
    await d.ok("restore", "process", "--path", dirLikeArchive, "--jid", "dircopy");
    await d.ok("job", "kill", "dircopy");
    // a damaged archive is named as the user gave it, not by the scratch dir it was unpacked into
    const bytes = Deno.readFileSync(other.checkpoint.path);
    const at = Math.floor(bytes.length / 2); // (in the page images: by far the biggest file)
    bytes[at] ^= 0xff;
    const bad = `${d.dir}/flipped.tar`;
    Deno.writeFileSync(bad, bytes);
    const r = await d.cli("restore", "process", "--path", bad);
    assert(r.code !== 0, r.stderr);
    assertStringIncludes(r.stderr, bad);
    assert(!r.stderr.includes(".cedana-work-"), r.stderr);
  }),
);

Deno.test(
  "a process of the job outside its tree (its parent exited) is named at the dump and stopped with the job",
  crOpts,
  withDaemon(async (d) => {
    const j = await d.json<Job>(
      "run",
      "process",
      "--jid",
      "st",
      "--",
      "sh",
      "-c",
      '( sh -c "while true; do echo g; sleep 0.1; done" & ); while true; do echo p; sleep 0.1; done',
    );
    await waitFor(() => readLog(j.log!).includes("g"), "the stray writes");
    const r = await d.json<DumpResult>("dump", "job", "st");
    assert(
      r.detected.some((l) => /\d+ process\(es\) of the job outside its process tree/.test(l)),
      r.detected.join(),
    );
    await sleep(300);
    const n = readLog(j.log!).length;
    await sleep(500);
    assertEquals(readLog(j.log!).length, n, "nothing writes to the halted job's log");
    await d.ok("restore", "job", "st");
    await waitFor(() => readLog(j.log!).length > n + 2, "the restored job writes again");
  }),
);

Deno.test(
  "a TCP job's damaged checkpoint is refused before CRIU runs: its connection survives for the good restore",
  crOpts,
  withDaemon(async (d) => {
    // the peer lives outside the job (here, in the test): a connection reset would reach it
    const server = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    (async () => {
      for await (const conn of server) conn.readable.pipeTo(conn.writable).catch(() => {});
    })();
    const client = [
      "import socket, sys, time",
      `s = socket.create_connection(("127.0.0.1", ${server.addr.port}))`,
      "i = 0",
      "while True:",
      "    s.sendall(b'%d\\n' % i); got = s.recv(64).decode().strip()",
      "    print('ok' if got == str(i) else 'FAIL %r' % got, i, flush=True); i += 1; time.sleep(0.1)",
    ].join("\n");
    const j = await d.json<Job>("run", "process", "--jid", "tcp", "--", PYTHON, "-u", "-c", client);
    await waitFor(() => readLog(j.log!).length > 2, "the client talks");
    const r = await d.json<DumpResult>("dump", "job", "tcp");
    assert(r.detected.some((l) => l.includes("--tcp-established")), r.detected.join());
    await d.json("job", "checkpoint", "inspect", r.checkpoint.id); // (its checksums are complete)
    const pages = [...Deno.readDirSync(r.checkpoint.path)].find((e) => /^pages-\d+\.img$/.test(e.name))!.name;
    const file = `${r.checkpoint.path}/${pages}`;
    const good = Deno.readFileSync(file);
    const bad = good.slice();
    bad[100] ^= 0xff;
    Deno.writeFileSync(file, bad);
    const refused = await d.cli("restore", "job", "tcp");
    assertEquals(refused.code, 5, refused.stderr);
    assertStringIncludes(refused.stderr, "does not match its checksum");
    Deno.writeFileSync(file, good);
    const n = readLog(j.log!).length;
    await d.ok("restore", "job", "tcp");
    await waitFor(() => readLog(j.log!).length > n + 3, "the restored client talks on its old connection");
    const lines = readLog(j.log!).filter(Boolean);
    assert(lines.every((l) => l.startsWith("ok ")), lines.slice(-5).join(" | "));
    assert((await jobOf(d, "tcp")).status !== "halted");
    await d.ok("job", "kill", "tcp");
    server.close();
  }),
);

Deno.test(
  "disk full during a dump: clear error, job keeps running, nothing recorded but the log",
  crOpts,
  async () => {
    const d = new TestDaemon();
    const small = `${d.dir}/small`;
    if (!await tmpfs(small, 4)) return await d.cleanup();
    await d.start();
    try {
      const job = await startWorkload(d, "big", "memory", "64");
      const r = await d.cli("dump", "job", "big", "--dir", small);
      assertEquals(r.code, 5, r.stderr);
      assertStringIncludes(
        r.stderr,
        `Error: not enough space in ${small} for the checkpoint (criu dump failed`,
      );
      const j = await jobOf(d, "big");
      assertEquals(j.status !== "halted", true);
      assertEquals(j.checkpoint, null);
      const before = lastTick(readLog(job.log!));
      await waitTicks(job.log!, before + 2);
      // only CRIU's log is left, where the error says
      const left = [...Deno.readDirSync(small)].map((e) => e.name);
      assertEquals(left.length, 1, left.join(" "));
      assertMatch(left[0], /^dump-process-big-\d+\.dump\.log$/);
      assertStringIncludes(r.stderr, `CRIU log: ${small}/${left[0]}`);
    } finally {
      await d.cleanup().catch(() => {});
      await new Deno.Command("umount", { args: [small] }).output();
    }
  },
);

Deno.test("daemon SIGKILLed in the middle of a dump: no half checkpoint, job not lost", crOpts, async () => {
  const d = new TestDaemon();
  await d.start();
  try {
    const job = await startWorkload(d, "victim", "memory", "512");
    const dumping = d.cli("dump", "job", "victim");
    // wait until CRIU is writing pages, then kill the daemon hard
    await waitFor(
      () => {
        for (const e of Deno.readDirSync(`${d.dir}/checkpoints`)) {
          if (!e.name.startsWith(".cedana-tmp-")) continue;
          for (
            const f of Deno.readDirSync(`${d.dir}/checkpoints/${e.name}`)
          ) if (f.name.startsWith("pages-")) return true;
        }
        return false;
      },
      "criu writing pages",
      20_000,
    );
    await d.stop("SIGKILL");
    const r = await dumping;
    assert(r.code !== 0, "the dump did not report success");
    await sleep(500);
    assert(pidAlive(job.pid!), "the job survived");
    await d.start();
    const j = await jobOf(d, "victim");
    assertEquals(j.status !== "halted", true);
    assertEquals(j.checkpoint, null);
    assertEquals(checkpointDirEntries(d), [], "temporary files cleaned up");
    const before = lastTick(readLog(job.log!));
    await waitTicks(job.log!, before + 2);
    await verify(d, "victim", job.log!);
  } finally {
    await d.cleanup();
  }
});

Deno.test(
  "daemon SIGKILLed in the middle of a restore: CRIU finishes it, the next daemon records the job running",
  crOpts,
  async () => {
    const d = new TestDaemon();
    await d.start();
    try {
      const job = await startWorkload(d, "rv", "memory", "384");
      const pid = job.pid!;
      await d.ok("dump", "job", "rv");
      await waitFor(() => !existsSync(`/proc/${pid}`), "the dumped process reaped");
      const restoring = d.cli("restore", "job", "rv");
      // CRIU recreates the task first, then fills its memory: kill the daemon in between. (The
      // restore's record of what it is about to do comes first: without it, a PID that showed up
      // for another reason would have the daemon killed before CRIU even ran.)
      const cpDir = `${d.dir}/checkpoints`;
      const intentWritten = () =>
        [...Deno.readDirSync(cpDir)].some((e) =>
          e.name.startsWith(".cedana-work-") && existsSync(`${cpDir}/${e.name}/job.json`)
        );
      for (const until = Date.now() + 20_000; Date.now() < until;) {
        if (existsSync(`/proc/${pid}`) && intentWritten()) break;
        await sleep(2);
      }
      const before = lastTick(readLog(job.log!));
      await d.stop("SIGKILL");
      assert((await restoring).code !== 0, "the restore did not report success");
      // CRIU held a moment (a slow machine): the next daemon comes up while it still restores, and
      // watches it finish (a scan of /proc that met a process being reaped made it give up, in CI)
      const criu = [...Deno.readDirSync("/proc")].map((e) => Number(e.name)).filter((p) => {
        try {
          return p > 0 && Deno.readTextFileSync(`/proc/${p}/cmdline`).includes(`${cpDir}/.cedana-work-`);
        } catch {
          return false;
        }
      });
      for (const p of criu) Deno.kill(p, "SIGSTOP");
      await d.start();
      await sleep(1000);
      for (const p of criu) Deno.kill(p, "SIGCONT");
      // (CRIU outlives the daemon: nothing is left half-restored, and nothing runs unrecorded)
      await waitFor(
        async () => (await jobOf(d, "rv")).status !== "halted",
        "the restored job recorded",
        30_000,
      );
      assertEquals((await jobOf(d, "rv")).pid, pid);
      await assertContinues(job.log!, before);
      await verify(d, "rv", job.log!);
      await d.ok("job", "kill", "rv");
      await waitFor(async () => (await jobOf(d, "rv")).status === "halted", "killed");
      const back = await d.json<RestoreResult>("restore", "job", "rv");
      assertEquals(back.pidNamespace, false, "its PIDs are free again");
      await verify(d, "rv", job.log!);
    } catch (e) {
      console.error(`--- daemon log (${d.dir}) ---\n${d.daemonLog}`);
      for (const w of Deno.readDirSync(`${d.dir}/checkpoints`)) {
        const log = `${d.dir}/checkpoints/${w.name}/restore.log`;
        if (existsSync(log)) {
          console.error(`--- ${log} (tail) ---\n${Deno.readTextFileSync(log).slice(-4000)}`);
        }
      }
      throw e;
    } finally {
      await d.cleanup();
    }
  },
);

/**
 * A job `jid` of 128 MiB of random data being dumped with gzip (seconds: what a test does next
 * falls inside the dump even on a loaded machine; a plain 512 MiB dump once ended first in CI).
 * Resolves once the dump is under way, with the dump's CLI result to come.
 */
async function slowDumpUnderWay(d: TestDaemon, jid: string) {
  await startWorkload(d, jid, "memory", "128");
  const dumping = d.cli("dump", "job", jid, "--compression", "gzip");
  await waitFor(
    () => [...Deno.readDirSync(`${d.dir}/checkpoints`)].some((e) => e.name.startsWith(".cedana-tmp-")),
    "the dump under way",
    20_000,
  );
  return { dumping }; // (not the promise itself: an async function's caller would await it too)
}

Deno.test(
  "daemon stop during a dump: the dump ends and is recorded, no new work starts, then the daemon stops",
  crOpts,
  withDaemon(async (d) => {
    const { dumping } = await slowDumpUnderWay(d, "busy");
    const stopping = d.cli("daemon", "stop");
    await waitFor(() => d.daemonLog.includes("stopping daemon; jobs keep running"), "the daemon stopping");
    const refused = await d.cli("run", "process", "--", "sleep", "60");
    assertEquals(refused.code, 6, refused.stderr);
    assertStringIncludes(
      refused.stderr,
      "the cedana daemon is stopping (it waits for the dumps and restores",
    );
    const r = await dumping;
    assertEquals(r.code, 0, r.stderr);
    const s = await stopping;
    assertEquals(s.code, 0, s.stderr);
    assertStringIncludes(s.stderr, "waiting for dump of job busy to end");
    assertStringIncludes(s.stdout, "stopped the cedana daemon");
    assertEquals(await d.exited(), 0);
    await d.start();
    const j = await jobOf(d, "busy");
    assertEquals([j.status, j.checkpoint !== null], ["halted", true]);
    await d.ok("restore", "job", "busy");
  }),
);

Deno.test(
  "job kill during a dump is refused (the dump goes on and succeeds)",
  crOpts,
  withDaemon(async (d) => {
    const { dumping } = await slowDumpUnderWay(d, "busy");
    // (`ps` said `halted`, with the old checkpoint's age, while CRIU's images were compressed)
    assertMatch(await d.ok("ps"), /busy\s+process\s+\d+\s+dumping/);
    const k = await d.cli("job", "kill", "busy");
    assertEquals(k.code, 5, k.stderr);
    assertStringIncludes(k.stderr, "job busy is busy: a dump is in progress; signal it once that ends");
    const all = await d.cli("job", "kill", "--all");
    assertEquals(all.code, 0, all.stderr);
    assertStringIncludes(all.stderr, "job busy not signalled: a dump is in progress");
    const r = await dumping;
    assertEquals(r.code, 0, r.stderr);
    const j = await jobOf(d, "busy");
    assertEquals([j.status, j.exitSignal], ["halted", null]);
  }),
);

Deno.test(
  "daemon killed while CRIU holds the restored tasks for the checksums: they never run, the job restores again",
  crOpts,
  withDaemon(async (d) => {
    const job = await startWorkload(d, "held", "memory", "64");
    // (a compressed checkpoint is verified while CRIU restores: the tasks wait at the gate)
    await d.ok("dump", "job", "held", "--compression", "gzip");
    const before = lastTick(readLog(job.log!));
    await crashDuring(d, "restore-criu-holding", "restore", "job", "held");
    await waitFor(() => !pidAlive(job.pid!), "the held tasks killed");
    await sleep(500);
    assertEquals(lastTick(readLog(job.log!)), before, "not one tick from unverified tasks");
    assertEquals((await jobOf(d, "held")).status, "halted");
    await waitFor(async () => (await d.cli("restore", "job", "held")).code === 0, "restored again");
    await assertContinues(job.log!, before);
    await verify(d, "held", job.log!);
  }),
);

Deno.test(
  "daemon killed right after a restore started the I/O keepers: the next daemon stops them",
  crOpts,
  withDaemon(async (d) => {
    const job = await d.json<Job>(
      "run",
      "process",
      "--attachable",
      "--jid",
      "kp",
      "--",
      PYTHON,
      WORKLOAD,
      "counter",
    );
    await sleep(300);
    await d.ok("dump", "job", "kp");
    const tagged = () =>
      [...Deno.readDirSync("/proc")].filter((e) => {
        try {
          return Deno.readTextFileSync(`/proc/${e.name}/environ`).includes(
            `CEDANA_KEEPER=${d.env.CEDANA_DB_PATH}\0`,
          );
        } catch {
          return false;
        }
      }).length;
    await crashDuring(d, "restore-io-ready", "restore", "job", "kp");
    await waitFor(() => tagged() === 0, "no keeper left that nothing refers to");
    assertStringIncludes(d.daemonLog, "stopped I/O keepers a killed daemon started but never recorded");
    await d.ok("restore", "job", "kp");
    assertEquals(tagged(), 2, "the restored job's own keepers (output, input)");
    assertEquals((await jobOf(d, "kp")).pid, job.pid);
  }),
);

Deno.test(
  "daemon killed as CRIU starts restoring, restarted at once: the job runs once, recorded",
  crOpts,
  withDaemon(async (d) => {
    const job = await startWorkload(d, "race", "memory", "256");
    await d.ok("dump", "job", "race");
    const before = lastTick(readLog(job.log!));
    // CRIU goes on without the daemon; the next one starts while it may still be restoring
    await crashDuring(d, "restore-criu-started", "restore", "job", "race");
    await waitFor(
      async () => (await jobOf(d, "race")).status !== "halted",
      "the restored job adopted",
      30_000,
    );
    assertEquals((await jobOf(d, "race")).pid, job.pid);
    const again = await d.cli("restore", "job", "race");
    assertEquals(again.code, 5, again.stderr);
    await assertContinues(job.log!, before);
    await verify(d, "race", job.log!);
  }),
);

Deno.test(
  "a cut restore the next daemon cannot finish is undone: nothing of it runs unrecorded, the job restores again",
  crOpts,
  withDaemon(async (d) => {
    const job = await startWorkload(d, "undo", "memory", "64");
    const pid = job.pid!;
    await d.ok("dump", "job", "undo");
    await waitFor(() => !existsSync(`/proc/${pid}`), "the dumped process reaped");
    // the daemon dies once CRIU resumed the job; the next one fails to finish it, every time
    await d.stop();
    d.env.CEDANA_FAULT = "restore-before-record";
    await d.start();
    assert((await d.cli("restore", "job", "undo")).code !== 0, "the daemon did not die");
    assert(pidAlive(pid), "CRIU resumed the job");
    await d.stop("SIGKILL");
    d.env.CEDANA_FAULT = "finish-cut-restore";
    await d.start();
    delete d.env.CEDANA_FAULT;
    await waitFor(
      () => d.daemonLog.includes("cannot finish a restore the previous daemon started"),
      "given up",
      20_000,
    );
    // (it ran on, unrecorded: a `restore job` would have started a second copy into the same log)
    await waitFor(() => !pidAlive(pid), "the restored tasks killed");
    assertEquals((await jobOf(d, "undo")).status, "halted");
    await d.stop();
    await d.start();
    await d.ok("restore", "job", "undo");
    await verify(d, "undo", job.log!);
  }),
);

Deno.test(
  "daemon killed after CRIU resumed the job, before recording it: the next daemon adopts it, no duplicate",
  crOpts,
  withDaemon(async (d) => {
    const job = await startWorkload(d, "late", "memory", "64");
    const pid = job.pid!;
    const ck = (await d.json<DumpResult>("dump", "job", "late")).checkpoint.path;
    await waitFor(() => !existsSync(`/proc/${pid}`), "the dumped process reaped");
    const before = lastTick(readLog(job.log!));
    await crashDuring(d, "restore-before-record", "restore", "job", "late");
    await waitFor(async () => (await jobOf(d, "late")).status !== "halted", "the restored job adopted");
    const j = await jobOf(d, "late");
    assertEquals([j.status !== "halted", j.pid, j.details.restoredFrom], [true, pid, ck]);
    assertStringIncludes(d.daemonLog, "a restore finished as the previous daemon died");
    // a second restore would run a copy of it into the same log
    const again = await d.cli("restore", "job", "late");
    assertEquals(again.code, 5, again.stderr);
    await assertContinues(job.log!, before);
    await verify(d, "late", job.log!);
    await d.ok("job", "kill", "late");
    await waitFor(async () => (await jobOf(d, "late")).status === "halted", "the adopted job killed");
  }),
);

Deno.test(
  "daemon killed after CRIU resumed a copy in a new PID namespace: the next daemon records the copy",
  crOpts,
  withDaemon(async (d) => {
    const job = await startWorkload(d, "orig", "memory", "32");
    const ck = (await d.json<DumpResult>("dump", "job", "orig", "--leave-running")).checkpoint.path;
    await crashDuring(d, "restore-before-record", "restore", "process", "--path", ck);
    const copy = await waitFor(
      async () => (await d.json<Job[]>("ps")).find((j) => j.jid !== "orig"),
      "the copy recorded",
    );
    assert(copy && copy.status !== "halted", JSON.stringify(copy));
    assertEquals(copy.details.pidNamespace, true);
    assert(copy.log && copy.log !== job.log, "the copy writes a log of its own");
    const t = lastTick(readLog(copy.log));
    await waitTicks(copy.log, t + 2);
    await verify(d, copy.jid, copy.log);
    await verify(d, "orig", job.log!);
    // the namespace's init (CRIU) was left alone: killing the copy ends it
    await d.ok("job", "kill", copy.jid);
    await waitFor(async () => (await jobOf(d, copy.jid)).status === "halted", "the copy killed");
  }),
);

Deno.test(
  "progress on a terminal during a long dump; none with --json",
  crOpts,
  withDaemon(async (d) => {
    await startWorkload(d, "big", "memory", "1024");
    const onTty = async (...args: string[]) => {
      // `script` gives the CLI a terminal; its typescript file is what a user would have seen
      const out = `${d.dir}/typescript-${args.length}`;
      const cli = ["deno", "run", "-A", "--quiet", MAIN, ...args].map((a) => `'${a}'`).join(" ");
      const r = await new Deno.Command("script", { args: ["-qfec", cli, out], env: d.env, stdout: "null" })
        .output();
      assertEquals(r.code, 0);
      return Deno.readTextFileSync(out);
    };
    // (progress shows from 0.4 s on: CRIU alone writes 1 GiB faster than that on a quiet machine, so
    // the archive makes the dump long enough; the step shown is CRIU's or the compressor's)
    const shown = await onTty("dump", "job", "big", "--leave-running", "--compression", "lz4");
    assertMatch(shown, /dump: (CRIU writing images · [\d.]+ [MG]iB written|compressing) · [\d.]+ s/);
    const json = await onTty("dump", "job", "big", "--leave-running", "--json");
    assert(!json.includes("CRIU writing images"), "no progress mixed into --json output");
    JSON.parse(json.slice(json.indexOf("{"), json.lastIndexOf("}") + 1));
    // Ctrl-C: the dump is the daemon's and goes on; the CLI says so
    const cli = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--quiet", MAIN, "dump", "job", "big", "--leave-running", "--compression", "lz4"],
      env: d.env,
      stdout: "null",
      stderr: "piped",
    }).spawn();
    await sleep(700);
    cli.kill("SIGINT");
    const out = await cli.output();
    assertEquals(out.code, 130);
    assertStringIncludes(new TextDecoder().decode(out.stderr), "the dump of job big goes on in the daemon");
    await waitFor(
      async () => (await d.json<CheckpointInfo[]>("job", "checkpoint", "list", "big")).length === 3,
      "the interrupted CLI's dump recorded",
      30_000,
    );
  }),
);

/** A tmpfs of `mib` MiB at `dir` (false when this machine cannot mount one). */
async function tmpfs(dir: string, mib: number): Promise<boolean> {
  Deno.mkdirSync(dir, { recursive: true });
  const m = await new Deno.Command("mount", { args: ["-t", "tmpfs", "-o", `size=${mib}m`, "tmpfs", dir] })
    .output();
  if (!m.success) console.warn("cannot mount tmpfs; skipping");
  return m.success;
}

Deno.test(
  "compressing fails after CRIU ended the job (disk full): the images are recorded, restore job brings them back",
  crOpts,
  async () => {
    const d = new TestDaemon();
    const small = `${d.dir}/small`;
    if (!await tmpfs(small, 100)) return await d.cleanup();
    await d.start();
    try {
      const job = await startWorkload(d, "full", "memory", "64"); // 64 MiB of random bytes: gzip cannot shrink them
      const r = await d.cli("dump", "job", "full", "--dir", small, "--compression", "gzip");
      assertEquals(r.code, 5, r.stderr);
      assertStringIncludes(r.stderr, "recorded uncompressed as checkpoint");
      assertStringIncludes(r.stderr, "`cedana restore job full` restores them");
      const j = await jobOf(d, "full");
      assertEquals(j.status, "halted");
      assert(j.checkpoint?.path.startsWith(`${small}/dump-process-full-`), JSON.stringify(j.checkpoint));
      const before = lastTick(readLog(job.log!));
      await d.ok("restore", "job", "full");
      await assertContinues(job.log!, before);
      await verify(d, "full", job.log!);
    } finally {
      await d.cleanup().catch(() => {});
      await new Deno.Command("umount", { args: [small] }).output();
    }
  },
);

Deno.test(
  "daemon SIGKILLed while compressing: the images are salvaged at the next start",
  crOpts,
  async () => {
    const d = new TestDaemon();
    await d.start();
    try {
      const job = await startWorkload(d, "gz", "memory", "256");
      // (a --dir away from checkpoint.dir: the daemon must still know where to look)
      const elsewhere = `${d.dir}/elsewhere`;
      // (and a name that looks like cedana's own scratch dirs: still the job's images)
      const dumping = d.cli(
        "dump",
        "job",
        "gz",
        "--compression",
        "gzip",
        "--dir",
        elsewhere,
        "--name",
        "restore-gz",
      );
      const archive = () =>
        [...Deno.readDirSync(elsewhere)].some((e) => e.isFile && e.name.endsWith(".tar.gz"));
      await waitFor(
        () => {
          try {
            return archive();
          } catch {
            return false; // not made yet
          }
        },
        "compressing",
        30_000,
      );
      await d.stop("SIGKILL");
      assert((await dumping).code !== 0, "the dump did not report success");
      await d.start();
      const j = await jobOf(d, "gz");
      assertEquals(j.status, "halted");
      assert(j.checkpoint !== null, "the job has its checkpoint");
      assert(j.checkpoint!.path.startsWith(`${elsewhere}/restore-gz`), j.checkpoint!.path);
      const left = [...Deno.readDirSync(elsewhere)].map((e) => e.name);
      assertEquals(left.filter((n) => n.startsWith(".cedana-tmp-")), [], "temporary files cleaned up");
      const before = lastTick(readLog(job.log!));
      await d.ok("restore", "job", "gz");
      await assertContinues(job.log!, before);
      await verify(d, "gz", job.log!);
    } finally {
      await d.cleanup();
    }
  },
);

Deno.test(
  "a job whose last dump was cut short (images kept without a manifest): restore job refuses, --path and a new dump go on",
  crOpts,
  async () => {
    const d = new TestDaemon();
    await d.start();
    try {
      const job = await startWorkload(d, "cut", "counter");
      const first = await d.json<DumpResult>("dump", "job", "cut", "--leave-running");
      // what salvage.ts records when it keeps images it cannot make a checkpoint of (the daemon
      // reads a job's record afresh for every request; SQLite in WAL mode takes this write)
      const { DatabaseSync } = await import("node:sqlite");
      const db = new DatabaseSync(d.env.CEDANA_DB_PATH);
      db.prepare("UPDATE jobs SET details = json_set(details, '$.incompleteDump', ?) WHERE jid = 'cut'")
        .run(`${d.dir}/checkpoints/x.incomplete`);
      db.close();
      await d.ok("job", "kill", "cut");
      await waitFor(async () => (await jobOf(d, "cut")).status === "halted", "halted");
      const r = await d.cli("restore", "job", "cut");
      assertEquals(r.code, 5, r.stderr);
      assertStringIncludes(r.stderr, `images (no manifest) are in ${d.dir}/checkpoints/x.incomplete`);
      await d.ok("restore", "job", "cut", "--path", first.checkpoint.path); // said explicitly: fine
      await waitTicks(job.log!, lastTick(readLog(job.log!)) + 2);
      await d.ok("dump", "job", "cut"); // a whole newer checkpoint supersedes the cut one
      await d.ok("restore", "job", "cut");
      await verify(d, "cut", job.log!);
    } finally {
      await d.cleanup();
    }
  },
);

Deno.test(
  "a log-mode job restored --attachable says so, and restored with -o writes to a log again",
  crOpts,
  withDaemon(async (d) => {
    const job = await startWorkload(d, "lm", "memory", "16");
    await d.ok("dump", "job", "lm");
    const att = await d.json<RestoreResult>("restore", "job", "lm", "--attachable");
    assertStringIncludes(att.notes?.join(" ") ?? "", `not to ${job.log}`);
    assertEquals(att.job.attachable, true);
    const seen = await attachedOutput(d, "lm", (t) => /tick \d+\n.*tick \d+\n/s.test(t));
    assertMatch(seen, /tick \d+/);
    const ck = (await d.json<DumpResult>("dump", "job", "lm")).checkpoint.path;
    // a copy of the attachable job with -o writes to that log (it stayed attachable, its log empty)
    const log3 = `${d.dir}/copy.log`;
    const copy = await d.json<RestoreResult>("restore", "process", "--path", ck, "--jid", "lmc", "-o", log3);
    assertEquals([copy.job.attachable, copy.job.log], [false, log3]);
    await waitTicks(log3, 1);
    await d.ok("job", "kill", "lmc");
    // (refused before: "job lm is attachable: its output goes to attached clients, not to a log")
    const log2 = `${d.dir}/back.log`;
    const back = await d.json<RestoreResult>("restore", "job", "lm", "-o", log2);
    assertEquals([back.job.attachable, back.job.log], [false, log2]);
    await waitTicks(log2, lastTick(readLog(job.log!)) + 2);
    await verify(d, "lm", log2);
  }),
);

Deno.test(
  "a file the job writes at an offset, and reads too, comes back as it was opened (not appending, readable)",
  crOpts,
  withDaemon(async (d) => {
    // fd 1 is `> out` (no O_APPEND): records at the offset, a header rewritten at 0 every step; fd 3
    // reads the same file. The daemon handed such a file to CRIU opened for appending, for every
    // open of the path: the header went to the end, and the reader got EBADF.
    const out = `${d.dir}/out.txt`;
    const script = `
import os, sys, time
r = open(${JSON.stringify(out)})
os.write(1, b"COUNT=00000000\\n")
i = 0
while True:
    i += 1
    os.write(1, b"rec %08d\\n" % i)
    at = os.lseek(1, 0, os.SEEK_CUR)
    os.lseek(1, 0, os.SEEK_SET); os.write(1, b"COUNT=%08d\\n" % i); os.lseek(1, at, os.SEEK_SET)
    r.seek(0)
    if not r.read().startswith("COUNT="): sys.exit(3)
    time.sleep(0.05)`;
    await d.ok(
      "run",
      "process",
      "--jid",
      "seek",
      "--",
      "sh",
      "-c",
      `exec ${PYTHON} -c "$0" > ${out}`,
      script,
    );
    const count = () => Number(/^COUNT=(\d+)/.exec(Deno.readTextFileSync(out))?.[1] ?? 0);
    await waitFor(() => count() >= 5, "the job writing");
    await d.ok("dump", "job", "seek");
    await d.ok("restore", "job", "seek");
    const at = count();
    await waitFor(() => count() >= at + 5, "the restored job writing");
    assertEquals((await jobOf(d, "seek")).status !== "halted", true, "the reader still reads");
    await d.ok("job", "kill", "seek");
    await waitFor(async () => (await jobOf(d, "seek")).status === "halted", "killed");
    const lines = Deno.readTextFileSync(out).trim().split("\n");
    const n = Number(lines[0].slice(6));
    assertEquals(lines.length, n + 1, "one header, one line per record");
    assertEquals(lines.slice(1).every((l, i) => l === `rec ${String(i + 1).padStart(8, "0")}`), true);
  }),
);

Deno.test(
  "input an attachable job had not read yet when dumped is there for it after the restore",
  crOpts,
  withDaemon(async (d) => {
    // Its stdin pipe is the daemon's (not in the checkpoint): typed-ahead input was lost with it.
    const got = `${d.dir}/got.txt`, go = `${d.dir}/go`;
    await d.ok(
      "run",
      "process",
      "--attachable",
      "--jid",
      "rd",
      "--",
      "sh",
      "-c",
      `while [ ! -e ${go} ]; do sleep 0.05; done; while read l; do echo "got $l" >> ${got}; done`,
    );
    const client = typingClient(d, "rd");
    const w = client.stdin.getWriter();
    await w.write(new TextEncoder().encode("alpha\nbeta\n"));
    await sleep(1500); // (through the daemon into the job's pipe)
    client.kill("SIGINT");
    await client.status;
    await d.ok("dump", "job", "rd");
    assertStringIncludes(
      await d.ok("restore", "job", "rd"),
      "the 11 bytes of input it had not read yet are there",
    );
    Deno.writeTextFileSync(go, "");
    await waitFor(
      () => existsSync(got) && Deno.readTextFileSync(got) === "got alpha\ngot beta\n",
      "alpha, beta",
    );
    // more than its pipe holds: the rest waited in the daemon, and comes back too
    const got3 = `${d.dir}/got3.bin`, go3 = `${d.dir}/go3`;
    await d.ok(
      "run",
      "process",
      "--attachable",
      "--jid",
      "rd3",
      "--",
      "sh",
      "-c",
      `while [ ! -e ${go3} ]; do sleep 0.05; done; head -c 204800 > ${got3}`,
    );
    const bulk = typingClient(d, "rd3");
    await bulk.stdin.getWriter().write(new Uint8Array(204800).fill(120));
    await sleep(2000);
    bulk.kill("SIGINT");
    await bulk.status;
    assertStringIncludes(await d.ok("dump", "job", "rd3"), "204800 bytes of input it had not read yet");
    await d.ok("restore", "job", "rd3");
    Deno.writeTextFileSync(go3, "");
    await waitFor(() => existsSync(got3) && Deno.statSync(got3).size === 204800, "all 200 KiB read");
    // restored with -o (no clients: its input ends), it still reads first what it had not read yet
    const got2 = `${d.dir}/got2.txt`, go2 = `${d.dir}/go2`;
    await d.ok(
      "run",
      "process",
      "--attachable",
      "--jid",
      "rd2",
      "--",
      "sh",
      "-c",
      `while [ ! -e ${go2} ]; do sleep 0.05; done; while read l; do echo "got $l" >> ${got2}; done`,
    );
    const typing = typingClient(d, "rd2");
    await typing.stdin.getWriter().write(new TextEncoder().encode("gamma\n"));
    await sleep(1500);
    typing.kill("SIGINT");
    await typing.status;
    await d.ok("dump", "job", "rd2");
    const r = await d.ok("restore", "job", "rd2", "-o", `${d.dir}/rd2.log`);
    assertStringIncludes(r, "after the 6 bytes it had not read yet");
    Deno.writeTextFileSync(go2, "");
    await waitFor(() => existsSync(got2) && Deno.readTextFileSync(got2) === "got gamma\n", "gamma");
  }),
);

Deno.test(
  "a shell whose children come and go, its output to a file (> out): every dump of it succeeds",
  crOpts,
  withDaemon(async (d) => {
    // Checking that the file has one open description compared fds of children that had exited
    // by then (kcmp: ESRCH), and the dump failed as an internal error (1 in 2 to 1 in 7).
    const out = `${d.dir}/out.txt`;
    await d.ok(
      "run",
      "process",
      "--jid",
      "churn",
      "--",
      "sh",
      "-c",
      `exec sh -c 'while :; do /bin/true; echo x; done' > ${out}`,
    );
    for (let i = 0; i < 12; i++) await d.ok("dump", "job", "churn", "--leave-running");
  }),
);
