// One error vocabulary for the whole program. The daemon maps a code to an HTTP status, the
// CLI maps it back from the response body and exits with the matching code (see main.ts).

export type ErrorCode =
  | "not_found"
  | "already_exists"
  | "invalid_argument"
  | "failed_precondition"
  | "unavailable"
  | "internal";

export class CedanaError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    /** Extra lines shown under the message, e.g. the `Error` lines of a CRIU log. */
    readonly details: string[] = [],
  ) {
    super(message);
    this.name = "CedanaError";
  }
}

export const HTTP_STATUS: Record<ErrorCode, 400 | 404 | 409 | 412 | 500 | 503> = {
  invalid_argument: 400,
  not_found: 404,
  already_exists: 409,
  failed_precondition: 412,
  internal: 500,
  unavailable: 503,
};

/** Exit codes of the CLI; 1 stays the generic failure so scripts can test `!= 0`. */
export const EXIT_CODE: Record<ErrorCode, number> = {
  internal: 1,
  invalid_argument: 2,
  not_found: 3,
  already_exists: 4,
  failed_precondition: 5,
  unavailable: 6,
};

const CODES = new Set(Object.keys(HTTP_STATUS));
export function isErrorCode(v: unknown): v is ErrorCode {
  return typeof v === "string" && CODES.has(v);
}

export const notFound = (msg: string) => new CedanaError("not_found", msg);
export const alreadyExists = (msg: string) => new CedanaError("already_exists", msg);
export const invalidArgument = (msg: string) => new CedanaError("invalid_argument", msg);
export const failedPrecondition = (msg: string, details: string[] = []) =>
  new CedanaError("failed_precondition", msg, details);
export const unavailable = (msg: string) => new CedanaError("unavailable", msg);
export const internal = (msg: string, details: string[] = []) => new CedanaError("internal", msg, details);

/** What an OS error says, for a user: "Read-only file system", not "... (os error 30): mkdir '/x'". */
export function osReason(e: unknown): string {
  return (e instanceof Error ? e.message : String(e)).replace(/ \(os error \d+\).*$/s, "");
}

/** Any thrown value as a CedanaError, keeping the message of unexpected errors. */
export function toCedanaError(e: unknown): CedanaError {
  if (e instanceof CedanaError) return e;
  if (e instanceof Deno.errors.NotFound) return notFound(e.message);
  if (e instanceof Deno.errors.PermissionDenied) return failedPrecondition(e.message);
  if (e instanceof Deno.errors.AlreadyExists) return alreadyExists(e.message);
  return internal(e instanceof Error ? e.message : String(e));
}

/** The CLI's one way to report an error: one line (plus CRIU's lines, if any); returns the exit code. */
export function reportError(e: unknown): number {
  const err = toCedanaError(e);
  console.error(`Error: ${err.message}`);
  for (const d of err.details) console.error(`  ${d}`);
  return EXIT_CODE[err.code];
}
