// Container fixtures for tests: a runc bundle and an OCI image built from busybox-static (no
// registry needed), and a private containerd with its own root, state and sockets.
//
// Facts these rely on (Debian 12, runc 1.1.5, containerd 1.6.20, CRIU 4.2.1 in /usr/local/bin):
// - CRIU must be found on the PATH of runc / containerd (and so of the shim): PrivateContainerd
//   puts /usr/local/bin first. runc checkpoint of a container with its own network namespace
//   needs `iptables` (CRIU locks the network with iptables-restore).
// - Container stdio must be pipes or /dev/null to be checkpointed: runc marks the pipes external
//   and `runc restore` plugs in the new ones (see spawnCapture).
// - containerd's runc shim keeps its runc state in /run/containerd/runc/<namespace> whatever the
//   private state dir is (unless a client passes `--runc-root`), and its sockets in
//   /run/containerd/s: PrivateContainerd uses its own namespace by default so that two instances
//   never share a runc root.

import { spawn } from "node:child_process";
import type { Readable } from "node:stream";

export interface CmdResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** The PATH given to runc, containerd and its shims: CRIU 4.2 in /usr/local/bin comes first. */
export const CONTAINER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

const SEARCH_DIRS = ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"];

/** Full path of an executable on PATH (or the usual system dirs), or null. */
export function findTool(name: string): string | null {
  const path = (() => {
    try {
      return Deno.env.get("PATH") ?? "";
    } catch {
      return "";
    }
  })();
  for (const d of [...path.split(":").filter((p) => p), ...SEARCH_DIRS]) {
    try {
      const st = Deno.statSync(`${d}/${name}`);
      if (st.isFile && ((st.mode ?? 0o111) & 0o111) !== 0) return `${d}/${name}`;
    } catch { /* next */ }
  }
  return null;
}

function isRoot(): boolean {
  try {
    return Deno.uid() === 0;
  } catch {
    return false;
  }
}

/** runc, containerd (+ its runc shim), ctr, umoci and busybox are installed and we are root. */
export function hasContainerTools(): boolean {
  if (!isRoot()) return false;
  return ["runc", "containerd", "containerd-shim-runc-v2", "ctr", "umoci", "busybox"].every((t) =>
    findTool(t) !== null
  );
}

/** hasContainerTools() plus what checkpoint/restore of a container needs: criu and iptables. */
export function hasContainerCRTools(): boolean {
  return hasContainerTools() && findTool("criu") !== null && findTool("iptables") !== null;
}

/** Runs a command to completion with stdin closed; never throws on a non-zero exit. */
export async function run(
  cmd: string,
  args: string[],
  opts: { env?: Record<string, string>; cwd?: string } = {},
): Promise<CmdResult> {
  const out = await new Deno.Command(cmd, {
    args,
    cwd: opts.cwd,
    env: { PATH: CONTAINER_PATH, ...opts.env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** run() that must exit 0; returns stdout. */
export async function runOk(
  cmd: string,
  args: string[],
  opts: { env?: Record<string, string>; cwd?: string } = {},
): Promise<string> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) {
    throw new Error(`${cmd} ${args.join(" ")} failed (exit ${r.code}):\n${r.stderr}${r.stdout}`);
  }
  return r.stdout;
}

/**
 * A command whose stdout/stderr are pipes that we read, and that may outlive the command itself:
 * `runc run -d` / `runc restore -d` hand these pipes to the container, so `text` keeps growing
 * after `exited` resolves, until the container dies (then `closed` resolves).
 */
export interface Capture {
  pid: number;
  /** Exit code of the command itself (runc), not of the container. */
  exited: Promise<number | null>;
  /** Both pipes reached EOF: every holder of their write ends (the container) is gone. */
  closed: Promise<void>;
  readonly stdout: string;
  readonly stderr: string;
  /** Polls stdout until `re` matches; returns the match. */
  waitFor(re: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** Drops the pipes without waiting for EOF (use after the container was killed if stuck). */
  destroy(): void;
}

export function spawnCapture(cmd: string, args: string[], env: Record<string, string> = {}): Capture {
  const child = spawn(cmd, args, {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...Deno.env.toObject(), PATH: CONTAINER_PATH, ...env },
  });
  let out = "";
  let err = "";
  child.stdout!.setEncoding("utf8");
  child.stderr!.setEncoding("utf8");
  child.stdout!.on("data", (s: string) => out += s);
  child.stderr!.on("data", (s: string) => err += s);
  const ended = (s: Readable) =>
    new Promise<void>((res) => {
      s.once("close", () => res());
      s.once("end", () => res());
      s.once("error", () => res());
    });
  const exited = new Promise<number | null>((res) => {
    child.once("exit", (code) => res(code));
    child.once("error", () => res(-1));
  });
  const closed = Promise.all([ended(child.stdout!), ended(child.stderr!)]).then(() => {});
  return {
    pid: child.pid ?? -1,
    exited,
    closed,
    get stdout() {
      return out;
    },
    get stderr() {
      return err;
    },
    async waitFor(re: RegExp, timeoutMs = 10_000): Promise<RegExpMatchArray> {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const m = out.match(re);
        if (m) return m;
        if (Date.now() > deadline) {
          throw new Error(`timed out waiting for ${re} in output of ${cmd}:\n${out.slice(-2000)}\n${err}`);
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    destroy() {
      child.stdout!.destroy();
      child.stderr!.destroy();
    },
  };
}

/** Builds a busybox-static root filesystem in `rootfs` (created; must not exist or be empty). */
export async function makeRootfs(rootfs: string): Promise<void> {
  const busybox = findTool("busybox");
  if (!busybox) throw new Error("busybox not found (apt-get install busybox-static)");
  for (const d of ["bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "tmp", "root", "var"]) {
    await Deno.mkdir(`${rootfs}/${d}`, { recursive: true });
  }
  await Deno.chmod(`${rootfs}/tmp`, 0o1777);
  await Deno.copyFile(busybox, `${rootfs}/bin/busybox`);
  await Deno.chmod(`${rootfs}/bin/busybox`, 0o755);
  const applets = (await runOk(busybox, ["--list"])).split("\n").map((s) => s.trim())
    .filter((s) => /^[\w.\[-]+$/.test(s) && s !== "busybox");
  for (const a of new Set(["sh", ...applets])) {
    try {
      await Deno.symlink("busybox", `${rootfs}/bin/${a}`);
    } catch (e) {
      if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
    }
  }
  await Deno.writeTextFile(`${rootfs}/etc/passwd`, "root:x:0:0:root:/root:/bin/sh\n");
  await Deno.writeTextFile(`${rootfs}/etc/group`, "root:x:0:\n");
  await Deno.writeTextFile(`${rootfs}/etc/hostname`, "cedana-test\n");
}

// deno-lint-ignore no-explicit-any
type Json = any;

/**
 * A runc bundle in `dir` (created): busybox rootfs + `runc spec` config.json with
 * process.terminal=false, process.args=args, a writable root, extra env appended. The container
 * keeps its own network namespace (checkpointable here with iptables installed). Returns `dir`.
 */
export async function makeBundle(
  dir: string,
  args: string[],
  opts: { env?: string[] } = {},
): Promise<string> {
  await Deno.mkdir(dir, { recursive: true });
  await makeRootfs(`${dir}/rootfs`);
  await runOk("runc", ["spec", "--bundle", dir]);
  const cfgPath = `${dir}/config.json`;
  const cfg: Json = JSON.parse(await Deno.readTextFile(cfgPath));
  cfg.process.terminal = false;
  cfg.process.args = args;
  cfg.process.env = [
    ...(cfg.process.env as string[]).filter((e) => !e.startsWith("TERM=")),
    ...(opts.env ?? []),
  ];
  cfg.root = { path: "rootfs", readonly: false };
  cfg.hostname = "cedana-test";
  await Deno.writeTextFile(cfgPath, JSON.stringify(cfg, null, 2));
  return dir;
}

/**
 * An OCI image (busybox rootfs, Cmd ["sh"], PATH env) in a tarball at `${dir}/image.tar`,
 * built with umoci. Import it with `ctr images import --index-name NAME FILE`: that creates
 * exactly the image NAME (the manifest is untagged, so `--base-name` alone imports nothing).
 * Returns the tarball's path.
 */
export async function makeImageTar(dir: string, name: string): Promise<string> {
  await Deno.mkdir(dir, { recursive: true });
  const rootfs = `${dir}/image-rootfs`;
  const layout = `${dir}/oci-layout`;
  const tar = `${dir}/image.tar`;
  await makeRootfs(rootfs);
  const img = `${layout}:latest`;
  await runOk("umoci", ["init", "--layout", layout]);
  await runOk("umoci", ["new", "--image", img]);
  await runOk("umoci", ["insert", "--image", img, rootfs, "/"]);
  await runOk("umoci", [
    "config",
    "--image",
    img,
    "--config.cmd",
    "sh",
    "--config.env",
    `PATH=${CONTAINER_PATH}`,
    "--config.workingdir",
    "/",
    "--architecture",
    "amd64",
    "--os",
    "linux",
  ]);
  await runOk("umoci", ["gc", "--layout", layout]);
  // umoci tags the manifest "latest": ctr would then also create "import-<date>:latest" (and a
  // full reference as that tag makes ctr skip the manifest's content). Untagged, `--index-name
  // NAME` creates exactly NAME. (`name` is recorded as a label-like annotation on the index.)
  const indexPath = `${layout}/index.json`;
  const index: Json = JSON.parse(await Deno.readTextFile(indexPath));
  for (const m of index.manifests) delete m.annotations;
  index.annotations = { "org.cedana.test.image-name": name };
  await Deno.writeTextFile(indexPath, JSON.stringify(index));
  await runOk("tar", ["-C", layout, "-cf", tar, "."]);
  await Deno.remove(rootfs, { recursive: true });
  await Deno.remove(layout, { recursive: true });
  return tar;
}

/** Mount points (from /proc/self/mountinfo) at or below `prefix`, deepest first. */
export function mountsUnder(prefix: string): string[] {
  const p = prefix.replace(/\/+$/, "");
  const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o) => String.fromCharCode(parseInt(o, 8)));
  let text = "";
  try {
    text = Deno.readTextFileSync("/proc/self/mountinfo");
  } catch {
    return [];
  }
  const points = text.split("\n").filter((l) => l).map((l) => unescape(l.split(" ")[4]))
    .filter((m) => m === p || m.startsWith(p + "/"));
  return [...new Set(points)].sort((a, b) => b.length - a.length);
}

function listPids(): number[] {
  const pids: number[] = [];
  for (const e of Deno.readDirSync("/proc")) if (/^\d+$/.test(e.name)) pids.push(Number(e.name));
  return pids;
}

function cmdline(pid: number): string[] {
  try {
    return Deno.readTextFileSync(`/proc/${pid}/cmdline`).split("\0");
  } catch {
    return [];
  }
}

function processGone(pid: number): boolean {
  try {
    return /\) [ZX] /.test(Deno.readTextFileSync(`/proc/${pid}/stat`));
  } catch {
    return true;
  }
}

function statOf(pid: number): { state: string; ppid: number } | null {
  try {
    const st = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const rest = st.slice(st.lastIndexOf(")") + 2).split(" ");
    return { state: rest[0], ppid: Number(rest[1]) };
  } catch {
    return null;
  }
}

let libcWaitpid: ((pid: number, status: null, options: number) => number) | null | undefined;

/**
 * Reaps those of `pids` that are zombies AND our own children. Needed when this process is a
 * child subreaper (some tests set PR_SET_CHILD_SUBREAPER in the test process): then a runc
 * container's init and containerd's shims, orphaned, are adopted by us and never reaped by Deno.
 * Only call it with PIDs that Deno itself does not wait for (not Deno.Command/spawn children).
 * Returns the reaped PIDs. Needs --allow-ffi; without it does nothing.
 */
export function reapZombieChildren(pids: number[]): number[] {
  const mine = pids.filter((pid) => {
    const st = statOf(pid);
    return st !== null && st.state === "Z" && st.ppid === Deno.pid;
  });
  if (mine.length === 0) return [];
  if (libcWaitpid === undefined) {
    try {
      const lib = Deno.dlopen("libc.so.6", {
        waitpid: { parameters: ["i32", "buffer", "i32"], result: "i32" },
      });
      libcWaitpid = (pid, status, options) => lib.symbols.waitpid(pid, status, options);
    } catch {
      libcWaitpid = null;
    }
  }
  if (!libcWaitpid) return [];
  const WNOHANG = 1;
  return mine.filter((pid) => libcWaitpid!(pid, null, WNOHANG) === pid);
}

async function waitGone(pids: number[], timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (pids.every(processGone)) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return pids.every(processGone);
}

/**
 * containerd 1.6 with a private config.toml: root, state, grpc/ttrpc/debug sockets and its log
 * under one temp dir, the CRI plugin disabled, PATH with /usr/local/bin first (CRIU 4.2).
 * `ctr()` runs ctr against it in `namespace`.
 */
export class PrivateContainerd {
  readonly dir: string;
  readonly root: string;
  readonly state: string;
  readonly address: string;
  readonly ttrpcAddress: string;
  readonly configPath: string;
  readonly logPath: string;
  readonly namespace: string;
  #child: Deno.ChildProcess | null = null;
  #status: Promise<Deno.CommandStatus> | null = null;

  constructor(opts: { dir?: string; namespace?: string } = {}) {
    this.dir = opts.dir ?? Deno.makeTempDirSync({ prefix: "cedana-containerd-" });
    this.root = `${this.dir}/root`;
    this.state = `${this.dir}/state`;
    this.address = `${this.dir}/containerd.sock`;
    this.ttrpcAddress = `${this.dir}/containerd-ttrpc.sock`;
    this.configPath = `${this.dir}/config.toml`;
    this.logPath = `${this.dir}/containerd.log`;
    this.namespace = opts.namespace ?? `cedana-test-${crypto.randomUUID().slice(0, 8)}`;
  }

  /** Where the runc shim keeps runc's state for this namespace (`runc --root` for it). */
  get runcRoot(): string {
    return `/run/containerd/runc/${this.namespace}`;
  }

  /** The containerd process id, or 0 when not started. */
  get pid(): number {
    return this.#child?.pid ?? 0;
  }

  get log(): string {
    try {
      return Deno.readTextFileSync(this.logPath);
    } catch {
      return "";
    }
  }

  async start(): Promise<void> {
    if (this.#child) return;
    await Deno.mkdir(this.root, { recursive: true });
    await Deno.mkdir(this.state, { recursive: true });
    await Deno.writeTextFile(
      this.configPath,
      [
        "version = 2",
        `root = ${JSON.stringify(this.root)}`,
        `state = ${JSON.stringify(this.state)}`,
        'disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.aufs",',
        '  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper",',
        '  "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp"]',
        "[grpc]",
        `  address = ${JSON.stringify(this.address)}`,
        "[ttrpc]",
        `  address = ${JSON.stringify(this.ttrpcAddress)}`,
        "[debug]",
        `  address = ${JSON.stringify(`${this.dir}/debug.sock`)}`,
        '  level = "info"',
        "",
      ].join("\n"),
    );
    const containerd = findTool("containerd") ?? "containerd";
    this.#child = new Deno.Command("/bin/sh", {
      args: ["-c", 'exec "$0" --config "$1" >>"$2" 2>&1', containerd, this.configPath, this.logPath],
      env: { PATH: CONTAINER_PATH, HOME: "/root" },
      clearEnv: true,
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    this.#status = this.#child.status;
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline) {
      const early = await Promise.race([
        this.#status,
        new Promise<null>((r) => setTimeout(() => r(null), 100)),
      ]);
      if (early) {
        this.#child = null;
        throw new Error(`containerd exited early (code ${early.code}):\n${this.log.slice(-4000)}`);
      }
      const v = await run("ctr", ["--address", this.address, "version"]);
      if (v.code === 0 && v.stdout.includes("Server:")) return;
    }
    await this.stop();
    throw new Error(`containerd did not answer on ${this.address}:\n${this.log.slice(-4000)}`);
  }

  /** ctr --address SOCK --namespace NS ARGS... (never throws on a non-zero exit). */
  async ctr(...args: string[]): Promise<CmdResult> {
    return await run("ctr", ["--address", this.address, "--namespace", this.namespace, ...args]);
  }

  /** ctr() that must exit 0; returns stdout. */
  async ctrOk(...args: string[]): Promise<string> {
    const r = await this.ctr(...args);
    if (r.code !== 0) {
      throw new Error(`ctr ${args.join(" ")} failed (exit ${r.code}):\n${r.stderr}${r.stdout}`);
    }
    return r.stdout;
  }

  /** Init PID of a task as `ctr task ls` shows it (0 when there is no such task). */
  async taskPid(id: string): Promise<{ pid: number; status: string }> {
    const out = (await this.ctr("task", "ls")).stdout;
    for (const line of out.split("\n").slice(1)) {
      const [tid, pid, status] = line.trim().split(/\s+/);
      if (tid === id) return { pid: Number(pid), status };
    }
    return { pid: 0, status: "" };
  }

  /** Live shims of this containerd and processes whose root is below its dir. */
  #ourProcesses(): number[] {
    const found: number[] = [];
    for (const pid of listPids()) {
      if (pid === Deno.pid || processGone(pid)) continue;
      const argv = cmdline(pid);
      const isOurShim = argv[0]?.includes("containerd-shim") && argv.includes(this.address);
      let inOurRootfs = false;
      try {
        inOurRootfs = Deno.readLinkSync(`/proc/${pid}/root`).startsWith(this.dir + "/");
      } catch { /* gone or kernel thread */ }
      if (isOurShim || inOurRootfs) found.push(pid);
    }
    return found;
  }

  /**
   * Kills every task in every namespace of this containerd, deletes tasks and containers, stops
   * containerd, kills shims and container processes left over, unmounts everything below its
   * dir and removes the dir. Safe to call twice and after a failed start.
   */
  async stop(): Promise<void> {
    const shims = this.#ourProcesses();
    if (this.#child) {
      const nsOut = await run("ctr", ["--address", this.address, "namespaces", "ls", "-q"]);
      const namespaces = nsOut.code === 0
        ? nsOut.stdout.split("\n").map((s) => s.trim()).filter((s) => s)
        : [];
      for (const ns of namespaces) {
        const c = (...a: string[]) => run("ctr", ["--address", this.address, "--namespace", ns, ...a]);
        const tasks = (await c("task", "ls", "-q")).stdout.split("\n").map((s) => s.trim()).filter((s) => s);
        for (const t of tasks) await c("task", "kill", "--all", "--signal", "SIGKILL", t);
        for (const t of tasks) {
          const deadline = Date.now() + 5_000;
          while (Date.now() < deadline) {
            const r = await c("task", "rm", "--force", t);
            if (r.code === 0 || /not found/.test(r.stderr)) break;
            await new Promise((r) => setTimeout(r, 100));
          }
        }
        for (const ctrId of (await c("containers", "ls", "-q")).stdout.split("\n").map((s) => s.trim())) {
          if (ctrId) await c("containers", "rm", ctrId);
        }
      }
      try {
        this.#child.kill("SIGTERM");
      } catch { /* gone */ }
      const done = await Promise.race([
        this.#status!,
        new Promise<null>((r) => setTimeout(() => r(null), 5_000)),
      ]);
      if (!done) {
        try {
          this.#child.kill("SIGKILL");
        } catch { /* gone */ }
        await this.#status;
      }
      this.#child = null;
      this.#status = null;
    }
    // Shims of this containerd (they outlive it by design) and processes inside its rootfs mounts.
    const leftovers = this.#ourProcesses();
    for (const pid of leftovers) {
      try {
        Deno.kill(pid, "SIGKILL");
      } catch { /* gone */ }
    }
    await waitGone([...shims, ...leftovers], 5_000);
    reapZombieChildren([...shims, ...leftovers]);
    for (const m of mountsUnder(this.dir)) {
      if ((await run("umount", [m])).code !== 0) await run("umount", ["-l", m]);
    }
    const remaining = mountsUnder(this.dir);
    if (remaining.length > 0) {
      throw new Error(`still mounted, not removing ${this.dir}: ${remaining.join(", ")}`);
    }
    // runc state of our (private) namespaces: removed when empty, which it is after `task rm`.
    // So are the namespace's cgroups (one per controller: thousands after a few test runs).
    if (this.namespace !== "default") {
      try {
        await Deno.remove(this.runcRoot);
      } catch { /* absent or still used */ }
      removeEmptyCgroups(this.namespace);
    }
    if (!Deno.env.get("KEEP_TEST_DIRS")) {
      try {
        await Deno.remove(this.dir, { recursive: true });
      } catch (e) {
        if (!(e instanceof Deno.errors.NotFound)) throw e;
      }
    }
  }
}

/** rmdir /sys/fs/cgroup[/CONTROLLER]/NAME and the empty cgroups under it (a busy one stays). */
export function removeEmptyCgroups(name: string): void {
  const rm = (dir: string) => {
    try {
      for (const e of Deno.readDirSync(dir)) if (e.isDirectory) rm(`${dir}/${e.name}`);
      Deno.removeSync(dir); // (rmdir: a cgroup's files go with it)
    } catch { /* absent, or tasks in it */ }
  };
  const roots = ["/sys/fs/cgroup"];
  try {
    for (const e of Deno.readDirSync("/sys/fs/cgroup")) {
      if (e.isDirectory) roots.push(`/sys/fs/cgroup/${e.name}`);
    }
  } catch { /* no cgroupfs */ }
  for (const r of roots) rm(`${r}/${name}`);
}
