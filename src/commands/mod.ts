// The command tree and the one place where errors become a line on stderr and an exit code.
import { Command, CommanderError } from "@commander-js/extra-typings";
import { EXIT_CODE, invalidArgument, reportError } from "../errors.ts";
import { VERSION } from "../version.ts";
import { checkCommand } from "./check.ts";
import { completeCommand, completionCommand } from "./completion.ts";
import { checkpointsCommand, dumpCommand, restoreCommand } from "./cr.ts";
import { daemonCommand } from "./daemon.ts";
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
    outputError: (text: string, write: (s: string) => void) => write(text.replace(/^error:/, "Error:")),
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
    await program.parseAsync(args, { from: "user" });
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      // commander already printed its message (or help/version) to the terminal.
      return e.exitCode === 0 ? 0 : EXIT_CODE.invalid_argument;
    }
    return reportError(e);
  }
}
