// `cedana daemon start|stop|check|install|uninstall`.
import { Command, InvalidArgumentError } from "@commander-js/extra-typings";
import { checkAction } from "./check.ts";
import { configOf } from "./context.ts";
import { configDir } from "../config/mod.ts";
import { DEFAULT_UNIT_PATH, install, uninstall } from "../daemon/systemd.ts";

function positiveSeconds(v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError(`expected seconds > 0, got "${v}"`);
  return n;
}

export function daemonCommand() {
  const daemon = new Command("daemon").description("Run, check or install (systemd) the cedana daemon");
  daemon.command("start")
    .description("Start the daemon on a Unix socket (jobs keep running when it stops)")
    .option("--address <socket>", "Unix socket to listen on (config: address)")
    .option("--db <path>", "job DB path (config: db.path)")
    .option("--log-level <level>", "debug, info, warn or error (config: log_level)")
    .option("--metrics-address <host:port>", "also serve /metrics on TCP (config: metrics.address)")
    .action(async (opts, cmd) => {
      const cfg = configOf(cmd, {
        address: opts.address,
        "db.path": opts.db,
        log_level: opts.logLevel,
        "metrics.address": opts.metricsAddress,
      });
      // Loaded lazily: the CLI's other commands never pay for the server's modules.
      const { startDaemon } = await import("../daemon/mod.ts");
      await startDaemon(cfg);
    });
  daemon.command("stop")
    .description(
      "Stop the daemon (jobs keep running); it first finishes the dumps and restores in progress",
    )
    .option("--address <socket>", "the daemon's Unix socket (config: address)")
    .option("--timeout <seconds>", "how long to wait for it to stop", positiveSeconds, 300)
    .action(async (opts, cmd) => {
      const { stopDaemon } = await import("./daemon_stop.ts");
      await stopDaemon(configOf(cmd, { address: opts.address }).address, opts.timeout);
    });
  daemon.command("check")
    .description("Check the daemon and its dependencies (fails when the daemon is unreachable)")
    .option("--json", "machine-readable output")
    .action(checkAction(true));
  daemon.command("install")
    .description("Write a systemd unit that runs `cedana daemon start` with the effective config")
    .option("--enable", "also `systemctl enable --now` it (where systemd runs)")
    .option("--unit-path <path>", "where to write the unit", DEFAULT_UNIT_PATH)
    .option("--address <socket>", "Unix socket the service listens on (config: address)")
    .option("--db <path>", "job DB path of the service (config: db.path)")
    .option("--metrics-address <host:port>", "TCP address for /metrics (config: metrics.address)")
    .action(async (opts, cmd) => {
      const config = configOf(cmd, {
        address: opts.address,
        "db.path": opts.db,
        "metrics.address": opts.metricsAddress,
      });
      let root: { parent: unknown; opts(): unknown } = cmd;
      while (root.parent) root = root.parent as typeof root;
      // the unit must read the config dir this command read, wherever that came from (flag or env)
      const dir = configDir({ configDir: (root.opts() as { configDir?: string }).configDir });
      const msgs = await install({
        unitPath: opts.unitPath,
        enable: opts.enable ?? false,
        config,
        configDir: dir,
      });
      for (const m of msgs) console.log(m);
    });
  daemon.command("uninstall")
    .description("Stop and disable the systemd service (jobs keep running) and remove its unit")
    .option("--unit-path <path>", "the unit to remove", DEFAULT_UNIT_PATH)
    .action(async (opts) => {
      for (const m of await uninstall(opts.unitPath)) console.log(m);
    });
  return daemon;
}
