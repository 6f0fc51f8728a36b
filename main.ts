// cedana: one program that is both the CLI and, with `cedana daemon start`, the daemon.
// The hot commands take a fast path that does not load the full CLI (see src/commands/fast.ts).
import { fastPath } from "./src/commands/fast.ts";
import { reportError } from "./src/errors.ts";

const FULL_CLI: string = "./src/commands/mod.ts";

async function run(args: string[]): Promise<number> {
  try {
    const fast = await fastPath(args);
    if (fast !== null) return fast;
  } catch (e) {
    return reportError(e);
  }
  // (a specifier in a variable: Deno loads the whole graph of every literal import(), npm packages
  // included, before the program starts, which cost the fast path ~9 ms; this one loads on use.
  // scripts/bundle.sh caches it and `deno compile` takes it with --include.)
  const { main }: typeof import("./src/commands/mod.ts") = await import(FULL_CLI);
  return await main(args);
}

if (import.meta.main) Deno.exit(await run(Deno.args));
