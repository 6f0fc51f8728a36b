// Minimal assertions (JSR's @std/assert is not reachable here); node:assert does the deep compare.
import assert from "node:assert/strict";

export function assertEquals<T>(actual: T, expected: T, msg?: string): void {
  if (msg === undefined) assert.deepStrictEqual(actual, expected);
  else assert.deepStrictEqual(actual, expected, msg);
}

export function assert_(cond: unknown, msg = "assertion failed"): asserts cond {
  if (!cond) throw new Error(msg);
}
export { assert_ as assert };

export function assertMatch(actual: string, re: RegExp, msg?: string): void {
  if (!re.test(actual)) throw new Error(msg ?? `expected ${JSON.stringify(actual)} to match ${re}`);
}

export function assertStringIncludes(actual: string, part: string, msg?: string): void {
  if (!actual.includes(part)) {
    throw new Error(msg ?? `expected ${JSON.stringify(actual)} to include ${JSON.stringify(part)}`);
  }
}

export function assertThrows(
  fn: () => unknown,
  cls: abstract new (...a: never[]) => Error = Error,
  includes?: string,
) {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof cls)) throw new Error(`expected ${cls.name}, got ${e}`);
    if (includes && !(e as Error).message.includes(includes)) {
      throw new Error(
        `expected error message to include ${JSON.stringify(includes)}, got ${
          JSON.stringify((e as Error).message)
        }`,
      );
    }
    return e as Error;
  }
  throw new Error("expected function to throw");
}

export async function assertRejects(
  fn: () => Promise<unknown>,
  cls: abstract new (...a: never[]) => Error = Error,
  includes?: string,
) {
  try {
    await fn();
  } catch (e) {
    if (!(e instanceof cls)) throw new Error(`expected ${cls.name}, got ${e}`);
    if (includes && !(e as Error).message.includes(includes)) {
      throw new Error(
        `expected error message to include ${JSON.stringify(includes)}, got ${
          JSON.stringify((e as Error).message)
        }`,
      );
    }
    return e as Error;
  }
  throw new Error("expected promise to reject");
}
