// The command tree and the one place where errors become a line on stderr and an exit code.
import { Command, CommanderError } from "@commander-js/extra-typings";
import { EXIT_CODE, invalidArgument, reportError } from "../errors.ts";
import { VERSION } from "../version.ts";
import { checkCommand } from "./check.ts";
import { completeCommand, completionCommand } from "./completion.ts";
import { checkpointsCommand, dumpCommand, restoreCommand } from "./cr.ts";
import { daemonCommand } from "./daemon.ts";
import { commandPath } from "./docs.ts";
import { attachPidCommand, jobCommand, jobsCommand, psCommand } from "./job.ts";
import { manageCommand } from "./manage.ts";
import { execCommand, runCommand } from "./run.ts";

export function buildProgram(): Command {
  const program = new Command("cedana")
    .description("Checkpoint/restore manager for Linux processes and containers")
    .option("-v, --version", "print cedana's version, commit, and the Deno and CRIU versions")
    .option("--address <socket>", "daemon socket (config: address, env CEDANA_ADDRESS)")
    .option("--config-dir <dir>", "config directory (default /etc/cedana, env CEDANA_CONFIG_DIR)")
    .enablePositionalOptions()
    .showSuggestionAfterError()
    .exitOverride();
  for (
    const c of [
      daemonCommand(),
      runCommand(),
      execCommand(),
      manageCommand(),
      jobCommand(),
      psCommand(),
      jobsCommand(),
      attachPidCommand(),
      checkCommand(),
      dumpCommand(),
      restoreCommand(),
      checkpointsCommand(),
      completionCommand(),
      completeCommand(),
    ]
  ) program.addCommand(c as unknown as Command);
  // Errors of subcommands must reach main() too, not exit inside commander.
  // One error style for usage errors and the daemon's: "Error: ..." (commander says "error: ...").
  const output = {
    outputError: (text: string, write: (s: string) => void) =>
      write(
        text.replace(/^error:/, "Error:").replace(
          /^(Error: unknown option '--(address|config-dir)')\n$/,
          (_, msg, opt) => `${msg} (it needs a value: --${opt} ${opt === "address" ? "SOCKET" : "DIR"})\n`,
        ),
      ),
  };
  const override = (c: Command) => {
    c.exitOverride();
    c.configureOutput(output);
    c.commands.forEach((s) => override(s as Command));
  };
  override(program);
  return program;
}

/** Versions of everything that matters when reporting a problem. */
async function printVersion(): Promise<void> {
  const { gitCommit } = await import("../version.ts");
  const { findCriu, criuVersion } = await import("../criu/mod.ts");
  const { loadConfig } = await import("../config/mod.ts");
  console.log(`cedana ${VERSION} (commit ${gitCommit()})`);
  console.log(`deno ${Deno.version.deno} (v8 ${Deno.version.v8}, typescript ${Deno.version.typescript})`);
  let criu: string | null = null;
  try {
    criu = findCriu(loadConfig());
  } catch { /* bad config: say so below */ }
  const v = criu ? await criuVersion(criu) : null;
  console.log(criu ? `criu ${v ?? "(does not run)"} (${criu})` : "criu not found");
}

/**
 * `cedana help job kill` as `cedana job kill --help` (commander's own `help` reads one word only,
 * and shows the top-level help for a command it does not know).
 */
function helpArgs(program: Command, args: string[]): string[] {
  if (args[0] !== "help" || args.length < 2) return args;
  let cmd = program;
  for (const word of args.slice(1)) {
    const sub = subcommand(cmd, word);
    if (!sub) throw invalidArgument(`unknown command "${word}" (see: ${commandPath(cmd).join(" ")} --help)`);
    cmd = sub;
  }
  return [...args.slice(1), "--help"];
}

/** The subcommand `word` names (or is an alias of) under `cmd`. */
function subcommand(cmd: Command, word: string): Command | undefined {
  return cmd.commands.find((c) => c.name() === word || c.aliases().includes(word)) as Command | undefined;
}

const GLOBALS = ["--address", "--config-dir"];

/**
 * `cedana ps --address S` as `cedana --address S ps`: the global options are taken after the
 * command too (as cobra's persistent flags are), unless the command has its own option of that
 * name (`run containerd --address` is containerd's socket). Not after `--` (the job's arguments).
 */
function globalsFirst(program: Command, args: string[]): string[] {
  let cmd = program;
  let lead = 0; // (global options already before the command)
  while (lead < args.length && GLOBALS.includes(args[lead].split("=")[0])) {
    lead += args[lead].includes("=") ? 1 : 2;
  }
  let i = lead;
  for (let sub; i < args.length && (sub = subcommand(cmd, args[i])); i++) cmd = sub;
  if (cmd === program || lead > args.length) return args;
  const own = new Set(cmd.options.map((o) => o.long));
  const takesValue = new Set(
    cmd.options.filter((o) => o.required || o.optional).flatMap((o) => [o.long, o.short]),
  );
  // (`exec python3 app.py --address X`: from the job's command on, the words are the job's)
  const passThrough = (cmd as unknown as { _passThroughOptions?: boolean })._passThroughOptions === true;
  const moved: string[] = [];
  const rest: string[] = [];
  for (let j = i; j < args.length; j++) {
    const a = args[j];
    if (a === "--" || (passThrough && !a.startsWith("-"))) {
      rest.push(...args.slice(j));
      break;
    }
    const name = a.split("=")[0];
    // (one without its value stays: commander says what is missing)
    const valued = a.includes("=") || (j + 1 < args.length && !args[j + 1].startsWith("-"));
    if (GLOBALS.includes(name) && !own.has(name) && valued) {
      moved.push(a);
      if (!a.includes("=")) moved.push(args[++j]);
    } else {
      rest.push(a);
      if (takesValue.has(a) && j + 1 < args.length) rest.push(args[++j]);
    }
  }
  return moved.length ? [...args.slice(0, lead), ...moved, ...args.slice(lead, i), ...rest] : args;
}

export async function main(args: string[]): Promise<number> {
  if (args[0] === "-v" || args[0] === "--version" || args[0] === "version") {
    await printVersion();
    return 0;
  }
  const program = buildProgram();
  try {
    // an empty ID, name or path (`job inspect ""`) is never meant
    // (`run` checks its own: a job's arguments may be empty)
    const own = args[0] === "run" ? 0 : args.indexOf("--");
    if ((own < 0 ? args : args.slice(0, own)).includes("")) {
      throw invalidArgument("an empty argument: IDs, names and paths cannot be empty");
    }
    await program.parseAsync(globalsFirst(program, helpArgs(program, args)), { from: "user" });
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      // commander already printed its message (or help/version) to the terminal.
      return e.exitCode === 0 ? 0 : EXIT_CODE.invalid_argument;
    }
    return reportError(e);
  }
}
