import { assertEquals, assertThrows } from "../testing/asserts.ts";
import { parseSignal, signalName } from "./signals.ts";
import { JID_PATTERN, randomJid } from "./names.ts";

Deno.test("signals by name, short name, number", () => {
  assertEquals(parseSignal("SIGTERM"), "SIGTERM");
  assertEquals(parseSignal("term"), "SIGTERM");
  assertEquals(parseSignal("9"), "SIGKILL");
  assertEquals(signalName(15), "SIGTERM");
  assertThrows(() => parseSignal("SIGNOPE"), Error, "unknown signal");
  assertThrows(() => parseSignal("99"), Error, "unknown signal");
});

Deno.test("random JIDs are valid and avoid taken ones", () => {
  const taken = new Set<string>();
  for (let i = 0; i < 200; i++) {
    const j = randomJid((x) => taken.has(x));
    assertEquals(JID_PATTERN.test(j), true);
    assertEquals(taken.has(j), false);
    taken.add(j);
  }
});

Deno.test("parseSignal: glibc's other names; real-time signals refused with the reason", () => {
  assertEquals(parseSignal("SIGIOT"), "SIGABRT");
  assertEquals(parseSignal("poll"), "SIGIO");
  assertEquals(parseSignal("16"), "SIGSTKFLT");
  assertThrows(() => parseSignal("SIGRTMIN+3"), Error, "real-time signals (SIGRTMIN+3) are not supported");
  assertThrows(() => parseSignal("34"), Error, "real-time signals (34) are not supported");
});
