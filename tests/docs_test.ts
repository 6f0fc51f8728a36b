// docs/cli is the command tree rendered by src/commands/docs.ts: regenerated here in memory, it
// must match the committed pages file for file, so a changed command cannot ship stale docs.
import { fileURLToPath } from "node:url";
import { buildProgram } from "../src/commands/mod.ts";
import { DOCS_DIR, renderDocs } from "../src/commands/docs.ts";
import { assert, assertEquals, assertStringIncludes } from "../src/testing/asserts.ts";
import { ROOT } from "./helpers.ts";

const DIR = fileURLToPath(new URL(`../${DOCS_DIR}/`, import.meta.url));
const STALE = "docs/cli is out of date: run deno run -A scripts/gen_docs.ts";

function committed(): Map<string, string> {
  const pages = new Map<string, string>();
  try {
    for (const e of Deno.readDirSync(DIR)) {
      if (e.isFile && e.name.endsWith(".md")) pages.set(e.name, Deno.readTextFileSync(DIR + e.name));
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return pages;
}

Deno.test("docs: docs/cli matches the command tree", () => {
  const want = renderDocs(buildProgram());
  const have = committed();
  const missing = [...want.keys()].filter((f) => !have.has(f));
  const extra = [...have.keys()].filter((f) => !want.has(f));
  const differ = [...want.keys()].filter((f) => have.has(f) && have.get(f) !== want.get(f));
  const problems = [
    ...missing.map((f) => `missing: ${f}`),
    ...extra.map((f) => `extra: ${f}`),
    ...differ.map((f) => `differs: ${f}`),
  ];
  assert(problems.length === 0, `${STALE}\n  ${problems.join("\n  ")}`);
});

Deno.test("docs: one page per visible command, linked both ways, with usage, options and defaults", () => {
  const pages = renderDocs(buildProgram());
  for (
    const f of [
      "cedana.md",
      "cedana_run.md",
      "cedana_run_process.md",
      "cedana_job_list.md",
      "cedana_job_checkpoint_inspect.md",
      "cedana_completion.md",
    ]
  ) assert(pages.has(f), `no ${f}`);
  assert(
    ![...pages.keys()].some((f) => f.includes("__complete")),
    "the hidden __complete command has a page",
  );
  assert(
    ![...pages.keys()].some((f) => f.endsWith("_help.md")),
    "commander's implicit help command has a page",
  );

  // Every link resolves, and parent and child link each other.
  for (const [name, text] of pages) {
    for (const [, target] of text.matchAll(/\]\(([^)]+)\)/g)) {
      assert(pages.has(target), `${name} links to ${target}, which is not generated`);
      const back = pages.get(target)!;
      assertStringIncludes(back, `](${name})`, `${target} does not link back to ${name}`);
    }
  }

  const run = pages.get("cedana_run_process.md")!;
  assertStringIncludes(run, "## cedana run process\n");
  assertStringIncludes(run, "cedana run process [options] -- COMMAND [ARGS...]");
  assertStringIncludes(run, "-a, --attach");
  assertStringIncludes(run, "### Options inherited from parent commands");
  assertStringIncludes(run, "--address <socket>");
  assertStringIncludes(run, "- [cedana run](cedana_run.md) - Run a managed job");
  const kill = pages.get("cedana_job_kill.md")!;
  assertStringIncludes(kill, '-s, --signal <signal>  signal name or number (default: "SIGKILL")');
  assertStringIncludes(kill, "[jids...]");
  assertStringIncludes(pages.get("cedana_job_list.md")!, "### Aliases\n\n- `cedana job ls`");
  assertStringIncludes(pages.get("cedana_restore_process.md")!, "(required)");
  assertStringIncludes(pages.get("cedana_dump_job.md")!, '(choices: "none", "tar", "gzip", "lz4", "zstd")');
  const root = pages.get("cedana.md")!;
  assert(!root.includes("inherited"), "the root inherits nothing");
  assertStringIncludes(root, "- [cedana job](cedana_job.md) - Manage jobs");
});

Deno.test("docs: rendering is deterministic, and README links the reference", () => {
  assertEquals([...renderDocs(buildProgram())], [...renderDocs(buildProgram())]);
  assertStringIncludes(Deno.readTextFileSync(`${ROOT}README.md`), "(docs/cli/cedana.md)");
});

Deno.test("docs: the pages are already as `deno fmt` (lineWidth 110) would write them", async () => {
  // docs/ is excluded from `deno fmt`; the pages are kept formatted anyway so that stays a choice.
  const tmp = Deno.makeTempDirSync({ prefix: "cedana-docs-" });
  try {
    for (const [name, text] of renderDocs(buildProgram())) Deno.writeTextFileSync(`${tmp}/${name}`, text);
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["fmt", "--no-config", "--line-width", "110", "--check", tmp],
      cwd: tmp,
      stdout: "piped",
      stderr: "piped",
    }).output();
    assertEquals(out.code, 0, new TextDecoder().decode(out.stderr) + new TextDecoder().decode(out.stdout));
  } finally {
    Deno.removeSync(tmp, { recursive: true });
  }
});
