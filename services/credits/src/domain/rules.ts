import { DomainError, validationError } from "@tally/platform";
import type { GrantKind, Role } from "./types";

/** Longest accepted email address, in characters (RFC 5321 path limit). */
export const EMAIL_LENGTH_MAX = 254;
/** Password length bounds, in characters (requirements: 8..256). */
export const PASSWORD_LENGTH_MIN = 8;
export const PASSWORD_LENGTH_MAX = 256;
/** Longest accepted generation id and release reason, in characters. */
export const GENERATION_ID_LENGTH_MAX = 200;
export const RELEASE_REASON_LENGTH_MAX = 200;
/** Ledger page sizes (proto: 1..100, 0 means 20). */
export const LEDGER_PAGE_SIZE_DEFAULT = 20;
export const LEDGER_PAGE_SIZE_MAX = 100;

// Deliberately simple: one "@", no spaces, a dot in the domain. Deliverability is proven by
// sending mail, not by a regular expression.
const EMAIL_PATTERN = /^[^\s@]+@[^\s@.]+(\.[^\s@.]+)+$/;
/** C0 control characters and DEL: never part of an email or an identifier. */
const CONTROL_CHARACTER = /[\u0000-\u001f\u007f]/;

/** True when `value` contains a NUL character (PostgreSQL text cannot store one). */
export const containsNul = (value: string): boolean => value.includes("\u0000");

/**
 * Trims and lower-cases an email and checks its shape. Throws `validation` for an empty,
 * too long or malformed address, or one with a control character (NUL included).
 */
export function normalizeEmail(email: string): string {
  const normalized = email.trim().toLowerCase();
  if (normalized.length === 0) throw validationError("email is required", { field: "email" });
  if (normalized.length > EMAIL_LENGTH_MAX) {
    throw validationError(`email must be at most ${EMAIL_LENGTH_MAX} characters`, { field: "email" });
  }
  if (CONTROL_CHARACTER.test(normalized)) throw validationError("email must not contain control characters", { field: "email" });
  if (!EMAIL_PATTERN.test(normalized)) throw validationError("email is not a valid address", { field: "email" });
  return normalized;
}

/** Checks a new password's length in characters (code points) and that it has no NUL. Throws `validation`. */
export function validatePassword(password: string): void {
  if (containsNul(password)) throw validationError("password must not contain NUL characters", { field: "password" });
  const length = [...password].length;
  if (length < PASSWORD_LENGTH_MIN || length > PASSWORD_LENGTH_MAX) {
    throw validationError(`password must be ${PASSWORD_LENGTH_MIN} to ${PASSWORD_LENGTH_MAX} characters`, {
      field: "password",
    });
  }
}

/**
 * Trial credits a new account of `plan` receives: the plan's entry in `planTrialCredits`,
 * else `defaultPlanTrialCredits` for the default plan. An unknown plan is a `validation` error.
 */
export function trialCreditsForPlan(
  plan: string,
  plans: { defaultPlan: string; defaultPlanTrialCredits: number; planTrialCredits: Record<string, number> },
): bigint {
  const configured = plans.planTrialCredits[plan];
  if (configured !== undefined) return BigInt(configured);
  if (plan === plans.defaultPlan) return BigInt(plans.defaultPlanTrialCredits);
  const known = [...new Set([plans.defaultPlan, ...Object.keys(plans.planTrialCredits)])].sort();
  throw validationError(`unknown plan "${plan}"`, { field: "plan", known_plans: known });
}

/**
 * The hold's time to live in milliseconds: 0 means `defaultMs`; longer than `maxMs` is capped
 * to `maxMs` (requirements: "capped by HOLD_TTL_MS_MAX"); negative is a `validation` error.
 */
export function resolveHoldTtlMs(requestedMs: bigint, defaultMs: number, maxMs: number): number {
  if (requestedMs < 0n) throw validationError("ttl_ms must not be negative", { field: "ttl_ms" });
  if (requestedMs === 0n) return Math.min(defaultMs, maxMs);
  return requestedMs > BigInt(maxMs) ? maxMs : Number(requestedMs);
}

/** Checks a credit amount is in 1..`max`. Throws `validation` naming `field`. */
export function validatePositiveAmount(amount: bigint, field: string, max: bigint): void {
  if (amount <= 0n) throw validationError(`${field} must be greater than 0`, { field });
  if (amount > max) throw validationError(`${field} must be at most ${max}`, { field, max });
}

/** A ledger page size: 0 means the default, otherwise 1..max. Throws `validation`. */
export function resolveLedgerPageSize(pageSize: number): number {
  if (pageSize === 0) return LEDGER_PAGE_SIZE_DEFAULT;
  if (!Number.isInteger(pageSize) || pageSize < 1 || pageSize > LEDGER_PAGE_SIZE_MAX) {
    throw validationError(`page_size must be 1..${LEDGER_PAGE_SIZE_MAX} (0 means ${LEDGER_PAGE_SIZE_DEFAULT})`, {
      field: "page_size",
    });
  }
  return pageSize;
}

/**
 * Checks a non-empty identifier-like string (e.g. a generation id) of at most `max` characters
 * without control characters.
 */
export function validateRequiredText(value: string, field: string, max: number): void {
  if (value.length === 0) throw validationError(`${field} is required`, { field });
  if (value.length > max) throw validationError(`${field} must be at most ${max} characters`, { field });
  if (CONTROL_CHARACTER.test(value)) throw validationError(`${field} must not contain control characters`, { field });
}

/** The error for an account that does not exist (or an id that cannot name one). */
export const accountNotFound = (accountId: string) =>
  new DomainError("not_found", "account not found", { account_id: accountId });

/** The error for a hold that does not exist (or an id that cannot name one). */
export const holdNotFound = (holdId: string) => new DomainError("not_found", "hold not found", { hold_id: holdId });

/** Grant kinds a caller may create; also the set stored in the database. */
export const GRANT_KINDS: readonly GrantKind[] = ["trial", "purchased", "promotional"];
export const ROLES: readonly Role[] = ["user", "admin"];
