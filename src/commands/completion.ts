// `cedana completion bash|zsh|fish`: completion scripts generated from the command tree, so a new
// command, alias or flag is completed without touching this file. JIDs are not known until TAB is
// pressed: the scripts ask the daemon through the hidden `cedana __complete jids` (and `checkpoints`).
import { Argument, Command, type Option } from "@commander-js/extra-typings";
import type { Job } from "../api/types.ts";
import { invalidArgument } from "../errors.ts";
import { clientOf } from "./context.ts";
import { type AnyCommand, commandPath, optionsOf, rootOf, shortDescription, subcommandsOf } from "./docs.ts";

export const SHELLS = ["bash", "zsh", "fish"] as const;
export type Shell = typeof SHELLS[number];

/** What an operand completes to: job IDs from the daemon, its fixed choices, or file names. */
type ArgKind = "jid" | "checkpoint" | "choice" | "file";

interface Spec {
  path: string;
  /** Name and aliases: each one selects this command in its parent. */
  names: string[];
  description: string;
  subs: Spec[];
  options: { flags: string[]; value: boolean; choices: string[]; description: string }[];
  /** Operand kinds in order; `...` marks a variadic last one. */
  args: string[];
  argChoices: string[][];
  /** After the first operand, options belong to the job's command (`run process sleep --help`). */
  passThrough: boolean;
}

function argKind(a: Argument, cmd: AnyCommand): ArgKind {
  if (/^jids?$/.test(a.name())) return "jid";
  // (`job checkpoint inspect|delete ID`)
  if (a.name() === "id" && cmd.parent?.name() === "checkpoint") return "checkpoint";
  return a.argChoices?.length ? "choice" : "file";
}

function specOf(cmd: AnyCommand): Spec {
  return {
    path: commandPath(cmd).join(" "),
    names: [cmd.name(), ...cmd.aliases()],
    description: shortDescription(cmd),
    subs: subcommandsOf(cmd).map(specOf),
    options: optionsOf(cmd).map((o) => ({
      flags: [o.short, o.long].filter((f): f is string => !!f),
      // An optional value (`[v]`) is never taken from the next word by these scripts.
      value: o.required,
      // (or values offered without being the only ones accepted: see completeWith)
      choices: o.argChoices ?? (o as { completions?: string[] }).completions ?? [],
      description: o.description,
    })),
    args: cmd.registeredArguments.map((a) => argKind(a, cmd) + (a.variadic ? "..." : "")),
    argChoices: cmd.registeredArguments.map((a) => a.argChoices ?? []),
    // Commander has no getter for it; without it, `run process sleep --<TAB>` offers cedana's flags.
    passThrough: (cmd as unknown as { _passThroughOptions?: boolean })._passThroughOptions === true,
  };
}

function flatten(s: Spec): Spec[] {
  return [s, ...s.subs.flatMap(flatten)];
}

/** POSIX single quotes (bash and zsh). */
const sq = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;
/** fish single quotes: only \ and ' are special. */
const fq = (s: string) => `'${s.replaceAll("\\", "\\\\").replaceAll("'", "\\'")}'`;

/** `word:description` lines; names and flags never contain a colon, descriptions may. */
const described = (word: string, description: string) => description ? `${word}:${description}` : word;

interface Table {
  /** `__cedana_sub PATH WORD`: the command path WORD selects under PATH. */
  sub: [string, string][];
  /** `__cedana_optarg PATH FLAG`: succeeds when FLAG takes a value. */
  optarg: string[];
  passThrough: string[];
  subs: [string, string[]][];
  flags: [string, string[]][];
  choices: [string, string[]][];
  args: [string, string[]][];
  /** Keyed by `PATH/INDEX` of the operand. */
  argChoices: [string, string[]][];
}

function table(root: Spec): Table {
  const all = flatten(root);
  const t: Table = {
    sub: [],
    optarg: [],
    passThrough: [],
    subs: [],
    flags: [],
    choices: [],
    args: [],
    argChoices: [],
  };
  for (const s of all) {
    for (const c of s.subs) for (const n of c.names) t.sub.push([`${s.path}/${n}`, c.path]);
    if (s.passThrough) t.passThrough.push(s.path);
    if (s.subs.length) t.subs.push([s.path, s.subs.map((c) => described(c.names[0], c.description))]);
    t.flags.push([s.path, s.options.flatMap((o) => o.flags.map((f) => described(f, o.description)))]);
    if (s.args.length) t.args.push([s.path, s.args]);
    s.argChoices.forEach((c, i) => c.length && t.argChoices.push([`${s.path}/${i}`, c]));
    for (const o of s.options) {
      if (!o.value) continue;
      for (const f of o.flags) {
        t.optarg.push(`${s.path}/${f}`);
        if (o.choices.length) t.choices.push([`${s.path}/${f}`, o.choices]);
      }
    }
  }
  return t;
}

// ---- bash and zsh: the same helpers (POSIX case, [[ ]], local), a different entry function ----

function posixCase(fn: string, key: string, arms: string[], fallback: string[] = []): string {
  return [`${fn}() {`, `  case "${key}" in`, ...arms, ...fallback, "  esac", "}"].join("\n");
}

function posixLines(lines: string[]): string {
  return `printf '%s\\n' ${lines.map(sq).join(" ")}`;
}

function posixHelpers(prog: string, t: Table): string {
  const fn = `__${prog}`;
  return [
    posixCase(`${fn}_sub`, "$1/$2", t.sub.map(([k, v]) => `  ${sq(k)}) printf '%s\\n' ${sq(v)} ;;`)),
    posixCase(`${fn}_optarg`, "$1/$2", [`  ${t.optarg.map(sq).join(" | ") || "''"}) return 0 ;;`], [
      "  *) return 1 ;;",
    ]),
    posixCase(`${fn}_passthrough`, "$1", [`  ${t.passThrough.map(sq).join(" | ") || "''"}) return 0 ;;`], [
      "  *) return 1 ;;",
    ]),
    posixCase(`${fn}_subs`, "$1", t.subs.map(([k, v]) => `  ${sq(k)}) ${posixLines(v)} ;;`)),
    posixCase(`${fn}_flags`, "$1", t.flags.map(([k, v]) => `  ${sq(k)}) ${posixLines(v)} ;;`)),
    posixCase(`${fn}_choices`, "$1/$2", t.choices.map(([k, v]) => `  ${sq(k)}) ${posixLines(v)} ;;`)),
    posixCase(`${fn}_args`, "$1", t.args.map(([k, v]) => `  ${sq(k)}) ${posixLines(v)} ;;`)),
    posixCase(`${fn}_argchoices`, "$1/$2", t.argChoices.map(([k, v]) => `  ${sq(k)}) ${posixLines(v)} ;;`)),
    `
# Reads the words before the cursor: which command they name (${fn}_cpath), how many operands it
# got (${fn}_nargs), whether options have ended (${fn}_rest), the option whose value the cursor is
# on (${fn}_skip) and the root's options, passed on to \`${prog} __complete\` (--address ...).
${fn}_walk() {
  ${fn}_cpath=${sq(prog)} ${fn}_nargs=0 ${fn}_rest=0 ${fn}_skip=""
  ${fn}_globals=()
  local w next
  for w in "$@"; do
    if [[ -n $${fn}_skip ]]; then
      # bash splits "--opt=value" at "=": the value is the word after it.
      [[ $w == "=" ]] && continue
      [[ $${fn}_cpath == ${sq(prog)} ]] && ${fn}_globals+=("$w")
      ${fn}_skip=""
      continue
    fi
    if ((${fn}_rest)); then
      ${fn}_nargs=$((${fn}_nargs + 1))
      continue
    fi
    case $w in
    --)
      ${fn}_rest=1
      continue
      ;;
    -*)
      [[ $${fn}_cpath == ${sq(prog)} ]] && ${fn}_globals+=("$w")
      if [[ $w != *=* ]] && ${fn}_optarg "$${fn}_cpath" "$w"; then ${fn}_skip=$w; fi
      continue
      ;;
    esac
    next=""
    ((${fn}_nargs == 0)) && next=$(${fn}_sub "$${fn}_cpath" "$w")
    if [[ -n $next ]]; then
      ${fn}_cpath=$next
    else
      ${fn}_nargs=$((${fn}_nargs + 1))
      ${fn}_passthrough "$${fn}_cpath" && ${fn}_rest=1
    fi
  done
}

# What the word at the cursor (\$1) completes to, after ${fn}_walk: a first line "words" (then
# "word:description" lines), "jids" (then one JID a line), "files" or "none".
${fn}_items() {
  local cur=$1 p=$${fn}_cpath c s i=0 kind=""
  if [[ -n $${fn}_skip ]]; then
    c=$(${fn}_choices "$p" "$${fn}_skip")
    if [[ -n $c ]]; then printf 'words\\n%s\\n' "$c"; else printf 'files\\n'; fi
    return
  fi
  if ((!${fn}_rest)) && [[ $cur == -* ]]; then
    printf 'words\\n'
    ${fn}_flags "$p"
    return
  fi
  if ((!${fn}_rest && !${fn}_nargs)); then
    c=$(${fn}_subs "$p")
    if [[ -n $c ]]; then
      printf 'words\\n%s\\n' "$c"
      return
    fi
  fi
  for s in $(${fn}_args "$p"); do
    if [[ $s == *... ]] || ((i == ${fn}_nargs)); then
      kind=\${s%...}
      break
    fi
    i=$((i + 1))
  done
  case $kind in
  choice)
    printf 'words\\n'
    ${fn}_argchoices "$p" "$i"
    ;;
  jid | checkpoint)
    printf 'jids\\n'
    # Silent and empty when the daemon is down: completion must never print errors.
    "$${fn}_prog" "\${${fn}_globals[@]}" __complete "$kind"s 2>/dev/null
    ;;
  file) printf 'files\\n' ;;
  *) printf 'none\\n' ;;
  esac
}`.trimStart(),
  ].join("\n\n");
}

function bashScript(prog: string, t: Table): string {
  const fn = `__${prog}`;
  return `# bash completion for ${prog}, generated from its command tree by \`${prog} completion bash\`.
# Load it now:      source <(${prog} completion bash)
# or for everyone:  ${prog} completion bash > /etc/bash_completion.d/${prog}

${posixHelpers(prog, t)}

_${prog}() {
  local cur=\${COMP_WORDS[COMP_CWORD]} kind line
  COMPREPLY=()
  ${fn}_prog=\${COMP_WORDS[0]/#\\~/$HOME}
  ${fn}_walk "\${COMP_WORDS[@]:1:COMP_CWORD-1}"
  [[ -n $${fn}_skip && $cur == "=" ]] && cur=""
  {
    read -r kind
    while IFS= read -r line; do
      [[ $kind == words ]] && line=\${line%%:*}
      [[ -n $line && $line == "$cur"* ]] && COMPREPLY+=("$line")
    done
  } < <(${fn}_items "$cur")
  if [[ $kind == files ]]; then
    compopt -o filenames 2>/dev/null
    mapfile -t COMPREPLY < <(compgen -f -- "$cur")
  fi
  return 0
}

complete -F _${prog} ${prog}
`;
}

function zshScript(prog: string, t: Table): string {
  const fn = `__${prog}`;
  return `#compdef ${prog}
# zsh completion for ${prog}, generated from its command tree by \`${prog} completion zsh\`.
# Load it now:      source <(${prog} completion zsh)   (after compinit)
# or install:       ${prog} completion zsh > "\${fpath[1]}/_${prog}"

${posixHelpers(prog, t)}

_${prog}() {
  local cur=\${words[CURRENT]} kind
  local -a items
  ${fn}_prog=\${words[1]/#\\~/$HOME}
  ${fn}_walk "\${(@)words[2,CURRENT-1]}"
  # zsh keeps "--opt=value" in one word: complete the part after "=".
  if [[ -z $${fn}_skip && $cur == --*=* ]]; then
    ${fn}_skip=\${cur%%=*}
    compset -P '*='
    cur=\${cur#*=}
  fi
  items=("\${(@f)$(${fn}_items "$cur")}")
  kind=\${items[1]}
  shift items
  case $kind in
  words) _describe -t ${prog} ${sq(prog)} items ;;
  jids) compadd -a items ;;
  files) _files ;;
  esac
}

if [[ \${funcstack[1]} == _${prog} ]]; then
  _${prog} "$@"
else
  compdef _${prog} ${prog}
fi
`;
}

// ---- fish: its own syntax, one `complete` whose candidates come from a function ----

function fishSwitch(fn: string, key: string, arms: [string, string][], fallback = ""): string {
  return [
    `function ${fn}`,
    `    switch "${key}"`,
    ...arms.map(([k, body]) => `        case ${fq(k)}\n            ${body}`),
    ...(fallback ? [`        case '*'\n            ${fallback}`] : []),
    "    end",
    "end",
  ].join("\n");
}

function fishLines(lines: string[]): string {
  return `printf '%s\\n' ${lines.map(fq).join(" ")}`;
}

function fishScript(prog: string, t: Table): string {
  const fn = `__${prog}`;
  const lines = (rows: [string, string[]][]) => rows.map(([k, v]): [string, string] => [k, fishLines(v)]);
  return `# fish completion for ${prog}, generated from its command tree by \`${prog} completion fish\`.
# Load it now:      ${prog} completion fish | source
# or install:       ${prog} completion fish > ~/.config/fish/completions/${prog}.fish

${
    [
      fishSwitch(`${fn}_sub`, "$argv[1]/$argv[2]", t.sub.map(([k, v]) => [k, `echo ${fq(v)}`])),
      fishSwitch(`${fn}_optarg`, "$argv[1]/$argv[2]", t.optarg.map((k) => [k, "return 0"]), "return 1"),
      fishSwitch(`${fn}_passthrough`, "$argv[1]", t.passThrough.map((k) => [k, "return 0"]), "return 1"),
      fishSwitch(`${fn}_subs`, "$argv[1]", lines(t.subs)),
      fishSwitch(`${fn}_flags`, "$argv[1]", lines(t.flags)),
      fishSwitch(`${fn}_choices`, "$argv[1]/$argv[2]", lines(t.choices)),
      fishSwitch(`${fn}_args`, "$argv[1]", lines(t.args)),
      fishSwitch(`${fn}_argchoices`, "$argv[1]/$argv[2]", lines(t.argChoices)),
    ].join("\n\n")
  }

# Candidates for the token at the cursor, "word<TAB>description" a line: reads the tokens before it
# to know which command they name, how many operands it got and whether an option wants a value.
function ${fn}_complete
    set -l tokens (commandline -opc)
    set -l cur (commandline -ct)
    set -l prog $tokens[1]
    set -e tokens[1]
    set -l cpath ${fq(prog)}
    set -l nargs 0
    set -l rest 0
    set -l skip ''
    set -l globals
    for w in $tokens
        if test -n "$skip"
            test "$cpath" = ${fq(prog)}; and set -a globals $w
            set skip ''
            continue
        end
        if test $rest = 1
            set nargs (math $nargs + 1)
            continue
        end
        if test "$w" = --
            set rest 1
            continue
        end
        if string match -q -- '-*' $w
            test "$cpath" = ${fq(prog)}; and set -a globals $w
            if not string match -q -- '*=*' $w; and ${fn}_optarg $cpath $w
                set skip $w
            end
            continue
        end
        set -l next
        test $nargs = 0; and set next (${fn}_sub $cpath $w)
        if test -n "$next"
            set cpath $next
        else
            set nargs (math $nargs + 1)
            ${fn}_passthrough $cpath; and set rest 1
        end
    end
    # "--opt=value" is one token: complete the value, keeping "--opt=" in front of it.
    set -l prefix ''
    if test -z "$skip"; and string match -qr -- '^--[^=]+=' $cur
        set skip (string replace -r -- '=.*' '' $cur)
        set prefix "$skip="
        set cur (string replace -r -- '^[^=]*=' '' $cur)
    end
    if test -n "$skip"
        set -l c (${fn}_choices $cpath $skip)
        test (count $c) -gt 0; or set c (__fish_complete_path $cur)
        for v in $c
            echo $prefix$v
        end
        return
    end
    if test $rest = 0; and string match -q -- '-*' $cur
        ${fn}_flags $cpath | string replace -- : \\t
        return
    end
    if test $rest = 0 -a $nargs = 0
        set -l s (${fn}_subs $cpath)
        if test (count $s) -gt 0
            printf '%s\\n' $s | string replace -- : \\t
            return
        end
    end
    set -l i 0
    set -l kind
    for s in (${fn}_args $cpath)
        if string match -q -- '*...' $s; or test $i = $nargs
            set kind (string replace -- ... '' $s)
            break
        end
        set i (math $i + 1)
    end
    switch "$kind"
        case choice
            ${fn}_argchoices $cpath $i
        case jid checkpoint
            # Silent and empty when the daemon is down: completion must never print errors.
            $prog $globals __complete {$kind}s 2>/dev/null
        case file
            __fish_complete_path $cur
    end
end

complete -c ${prog} -e
complete -c ${prog} -f -a '(${fn}_complete)'
`;
}

/** The completion script for `shell`, for the program `root` (its name is the completed command). */
export function completionScript(root: AnyCommand, shell: Shell): string {
  const t = table(specOf(root));
  const prog = root.name();
  return shell === "bash" ? bashScript(prog, t) : shell === "zsh" ? zshScript(prog, t) : fishScript(prog, t);
}

function isShell(s: string): s is Shell {
  return (SHELLS as readonly string[]).includes(s);
}

function shellArgument(): Argument<"<shell>"> {
  const shell = new Argument("<shell>", "the shell to complete for");
  // Listed for help, docs and completion, but not set with .choices(): commander would reject a
  // bad name with its own message before the action gives the program's one.
  shell.argChoices = [...SHELLS];
  return shell;
}

export function completionCommand() {
  return new Command("completion")
    .summary("Print a shell completion script (bash, zsh or fish)")
    .description(
      [
        "Print a completion script for bash, zsh or fish: commands, aliases and flags at every level, flag " +
        "values with fixed choices, and the JIDs of the daemon's jobs.",
        "",
        "Load it in the current shell:",
        "",
        "    source <(cedana completion bash)",
        "    source <(cedana completion zsh)",
        "    cedana completion fish | source",
        "",
        "or install it for new shells:",
        "",
        "    cedana completion bash > /etc/bash_completion.d/cedana",
        '    cedana completion zsh > "${fpath[1]}/_cedana"',
        "    cedana completion fish > ~/.config/fish/completions/cedana.fish",
      ].join("\n"),
    )
    .addArgument(shellArgument())
    .action((shell, _opts, cmd) => {
      if (!isShell(shell)) throw invalidArgument(`unknown shell "${shell}": use bash, zsh or fish`);
      Deno.stdout.writeSync(new TextEncoder().encode(completionScript(rootOf(cmd), shell)));
    });
}

/** An option whose values TAB offers, while it accepts others too (commander's choices() would not). */
export function completeWith<T extends Option>(o: T, values: string[]): T {
  (o as { completions?: string[] }).completions = values;
  return o;
}

/**
 * One ID a line, from a list the daemon gives at `path`. Any failure (daemon down, bad config)
 * prints nothing: the shell shows no candidates instead of an error in the middle of the command.
 */
async function printIds<T>(cmd: AnyCommand, path: string, id: (t: T) => string): Promise<void> {
  try {
    const client = clientOf(cmd);
    try {
      const items = await client.call<T[]>("GET", path, undefined, 2000);
      if (items.length) console.log(items.map(id).join("\n"));
    } finally {
      client.close();
    }
  } catch { /* silent, see above */ }
}

/** `cedana __complete jids`: what the scripts run at TAB time. Hidden from help, docs and completion. */
export function completeCommand() {
  const complete = new Command("__complete").description("Values for the shell completion scripts");
  complete.command("jids")
    .description("Print the JIDs of the daemon's jobs, one a line")
    .action((_opts, cmd) => printIds<Job>(cmd, "/v1/jobs", (j) => j.jid));
  complete.command("checkpoints")
    .description("Print the IDs of the daemon's checkpoints, one a line")
    .action((_opts, cmd) => printIds<{ id: string }>(cmd, "/v1/checkpoints", (c) => c.id));
  // The program's command list registers commands without options; hiding it through a throwaway
  // parent sets commander's hidden flag on the command itself (addCommand documents that), and
  // the real parent's addCommand then takes it over.
  new Command().addCommand(complete, { hidden: true });
  return complete;
}
