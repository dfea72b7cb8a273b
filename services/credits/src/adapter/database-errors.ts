import { DriverException } from "@mikro-orm/postgresql";

/** A stack frame line ("    at fn (file:1:2)"), which a line of SQL never looks like. */
const STACK_FRAME = /^\s+at .*:\d+:\d+\)?$/;

/**
 * A database error as it may be logged. MikroORM puts the whole statement, with its
 * parameters inlined, into a DriverException's message, and copies the driver's fields
 * (`detail` names the offending values): both can carry emails and password hashes. This keeps
 * only what identifies the failure: the exception's name, the SQLSTATE code and the schema
 * object involved. Anything that is not a DriverException is returned as it is.
 */
export function redactDatabaseError(error: unknown): unknown {
  if (!(error instanceof DriverException)) return error;
  const fields = error as DriverException & { constraint?: string; table?: string; column?: string; routine?: string };
  const code = fields.code ?? fields.sqlState;
  const redacted = new Error(`database error ${fields.name}${code ? ` (SQLSTATE ${code})` : ""}`);
  redacted.name = "RedactedDatabaseError";
  Object.assign(redacted, {
    driverError: fields.name,
    code,
    ...(fields.constraint ? { constraint: fields.constraint } : {}),
    ...(fields.table ? { table: fields.table } : {}),
    ...(fields.column ? { column: fields.column } : {}),
    ...(fields.routine ? { routine: fields.routine } : {}),
  });
  // The stack's first line repeats the message (the SQL): keep only the frames.
  redacted.stack = [`${redacted.name}: ${redacted.message}`, ...(error.stack ?? "").split("\n").filter((line) => STACK_FRAME.test(line))].join("\n");
  return redacted;
}
