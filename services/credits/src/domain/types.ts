import type { DomainError } from "@tally/platform";
/**
 * The credits domain in the field's terms. These types are what the service layer speaks;
 * the gRPC layer maps them to and from the proto messages, the adapter layer to and from rows.
 * Credits are always `bigint` (int64): no floats for credits anywhere.
 */

export type Role = "user" | "admin";

/** A signed-up user's account, or a guest's (no email, no password; the id is the guest id). */
export type AccountKind = "user" | "guest";

/** Kinds of grant, in consumption order (see `GRANT_KIND_PRIORITY`). */
export type GrantKind = "trial" | "purchased" | "promotional";

export type HoldStatus = "active" | "captured" | "released" | "expired";

/** `write_off`: remaining credits written off when the account was deleted. */
export type LedgerEntryKind = "grant" | "hold" | "capture" | "release" | "expiry" | "adjustment" | "write_off" | "void" | "extension";

export interface Account {
  id: string;
  kind: AccountKind;
  /** Null for a guest. */
  email: string | null;
  plan: string;
  role: Role;
  /** For a guest adopted by a sign-up: the new user's account id; null otherwise. */
  adoptedBy: string | null;
  createdAt: Date;
  /** Null until the first sign-in. */
  lastLoginAt: Date | null;
  currentPeriodStart: Date;
  /** When the account was deleted (DeleteAccount); null for a live account. */
  deletedAt: Date | null;
}

/** An account's balance, in credits. */
export interface Balance {
  /** Remaining (not held) credits of trial grants. */
  trialCredits: bigint;
  /** Remaining (not held) credits of purchased and promotional grants. */
  tokenCredits: bigint;
  /** Credits set aside by active holds. */
  heldCredits: bigint;
  /** trialCredits + tokenCredits. */
  availableCredits: bigint;
}

export interface Grant {
  id: string;
  accountId: string;
  kind: GrantKind;
  amount: bigint;
  remainingAmount: bigint;
  /** Null when the grant does not expire. */
  expiresAt: Date | null;
  createdAt: Date;
  /** Consumption rank, lowest first (domain/allocation.ts). */
  priority: number;
  /** The outside reference it was granted for (e.g. a payment id), unique per account; null when none. */
  reference: string | null;
  /** When an admin voided it (its credits written off); null while it is not voided. */
  voidedAt: Date | null;
}

export interface Hold {
  id: string;
  accountId: string;
  generationId: string;
  status: HoldStatus;
  amount: bigint;
  /** Of amount, credits taken from trial grants. */
  trialAmount: bigint;
  /** Of amount, credits taken from purchased and promotional grants. */
  tokenAmount: bigint;
  /** Credits charged; 0 until captured. */
  capturedAmount: bigint;
  expiresAt: Date;
  createdAt: Date;
  /** When the hold was captured, released or expired; null while active. */
  endedAt: Date | null;
}

export interface LedgerEntry {
  id: string;
  accountId: string;
  kind: LedgerEntryKind;
  /** Signed change of the available balance. */
  amount: bigint;
  /** Null when the movement touched more than one kind of grant (or none). */
  grantKind: GrantKind | null;
  holdId: string | null;
  generationId: string | null;
  /** Available balance after this entry. */
  balanceAfter: bigint;
  /** Held credits after this entry. */
  heldAfter: bigint;
  createdAt: Date;
  /** The grant whose credits moved; null when the movement touched several grants or none. */
  grantId: string | null;
  /** Why (a release's, write-off's or void's reason); null when none. */
  reason: string | null;
  /** The hold's deadline after this entry (HOLD and EXTENSION entries); null for others. */
  holdDeadline: Date | null;
}

/** The balances stored on an account row, in credits. */
export interface StoredBalances {
  available: bigint;
  held: bigint;
  captured: bigint;
  expired: bigint;
  /** Written off by the account's deletion. */
  writtenOff: bigint;
}

/** Sums of an account's grants: remaining credits by kind family and the total ever granted. */
export interface GrantTotals {
  trialRemaining: bigint;
  tokenRemaining: bigint;
  granted: bigint;
}

/** The balances the ledger's newest entry of an account records (INV-2). */
export interface LedgerBalances {
  balanceAfter: bigint;
  heldAfter: bigint;
}

/**
 * What one balance read sees, from ONE snapshot: the stored balances, the grants' totals and
 * the newest ledger entry's balances (null when the account has no entry yet).
 */
export interface BalanceSnapshot {
  stored: StoredBalances;
  totals: GrantTotals;
  lastEntry: LedgerBalances | null;
}

/** An account with its sign-in credential (never leaves the service). */
export interface Credentials {
  account: Account;
  /** argon2id PHC string. */
  passwordHash: string;
}

/** A movement to record: signed balance changes and the balances after them (INV-2, INV-8). */
export interface NewLedgerEntry {
  id: string;
  accountId: string;
  kind: LedgerEntryKind;
  /** Signed change of available credits. */
  amount: bigint;
  heldChange: bigint;
  capturedChange: bigint;
  expiredChange: bigint;
  /** Signed change of written-off credits (WRITE_OFF entries only). */
  writtenOffChange: bigint;
  grantKind: GrantKind | null;
  grantId: string | null;
  holdId: string | null;
  generationId: string | null;
  reason: string | null;
  balanceAfter: bigint;
  heldAfter: bigint;
  /** The hold's deadline after this entry (HOLD and EXTENSION entries); absent or null for others. */
  holdDeadline?: Date | null;
}

/** A ledger entry with its keyset position (the adapter's order; never leaves the service). */
export type PositionedLedgerEntry = LedgerEntry & { position: bigint };

/** An account with its balance, as CreateAccount answers. */
export interface AccountWithBalance {
  account: Account;
  balance: Balance;
}

/** A guest's account with its balance, as EnsureGuestAccount answers; `created` by this call. */
export interface GuestAccount {
  account: Account;
  balance: Balance;
  created: boolean;
}

/** A grant with the account's balance after it, as VoidGrant answers. */
export interface GrantWithBalance {
  grant: Grant;
  balance: Balance;
}

/** CreateGrant's answer: `created` false when the request's reference named an earlier grant, which is answered. */
export interface CreatedGrant extends GrantWithBalance {
  created: boolean;
}

/** A hold with the account's balance after its movement, as CreateHold, CaptureHold and ReleaseHold answer. */
export interface HoldWithBalance {
  hold: Hold;
  balance: Balance;
}

/** One member's result in a batch call (BatchCreateHolds…): its answer, or the error its unary call would have answered. */
export type MemberResult = { ok: HoldWithBalance; error?: undefined } | { ok?: undefined; error: DomainError };

/** One page of an account's ledger, newest first. */
export interface LedgerPage {
  entries: LedgerEntry[];
  /** Empty when there is no further page. */
  nextPageToken: string;
}

/** What DeleteAccount answers. */
export interface AccountDeletion {
  /** True when this call deleted the account; false when it had been deleted before. */
  deleted: boolean;
  /** Credits written off by this call (0 when the account was deleted before). */
  writtenOffCredits: bigint;
  deletedAt: Date;
}

/** The row DeleteAccount locks: the account's kind, deletion mark and balances. */
export interface LockedAccount {
  kind: AccountKind;
  deletedAt: Date | null;
  balances: StoredBalances;
}

/**
 * One INV-2 equality that does not hold (Reconcile): `expected` is what the sources say (the
 * ledger, the grants, the holds), `actual` the stored figure checked against them, in credits.
 * `check` names the equality (docs/invariants.md, INV-2); `grantId` is set for a per-grant check.
 */
export interface ReconciliationDifference {
  check: string;
  accountId: string;
  grantId: string | null;
  expected: bigint;
  actual: bigint;
}

/** A reconciliation's answer: how many equalities fail, and the first of them (bounded). */
export interface CreditsReconciliation {
  differencesTotal: number;
  differences: ReconciliationDifference[];
}
