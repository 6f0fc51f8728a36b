import { assertEquals } from "../testing/asserts.ts";
import { criuErrorLines, criuLauncher, outputErrorLines } from "./run.ts";

// The layout scripts/setup.sh installs: PREFIX/bin/criu (sh wrapper), PREFIX/bin/criu.real,
// PREFIX/lib/ld-linux-x86-64.so.2; reached through a symlink on PATH.
function installed(wrapper: string): { dir: string; link: string } {
  const dir = Deno.makeTempDirSync();
  Deno.mkdirSync(`${dir}/p/bin`, { recursive: true });
  Deno.mkdirSync(`${dir}/p/lib`);
  Deno.writeTextFileSync(`${dir}/p/bin/criu`, wrapper, { mode: 0o755 });
  Deno.writeTextFileSync(`${dir}/p/bin/criu.real`, "\x7fELF");
  Deno.writeTextFileSync(`${dir}/p/lib/ld-linux-x86-64.so.2`, "\x7fELF");
  Deno.symlinkSync(`${dir}/p/bin/criu`, `${dir}/criu`);
  return { dir, link: `${dir}/criu` };
}

const WRAPPER = `#!/bin/sh
P=$(dirname "$(dirname "$(readlink -f "$0")")")
exec "$P/lib/ld-linux-x86-64.so.2" --library-path "$P/lib" "$P/bin/criu.real" "$@"
`;

Deno.test("criuLauncher: cedana's wrapped CRIU runs through its loader, no shell", () => {
  const { dir, link } = installed(WRAPPER);
  try {
    const real = Deno.realPathSync(`${dir}/p`);
    assertEquals(criuLauncher(link), [
      `${real}/lib/ld-linux-x86-64.so.2`,
      "--library-path",
      `${real}/lib`,
      `${real}/bin/criu.real`,
    ]);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("criuLauncher: any other criu (a binary, a user's own script) runs as is", () => {
  const { dir, link } = installed('#!/bin/sh\nexec /usr/sbin/criu "$@"\n');
  try {
    assertEquals(criuLauncher(link), [link]);
    assertEquals(criuLauncher(`${dir}/nonexistent`), [`${dir}/nonexistent`]);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("outputErrorLines: CRIU's complaint about its command line, not its usage text", () => {
  const out =
    "/opt/criu/bin/criu.real: unrecognized option '--no-such-opt'\n\nUsage:\n  criu dump|pre-dump -t PID [<options>]\n" +
    "  dedup          remove duplicates in memory dump\n  Try -h|--help for more info\n";
  assertEquals(outputErrorLines(out), ["/opt/criu/bin/criu.real: unrecognized option '--no-such-opt'"]);
  assertEquals(outputErrorLines("one\ntwo\n"), ["one", "two"]);
});

// Both lines as CRIU 4.2.1 wrote them on an H100 (a CUDA job in a runc container, session 5).
Deno.test("criuErrorLines: errors users meet get a hint after them, others none", () => {
  const bind =
    "(00.412) 1: Error (criu/sk-unix.c:1651): unix: Can't bind id 0x54 ino 15059 addr : Address already in use";
  const mnt =
    "(00.020) Error (criu/mount.c:724): mnt: FS mnt ./b/rootfs/usr/local/nvidia dev 0xfe00010 root / unsupported id 117";
  const other = "(00.500) Error (criu/cr-restore.c:2331): Restoring FAILED.";
  const got = criuErrorLines([bind, other, "(00.1) Warn (x): y"].join("\n"));
  assertEquals(got.slice(0, 2), [
    bind.replace(/^\([\d.]+\) /, ""),
    "Error (criu/cr-restore.c:2331): Restoring FAILED.",
  ]);
  assertEquals(got.length, 3);
  assertEquals(
    got[2].startsWith("hint: a unix socket of the checkpoint is bound by a running process"),
    true,
  );
  assertEquals(
    criuErrorLines(mnt)[1].startsWith("hint: the container has a mount of a file system CRIU cannot dump"),
    true,
  );
  assertEquals(criuErrorLines(other).length, 1);
  const half =
    "(00.05) Error (criu/sk-unix.c:1012): unix: Can't dump half of stream unix connection. name: (null); peer name: /run/j.sock";
  assertEquals(
    criuErrorLines(half)[1].startsWith("hint: a process of the job has a unix stream socket"),
    true,
  );
  const port =
    "(00.3) 1: Error (criu/sk-inet.c:1040): inet: Can't bind inet socket (id 8): Address already in use";
  assertEquals(criuErrorLines(port)[1].startsWith("hint: the job's TCP port or connection is held"), true);
  const size = "(00.2) 1: Error (criu/files-reg.c:2151): File tmp/t5.out has bad size 1634 (expect 1478)";
  assertEquals(criuErrorLines(size)[1].startsWith("hint: a file the job had open changed size"), true);
  // (a managed runc container started with `runc run -d ... > /tmp/out.log`)
  const host = "(00.04) Error (criu/files-reg.c:1741): Can't lookup mount=421 for fd=1 path=/tmp/out.log";
  assertEquals(
    criuErrorLines(host)[1].startsWith("hint: a process holds open a file that is not under any mount"),
    true,
  );
  // (seen on a background job of an interactive shell that read its terminal)
  const ttin = "(00.01) Error (compel/src/lib/infect.c:260): SEIZE 42: unsupported stop signal 21";
  assertEquals(
    criuErrorLines(ttin)[1].startsWith("hint: a process of the job is stopped by its terminal"),
    true,
  );
});
