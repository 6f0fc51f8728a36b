// The CLI reference (docs/cli/*.md) rendered from the command tree, one page per command like
// Cedana's cobra docs. Pure: scripts/gen_docs.ts writes the pages, tests/docs_test.ts regenerates
// them in memory and fails when the committed ones drift from the code.
import type { Argument, Command, Option } from "@commander-js/extra-typings";

export const DOCS_DIR = "docs/cli";

// Walkers take commands of any option/argument types: subcommands are typed as unknown-opts.
// deno-lint-ignore no-explicit-any
export type AnyCommand = Command<any, any, any>;

export function rootOf(cmd: AnyCommand): AnyCommand {
  let root = cmd;
  while (root.parent) root = root.parent;
  return root;
}

/** Names from the root down, e.g. ["cedana", "job", "kill"]. */
export function commandPath(cmd: AnyCommand): string[] {
  const names: string[] = [];
  for (let c: AnyCommand | null = cmd; c; c = c.parent) names.unshift(c.name());
  return names;
}

/** The subcommands users see: no hidden ones (`__complete`) and not commander's implicit `help`
 * command, which visibleCommands() adds but which is not in `commands`. */
export function subcommandsOf(cmd: AnyCommand): AnyCommand[] {
  const visible = cmd.createHelp().visibleCommands(cmd);
  return cmd.commands.filter((c) => visible.includes(c));
}

/** Options as `--help` shows them, including `-h, --help`. */
export function optionsOf(cmd: AnyCommand): Option[] {
  return cmd.createHelp().visibleOptions(cmd);
}

/** One-line description (summary when there is one, as in commander's command lists). */
export function shortDescription(cmd: AnyCommand): string {
  return (cmd.summary() || cmd.description()).split("\n")[0];
}

export function argumentTerm(a: Argument): string {
  const name = a.name() + (a.variadic ? "..." : "");
  return a.required ? `<${name}>` : `[${name}]`;
}

export function docFileName(cmd: AnyCommand): string {
  return `${commandPath(cmd).join("_")}.md`;
}

/** Commander does not expose this setting; when the root has it, its options are accepted only
 * before the subcommand's name, which the pages say so users do not put them at the end. */
function positionalOptions(cmd: AnyCommand): boolean {
  return (cmd as unknown as { _enablePositionalOptions?: boolean })._enablePositionalOptions === true;
}

/** Two columns, like `--help`; options without a short flag are indented so long flags line up. */
function columns(rows: [string, string][]): string {
  const width = Math.max(...rows.map(([t]) => t.length));
  return rows.map(([t, d]) => d ? `${t.padEnd(width)}  ${d}` : t).join("\n");
}

function optionRows(cmd: AnyCommand, options: Option[]): [string, string][] {
  const help = cmd.createHelp();
  const indent = options.some((o) => o.short) ? "    " : "";
  return options.map((o) => [
    o.short ? o.flags : indent + o.flags,
    help.optionDescription(o) + (o.mandatory ? " (required)" : ""),
  ]);
}

function link(cmd: AnyCommand): string {
  return item(`[${commandPath(cmd).join(" ")}](${docFileName(cmd)}) - ${shortDescription(cmd)}`);
}

const fence = (body: string) => ["```", body, "```"].join("\n");

/** Width of prose lines: the pages wrap like `deno fmt` (lineWidth 110) would, so they stay
 * stable if docs/ is ever formatted. */
const WIDTH = 110;

/** Greedy word wrap; code spans and links are never split. */
function wrap(text: string, first = "", rest = ""): string {
  const words = text.match(/(?:`[^`]*`|\[[^\]]*\]\([^)]*\)|\S)+/g) ?? [];
  const lines: string[] = [];
  let line = first;
  for (const w of words) {
    const prefix = lines.length ? rest : first;
    if (line.length > prefix.length && line.length + 1 + w.length > WIDTH) {
      lines.push(line);
      line = rest + w;
    } else line += (line.length > prefix.length ? " " : "") + w;
  }
  return [...lines, line].join("\n");
}

/** Commander descriptions as markdown: paragraphs wrapped, indented lines kept (code blocks). */
function prose(text: string): string {
  return text.split(/\n\s*\n/).map((block) =>
    /^\s/.test(block) ? block : wrap(block.replace(/\s+/g, " ").trim())
  ).join("\n\n");
}

const item = (text: string) => wrap(text, "- ", "  ");

function renderPage(cmd: AnyCommand): string {
  const title = commandPath(cmd).join(" ");
  const out: string[] = [
    "<!-- Generated from the command tree by `deno run -A scripts/gen_docs.ts`; do not edit. -->",
    "",
    `## ${title}`,
    "",
    prose(shortDescription(cmd)),
  ];
  const long = cmd.description();
  if (long && long !== shortDescription(cmd)) out.push("", "### Synopsis", "", prose(long));
  out.push("", "### Usage", "", fence(`${title} ${cmd.usage()}`.trimEnd()));

  if (cmd.aliases().length) {
    const parent = cmd.parent ? `${commandPath(cmd.parent).join(" ")} ` : "";
    out.push("", "### Aliases", "", ...cmd.aliases().map((a) => item(`\`${parent}${a}\``)));
  }

  const args = cmd.registeredArguments;
  if (args.length) {
    const help = cmd.createHelp();
    out.push(
      "",
      "### Arguments",
      "",
      fence(columns(args.map((a) => [argumentTerm(a), help.argumentDescription(a)]))),
    );
  }

  out.push("", "### Options", "", fence(columns(optionRows(cmd, optionsOf(cmd)))));

  const inherited: Option[] = [];
  let positional = false;
  for (let p = cmd.parent; p; p = p.parent) {
    // A parent's -h/--help is not inherited: each command has its own.
    inherited.push(...optionsOf(p).filter((o) => o.long !== "--help"));
    positional ||= positionalOptions(p);
  }
  if (inherited.length) {
    out.push("", "### Options inherited from parent commands", "");
    if (positional) {
      const root = rootOf(cmd).name();
      out.push(
        prose(
          `They go before the command's name (\`${root} [options] ${title.slice(root.length + 1)} ...\`); ` +
            "--address and --config-dir may also follow it",
        ),
        "",
      );
    }
    out.push(fence(columns(optionRows(cmd, inherited))));
  }

  const related = [...(cmd.parent ? [cmd.parent] : []), ...subcommandsOf(cmd)];
  if (related.length) out.push("", "### SEE ALSO", "", ...related.map(link));
  return out.join("\n") + "\n";
}

/** Every visible command's page, keyed by file name (e.g. `cedana_job_kill.md`). */
export function renderDocs(program: AnyCommand): Map<string, string> {
  const pages = new Map<string, string>();
  const walk = (cmd: AnyCommand) => {
    pages.set(docFileName(cmd), renderPage(cmd));
    subcommandsOf(cmd).forEach(walk);
  };
  walk(program);
  return pages;
}
