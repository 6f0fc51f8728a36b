// Daemon logging: human-readable lines on a terminal, JSON lines otherwise (for journald/files).
type Level = "debug" | "info" | "warn" | "error";
const ORDER: Record<Level, number> = { debug: 0, info: 1, warn: 2, error: 3 };

export class Logger {
  readonly #min: number;
  readonly #json: boolean;
  constructor(level: Level = "info", json = !Deno.stderr.isTerminal()) {
    this.#min = ORDER[level];
    this.#json = json;
  }
  #write(level: Level, msg: string, fields: Record<string, unknown>) {
    if (ORDER[level] < this.#min) return;
    const time = new Date().toISOString();
    const line = this.#json
      ? JSON.stringify({ time, level, msg, ...fields })
      : `${time} ${level.toUpperCase().padEnd(5)} ${msg}${
        Object.entries(fields).map(([k, v]) => ` ${k}=${typeof v === "string" ? v : JSON.stringify(v)}`).join(
          "",
        )
      }`;
    console.error(line);
  }
  debug(msg: string, f: Record<string, unknown> = {}) {
    this.#write("debug", msg, f);
  }
  info(msg: string, f: Record<string, unknown> = {}) {
    this.#write("info", msg, f);
  }
  warn(msg: string, f: Record<string, unknown> = {}) {
    this.#write("warn", msg, f);
  }
  error(msg: string, f: Record<string, unknown> = {}) {
    this.#write("error", msg, f);
  }
}
