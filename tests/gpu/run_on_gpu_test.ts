// Runs run_on_gpu.sh (and so probe.ts and src/gpu) end to end without a GPU: the fake libcuda
// stands in for the driver, and a shell loop preloading a copy of it named libcuda.so.1 stands in
// for the PyTorch workload (so findCudaPids finds it and CRIU dumps a process with it mapped).
// CRIU itself is real: the test needs root and criu on PATH, as the checkpoint/restore tests do.
import { fileURLToPath } from "node:url";
import { assert, assertMatch, assertStringIncludes } from "../../src/testing/asserts.ts";
import { crOpts, PYTHON } from "../cr_helpers.ts";
import { buildFakeCuda, readCalls } from "./fake.ts";

const SCRIPT = fileURLToPath(new URL("./run_on_gpu.sh", import.meta.url));
/** Prints app.py's "<step> ..." lines, without torch. */
const FAKE_APP = 'import time\ni = 0\nwhile True:\n    i += 1\n    print(i, "fake")\n    time.sleep(0.1)\n';

Deno.test({
  name: "run_on_gpu.sh with the fake driver: in-place cycle, then CRIU dump/restore between",
  ...crOpts,
  fn: async () => {
    const lib = await buildFakeCuda();
    const work = await Deno.makeTempDir({ prefix: "gpu-probe-" });
    try {
      const libcuda = `${work}/lib/libcuda.so.1`;
      await Deno.mkdir(`${work}/lib`);
      await Deno.copyFile(lib, libcuda);
      const stateDir = `${work}/fake-state`;
      const out = await new Deno.Command("bash", {
        args: [SCRIPT],
        env: {
          DENO: Deno.execPath(),
          FAKE_GPU: "1",
          GIBS: "1",
          WORK: `${work}/run`,
          CEDANA_CUDA_LIB: lib,
          CEDANA_NVML_LIB: "/nonexistent/libnvidia-ml.so.1",
          FAKE_CUDA_STATE_DIR: stateDir,
          FAKE_CUDA_DELAY_MS: "50",
          // One process, no children (a shell loop's `sleep` children would be orphaned by the
          // dump and leave zombies holding their pids until init reaps them).
          APP_CMD: `LD_PRELOAD=${libcuda} exec ${PYTHON} -u -c '${FAKE_APP}'`,
        },
        stdout: "piped",
        stderr: "piped",
      }).output();
      const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
      assert(out.success, `run_on_gpu.sh failed:\n${text}`);
      assertStringIncludes(text, "GIB=1 in-place: workload at step");
      assertStringIncludes(text, "GIB=1 after CRIU restore 1: workload at step");
      assertMatch(text, /\ncriu-1-1\t[\d.]+\t[\d.]+\t[\d.]+\t[\d.]+\t[\d.]+\t[\d.]+\t[\d.]+\t\d+\n/);
      assertStringIncludes(text, "PASS");
      // The driver saw the two cycles in order, and the fake's state ended "running".
      const ops = readCalls(stateDir).filter((c) => c.op !== "state" && c.op !== "tid").map((c) => c.op);
      assert(
        ops.join(" ") === "init lock checkpoint restore unlock init lock checkpoint restore unlock",
        ops.join(" "),
      );
    } finally {
      await Deno.remove(work, { recursive: true });
    }
  },
});
