/**
 * Classifying and redacting PostgreSQL errors, once for every service. Works on the shape of
 * the error (MikroORM's DriverException and pg's DatabaseError both carry the SQLSTATE), so it
 * needs no ORM import.
 */

/** A SQLSTATE: five digits or upper-case letters. */
const SQL_STATE = /^[0-9A-Z]{5}$/;

/** The SQLSTATE of a database error (`sqlState` on MikroORM's exceptions, `code` on pg's), else undefined. */
export function sqlStateOf(error: unknown): string | undefined {
  if (typeof error !== "object" || error === null) return undefined;
  const { sqlState, code } = error as { sqlState?: unknown; code?: unknown };
  for (const candidate of [sqlState, code]) if (typeof candidate === "string" && SQL_STATE.test(candidate)) return candidate;
  return undefined;
}

/** True for an error raised by the database driver (MikroORM `*Exception`, pg `DatabaseError`, or anything with a SQLSTATE). */
export function isDatabaseError(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  return /Exception$/.test(error.name) || error.name === "DatabaseError" || sqlStateOf(error) !== undefined;
}

/** True when `error` is a unique violation (23505) of the constraint named `constraint`. */
export const isUniqueViolation = (error: unknown, constraint: string): boolean =>
  sqlStateOf(error) === "23505" && (error as { constraint?: unknown }).constraint === constraint;

/**
 * True for errors PostgreSQL raises again however often the same statement is retried: data
 * exceptions (class 22, e.g. a value out of range) and check violations (23514).
 */
export function isPermanentDatabaseError(error: unknown): boolean {
  const state = sqlStateOf(error);
  return state !== undefined && (state.startsWith("22") || state === "23514");
}

/**
 * What of an error may be logged. A database error's message and detail carry the statement
 * with its parameters (emails, password hashes, prompts), so for those only the type, the
 * SQLSTATE and the schema object involved are kept; other errors keep their message and stack.
 * The platform logger serializes every `err` field through this.
 */
export function describeError(error: unknown): Record<string, unknown> {
  if (!(error instanceof Error)) return { type: typeof error };
  if (isDatabaseError(error)) {
    const fields = error as { constraint?: unknown; table?: unknown; column?: unknown; routine?: unknown };
    return {
      type: error.name,
      sql_state: sqlStateOf(error),
      constraint: fields.constraint,
      table: fields.table,
      column: fields.column,
      routine: fields.routine,
    };
  }
  return { type: error.name, message: error.message, stack: error.stack };
}
