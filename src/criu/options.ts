// Typed CRIU options -> argv. Only what cedana uses; anything else goes through --criu-opts.

import { invalidArgument } from "../errors.ts";

export interface CommonOptions {
  imagesDir: string;
  /** Where CRIU writes its log and stats (default: the images dir). */
  workDir?: string;
  logFile: string;
  verbosity?: number;
  shellJob?: boolean;
  tcpEstablished?: boolean;
  fileLocks?: boolean;
  extUnixSk?: boolean;
  linkRemap?: boolean;
  /** Resources outside the dumped tree: "pipe:[123]", "tty[8800:1a]", "unix:[456]", ... */
  external?: string[];
  /** Script CRIU runs at each stage (CRTOOLS_SCRIPT_ACTION=pre-dump, post-dump, pre-resume, ...). */
  actionScript?: string;
  /** Extra raw flags, e.g. from --criu-opts. */
  extra?: string[];
}

export interface DumpOptions extends CommonOptions {
  pid: number;
  leaveRunning?: boolean;
}

export interface RestoreOptions extends CommonOptions {
  /** Detach: CRIU exits once the tree runs; with restoreSibling the root becomes our child. */
  detach?: boolean;
  restoreSibling?: boolean;
  pidFile?: string;
  /** "fd[N]:resource" pairs: our fd N stands in for the resource (a log file, a pipe, a tty). */
  inheritFds?: { fd: number; resource: string }[];
}

function common(o: CommonOptions): string[] {
  const a = ["-D", o.imagesDir, "-o", o.logFile, `-v${o.verbosity ?? 4}`];
  if (o.workDir) a.push("-W", o.workDir);
  if (o.shellJob) a.push("--shell-job");
  if (o.tcpEstablished) a.push("--tcp-established");
  if (o.fileLocks) a.push("--file-locks");
  if (o.extUnixSk) a.push("--ext-unix-sk");
  if (o.linkRemap) a.push("--link-remap");
  for (const e of o.external ?? []) a.push("--external", e);
  if (o.actionScript) a.push("--action-script", o.actionScript);
  return a;
}

export function dumpArgs(o: DumpOptions): string[] {
  const a = ["dump", "-t", String(o.pid), ...common(o)];
  if (o.leaveRunning) a.push("--leave-running");
  return [...a, ...(o.extra ?? [])];
}

export function restoreArgs(o: RestoreOptions): string[] {
  const a = ["restore", ...common(o)];
  if (o.detach) a.push("-d");
  if (o.restoreSibling) a.push("--restore-sibling");
  if (o.pidFile) a.push("--pidfile", o.pidFile);
  for (const i of o.inheritFds ?? []) a.push("--inherit-fd", `fd[${i.fd}]:${i.resource}`);
  return [...a, ...(o.extra ?? [])];
}

/**
 * Parses --criu-opts JSON: an object of CRIU long options, e.g. {"ghost-limit": "10M",
 * "skip-in-flight": true}. Values true add the bare flag; strings/numbers add "--k v".
 */
export function parseCriuOpts(json: string | undefined): string[] {
  if (!json) return [];
  let o: unknown;
  try {
    o = JSON.parse(json);
  } catch {
    throw invalidArgument(`--criu-opts is not valid JSON: ${JSON.stringify(json)}`);
  }
  if (typeof o !== "object" || o === null || Array.isArray(o)) {
    throw invalidArgument('--criu-opts must be a JSON object, e.g. {"ghost-limit":"10M"}');
  }
  const out: string[] = [];
  for (const [k, v] of Object.entries(o)) {
    if (!/^[a-z][a-z0-9-]*$/.test(k)) {
      throw invalidArgument(`--criu-opts: bad option name ${JSON.stringify(k)}`);
    }
    if (k in OWNED) throw invalidArgument(`--criu-opts: "${k}" is cedana's to set (${OWNED[k]})`);
    if (v === true) out.push(`--${k}`);
    else if (v === false || v === null) continue;
    else if (typeof v === "string" || typeof v === "number") out.push(`--${k}`, String(v));
    else throw invalidArgument(`--criu-opts: the value of "${k}" must be a string, number or boolean`);
  }
  return out;
}

/**
 * --criu-opts (as parseCriuOpts returns them) as a CRIU configuration file: one option per line,
 * without the dashes. For a CRIU that a runtime starts (runc): CRIU reads the file named by
 * CRIU_CONFIG_FILE in RPC mode too.
 */
export function criuConfigFile(extra: string[]): string {
  const lines: string[] = [];
  for (const a of extra) {
    if (a.startsWith("--")) {
      lines.push(a.slice(2));
      continue;
    }
    if (/["\n\\]/.test(a)) {
      throw invalidArgument(
        `--criu-opts: ${JSON.stringify(a)}: quotes, backslashes and newlines cannot be passed to CRIU here`,
      );
    }
    lines[lines.length - 1] += /\s/.test(a) ? ` "${a}"` : ` ${a}`;
  }
  return lines.map((l) => `${l}\n`).join("");
}

/** CRIU options cedana sets itself: given twice, CRIU would write where cedana does not look. */
const OWNED: Record<string, string> = {
  "images-dir": "use --dir and --name",
  "work-dir": "cedana uses a work directory of its own",
  "output": "CRIU's log is kept with the checkpoint",
  "log-file": "CRIU's log is kept with the checkpoint",
  "verbosity": "config criu.log_level",
  "tree": "the job's process",
  "pidfile": "cedana tracks the restored process",
  "leave-running": "use --leave-running",
  "restore-detached": "cedana restores jobs detached",
  "restore-sibling": "cedana restores jobs as its children",
};
