export * from "./libc.ts";
export * from "./exit_watcher.ts";
export * from "./poller.ts";
export * from "./reaper.ts";
export * from "./command.ts";
