// `cedana completion bash|zsh|fish` and `cedana __complete jids`: the generated scripts are run
// the way the shells run them (bash: COMP_WORDS/COMP_CWORD and the registered function; fish:
// `complete -C`; zsh: the completion function with compsys's builtins stubbed out), against a
// `cedana` on PATH that is this checkout.
import { assert, assertEquals, assertStringIncludes } from "../src/testing/asserts.ts";
import { MAIN, opts, TestDaemon, withDaemon } from "./helpers.ts";
import { HAVE_CRIU } from "./cr_helpers.ts";
import type { DumpResult } from "../src/api/types.ts";

/** A temp dir with a `cedana` wrapper, the three scripts, and what PATH needs to find it. */
class Shells {
  readonly dir = Deno.makeTempDirSync({ prefix: "cedana-completion-" });
  readonly path = `${this.dir}:${Deno.env.get("PATH") ?? "/usr/bin:/bin"}`;

  constructor() {
    Deno.writeTextFileSync(
      `${this.dir}/cedana`,
      `#!/bin/sh\nexec '${Deno.execPath()}' run -A --quiet '${MAIN}' "$@"\n`,
      { mode: 0o755 },
    );
  }

  /** Runs a command with the wrapper first on PATH and the daemon's env (CEDANA_ADDRESS ...). */
  async run(env: Record<string, string>, cmd: string, ...args: string[]) {
    const out = await new Deno.Command(cmd, {
      args,
      env: { ...env, PATH: this.path, HOME: this.dir },
      cwd: this.dir,
      stdin: "null",
    }).output();
    const dec = new TextDecoder();
    return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
  }

  async script(env: Record<string, string>, shell: string): Promise<string> {
    const r = await this.run(env, "cedana", "completion", shell);
    assertEquals(r.code, 0, r.stderr);
    assert(r.stdout.trim().length > 0, `empty ${shell} script`);
    Deno.writeTextFileSync(`${this.dir}/completion.${shell}`, r.stdout);
    return `${this.dir}/completion.${shell}`;
  }

  cleanup() {
    Deno.removeSync(this.dir, { recursive: true });
  }
}

/** COMP_WORDS as bash makes them for a line ending at the cursor: split at blanks, and at "="
 * (one of COMP_WORDBREAKS), which becomes a word of its own; after a blank the cursor is on an
 * empty word, after "=" it is on the "=". */
function compWords(line: string): string[] {
  const words = line.split(/\s+/).flatMap((w) => w.split(/(=)/)).filter((w) => w !== "");
  return /\s$/.test(line) ? [...words, ""] : words;
}

/** Sources the bash script, finds the function `complete -p cedana` registered, calls it the way
 * bash does and returns COMPREPLY. */
async function bashComplete(sh: Shells, script: string, env: Record<string, string>, line: string) {
  const driver = `
source "$1"; shift
spec=$(complete -p cedana) || exit 9
fn=\${spec#*-F }; fn=\${fn%% *}
COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE=$LINE; COMP_POINT=\${#LINE}
"$fn" cedana "\${COMP_WORDS[COMP_CWORD]}" "\${COMP_WORDS[COMP_CWORD-1]}"
printf '%s\\n' "\${COMPREPLY[@]}"`;
  const r = await sh.run({ ...env, LINE: line }, "bash", "-c", driver, "bash", script, ...compWords(line));
  assertEquals(r.code, 0, `bash completion of "${line}" failed:\n${r.stderr}`);
  assertEquals(r.stderr, "", `bash completion of "${line}" wrote to stderr`);
  return r.stdout.split("\n").filter((w) => w !== "");
}

function assertOffers(got: string[], want: string[], line: string) {
  const missing = want.filter((w) => !got.includes(w));
  assertEquals(missing, [], `"${line}" offered ${JSON.stringify(got)}`);
}

const haveShell = (name: string) =>
  (Deno.env.get("PATH") ?? "").split(":").some((d) => {
    try {
      return Deno.statSync(`${d}/${name}`).isFile;
    } catch {
      return false;
    }
  });

// A daemon that is not there: JID completion must stay silent.
const NO_DAEMON = (d: TestDaemon) => ({ ...d.env, CEDANA_ADDRESS: `${d.dir}/nothing.sock` });

Deno.test(
  "completion bash: subcommands, aliases, flags, flag values and choices at every level",
  opts,
  async () => {
    const d = new TestDaemon();
    const sh = new Shells();
    try {
      const env = NO_DAEMON(d);
      const script = await sh.script(env, "bash");
      const c = (line: string) => bashComplete(sh, script, env, line);

      const top = await c("cedana ");
      assertOffers(top, [
        "run",
        "exec",
        "dump",
        "restore",
        "job",
        "ps",
        "jobs",
        "manage",
        "check",
        "completion",
      ], "cedana ");
      assert(!top.includes("__complete"), "the hidden __complete command is offered");
      assertEquals(await c("cedana re"), ["restore"]);

      const job = await c("cedana job ");
      assertOffers(job, ["list", "kill", "delete", "inspect", "attach", "checkpoint"], "cedana job ");
      assertEquals(await c("cedana job checkpoint "), ["list", "inspect", "delete"]);
      // Aliases lead to their command: `job ls` is `job list`, `job rm` is `job delete`.
      assertEquals(await c("cedana job ls --"), ["--json", "--help"]);
      assertOffers(await c("cedana job rm --"), ["--all", "--json"], "cedana job rm --");

      const dump = await c("cedana dump job --");
      assertOffers(
        dump,
        ["--leave-running", "--compression", "--dir", "--tcp-established", "--json"],
        "dump",
      );
      assert(!dump.includes("--address"), "root options are only valid before the subcommand");
      assertOffers(await c("cedana dump job -"), ["-h", "--help", "--leave-running"], "cedana dump job -");
      assertOffers(await c("cedana job kill -"), ["-s", "--signal", "--all"], "cedana job kill -");
      assertOffers(await c("cedana -"), ["-v", "--version", "--address", "--config-dir"], "cedana -");

      // Fixed choices, after the option and after "--option=".
      assertEquals(await c("cedana dump job web --compression "), ["none", "tar", "gzip", "lz4", "zstd"]);
      assertEquals(await c("cedana dump job web --compression=z"), ["zstd"]);
      assertEquals(await c("cedana completion "), ["bash", "zsh", "fish"]);
      // An option's value is not taken for a subcommand or an operand.
      assertOffers(await c("cedana --config-dir job "), ["run", "job"], "cedana --config-dir job ");
      assertOffers(
        await c("cedana --config-dir /etc/cedana job "),
        ["list", "kill"],
        "--config-dir VALUE job",
      );

      // File names where a path is expected, nothing where the command takes no more operands.
      Deno.writeTextFileSync(`${sh.dir}/ckpt.tar`, "");
      assertEquals(await c("cedana restore process --path ckp"), ["ckpt.tar"]);
      assertEquals(await c("cedana ps "), []);
      // After the job's command starts, its flags are its own.
      assertEquals(await c("cedana run process --j"), ["--jid", "--json"]);
      assertEquals(await c("cedana run process sleep --j"), []);
      assertEquals(await c("cedana run process -- --j"), []);
    } finally {
      sh.cleanup();
      await d.cleanup();
    }
  },
);

Deno.test(
  "completion: JIDs of the daemon's jobs for <jid>/[jids...]; silent when the daemon is down",
  opts,
  withDaemon(async (d) => {
    const sh = new Shells();
    try {
      for (const jid of ["alpha", "beta-2"]) await d.ok("run", "process", "--jid", jid, "--", "sleep", "60");
      const jids = (await sh.run(d.env, "cedana", "__complete", "jids")).stdout.split("\n").filter(Boolean);
      assertEquals(jids.sort(), ["alpha", "beta-2"]);

      const script = await sh.script(d.env, "bash");
      const c = (line: string) => bashComplete(sh, script, d.env, line);
      assertEquals((await c("cedana job kill ")).sort(), ["alpha", "beta-2"]);
      assertEquals(await c("cedana job kill al"), ["alpha"]);
      // [jids...] takes more than one; <jid> takes one.
      assertEquals((await c("cedana job delete alpha ")).sort(), ["alpha", "beta-2"]);
      assertEquals((await c("cedana dump job ")).sort(), ["alpha", "beta-2"]);
      assertEquals(await c("cedana dump job alpha "), []);
      assertEquals(await c("cedana job checkpoint list b"), ["beta-2"]);
      assertEquals((await c("cedana checkpoints ")).sort(), ["alpha", "beta-2"]);
      assertEquals((await c("cedana restore job --attach ")).sort(), ["alpha", "beta-2"]);
      // checkpoint IDs for `job checkpoint inspect|delete ID` (a dump needs CRIU)
      if (HAVE_CRIU) {
        const cp = await d.json<DumpResult>("dump", "job", "alpha", "--leave-running");
        assertEquals(await c("cedana job checkpoint inspect "), [cp.checkpoint.id]);
        assertEquals(await c("cedana job checkpoint delete " + cp.checkpoint.id.slice(0, 3)), [
          cp.checkpoint.id,
        ]);
      }

      // The root's --address (given before the subcommand) is passed on to `__complete jids`.
      const elsewhere = NO_DAEMON(d);
      assertEquals(await bashComplete(sh, script, elsewhere, "cedana job kill "), []);
      assertEquals(
        (await bashComplete(sh, script, elsewhere, `cedana --address ${d.socket} job kill `)).sort(),
        ["alpha", "beta-2"],
      );

      const down = await sh.run(elsewhere, "cedana", "__complete", "jids");
      assertEquals([down.code, down.stdout, down.stderr], [0, "", ""]);
      const help = await sh.run(d.env, "cedana", "--help");
      assert(!help.stdout.includes("__complete"), "__complete shows in --help");
    } finally {
      sh.cleanup();
    }
  }),
);

Deno.test("completion: an unknown shell is a one-line error, exit 2", opts, async () => {
  const d = new TestDaemon();
  try {
    const r = await d.cli("completion", "tcsh");
    assertEquals(r.code, 2);
    assertEquals(r.stdout, "");
    assertEquals(r.stderr.trim().split("\n").length, 1, r.stderr);
    assertStringIncludes(r.stderr, 'unknown shell "tcsh"');
  } finally {
    await d.cleanup();
  }
});

Deno.test("completion zsh: produced, valid syntax, and completes like bash", opts, async () => {
  const d = new TestDaemon();
  const sh = new Shells();
  try {
    const env = NO_DAEMON(d);
    const script = await sh.script(env, "zsh");
    assertStringIncludes(Deno.readTextFileSync(script), "#compdef cedana");
    if (!haveShell("zsh")) return console.log("zsh not installed: syntax and behaviour not checked");
    const n = await sh.run(env, "zsh", "-n", script);
    assertEquals(n.code, 0, n.stderr);
    // compsys's builtins only exist inside completion; stubs print what would be offered.
    const driver = `
compdef() { :; }
_describe() { print -rl -- "\${(@P)4%%:*}"; }
compadd() { print -rl -- "\${(@P)2}"; }
_files() { print -r -- "<files>"; }
compset() { :; }
source "$1"; shift
words=("$@"); CURRENT=$#
_cedana`;
    const c = async (line: string) => {
      const words = line.split(" ");
      const r = await sh.run(env, "zsh", "-f", "-c", driver, "zsh", script, ...words);
      assertEquals(r.code, 0, r.stderr);
      return r.stdout.split("\n").filter(Boolean);
    };
    assertOffers(await c("cedana "), ["run", "dump", "restore", "job", "ps"], "cedana ");
    assertOffers(
      await c("cedana job "),
      ["list", "kill", "delete", "inspect", "attach", "checkpoint"],
      "job",
    );
    assertOffers(await c("cedana dump job --"), ["--leave-running", "--compression"], "cedana dump job --");
    assertEquals(await c("cedana dump job x --compression="), ["none", "tar", "gzip", "lz4", "zstd"]);
    assertEquals(await c("cedana restore process --path "), ["<files>"]);
  } finally {
    sh.cleanup();
    await d.cleanup();
  }
});

Deno.test("completion fish: produced, valid syntax, and completes like bash", opts, async () => {
  const d = new TestDaemon();
  const sh = new Shells();
  try {
    const env = NO_DAEMON(d);
    const script = await sh.script(env, "fish");
    if (!haveShell("fish")) return console.log("fish not installed: syntax and behaviour not checked");
    const n = await sh.run(env, "fish", "-n", script);
    assertEquals(n.code, 0, n.stderr);
    const c = async (line: string) => {
      const r = await sh.run(
        { ...env, LINE: line },
        "fish",
        "--no-config",
        "-c",
        `source ${script}; complete -C"$LINE"`,
      );
      assertEquals(r.code, 0, r.stderr);
      return r.stdout.split("\n").filter(Boolean).map((l) => l.split("\t")[0]);
    };
    assertOffers(await c("cedana "), ["run", "dump", "restore", "job", "ps"], "cedana ");
    assertOffers(
      await c("cedana job "),
      ["list", "kill", "delete", "inspect", "attach", "checkpoint"],
      "job",
    );
    assertOffers(await c("cedana dump job --"), ["--leave-running", "--compression"], "cedana dump job --");
    assertEquals((await c("cedana dump job x --compression=")).sort(), [
      "--compression=gzip",
      "--compression=lz4",
      "--compression=none",
      "--compression=tar",
      "--compression=zstd",
    ]);
    assertEquals(await c("cedana job kill "), []);
  } finally {
    sh.cleanup();
    await d.cleanup();
  }
});
