// Bumped by the release workflow. The git commit comes from the checkout, or from the VERSION
// file an offline bundle carries (scripts/bundle.sh).
import { dirname, fromFileUrl } from "./path.ts";

export const VERSION = "0.1.0";

export function gitCommit(): string {
  const here = dirname(fromFileUrl(import.meta.url));
  try {
    // bundle layout: <bundle>/app/src/version.ts and <bundle>/VERSION ("0.1.0 abc1234")
    return Deno.readTextFileSync(`${here}/../../VERSION`).trim().split(" ")[1] ?? "unknown";
  } catch { /* not a bundle */ }
  try {
    const out = new Deno.Command("git", {
      args: ["-C", here, "rev-parse", "--short", "HEAD"],
      stderr: "null",
    })
      .outputSync();
    if (out.success) return new TextDecoder().decode(out.stdout).trim();
  } catch { /* no git */ }
  return "unknown";
}
