// `cedana check` / `cedana daemon check`: is everything needed for checkpoint/restore here?
import { existsSync } from "node:fs";
import { Command } from "@commander-js/extra-typings";
import { criuCheck, criuVersion, findCriu, MIN_CRIU, versionAtLeast } from "../criu/mod.ts";
import { closeFd, pidfdOpen, runCommand } from "../sys/mod.ts";
import { configOf } from "./context.ts";
import { DaemonClient } from "../client/mod.ts";
import { printJson } from "./render.ts";
import { EXIT_CODE } from "../errors.ts";

interface Item {
  name: string;
  ok: boolean;
  required: boolean;
  detail: string;
  fix?: string;
}

// deno-lint-ignore no-explicit-any
async function runChecks(cmd: Command<any, any, any>, daemonRequired: boolean): Promise<Item[]> {
  const cfg = configOf(cmd);
  const items: Item[] = [];
  const criu = findCriu(cfg);
  const fix =
    "install CRIU >= 4.2 (scripts/setup.sh does it) or set criu.binary_path / CEDANA_CRIU_BINARY_PATH";
  if (!criu) {
    items.push({ name: "criu", ok: false, required: true, detail: "not found on PATH", fix });
  } else {
    const v = await criuVersion(criu);
    const vok = v !== null && versionAtLeast(v, MIN_CRIU);
    items.push({
      name: "criu",
      ok: vok,
      required: true,
      detail: `${criu} (version ${v ?? "unknown"})`,
      fix: vok ? undefined : `${fix}; 4.1 and older cannot dump TCP sockets on current kernels`,
    });
    const chk = await criuCheck(criu);
    items.push({
      name: "criu check",
      ok: chk.ok,
      required: true,
      detail: chk.ok ? "looks good" : chk.lines.slice(-3).join("; "),
      fix: chk.ok ? undefined : "run `criu check` as root to see what the kernel lacks",
    });
  }
  const kernel = Deno.osRelease();
  let pidfd = true;
  try {
    closeFd(pidfdOpen(Deno.pid));
  } catch {
    pidfd = false;
  }
  items.push({
    name: "kernel",
    ok: pidfd,
    required: true,
    detail: `${kernel}, pidfd ${pidfd ? "supported" : "missing"}`,
    fix: pidfd ? undefined : "Linux >= 5.3 is needed (pidfd_open)",
  });
  // Container runtimes are optional: only runc/containerd jobs need them.
  for (
    const [name, args, re] of [
      ["runc", ["--version"], /runc version (\S+)/],
      ["containerd", ["--version"], /containerd \S+ v?(\S+)/],
    ] as const
  ) {
    const r = await runCommand(name, [...args]);
    const v = re.exec(r.stdout)?.[1];
    // installed is not enough for containerd: cedana talks to the daemon on its socket
    const addr = cfg.containerd.address;
    const up = name !== "containerd" || !r.success ||
      (existsSync(addr) &&
        (await runCommand("ctr", ["--connect-timeout", "2s", "--address", addr, "version"])).success);
    items.push({
      name,
      ok: r.success && !!v && up,
      required: false,
      detail: !r.success
        ? "not installed"
        : `version ${v ?? "unknown"}${up ? "" : `, not reachable at ${addr}`}`,
      fix: !r.success
        ? `needed only for ${name} jobs (apt-get install ${name})`
        : up
        ? undefined
        : "start containerd, or point containerd.address (CEDANA_CONTAINERD_ADDRESS) at its socket",
    });
  }
  items.push(await gpuItem());
  const root = Deno.uid() === 0;
  items.push({
    name: "privileges",
    ok: root,
    required: false,
    detail: root ? "running as root" : `uid ${Deno.uid()}`,
    fix: root ? undefined : "checkpoint/restore needs root (or CAP_CHECKPOINT_RESTORE and CAP_SYS_ADMIN)",
  });
  const client = new DaemonClient(cfg.address);
  try {
    const h = await client.health(2000);
    items.push({
      name: "daemon",
      ok: true,
      required: daemonRequired,
      detail: `${cfg.address} (pid ${h.pid}, v${h.version}, db ${h.db})`,
    });
  } catch (e) {
    items.push({
      name: "daemon",
      ok: false,
      required: daemonRequired,
      detail: `not reachable at ${cfg.address}`,
      fix: (e as Error).message.includes("no such socket")
        ? "start it: cedana daemon start"
        : (e as Error).message,
    });
  } finally {
    client.close();
  }
  return items;
}

export function checkAction(daemonRequired: boolean) {
  // deno-lint-ignore no-explicit-any
  return async (opts: { json?: boolean }, cmd: Command<any, any, any>) => {
    const items = await runChecks(cmd, daemonRequired);
    const failed = items.filter((i) => i.required && !i.ok);
    if (opts.json) printJson({ ok: failed.length === 0, checks: items });
    else {
      for (const i of items) {
        const mark = i.ok ? "ok  " : i.required ? "FAIL" : "warn";
        console.log(
          `${mark}  ${i.name.padEnd(11)} ${i.detail}${i.ok || !i.fix ? "" : `\n      fix: ${i.fix}`}`,
        );
      }
      console.log(
        failed.length ? `\n${failed.length} required check(s) failed` : "\nall required checks passed",
      );
    }
    // (an unreachable daemon is "unavailable", as for every other command)
    if (failed.length) {
      Deno.exit(
        failed.some((i) => i.name === "daemon") ? EXIT_CODE.unavailable : EXIT_CODE.failed_precondition,
      );
    }
  };
}

export function checkCommand(): Command<[], { json?: boolean }> {
  return new Command("check")
    .description("Check that CRIU, the kernel and the daemon are ready for checkpoint/restore")
    .option("--json", "machine-readable output")
    .action(checkAction(false));
}

/** The CUDA driver's checkpoint API and NVML's view of the GPUs: optional, only GPU jobs need them. */
async function gpuItem() {
  const { CudaDriver, GpuUnavailable, gpuMemory } = await import("../gpu/mod.ts");
  let detail: string, ok = true;
  try {
    const d = CudaDriver.load();
    const mem = gpuMemory();
    const gib = (n: number) => `${(n / 2 ** 30).toFixed(1)} GiB`;
    detail = `CUDA driver ${d.versionString} with the checkpoint API` +
      (mem
        ? `; ${mem.length} GPU(s), ${mem.map((m) => `${gib(m.free)} of ${gib(m.total)} free`).join(", ")}`
        : "; NVML not available (no free-memory check before a GPU restore)");
  } catch (e) {
    if (!(e instanceof GpuUnavailable)) throw e;
    ok = false;
    detail = e.message.replace(/^GPU support unavailable: /, "");
  }
  return {
    name: "gpu",
    ok,
    required: false,
    detail,
    fix: ok ? undefined : "needed only for GPU jobs (an NVIDIA driver >= 550 with the CUDA checkpoint API)",
  };
}
