// Runs container_on_gpu.sh (CUDA processes in a runc container, through cedana; for real GPU
// machines) here with the fake driver and a torch-less workload, so that the script and the
// container path of the GPU steps (new host PIDs after every restore, found again by their PID
// inside the container) are known to work before they meet a GPU.
import { assertEquals, assertStringIncludes } from "../../src/testing/asserts.ts";
import { hasContainerCRTools } from "../containers/fixture.ts";
import { runGpuScript } from "./fake.ts";

/**
 * The workload, run in the container (the host's directories, read-only; the work directory `w`
 * bound at the same path). FAKE_CUDA_TOKEN lets the fake driver tell a restored copy from a new
 * process; without it a restored container's GPU restore fails (401), as a real one can.
 */
const app = (token: boolean, abstractSocket = false) => (w: string) =>
  `exec env LD_PRELOAD=${w}/lib/libcuda.so.1 ${
    token ? "FAKE_CUDA_TOKEN=$(cat /proc/sys/kernel/random/uuid) " : ""
  }` +
  `python3 -c 'import socket, time
${abstractSocket ? 's = socket.socket(socket.AF_UNIX); s.bind("\\0cedana-fake-cuda")\n' : ""}i = 0
while True:
    i += 1; print(i, i, i, 7, flush=True); time.sleep(0.1)'`;

Deno.test("container_on_gpu.sh passes with the fake driver", {
  sanitizeOps: false,
  sanitizeResources: false,
  ignore: !hasContainerCRTools(),
}, async () => {
  const { code, text } = await runGpuScript("./container_on_gpu.sh", app(true));
  assertEquals(code, 0, text);
  assertStringIncludes(text, "PASS");
  assertStringIncludes(text, "gpu_checkpoint=");
  assertStringIncludes(text, "gpu_restore=");
});

// A real CUDA job in the host's network namespace held an abstract unix socket (H100, session 5):
// its copy cannot run beside the original there, so the script restores it in the original's place.
Deno.test("container_on_gpu.sh: a job with an abstract unix socket gets its copy in the original's place", {
  sanitizeOps: false,
  sanitizeResources: false,
  ignore: !hasContainerCRTools(),
}, async () => {
  const { code, text } = await runGpuScript("./container_on_gpu.sh", app(true, true));
  assertEquals(code, 0, text);
  assertStringIncludes(text, "Address already in use");
  assertStringIncludes(text, "@cedana-fake-cuda");
  assertStringIncludes(text, "PASS");
});

/** `sleep infinity` processes: the keepers that hold jobs' pipes (see src/plugins/process/io.ts). */
function keepers(): number[] {
  return [...Deno.readDirSync("/proc")].filter((e) => /^\d+$/.test(e.name)).filter((e) => {
    try {
      return /(^|\/)sleep\0infinity\0$/.test(Deno.readTextFileSync(`/proc/${e.name}/cmdline`));
    } catch {
      return false;
    }
  }).map((e) => Number(e.name));
}

Deno.test("a GPU restore failing in a container kills the job and leaves no keeper behind", {
  sanitizeOps: false,
  sanitizeResources: false,
  ignore: !hasContainerCRTools(),
}, async () => {
  const before = new Set(keepers());
  const { code, text } = await runGpuScript("./container_on_gpu.sh", app(false)); // (no token)
  assertEquals(code, 1, text);
  assertStringIncludes(text, "the restored job was killed (its checkpoint is intact: restore it again)");
  assertEquals(keepers().filter((p) => !before.has(p)), [], "no keeper left");
});
