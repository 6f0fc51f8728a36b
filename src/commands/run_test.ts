import { assertEquals } from "../testing/asserts.ts";
import { userEnv } from "./run.ts";

Deno.test("a job's environment is the user's, without what cedana's launchers added", () => {
  const b = "/home/u/.cache/cedana/0.1.0-abc/cedana";
  assertEquals(
    userEnv({
      HOME: "/home/u",
      PATH: `${b}/criu/bin:/usr/bin:/bin`,
      DENO_DIR: `${b}/deno_dir`,
      DENO_NO_UPDATE_CHECK: "1",
      DENO_NO_PROMPT: "1",
      CEDANA_LAUNCHER: `${b}/cedana`,
      CEDANA_SFX: "/usr/local/bin/cedana",
    }),
    { HOME: "/home/u", PATH: "/usr/bin:/bin" },
  );
  // not run from a bundle: the environment as it is (a user's own DENO_DIR stays)
  assertEquals(userEnv({ PATH: "/usr/bin", DENO_DIR: "/d" }), { PATH: "/usr/bin", DENO_DIR: "/d" });
});
