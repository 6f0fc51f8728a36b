// Copies a container's output from its pipes into the job's log file (the daemon writes the log:
// a container's stdio must stay pipes to be checkpointable).
import type { JobIo } from "../types.ts";
import { closeFd, writeFd } from "../../sys/mod.ts";

export function logPump(io: JobIo, logFd: number): void {
  io.onOutput((_stream, data) => {
    try {
      writeFd(logFd, data);
    } catch { /* disk full or log removed: keep draining so the container never blocks */ }
  }, () => closeFd(logFd));
}
