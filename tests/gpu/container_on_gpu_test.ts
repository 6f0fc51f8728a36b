// Runs container_on_gpu.sh (CUDA processes in a runc container, through cedana; for real GPU
// machines) here with the fake driver and a torch-less workload, so that the script and the
// container path of the GPU steps (new host PIDs after every restore, found again by their PID
// inside the container) are known to work before they meet a GPU.
import { assertEquals, assertStringIncludes } from "../../src/testing/asserts.ts";
import { hasContainerCRTools } from "../containers/fixture.ts";
import { MAIN } from "../helpers.ts";
import { buildFakeCuda, buildFakeNvml } from "./fake.ts";

Deno.test("container_on_gpu.sh passes with the fake driver", {
  sanitizeOps: false,
  sanitizeResources: false,
  ignore: !hasContainerCRTools(),
}, async () => {
  const cuda = await buildFakeCuda();
  const nvml = await buildFakeNvml();
  const w = Deno.makeTempDirSync({ prefix: "cedana-fakegpu-ctr-" });
  try {
    Deno.mkdirSync(`${w}/lib`);
    Deno.mkdirSync(`${w}/state`);
    Deno.copyFileSync(cuda, `${w}/lib/libcuda.so.1`);
    Deno.writeTextFileSync(
      `${w}/cedana`,
      `#!/bin/sh\nexec "${Deno.execPath()}" run -A --quiet ${MAIN} "$@"\n`,
      {
        mode: 0o755,
      },
    );
    // The workload runs in the container (the host's directories, read-only; `w` bound at the
    // same path). FAKE_CUDA_TOKEN tells the fake driver a restored copy from a new process.
    const app =
      `exec env LD_PRELOAD=${w}/lib/libcuda.so.1 FAKE_CUDA_TOKEN=$(cat /proc/sys/kernel/random/uuid) ` +
      `python3 -c 'import time
i = 0
while True:
    i += 1; print(i, i, i, 7, flush=True); time.sleep(0.1)'`;
    const out = await new Deno.Command("bash", {
      args: [new URL("./container_on_gpu.sh", import.meta.url).pathname],
      env: {
        CEDANA: `${w}/cedana`,
        CEDANA_CUDA_LIB: cuda,
        CEDANA_NVML_LIB: nvml,
        FAKE_CUDA_STATE_DIR: `${w}/state`,
        FAKE_GPU: "1",
        WORK: w,
        APP_CMD: app,
      },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    assertEquals(out.code, 0, text);
    assertStringIncludes(text, "PASS");
    assertStringIncludes(text, "gpu_checkpoint=");
    assertStringIncludes(text, "gpu_restore=");
  } finally {
    Deno.removeSync(w, { recursive: true });
  }
});
