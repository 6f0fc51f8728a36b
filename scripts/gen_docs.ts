// Writes the CLI reference, docs/cli/<command path>.md, from the command tree, and removes pages of
// commands that are gone. tests/docs_test.ts fails until this is run after a command changes.
//   deno run -A scripts/gen_docs.ts
import { fileURLToPath } from "node:url";
import { buildProgram } from "../src/commands/mod.ts";
import { DOCS_DIR, renderDocs } from "../src/commands/docs.ts";

const dir = fileURLToPath(new URL(`../${DOCS_DIR}`, import.meta.url));
const pages = renderDocs(buildProgram());
Deno.mkdirSync(dir, { recursive: true });
for (const e of Deno.readDirSync(dir)) {
  if (e.isFile && e.name.endsWith(".md") && !pages.has(e.name)) {
    Deno.removeSync(`${dir}/${e.name}`);
    console.log(`removed ${DOCS_DIR}/${e.name}`);
  }
}
let changed = 0;
for (const [name, text] of pages) {
  let old: string | null = null;
  try {
    old = Deno.readTextFileSync(`${dir}/${name}`);
  } catch { /* a new page */ }
  if (old === text) continue;
  Deno.writeTextFileSync(`${dir}/${name}`, text);
  changed++;
}
console.log(`${DOCS_DIR}: ${pages.size} pages, ${changed} written`);
