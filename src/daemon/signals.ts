// Linux signal names and numbers (x86-64 / aarch64 share these for the common ones).
import { invalidArgument } from "../errors.ts";

export const SIGNALS: Record<string, number> = {
  SIGHUP: 1,
  SIGINT: 2,
  SIGQUIT: 3,
  SIGILL: 4,
  SIGTRAP: 5,
  SIGABRT: 6,
  SIGBUS: 7,
  SIGFPE: 8,
  SIGKILL: 9,
  SIGUSR1: 10,
  SIGSEGV: 11,
  SIGUSR2: 12,
  SIGPIPE: 13,
  SIGALRM: 14,
  SIGTERM: 15,
  SIGSTKFLT: 16,
  SIGCHLD: 17,
  SIGCONT: 18,
  SIGSTOP: 19,
  SIGTSTP: 20,
  SIGTTIN: 21,
  SIGTTOU: 22,
  SIGURG: 23,
  SIGXCPU: 24,
  SIGXFSZ: 25,
  SIGVTALRM: 26,
  SIGPROF: 27,
  SIGWINCH: 28,
  SIGIO: 29,
  SIGPWR: 30,
  SIGSYS: 31,
};

/** Other names of the same signals (glibc's). */
const ALIASES: Record<string, string> = { SIGIOT: "SIGABRT", SIGPOLL: "SIGIO", SIGCLD: "SIGCHLD" };

const BY_NUMBER = new Map(Object.entries(SIGNALS).map(([k, v]) => [v, k]));

export function signalName(n: number): string {
  return BY_NUMBER.get(n) ?? `SIG${n}`;
}

/** Accepts "SIGTERM", "TERM", "term" or "15"; returns the canonical name. */
export function parseSignal(s: string): Deno.Signal {
  const t = s.trim().toUpperCase();
  if (/^\d+$/.test(t)) {
    const name = BY_NUMBER.get(Number(t));
    if (name) return name as Deno.Signal;
  } else {
    const name = t.startsWith("SIG") ? t : `SIG${t}`;
    if (name in SIGNALS) return name as Deno.Signal;
    if (name in ALIASES) return ALIASES[name] as Deno.Signal;
    if (/^SIGRT(MIN|MAX)/.test(name)) {
      throw invalidArgument(`real-time signals (${s}) are not supported: use a standard one, like SIGUSR1`);
    }
  }
  if (/^\d+$/.test(t) && Number(t) >= 32 && Number(t) <= 64) {
    throw invalidArgument(`real-time signals (${s}) are not supported: use a standard one, like SIGUSR1`);
  }
  throw invalidArgument(`unknown signal "${s}" (use a name like SIGTERM or a number like 15)`);
}
