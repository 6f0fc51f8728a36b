// cedana: one program that is both the CLI and, with `cedana daemon start`, the daemon.
import { main } from "./src/commands/mod.ts";

if (import.meta.main) Deno.exit(await main(Deno.args));
