/**
 * The stores the credits rules need, in domain terms. The adapter implements them in SQL
 * (`src/adapter/*-store.ts`); a `CreditsUnitOfWork` binds them to one transaction, or to none
 * for plain reads. Every method runs on the transaction its store is bound to.
 */
import type { IdempotencyStore, UnitOfWork } from "@tally/platform";
import type { AllocatableGrant, Allocation } from "./allocation";
import type {
  Account,
  Balance,
  BalanceSnapshot,
  CreditsReconciliation,
  Credentials,
  Grant,
  GrantKind,
  Hold,
  HoldWithBalance,
  LockedAccount,
  HoldStatus,
  NewLedgerEntry,
  PositionedLedgerEntry,
  Role,
  StoredBalances,
} from "./types";

/** A signed change of each stored balance (absent: no change). */
export interface BalanceChange {
  available?: bigint;
  held?: bigint;
  captured?: bigint;
  expired?: bigint;
  writtenOff?: bigint;
}

export interface AccountStore {
  /**
   * Inserts an account with zero balances; its billing period starts at its creation. Throws
   * `conflict` (`emailConflict`) when the email is taken.
   */
  insert(account: { id: string; email: string; passwordHash: string; plan: string; role: Role }): Promise<Account>;
  /**
   * Inserts a guest's account (no email, no password) with zero balances, unless an account
   * with this id exists (then null: waits for a racing insert of the id to commit first).
   */
  insertGuest(guest: { id: string; plan: string }): Promise<Account | null>;
  /** Marks a guest adopted by `userId` if it is a guest not yet adopted; false otherwise. */
  adoptGuest(guestId: string, userId: string): Promise<boolean>;
  /** Sets an account's plan; null when there is no such account. */
  setPlan(accountId: string, plan: string): Promise<Account | null>;
  /**
   * Sets a user's billing anchor (`current_period_start`); null when there is no user's account
   * with this id (none at all, or a guest's).
   */
  setBillingAnchor(accountId: string, anchor: Date): Promise<Account | null>;
  /** Sets the role of the account with this normalized email; null when there is none. */
  setRoleByEmail(email: string, role: Role): Promise<Account | null>;
  find(accountId: string): Promise<Account | null>;
  emailTaken(email: string): Promise<boolean>;
  /** The password hash of an account, by id (null when there is no such account). */
  findPasswordHash(accountId: string): Promise<string | null>;
  /** A user's account and its password hash, by normalized email (guests have none). */
  findCredentials(email: string): Promise<Credentials | null>;
  /** Sets `last_login_at` to now and returns the account. */
  recordLogin(accountId: string): Promise<Account>;
  /** Adds signed changes to the balances (the schema refuses any negative result) and returns them. */
  changeBalances(accountId: string, change: BalanceChange): Promise<StoredBalances>;
  /** Locks the account row (first in the lock order of INV-9). Null when missing. */
  lock(accountId: string): Promise<StoredBalances | null>;
  /**
   * Locks an account row for its deletion (INV-9: account first) and reads its kind, deletion
   * mark and balances; null when there is no account with this id.
   */
  lockForDeletion(accountId: string): Promise<LockedAccount | null>;
  /**
   * Marks a locked, live user's account deleted now and erases its email and password hash
   * (the schema's CHECK refuses a deleted account that keeps either). Returns the deletion time.
   */
  markDeleted(accountId: string): Promise<Date>;
  /**
   * Forgets the stored idempotent answers that carry the account (with its email): those of
   * CreateAccount, Authenticate, SetPlan, SetBillingAnchor and SetRole (erasure; a retry of
   * such a key runs anew). Returns how many.
   */
  forgetStoredAnswers(accountId: string): Promise<number>;
  /** Locks those of `accountIds` nobody holds now, in id order (SKIP LOCKED); returns them. */
  lockSkipLocked(accountIds: readonly string[]): Promise<string[]>;
}

/** A grant to insert; `priority` null or absent: its kind's (GRANT_KIND_PRIORITY); `reference` null or absent: none. */
export interface NewGrant {
  id: string;
  accountId: string;
  kind: GrantKind;
  amount: bigint;
  expiresAt: Date | null;
  priority?: number | null;
  reference?: string | null;
}

export interface GrantStore {
  /** Inserts a grant with all of it remaining. */
  insert(grant: NewGrant): Promise<Grant>;
  /** The account's grant made for `reference`, if any. */
  findByReference(accountId: string, reference: string): Promise<Grant | null>;
  /** Locks one grant of the account; null when the account has no such grant. */
  lockOne(accountId: string, grantId: string): Promise<Grant | null>;
  /** Marks a locked, unused grant voided: nothing of it remains (the caller writes the VOID entry). */
  markVoided(grantId: string): Promise<Grant>;
  /** Whether the account has a grant past its expiry at `now` with credits left (no lock). */
  hasDue(accountId: string, now: Date): Promise<boolean>;
  /** Locks the account's grants past their expiry at `now` with credits left (the caller holds the account's lock, INV-9). */
  lockDue(accountId: string, now: Date): Promise<Grant[]>;
  /** Accounts with grants past their expiry at `now` and credits left, the earliest due first, at most `limit`. */
  findAccountsWithDue(now: Date, limit: number): Promise<string[]>;
  /** Locks the account's grants that have credits left, in consumption order. */
  lockForConsumption(accountId: string): Promise<AllocatableGrant[]>;
  /** Locks the account's grants that have credits left (any order), for a write-off. */
  lockRemaining(accountId: string): Promise<Grant[]>;
  /** Adds signed `delta`s to grants' remaining credits (the schema keeps 0 <= remaining <= amount). */
  changeRemaining(deltas: readonly { grantId: string; delta: bigint }[]): Promise<void>;
}

export interface HoldStore {
  // Creating, capturing, releasing and extending a hold: HoldOperationStore (one statement).
  /** The grants a hold took from, in the order it took them. */
  readAllocations(holdId: string): Promise<Allocation[]>;
  /** Ends an active hold (locked by this transaction) as captured, released or expired. */
  end(holdId: string, end: { status: Exclude<HoldStatus, "active">; capturedAmount: bigint; reason: string | null }): Promise<Hold>;
  /** How many active holds the account has. */
  countActive(accountId: string): Promise<number>;
  /** Accounts with active holds past their deadline, at most `limit` holds' worth (no lock). */
  findAccountsWithExpired(limit: number): Promise<string[]>;
  /** Locks up to `limit` active holds past their deadline of `accountIds` (already locked). */
  lockExpired(accountIds: readonly string[], limit: number): Promise<Hold[]>;
}

export interface LedgerStore {
  /** Appends an entry; entries are never changed or deleted (INV-8). */
  insert(entry: NewLedgerEntry): Promise<void>;
  /** Up to `limit` entries of an account, newest first, strictly below `beforePosition` when given. */
  list(accountId: string, beforePosition: bigint | null, limit: number): Promise<PositionedLedgerEntry[]>;
  /**
   * The stored balances, the grants' totals and the newest ledger entry's balances of an
   * account, read in ONE statement (one snapshot even outside a transaction). Null when the
   * account does not exist.
   */
  readBalanceSnapshot(accountId: string): Promise<BalanceSnapshot | null>;
  /**
   * The account's balance as it stood at `at`, replayed from what is recorded: grants made by
   * then, less what holds made by then took from them (given back by releases, expiries and the
   * uncharged rest of captures ended by then), less what expiries, write-offs and voids took by
   * then; held = holds made by then and not yet ended. Null when the account does not exist.
   */
  readBalanceAt(accountId: string, at: Date): Promise<Balance | null>;
}

/** Events about accounts, written to the outbox in the caller's transaction (INV-5, producer half). */
export interface AccountEventStore {
  /** Appends an `account.deleted` event (events.proto AccountDeleted) with a new event id. */
  appendAccountDeleted(event: { accountId: string; occurredAt: Date }): Promise<void>;
}

/** One batch of accounts reconciled: its differences and where the next batch starts. */
export interface ReconciliationBatch extends CreditsReconciliation {
  /** The batch's last account id (the next batch starts after it); null when the batch was empty (no accounts left). */
  lastAccountId: string | null;
}

/** INV-2 checked over every account and grant (Reconcile), a batch of accounts at a time. */
export interface ReconciliationStore {
  /**
   * Every equality of INV-2 that fails for the next `batchSize` accounts by id after
   * `afterAccountId` (from the first when null) and their grants, read in ONE statement (one
   * snapshot): the batch's total, its first `limit` differences by account, grant and check,
   * and its last account id.
   */
  differencesOfBatch(afterAccountId: string | null, batchSize: number, limit: number): Promise<ReconciliationBatch>;
}

/** One hold operation as the database applies it (inputs already checked by domain/inputs.ts). */
export type HoldOperation =
  | { operation: "CreateHold"; requestId: string; fingerprint: string; accountId: string; generationId: string; amount: bigint; ttlMs: number }
  | { operation: "CaptureHold"; requestId: string; fingerprint: string; holdId: string; amount: bigint | null }
  | { operation: "ReleaseHold"; requestId: string; fingerprint: string; holdId: string; reason: string }
  | { operation: "ExtendHold"; requestId: string; fingerprint: string; holdId: string; ttlMs: number };

/** The stored balances that INV-2 is asserted on, as one member's statement read them. */
export interface HoldOutcomeSnapshot {
  storedAvailable: bigint;
  /** available + held + captured + expired + written off. */
  storedTotal: bigint;
  granted: bigint;
  lastBalanceAfter: bigint | null;
  lastHeldAfter: bigint | null;
}

/**
 * What the database answered for one hold operation: applied now (`ok`, with the snapshot INV-2
 * is asserted on), the stored first answer of its request id (`replayed`; `legacyAnswer` when
 * it was stored whole by an earlier version), or an expected failure with what its error needs.
 */
export type HoldOutcome =
  | { outcome: "ok"; answer: HoldWithBalance & { extended: boolean }; snapshot: HoldOutcomeSnapshot }
  | { outcome: "replayed"; answer: (HoldWithBalance & { extended: boolean }) | null; legacyAnswer: Uint8Array | null }
  | { outcome: "insufficient_credits"; requested: bigint; available: bigint }
  | { outcome: "hold_not_active"; holdId: string; status: string }
  | { outcome: "validation"; held: bigint; requested: bigint }
  | { outcome: "not_found" | "conflict" | "idempotency_key_reused" };

/** Context every member of a batch shares: the clock grant expiry is decided by, and the ledger reasons. */
export interface HoldBatchContext {
  now: Date;
  captureRestReason: string;
  grantExpiredReason: string;
}

/**
 * Hold operations applied in the database, ONE statement for any number of them (one
 * transaction when run outside one): each member claims its idempotency key (INV-4), moves the
 * balance conditionally (INV-1), writes its ledger entries with the balances after (INV-2),
 * locking account before hold (INV-9), members sorted by account. One outcome per member, in
 * the order given. Throws only for an unexpected database error (the whole batch rolled back).
 */
export interface HoldOperationStore {
  apply(operations: readonly HoldOperation[], context: HoldBatchContext): Promise<HoldOutcome[]>;
}

export interface CreditsStores {
  holdOperations: HoldOperationStore;
  accounts: AccountStore;
  grants: GrantStore;
  holds: HoldStore;
  ledger: LedgerStore;
  reconciliation: ReconciliationStore;
  accountEvents: AccountEventStore;
  idempotency: IdempotencyStore;
}

export type CreditsUnitOfWork = UnitOfWork<CreditsStores>;
