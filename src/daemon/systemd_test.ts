import { assertStringIncludes } from "../testing/asserts.ts";
import { renderUnit } from "./systemd.ts";

Deno.test("Environment= keeps $ as it is (systemd expands none there) and doubles %", () => {
  const unit = renderUnit(["/usr/local/bin/cedana", "daemon", "start"], {
    CEDANA_CHECKPOINT_DIR: "/x/$HOME/50%",
    CEDANA_OUTPUT_DIR: '/a b/"q"',
  });
  assertStringIncludes(unit, "\nEnvironment=CEDANA_CHECKPOINT_DIR=/x/$HOME/50%%\n");
  assertStringIncludes(unit, '\nEnvironment="CEDANA_OUTPUT_DIR=/a b/\\"q\\""\n');
});
