import { assertEquals } from "../testing/asserts.ts";
import { criuLauncher, outputErrorLines } from "./run.ts";

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
