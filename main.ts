// cedana: one program that is both the CLI and, with `cedana daemon start`, the daemon.
// The hot commands take a fast path that does not load the full CLI (see src/commands/fast.ts).
import { fastPath } from "./src/commands/fast.ts";
import { reportError } from "./src/errors.ts";

async function run(args: string[]): Promise<number> {
  try {
    const fast = await fastPath(args);
    if (fast !== null) return fast;
  } catch (e) {
    return reportError(e);
  }
  const { main } = await import("./src/commands/mod.ts");
  return await main(args);
}

if (import.meta.main) Deno.exit(await run(Deno.args));
