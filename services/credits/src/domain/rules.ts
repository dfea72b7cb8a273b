import { DomainError, planNamed, validationError, type PlanCatalog } from "@tally/platform";
import type { NewLedgerEntry, Role } from "./types";

/** Password length bounds, in characters (code points). */
export const PASSWORD_LENGTH_MIN = 8;
export const PASSWORD_LENGTH_MAX = 256;
/** Longest accepted generation id and release reason, in characters. */
export const GENERATION_ID_LENGTH_MAX = 200;
export const RELEASE_REASON_LENGTH_MAX = 200;

/** Reason recorded on the RELEASE entry for the uncaptured rest of a capture. */
export const CAPTURE_REST_REASON = "capture_rest";
/** Reason recorded when a release names none. */
export const RELEASE_REASON_DEFAULT = "released";
/** Reason recorded on EXPIRY entries. */
export const EXPIRY_REASON = "hold_expired";
/** The reason on the EXPIRY entry that writes off a grant's remaining credits past its `expires_at`. */
export const GRANT_EXPIRED_REASON = "grant_expired";

/** Ledger fields most movements leave at their zero value; each movement sets the ones it changes. */
export const NO_LEDGER_CHANGE = {
  heldChange: 0n,
  capturedChange: 0n,
  expiredChange: 0n,
  writtenOffChange: 0n,
  grantKind: null,
  grantId: null,
  holdId: null,
  generationId: null,
  reason: null,
} satisfies Partial<NewLedgerEntry>;

/** The configured rules of the credits service (from CreditsConfig). */
export interface CreditsRules {
  /** The plan catalogue (PLANS_FILE, TRIAL_CREDITS overriding the default plan's trial credits; docs/plans.md). */
  plans: PlanCatalog;
  /** Normalized emails whose accounts are admins from registration on (TALLY_ADMIN_EMAILS). */
  adminEmails: ReadonlySet<string>;
  /** Hold time to live when the caller gives 0, in milliseconds. */
  holdTtlMs: number;
  /** Longest hold time to live, in milliseconds; longer requests are capped. */
  holdTtlMsMax: number;
  /** Largest single grant or hold, in credits. */
  creditAmountMax: bigint;
  /** Accounts a reconciliation checks per statement (RECONCILE_BATCH_ACCOUNTS). */
  reconcileBatchAccounts: number;
  /**
   * Group commit of hold operations (CREDITS_GROUP_COMMIT_WINDOW_MS, CREDITS_GROUP_COMMIT_MAX_OPERATIONS):
   * operations arriving within `windowMs` milliseconds, at most `maxOperations`, share one
   * transaction; `windowMs` 0 (or unset) applies each on its own.
   */
  groupCommit?: { windowMs: number; maxOperations: number };
}

// PostgreSQL text cannot hold a NUL, so no password may contain one; any other character (a
// tab, an emoji, even another control character) may be part of a password, which is why the
// platform's identifier and text rules do not apply here.
const NUL = "\u0000";

/** Password length in characters (code points, so an emoji counts once). */
const passwordLength = (password: string): number => [...password].length;

/** Checks a new password's length in characters and that it has no NUL. Throws `validation`. */
export function validatePassword(password: string): void {
  if (password.includes(NUL)) throw validationError("password must not contain NUL characters", { field: "password" });
  const length = passwordLength(password);
  if (length < PASSWORD_LENGTH_MIN || length > PASSWORD_LENGTH_MAX) {
    throw validationError(`password must be ${PASSWORD_LENGTH_MIN} to ${PASSWORD_LENGTH_MAX} characters`, {
      field: "password",
    });
  }
}

/**
 * False when `password` cannot be any stored password (too long, or with a NUL), so sign-in
 * can refuse it before hashing: argon2 over megabytes would be a cheap denial of service.
 */
export const couldBeStoredPassword = (password: string): boolean =>
  !password.includes(NUL) && passwordLength(password) <= PASSWORD_LENGTH_MAX;

/**
 * Trial credits a new account of `plan` receives, from the plan catalogue. An unknown plan is
 * a `validation` error (field `plan`, details: the known plans).
 */
export const trialCreditsForPlan = (plan: string, plans: PlanCatalog): bigint => BigInt(planNamed(plans, plan).trialCredits);

/** The role of a new account: admin for an email in TALLY_ADMIN_EMAILS, else the one asked for. */
export const roleForRegistration = (email: string, requested: Role, adminEmails: ReadonlySet<string>): Role =>
  adminEmails.has(email) ? "admin" : requested;

/**
 * The hold's time to live in milliseconds: 0 means `defaultMs`; longer than `maxMs` is capped
 * to `maxMs` (HOLD_TTL_MS_MAX); negative is a `validation` error.
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

/** The error for an account that does not exist (or an id that cannot name one). */
export const accountNotFound = (accountId: string) =>
  new DomainError("not_found", "account not found", { account_id: accountId });

/**
 * The earliest billing anchor an admin may set (1970-01-01T00:00:00Z, epoch 0): billing periods
 * are computed with `Date.UTC`, which reads the years 0..99 as 1900..1999, and no account
 * predates it.
 */
export const BILLING_ANCHOR_EARLIEST_MS = 0;

/** The error for a re-anchoring of a guest's account: a guest is limited per UTC day and has no billing period to move. */
export const guestHasNoBillingAnchor = (accountId: string) =>
  new DomainError("validation", "a guest's account has no billing period to re-anchor (guests are limited per UTC day)", {
    field: "account_id",
    account_id: accountId,
  });

/** The error for an email no account is registered with (SetRole). */
export const noAccountWithEmail = () => new DomainError("not_found", "no account is registered with this email", { field: "email" });

/** The error for a hold that does not exist (or an id that cannot name one). */
/** Reason recorded on WRITE_OFF entries. */
export const ACCOUNT_DELETED_REASON = "account_deleted";

/**
 * DeleteAccount refuses an account with active holds (a generation of it is running): the
 * caller tries again once its generations have finished. `conflict` (HTTP 409).
 */
export const accountBusy = (accountId: string, activeHolds: number) =>
  new DomainError("conflict", "the account has generations in progress; delete it once they have finished", {
    account_id: accountId,
    active_holds: activeHolds,
  });

export const holdNotFound = (holdId: string) => new DomainError("not_found", "hold not found", { hold_id: holdId });

/** The error for a grant id that names no grant of the account. */
export const grantNotFound = (grantId: string) => new DomainError("not_found", "grant not found", { grant_id: grantId });

/** The error for voiding a grant of which something was held, spent or expired: only an unused grant is voided whole. */
export const grantInUse = (grantId: string, amount: bigint, remaining: bigint) =>
  new DomainError("conflict", "only an unused grant can be voided: part of this one was held, spent or expired", {
    grant_id: grantId,
    amount: Number(amount),
    remaining_amount: Number(remaining),
  });

/** The error for a reference that names an earlier grant of the account with other terms (INV-4: one payment, one grant). */
export const grantReferenceConflict = (reference: string, grantId: string) =>
  new DomainError("conflict", "this reference names an earlier grant of the account with other terms", { reference, grant_id: grantId });

/** The error for a second hold of one generation (INV-3: one hold per generation). */
export const generationConflict = (generationId: string) =>
  new DomainError("conflict", "this generation already has a hold", { generation_id: generationId });

/** The error for a registration with an email already taken. */
export const emailConflict = () => new DomainError("conflict", "an account with this email already exists", { field: "email" });

/** The one answer to a failed sign-in, alike for an unknown email and a wrong password. */
export const signInFailed = () => new DomainError("unauthenticated", "email or password is wrong");

/** INV-4: a replayed request_id whose first answer must not be handed to this caller. */
export const requestIdReused = (requestId: string) =>
  new DomainError("idempotency_key_reused", "this request_id was already used with different parameters", { request_id: requestId });

/** The error for a guest id that names a user's account or a guest adopted by a sign-up. */
export const guestIdNotUsable = () => new DomainError("unauthenticated", "this guest id can no longer be used; sign in instead");

/** How long a shed caller should wait before retrying, in seconds (details `retry_after_seconds`). */
export const RETRY_AFTER_SECONDS = 1;

/** Load shedding: every password-hashing slot and queue place is taken. */
export const passwordHashingSaturated = () =>
  new DomainError("unavailable", "too many sign-ups and sign-ins at once; retry shortly", { retry_after_seconds: RETRY_AFTER_SECONDS });

/** The caller's deadline passed before the effect: nothing was done, and a retry is safe. */
export const deadlinePassed = () =>
  new DomainError("unavailable", "the request's deadline passed before it could be done; nothing was changed", {
    retry_after_seconds: RETRY_AFTER_SECONDS,
  });

/**
 * A sign-up or sign-in starts its transaction only with at least this much of the caller's
 * deadline left, in milliseconds: the time its short transaction needs, so that its effect
 * never lands after the caller already gave up (a deadline expiry after the effect).
 */
export const EFFECT_TIME_RESERVE_MS = 100;

/** Throws `unavailable` (`deadlinePassed`) when less than EFFECT_TIME_RESERVE_MS is left before `deadlineMs` (epoch ms; Infinity: none). */
export function requireTimeForEffect(deadlineMs: number, nowMs = Date.now()): void {
  if (deadlineMs - nowMs < EFFECT_TIME_RESERVE_MS) throw deadlinePassed();
}
