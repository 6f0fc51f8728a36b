export * from "./libc.ts";
export * from "./exit_watcher.ts";
