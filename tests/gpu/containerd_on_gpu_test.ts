// A CUDA process in a containerd container, through the real CLI, daemon, containerd and CRIU,
// with the fake driver (no GPU here; the runc twin of this ran on an H100, container_on_gpu.sh).
// The container's process is found at dump time (no --gpu-enabled), locked and checkpointed; every
// restore gives it new host PIDs, under which the daemon must find it again (by its PID inside the
// container) to restore and unlock its GPU state.
//
// The image is busybox (static: no LD_PRELOAD of the fake libcuda), so the process marks itself
// as a CUDA process the other way the daemon looks: an open fd on a /dev/nvidia* path. The fake
// driver recognises a restored process by FAKE_CUDA_TOKEN in its environment (see fake_cuda.c).
import type { DumpResult, JobInspect, RestoreResult } from "../../src/api/types.ts";
import { assert, assertEquals } from "../../src/testing/asserts.ts";
import { lastTick, readLog, waitTicks } from "../cr_helpers.ts";
import { waitFor } from "../helpers.ts";
import { hasContainerCRTools } from "../containers/fixture.ts";
import { IMAGE, withContainerd } from "../containers/with_containerd.ts";
import { buildFakeCuda, buildFakeNvml, readFakeState } from "./fake.ts";

// (`sleep` gets fd 3 closed: only the shell is the CUDA process)
const CUDA_COUNTER = [
  "sh",
  "-c",
  'touch /dev/nvidia-fake && exec 3<>/dev/nvidia-fake; i=0; while true; do echo "tick $i"; i=$((i+1)); sleep 0.1 3>&-; done',
];

Deno.test("containerd with the fake GPU driver: dump/restore cycles and a copy beside the original", {
  sanitizeOps: false,
  sanitizeResources: false,
  ignore: !hasContainerCRTools(),
}, async () => {
  const state = Deno.makeTempDirSync({ prefix: "fake-cuda-" });
  const env = {
    CEDANA_CUDA_LIB: await buildFakeCuda(),
    CEDANA_NVML_LIB: await buildFakeNvml(),
    FAKE_CUDA_STATE_DIR: state,
  };
  try {
    await withContainerd(async (d) => {
      const cudaStates = async (jid: string) =>
        await waitFor(async () => {
          const c = (await d.json<JobInspect>("job", "inspect", jid)).cuda;
          return Array.isArray(c) && c.length === 1 && c[0].state === "running" ? c : null;
        }, `job inspect ${jid} shows its CUDA process running`);
      const token = crypto.randomUUID();
      const j = await d.json<JobInspect>(
        "run",
        "containerd",
        IMAGE,
        "--jid",
        "g",
        "--id",
        "g1",
        "--env",
        `FAKE_CUDA_TOKEN=${token}`,
        "--",
        ...CUDA_COUNTER,
      );
      await waitTicks(j.log!, 3);
      for (let i = 0; i < 2; i++) {
        const before = lastTick(readLog(j.log!));
        const dump = await d.json<DumpResult>("dump", "job", "g");
        assertEquals(dump.gpu?.pids.length, 1, "the container's CUDA process was checkpointed");
        assertEquals(readFakeState(state, dump.gpu!.pids[0])?.state, 2, "checkpointed");
        const r = await d.json<RestoreResult>("restore", "job", "g");
        assert(
          r.timings.gpu_restore !== undefined && r.timings.gpu_unlock !== undefined,
          JSON.stringify(r.timings),
        );
        assert(r.job.pid !== j.pid, "new host PIDs");
        await waitTicks(j.log!, before + 3);
        await cudaStates("g");
      }
      // a copy under a new container ID next to the original: each its own GPU state
      const dump = await d.json<DumpResult>("dump", "job", "g", "--leave-running");
      const copy = await d.json<RestoreResult>(
        "restore",
        "containerd",
        "--path",
        dump.checkpoint.path,
        "--id",
        "g2",
        "--jid",
        "gcopy",
      );
      await waitTicks(copy.job.log!, lastTick(readLog(copy.job.log!)) + 3);
      await waitTicks(j.log!, lastTick(readLog(j.log!)) + 3);
      const [a, b] = [(await cudaStates("g"))[0].pid, (await cudaStates("gcopy"))[0].pid];
      assert(a !== b, `two CUDA processes: ${a}, ${b}`);
      await d.ok("job", "kill", "g", "gcopy");
      await d.ok("job", "delete", "g", "gcopy");
    }, env);
  } finally {
    Deno.removeSync(state, { recursive: true });
  }
});
