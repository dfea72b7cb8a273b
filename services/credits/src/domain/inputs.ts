/**
 * Every request the credits service takes, checked once here: each `parse<Operation>Input`
 * turns the raw request (domain-typed, not yet checked) into a checked input or throws the
 * DomainError the caller sees (INV-7). The services take only checked inputs. The
 * `request_id` itself is checked by platform `runIdempotent` (INV-4), after these.
 */
import {
  EMAIL_LENGTH_MAX,
  hasControlCharacter,
  normalizeEmail,
  parseEmail,
  requireText,
  planNamed,
  requireUuid,
  requireUuidField,
  resolvePageSize,
  validationError,
} from "@tally/platform";
import { decodeLedgerCursor, type LedgerCursor } from "./ledger-cursor";
import {
  accountNotFound,
  BILLING_ANCHOR_EARLIEST_MS,
  couldBeStoredPassword,
  GENERATION_ID_LENGTH_MAX,
  grantNotFound,
  holdNotFound,
  RELEASE_REASON_DEFAULT,
  RELEASE_REASON_LENGTH_MAX,
  resolveHoldTtlMs,
  roleForRegistration,
  signInFailed,
  trialCreditsForPlan,
  validatePassword,
  validatePositiveAmount,
  type CreditsRules,
} from "./rules";
import { GRANT_KIND_PRIORITY } from "./allocation";
import type { GrantKind, Role } from "./types";

/** Longest grant reference (e.g. a payment id), in characters. */
export const GRANT_REFERENCE_LENGTH_MAX = 200;
/** Highest consumption priority a grant may be given (lowest is consumed first; 0 is the lowest). */
export const GRANT_PRIORITY_MAX = 1000;

/**
 * Checks an account id. Errors: `not_found` for one that is no UUID (it can name no account).
 * Returns it lower-cased, the one form ids are stored in.
 */
export const parseAccountId = (raw: string): string => requireUuid(raw, () => accountNotFound(raw));

export interface CreateAccountRequest {
  requestId: string;
  email: string;
  password: string;
  /** Empty means the default plan. */
  plan: string;
  role: Role;
  /** A guest id to adopt; empty: none. */
  adoptGuestId: string;
}

export interface CreateAccountInput {
  requestId: string;
  /** Trimmed, lower-cased and well-formed. */
  email: string;
  /** 8..256 characters without NUL. */
  password: string;
  /** A known plan (the catalogue's default plan when the request named none). */
  plan: string;
  /** Admin for an email in TALLY_ADMIN_EMAILS, else the role asked for. */
  role: Role;
  /** Credits of the trial grant the account starts with (0: none). */
  trialCredits: bigint;
  /** The guest id to adopt, lower-cased; null for none. */
  adoptGuestId: string | null;
}

/**
 * Checks a registration. Errors: `validation` for the email, the password (8..256 characters,
 * no NUL), an unknown plan (details: the known plans) or an adopt_guest_id that is no UUID, in
 * that order.
 */
export function parseCreateAccountInput(raw: CreateAccountRequest, rules: Pick<CreditsRules, "plans" | "adminEmails">): CreateAccountInput {
  const email = parseEmail(raw.email);
  validatePassword(raw.password);
  const plan = raw.plan.trim() || rules.plans.defaultPlan;
  const trialCredits = trialCreditsForPlan(plan, rules.plans);
  const adoptGuestId = raw.adoptGuestId === "" ? null : requireUuidField(raw.adoptGuestId, "adopt_guest_id");
  const role = roleForRegistration(email, raw.role, rules.adminEmails);
  return { requestId: raw.requestId, email, password: raw.password, plan, role, trialCredits, adoptGuestId };
}

/**
 * Checks a guest id: a UUID, returned lower-cased (the account id it becomes). Errors:
 * `validation` (field `guest_id`).
 */
export const parseGuestId = (raw: string): string => requireUuidField(raw, "guest_id");

export interface SetPlanRequest {
  requestId: string;
  accountId: string;
  plan: string;
}

/** A plan change naming a known plan and a UUID account id (lower-cased). */
export type SetPlanInput = SetPlanRequest;

/**
 * Checks a plan change. Errors: `validation` for an unknown plan (details: the known plans),
 * `not_found` for an account id that is no UUID.
 */
export function parseSetPlanInput(raw: SetPlanRequest, rules: Pick<CreditsRules, "plans">): SetPlanInput {
  const plan = planNamed(rules.plans, raw.plan.trim()).name;
  return { requestId: raw.requestId, accountId: parseAccountId(raw.accountId), plan };
}

export interface SetBillingAnchorRequest {
  requestId: string;
  accountId: string;
  /** The new billing anchor; null when the request named none. */
  anchor: Date | null;
}

export interface SetBillingAnchorInput {
  requestId: string;
  /** A UUID, lower-cased. */
  accountId: string;
  /** A valid instant from 1970-01-01T00:00:00Z up to now (not in the future). */
  anchor: Date;
}

/**
 * Checks a re-anchoring of a billing period. `nowMs` is the clock, in epoch milliseconds.
 * Errors: `validation` (field `anchor`) for a missing or invalid anchor, one before
 * 1970-01-01T00:00:00Z (BILLING_ANCHOR_EARLIEST_MS) or one after `nowMs`; `not_found` for an
 * account id that is no UUID. Whether the account is a user's is the service's check.
 */
export function parseSetBillingAnchorInput(raw: SetBillingAnchorRequest, nowMs = Date.now()): SetBillingAnchorInput {
  const anchorMs = raw.anchor?.getTime() ?? Number.NaN;
  if (Number.isNaN(anchorMs)) throw validationError("anchor is required (a valid time)", { field: "anchor" });
  if (anchorMs < BILLING_ANCHOR_EARLIEST_MS) {
    throw validationError(`anchor must not be before ${new Date(BILLING_ANCHOR_EARLIEST_MS).toISOString()}`, { field: "anchor" });
  }
  if (anchorMs > nowMs) throw validationError("anchor must not be in the future", { field: "anchor" });
  return { requestId: raw.requestId, accountId: parseAccountId(raw.accountId), anchor: new Date(anchorMs) };
}

export interface SetRoleRequest {
  requestId: string;
  email: string;
  role: Role;
}

/** A role change naming a normalized, well-formed email. */
export type SetRoleInput = SetRoleRequest;

/** Checks a role change. Errors: `validation` for the email. */
export const parseSetRoleInput = (raw: SetRoleRequest): SetRoleInput => ({ ...raw, email: parseEmail(raw.email) });

export interface AuthenticateRequest {
  requestId: string;
  email: string;
  password: string;
}

/** A sign-in whose email is normalized and whose credentials could match a stored account. */
export type AuthenticateInput = AuthenticateRequest;

/**
 * Checks a sign-in. Errors: `validation` for an empty email or password; `unauthenticated`
 * (the same answer as a wrong password) for input no stored account can have: an email over
 * EMAIL_LENGTH_MAX or with a control character, a password over 256 characters or with a NUL.
 * Refusing those here keeps NULs away from PostgreSQL and megabytes away from argon2.
 */
export function parseAuthenticateInput(raw: AuthenticateRequest): AuthenticateInput {
  const email = normalizeEmail(raw.email);
  if (email.length === 0) throw validationError("email is required", { field: "email" });
  if (raw.password.length === 0) throw validationError("password is required", { field: "password" });
  if (email.length > EMAIL_LENGTH_MAX || hasControlCharacter(email, "identifier") || !couldBeStoredPassword(raw.password)) {
    throw signInFailed();
  }
  return { requestId: raw.requestId, email, password: raw.password };
}

export interface CreateGrantRequest {
  requestId: string;
  accountId: string;
  kind: GrantKind;
  /** In credits. */
  amount: bigint;
  /** Null: the grant does not expire. */
  expiresAt: Date | null;
  /** An outside reference (e.g. a payment id), unique per account; "" for none. */
  reference: string;
  /** Consumption rank 0..GRANT_PRIORITY_MAX; null: the kind's (GRANT_KIND_PRIORITY). */
  priority: number | null;
}

/**
 * A grant request with an amount in 1..CREDIT_AMOUNT_MAX, a future expiry, a UUID account id,
 * its priority resolved and its reference null when none.
 */
export interface CreateGrantInput extends Omit<CreateGrantRequest, "reference" | "priority"> {
  reference: string | null;
  priority: number;
}

/**
 * Checks a grant. Errors: `validation` (amount 1..`rules.creditAmountMax`, expiry not in the
 * future), `not_found` for an account id that is no UUID.
 */
export function parseCreateGrantInput(raw: CreateGrantRequest, rules: Pick<CreditsRules, "creditAmountMax">, nowMs: number | null = Date.now()): CreateGrantInput {
  validatePositiveAmount(raw.amount, "amount", rules.creditAmountMax);
  if (nowMs !== null) requireFutureExpiry(raw.expiresAt, nowMs);
  if (raw.priority !== null && (!Number.isInteger(raw.priority) || raw.priority < 0 || raw.priority > GRANT_PRIORITY_MAX)) {
    throw validationError(`priority must be an integer 0..${GRANT_PRIORITY_MAX}`, { field: "priority" });
  }
  const reference = requireText(raw.reference, "reference", { kind: "identifier", lengthMax: GRANT_REFERENCE_LENGTH_MAX, required: false });
  const accountId = parseAccountId(raw.accountId);
  return { ...raw, accountId, reference: reference || null, priority: raw.priority ?? GRANT_KIND_PRIORITY[raw.kind] };
}

/**
 * Checks that a grant's expiry (null: none) is after `nowMs`. Errors: `validation`. The
 * service checks it inside the idempotent call, so a retry after the expiry has passed still
 * gets the first answer (INV-4).
 */
export function requireFutureExpiry(expiresAt: Date | null, nowMs: number): void {
  if (expiresAt !== null && expiresAt.getTime() <= nowMs) throw validationError("expires_at must be in the future", { field: "expires_at" });
}

export interface VoidGrantRequest {
  requestId: string;
  accountId: string;
  grantId: string;
  /** Why (kept on the VOID ledger entry); "" for none. */
  reason: string;
}

export interface VoidGrantInput extends Omit<VoidGrantRequest, "reason"> {
  reason: string | null;
}

/**
 * Checks a void. Errors: `not_found` for an account or grant id that is no UUID; `validation`
 * for a reason over RELEASE_REASON_LENGTH_MAX characters or with control characters.
 */
export function parseVoidGrantInput(raw: VoidGrantRequest): VoidGrantInput {
  const accountId = parseAccountId(raw.accountId);
  const grantId = requireUuid(raw.grantId, () => grantNotFound(raw.grantId));
  const reason = requireText(raw.reason, "reason", { kind: "text", lengthMax: RELEASE_REASON_LENGTH_MAX, required: false });
  return { requestId: raw.requestId, accountId, grantId, reason: reason || null };
}

export interface CreateHoldRequest {
  requestId: string;
  accountId: string;
  generationId: string;
  /** In credits. */
  amount: bigint;
  /** Requested time to live in milliseconds; 0 means HOLD_TTL_MS. */
  ttlMs: bigint;
}

export interface CreateHoldInput {
  requestId: string;
  accountId: string;
  generationId: string;
  amount: bigint;
  /** The time to live the hold gets (defaulted and capped), in milliseconds. */
  ttlMs: number;
  /** The time to live as asked for (part of the idempotency fingerprint), in milliseconds. */
  requestedTtlMs: bigint;
}

/**
 * Checks a hold. Errors: `validation` (generation_id 1..200 characters without control
 * characters, amount 1..CREDIT_AMOUNT_MAX, negative ttl_ms), `not_found` for an account id that
 * is no UUID.
 */
export function parseCreateHoldInput(raw: CreateHoldRequest, rules: CreditsRules): CreateHoldInput {
  requireText(raw.generationId, "generation_id", { lengthMax: GENERATION_ID_LENGTH_MAX, kind: "identifier" });
  validatePositiveAmount(raw.amount, "amount", rules.creditAmountMax);
  const ttlMs = resolveHoldTtlMs(raw.ttlMs, rules.holdTtlMs, rules.holdTtlMsMax);
  const accountId = parseAccountId(raw.accountId);
  return { requestId: raw.requestId, accountId, generationId: raw.generationId, amount: raw.amount, ttlMs, requestedTtlMs: raw.ttlMs };
}

export interface CaptureHoldRequest {
  requestId: string;
  holdId: string;
  /** Credits to charge; undefined charges the whole hold. */
  amount: bigint | undefined;
}

export interface CaptureHoldInput {
  requestId: string;
  holdId: string;
  /** Credits to charge (> 0); null charges the whole hold. */
  amount: bigint | null;
}

/** Checks a capture. Errors: `validation` (amount not > 0), `not_found` for a hold id that is no UUID. */
export function parseCaptureHoldInput(raw: CaptureHoldRequest): CaptureHoldInput {
  if (raw.amount !== undefined && raw.amount <= 0n) {
    throw validationError("amount must be greater than 0 (release the hold to charge nothing)", { field: "amount" });
  }
  const holdId = requireUuid(raw.holdId, () => holdNotFound(raw.holdId));
  return { requestId: raw.requestId, holdId, amount: raw.amount ?? null };
}

export interface ReleaseHoldRequest {
  requestId: string;
  holdId: string;
  /** Why; empty means "released". */
  reason: string;
}

export type ReleaseHoldInput = ReleaseHoldRequest;

/**
 * Checks a release. Errors: `validation` (reason over 200 characters or with a control
 * character other than tab and line breaks), `not_found` for a hold id that is no UUID.
 */
export function parseReleaseHoldInput(raw: ReleaseHoldRequest): ReleaseHoldInput {
  const reason = requireText(raw.reason.trim() || RELEASE_REASON_DEFAULT, "reason", { lengthMax: RELEASE_REASON_LENGTH_MAX, kind: "text" });
  const holdId = requireUuid(raw.holdId, () => holdNotFound(raw.holdId));
  return { requestId: raw.requestId, holdId, reason };
}

export interface ExtendHoldRequest {
  requestId: string;
  holdId: string;
  /** Requested time to live from now, in milliseconds; 0 means HOLD_TTL_MS. */
  ttlMs: bigint;
}

export interface ExtendHoldInput {
  requestId: string;
  holdId: string;
  /** The time to live the hold gets from now (defaulted and capped at HOLD_TTL_MS_MAX), in milliseconds. */
  ttlMs: number;
  /** As asked for (part of the idempotency fingerprint), in milliseconds. */
  requestedTtlMs: bigint;
}

/** Checks an extension. Errors: `validation` (ttl_ms negative), `not_found` for a hold id that is no UUID. */
export function parseExtendHoldInput(raw: ExtendHoldRequest, rules: CreditsRules): ExtendHoldInput {
  const ttlMs = resolveHoldTtlMs(raw.ttlMs, rules.holdTtlMs, rules.holdTtlMsMax);
  const holdId = requireUuid(raw.holdId, () => holdNotFound(raw.holdId));
  return { requestId: raw.requestId, holdId, ttlMs, requestedTtlMs: raw.ttlMs };
}

export interface ListLedgerEntriesRequest {
  accountId: string;
  /** 0 means 20, else 1..100. */
  pageSize: number;
  /** Empty for the first page, else a `next_page_token` this listing returned. */
  pageToken: string;
}

export interface ListLedgerEntriesInput {
  accountId: string;
  pageSize: number;
  /** Null for the first page. */
  cursor: LedgerCursor | null;
}

/**
 * Checks a ledger listing. Errors: `validation` (page size, a token not issued for this
 * account), `not_found` for an account id that is no UUID.
 */
export function parseListLedgerEntriesInput(raw: ListLedgerEntriesRequest): ListLedgerEntriesInput {
  const pageSize = resolvePageSize(raw.pageSize);
  const accountId = parseAccountId(raw.accountId);
  const cursor = raw.pageToken ? decodeLedgerCursor(raw.pageToken, accountId) : null;
  return { accountId, pageSize, cursor };
}
