// Sessions the daemon cannot see: where cedana runs inside a PID namespace entered from outside
// (`kubectl exec`, a container's exec, some CI agents), processes that did not call setsid have
// session 0. CRIU refuses to dump those, and hands a job restored with --shell-job the session of
// whoever ran `criu restore`. session_ns.sh runs the daemon and the jobs in such a namespace.
import { assertEquals, assertStringIncludes } from "../src/testing/asserts.ts";
import { crOpts } from "./cr_helpers.ts";
import { MAIN } from "./helpers.ts";

Deno.test(
  "a session leader outside the PID namespace: clear refusal; shell jobs restored into a session of their own",
  crOpts,
  async () => {
    const dir = Deno.makeTempDirSync({ prefix: "cedana-sessions-" });
    try {
      const script = new URL("./session_ns.sh", import.meta.url).pathname;
      const out = await new Deno.Command("unshare", {
        args: ["--pid", "--fork", "--mount-proc", "bash", script, Deno.execPath(), MAIN, dir],
        env: {
          CEDANA_ADDRESS: `${dir}/cedana.sock`,
          CEDANA_DB_PATH: `${dir}/cedana.db`,
          CEDANA_CONFIG_DIR: dir,
          CEDANA_OUTPUT_DIR: dir,
          CEDANA_CHECKPOINT_DIR: `${dir}/ck`,
          NO_COLOR: "1",
        },
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
        signal: AbortSignal.timeout(120_000),
      }).output();
      const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
      assertEquals(out.code, 0, text);
      assertStringIncludes(text, "OK session 0 refused: Error: process");
      assertStringIncludes(text, "OK shell job: 2 cycles");
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
);
