// A private containerd with the busybox test image imported, and a cedana daemon pointed at it:
// shared by the containerd tests (tests/containers) and the fake-GPU containerd test (tests/gpu).
import { TestDaemon } from "../helpers.ts";
import { makeImageTar, PrivateContainerd } from "./fixture.ts";

export const IMAGE = "docker.io/cedana/busybox-test:latest";

/** Runs `fn` with both started (daemon env: `env` on top of the containerd settings); logs on failure. */
export async function withContainerd(
  fn: (d: TestDaemon, c: PrivateContainerd) => Promise<void>,
  env: Record<string, string> = {},
) {
  const c = new PrivateContainerd();
  await c.start();
  const d = new TestDaemon({});
  Object.assign(
    d.env,
    { CEDANA_CONTAINERD_ADDRESS: c.address, CEDANA_CONTAINERD_NAMESPACE: c.namespace },
    env,
  );
  try {
    const tar = await makeImageTar(`${d.dir}/image`, IMAGE);
    await c.ctrOk("images", "import", "--index-name", IMAGE, tar);
    await d.start();
    await fn(d, c);
  } catch (e) {
    console.error(`--- daemon log ---\n${d.daemonLog}\n--- containerd log ---\n${c.log.slice(-3000)}`);
    throw e;
  } finally {
    await d.cleanup().catch(() => {});
    await c.stop();
  }
}
