// Progress of a long dump/restore on a terminal: the step and the bytes written so far, on one
// line of stderr that is cleared at the end. Nothing when stderr is not a terminal or with --json.
import type { DaemonClient } from "../client/mod.ts";
import { humanSize } from "./render.ts";

interface Progress {
  op: string;
  step: string;
  bytes: number | null;
  seconds: number;
}

const LABELS: Record<string, string> = {
  criu_dump: "CRIU writing images",
  criu_restore: "CRIU restoring",
  plugin_restore: "restoring the container",
  manifest: "checksums",
  compress: "compressing",
  unpack: "unpacking",
  gpu_lock: "locking the GPU",
  gpu_checkpoint: "GPU checkpoint",
};

const encoder = new TextEncoder();

export function showProgress(client: DaemonClient, jid: string, json?: boolean): () => void {
  if (json || !Deno.stderr.isTerminal()) return () => {};
  let stopped = false;
  let shown = false;
  let timer: ReturnType<typeof setTimeout>;
  const tick = async () => {
    try {
      const p = await client.get<Progress>(`/v1/jobs/${encodeURIComponent(jid)}/progress`);
      if (stopped) return;
      const bytes = p.bytes !== null && p.bytes > 0 ? ` · ${humanSize(p.bytes)} written` : "";
      Deno.stderr.writeSync(
        encoder.encode(`\r\x1b[K${p.op}: ${LABELS[p.step] ?? p.step}${bytes} · ${p.seconds.toFixed(1)} s`),
      );
      shown = true;
    } catch { /* finished meanwhile, or nothing to show */ }
    if (!stopped) timer = setTimeout(tick, 200);
  };
  // quick operations end before the first look: they print nothing extra
  timer = setTimeout(tick, 400);
  return () => {
    stopped = true;
    clearTimeout(timer);
    if (shown) Deno.stderr.writeSync(encoder.encode("\r\x1b[K"));
  };
}
