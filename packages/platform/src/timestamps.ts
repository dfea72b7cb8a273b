import { validationError } from "./errors";

/** Converts a nullable database timestamp to the optional Date ts-proto expects. */
export const optionalDate = (value: Date | string | null | undefined): Date | undefined =>
  value === null || value === undefined ? undefined : new Date(value);

/** Converts a PostgreSQL int8/numeric (returned as string) or number to bigint. */
export const toBigInt = (value: string | number | bigint | null | undefined): bigint =>
  value === null || value === undefined ? 0n : BigInt(value);

/**
 * The earliest and latest times a service accepts, in milliseconds since the epoch: years 1 to
 * 9999 (UTC). Times travel to PostgreSQL as ISO 8601 text, which writes other years as
 * `+010000-…` or `-000001-…`, and PostgreSQL reads neither, nor year 0: such a time must be a
 * `validation` error before it reaches the database (INV-7), never a database error.
 */
export const TIME_MIN_MS = Date.parse("0001-01-01T00:00:00.000Z");
export const TIME_MAX_MS = Date.parse("9999-12-31T23:59:59.999Z");

/** True when `value` is a valid time within years 1 to 9999 (TIME_MIN_MS..TIME_MAX_MS). */
export const isStorableTime = (value: Date): boolean => {
  const ms = value.getTime();
  return !Number.isNaN(ms) && ms >= TIME_MIN_MS && ms <= TIME_MAX_MS;
};

/**
 * `value` when it is a time within years 1 to 9999. Throws a `validation` DomainError naming
 * `field` (details `{ field }`): "`field` is required" when it is missing or not a valid time,
 * "`field` must fall in the years 1 to 9999" otherwise.
 */
export function requireTime(value: Date | null | undefined, field: string): Date {
  if (!value || Number.isNaN(value.getTime())) throw validationError(`${field} is required`, { field });
  if (!isStorableTime(value)) throw validationError(`${field} must fall in the years 1 to 9999`, { field });
  return value;
}
