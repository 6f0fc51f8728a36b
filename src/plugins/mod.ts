// Plugins are registered declaratively: one entry per job type. Adding runc/containerd means
// adding a line here.
import type { JobType } from "../api/types.ts";
import { notFound } from "../errors.ts";
import { processPlugin } from "./process/mod.ts";
import { runcPlugin } from "./runc/mod.ts";
import { containerdPlugin } from "./containerd/mod.ts";
import type { JobPlugin } from "./types.ts";

export type {
  CheckpointContext,
  CriuFlags,
  ExitStatus,
  JobIo,
  JobPlugin,
  PluginContext,
  RestoreContext,
  Restored,
  StartedJob,
} from "./types.ts";

const REGISTRY: Record<string, JobPlugin> = {
  process: processPlugin as JobPlugin,
  runc: runcPlugin as JobPlugin,
  containerd: containerdPlugin as JobPlugin,
};

export function plugin(type: JobType | string): JobPlugin {
  const p = REGISTRY[type];
  if (!p) throw notFound(`no plugin for job type "${type}" (known: ${Object.keys(REGISTRY).join(", ")})`);
  return p;
}

export const pluginTypes = () => Object.keys(REGISTRY);
