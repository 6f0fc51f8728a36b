// `cedana daemon start|check`.
import { Command } from "@commander-js/extra-typings";
import { checkAction } from "./check.ts";
import { configOf } from "./context.ts";

export function daemonCommand() {
  const daemon = new Command("daemon").description("Run or check the cedana daemon");
  daemon.command("start")
    .description("Start the daemon on a Unix socket (jobs keep running when it stops)")
    .option("--address <socket>", "Unix socket to listen on (config: address)")
    .option("--db <path>", "job DB path (config: db.path)")
    .option("--log-level <level>", "debug, info, warn or error (config: log_level)")
    .action(async (opts, cmd) => {
      const cfg = configOf(cmd, { address: opts.address, "db.path": opts.db, log_level: opts.logLevel });
      // Loaded lazily: the CLI's other commands never pay for the server's modules.
      const { startDaemon } = await import("../daemon/mod.ts");
      await startDaemon(cfg);
    });
  daemon.command("check")
    .description("Check the daemon and its dependencies (fails when the daemon is unreachable)")
    .option("--json", "machine-readable output")
    .action(checkAction(true));
  return daemon;
}
