/**
 * SQL of the credits service. Every function runs on the caller's transaction `em` and
 * returns domain types: rows, column names and PostgreSQL types stay in this file.
 *
 * MikroORM inlines `?` parameters into the statement text, so bigints and dates are passed
 * as strings with an explicit cast, and no statement here contains a literal question mark.
 */
import type { EntityManager } from "@mikro-orm/postgresql";
import { toBigInt } from "@tally/platform";
import { GRANT_KIND_PRIORITY, type AllocatableGrant, type Allocation } from "../domain/allocation";
import type { Account, Grant, GrantKind, Hold, HoldStatus, LedgerEntry, LedgerEntryKind, Role } from "../domain/types";

export type Transaction = EntityManager;

type Param = string | number | bigint | boolean | Date | null;

async function query<Row>(em: Transaction, sql: string, params: Param[] = []): Promise<Row[]> {
  const prepared = params.map((p) => (typeof p === "bigint" ? p.toString() : p instanceof Date ? p.toISOString() : p));
  return em.execute<Row[]>(sql, prepared);
}

/** A PostgreSQL array literal of uuids (they contain no characters that need quoting). */
const uuidArray = (ids: readonly string[]) => `{${ids.join(",")}}`;

// ---------------------------------------------------------------- accounts

interface AccountRow {
  id: string;
  email: string;
  plan: string;
  role: Role;
  created_at: Date;
  last_login_at: Date | null;
  current_period_start: Date;
}

const ACCOUNT_COLUMNS = "id, email, plan, role, created_at, last_login_at, current_period_start";

const toAccount = (row: AccountRow): Account => ({
  id: row.id,
  email: row.email,
  plan: row.plan,
  role: row.role,
  createdAt: new Date(row.created_at),
  lastLoginAt: row.last_login_at === null ? null : new Date(row.last_login_at),
  currentPeriodStart: new Date(row.current_period_start),
});

/** Inserts an account with zero balances; its billing period starts at its creation. */
export async function insertAccount(
  em: Transaction,
  account: { id: string; email: string; passwordHash: string; plan: string; role: Role },
): Promise<Account> {
  const [row] = await query<AccountRow>(
    em,
    `INSERT INTO accounts (id, email, password_hash, plan, role, created_at, current_period_start)
     VALUES (?::uuid, ?, ?, ?, ?, now(), now()) RETURNING ${ACCOUNT_COLUMNS}`,
    [account.id, account.email, account.passwordHash, account.plan, account.role],
  );
  return toAccount(row!);
}

export async function findAccount(em: Transaction, accountId: string): Promise<Account | null> {
  const [row] = await query<AccountRow>(em, `SELECT ${ACCOUNT_COLUMNS} FROM accounts WHERE id = ?::uuid`, [accountId]);
  return row ? toAccount(row) : null;
}

export async function emailTaken(em: Transaction, email: string): Promise<boolean> {
  const rows = await query(em, "SELECT 1 FROM accounts WHERE email = ?", [email]);
  return rows.length > 0;
}

/** The password hash of an account, by id (null when there is no such account). */
export async function findPasswordHash(em: Transaction, accountId: string): Promise<string | null> {
  const [row] = await query<{ password_hash: string }>(em, "SELECT password_hash FROM accounts WHERE id = ?::uuid", [accountId]);
  return row ? row.password_hash : null;
}

/** The account and its password hash, by normalized email. */
export async function findCredentials(em: Transaction, email: string): Promise<{ account: Account; passwordHash: string } | null> {
  const [row] = await query<AccountRow & { password_hash: string }>(
    em,
    `SELECT ${ACCOUNT_COLUMNS}, password_hash FROM accounts WHERE email = ?`,
    [email],
  );
  return row ? { account: toAccount(row), passwordHash: row.password_hash } : null;
}

export async function recordLogin(em: Transaction, accountId: string): Promise<Account> {
  const [row] = await query<AccountRow>(
    em,
    `UPDATE accounts SET last_login_at = clock_timestamp() WHERE id = ?::uuid RETURNING ${ACCOUNT_COLUMNS}`,
    [accountId],
  );
  return toAccount(row!);
}

// ---------------------------------------------------------------- balances

/** The balances stored on an account row. */
export interface StoredBalances {
  available: bigint;
  held: bigint;
  captured: bigint;
  expired: bigint;
}

interface BalancesRow {
  available_credits: string;
  held_credits: string;
  captured_credits: string;
  expired_credits: string;
}

const BALANCE_COLUMNS = "available_credits, held_credits, captured_credits, expired_credits";

const toBalances = (row: BalancesRow): StoredBalances => ({
  available: toBigInt(row.available_credits),
  held: toBigInt(row.held_credits),
  captured: toBigInt(row.captured_credits),
  expired: toBigInt(row.expired_credits),
});

/**
 * Moves `amount` from available to held if, and only if, the account has that much available:
 * one atomic conditional UPDATE that also locks the account row for the rest of the
 * transaction. Null when the account is missing or short of credits.
 */
export async function reserveCredits(em: Transaction, accountId: string, amount: bigint): Promise<StoredBalances | null> {
  const [row] = await query<BalancesRow>(
    em,
    `UPDATE accounts SET available_credits = available_credits - ?::bigint, held_credits = held_credits + ?::bigint
     WHERE id = ?::uuid AND available_credits >= ?::bigint RETURNING ${BALANCE_COLUMNS}`,
    [amount, amount, accountId, amount],
  );
  return row ? toBalances(row) : null;
}

/** Adds signed changes to an account's balances (the CHECKs refuse any negative result). */
export async function changeBalances(
  em: Transaction,
  accountId: string,
  change: { available?: bigint; held?: bigint; captured?: bigint; expired?: bigint },
): Promise<StoredBalances> {
  const [row] = await query<BalancesRow>(
    em,
    `UPDATE accounts SET available_credits = available_credits + ?::bigint, held_credits = held_credits + ?::bigint,
       captured_credits = captured_credits + ?::bigint, expired_credits = expired_credits + ?::bigint
     WHERE id = ?::uuid RETURNING ${BALANCE_COLUMNS}`,
    [change.available ?? 0n, change.held ?? 0n, change.captured ?? 0n, change.expired ?? 0n, accountId],
  );
  if (!row) throw new Error(`account ${accountId} vanished inside its own transaction`);
  return toBalances(row);
}

/** Locks the account row (first in the fixed lock order: account, then hold). Null when missing. */
export async function lockAccount(em: Transaction, accountId: string): Promise<StoredBalances | null> {
  const [row] = await query<BalancesRow>(em, `SELECT ${BALANCE_COLUMNS} FROM accounts WHERE id = ?::uuid FOR UPDATE`, [accountId]);
  return row ? toBalances(row) : null;
}

export async function readStoredBalances(em: Transaction, accountId: string): Promise<StoredBalances | null> {
  const [row] = await query<BalancesRow>(em, `SELECT ${BALANCE_COLUMNS} FROM accounts WHERE id = ?::uuid`, [accountId]);
  return row ? toBalances(row) : null;
}

/** Sums of an account's grants: remaining by kind family and the total ever granted. */
export interface GrantTotals {
  trialRemaining: bigint;
  tokenRemaining: bigint;
  granted: bigint;
}

/**
 * The account's stored balances and its grant totals, read in ONE statement so that both come
 * from the same snapshot even outside a transaction (two statements at READ COMMITTED could
 * straddle a concurrent hold). Null when the account does not exist.
 */
export async function readBalanceSnapshot(
  em: Transaction,
  accountId: string,
): Promise<{ stored: StoredBalances; totals: GrantTotals } | null> {
  const [row] = await query<BalancesRow & { trial_remaining: string; purchased_remaining: string; granted: string }>(
    em,
    `SELECT a.available_credits, a.held_credits, a.captured_credits, a.expired_credits,
            coalesce(g.trial_remaining, 0) AS trial_remaining, coalesce(g.purchased_remaining, 0) AS purchased_remaining,
            coalesce(g.granted, 0) AS granted
     FROM accounts a
     LEFT JOIN LATERAL (
       SELECT sum(remaining_amount) FILTER (WHERE kind = 'trial') AS trial_remaining,
              sum(remaining_amount) FILTER (WHERE kind <> 'trial') AS purchased_remaining,
              sum(amount) AS granted
       FROM grants WHERE account_id = a.id
     ) g ON true
     WHERE a.id = ?::uuid`,
    [accountId],
  );
  if (!row) return null;
  return {
    stored: toBalances(row),
    totals: {
      trialRemaining: toBigInt(row.trial_remaining),
      tokenRemaining: toBigInt(row.purchased_remaining),
      granted: toBigInt(row.granted),
    },
  };
}

// ---------------------------------------------------------------- grants

interface GrantRow {
  id: string;
  account_id: string;
  kind: GrantKind;
  amount: string;
  remaining_amount: string;
  expires_at: Date | null;
  created_at: Date;
}

const GRANT_COLUMNS = "id, account_id, kind, amount, remaining_amount, expires_at, created_at";

const toGrant = (row: GrantRow): Grant => ({
  id: row.id,
  accountId: row.account_id,
  kind: row.kind,
  amount: toBigInt(row.amount),
  remainingAmount: toBigInt(row.remaining_amount),
  expiresAt: row.expires_at === null ? null : new Date(row.expires_at),
  createdAt: new Date(row.created_at),
});

/**
 * Inserts a grant with all of it remaining. `created_at` is the statement's clock so that two
 * grants made in one transaction still order by age.
 */
export async function insertGrant(
  em: Transaction,
  grant: { id: string; accountId: string; kind: GrantKind; amount: bigint; expiresAt: Date | null },
): Promise<Grant> {
  const [row] = await query<GrantRow>(
    em,
    `INSERT INTO grants (id, account_id, kind, priority, amount, remaining_amount, expires_at, created_at)
     VALUES (?::uuid, ?::uuid, ?, ?, ?::bigint, ?::bigint, ?::timestamptz, clock_timestamp()) RETURNING ${GRANT_COLUMNS}`,
    [grant.id, grant.accountId, grant.kind, GRANT_KIND_PRIORITY[grant.kind], grant.amount, grant.amount, grant.expiresAt],
  );
  return toGrant(row!);
}

/** Locks the account's grants that have credits left, in consumption order. */
export async function lockGrantsForConsumption(em: Transaction, accountId: string): Promise<AllocatableGrant[]> {
  const rows = await query<GrantRow>(
    em,
    `SELECT ${GRANT_COLUMNS} FROM grants WHERE account_id = ?::uuid AND remaining_amount > 0
     ORDER BY priority, expires_at NULLS LAST, created_at, id FOR UPDATE`,
    [accountId],
  );
  return rows.map(toGrant);
}

/** Adds signed `delta`s to grants' remaining amounts (the CHECKs keep 0 <= remaining <= amount). */
export async function changeGrantRemaining(em: Transaction, deltas: readonly { grantId: string; delta: bigint }[]): Promise<void> {
  if (deltas.length === 0) return;
  const values = deltas.map(() => "(?::uuid, ?::bigint)").join(", ");
  const result = await query<{ id: string }>(
    em,
    `UPDATE grants AS g SET remaining_amount = g.remaining_amount + v.delta
     FROM (VALUES ${values}) AS v (id, delta) WHERE g.id = v.id RETURNING g.id`,
    deltas.flatMap((d) => [d.grantId, d.delta]),
  );
  if (result.length !== deltas.length) throw new Error("a hold allocation names a grant that does not exist");
}

// ---------------------------------------------------------------- holds

interface HoldRow {
  id: string;
  account_id: string;
  generation_id: string;
  status: HoldStatus;
  amount: string;
  trial_amount: string;
  purchased_amount: string;
  captured_amount: string;
  expires_at: Date;
  created_at: Date;
  ended_at: Date | null;
}

const HOLD_COLUMNS =
  "id, account_id, generation_id, status, amount, trial_amount, purchased_amount, captured_amount, expires_at, created_at, ended_at";

const toHold = (row: HoldRow): Hold => ({
  id: row.id,
  accountId: row.account_id,
  generationId: row.generation_id,
  status: row.status,
  amount: toBigInt(row.amount),
  trialAmount: toBigInt(row.trial_amount),
  tokenAmount: toBigInt(row.purchased_amount),
  capturedAmount: toBigInt(row.captured_amount),
  expiresAt: new Date(row.expires_at),
  createdAt: new Date(row.created_at),
  endedAt: row.ended_at === null ? null : new Date(row.ended_at),
});

/** The hold paying for `generationId`, if any. */
export async function findHoldIdByGeneration(em: Transaction, generationId: string): Promise<string | null> {
  const [row] = await query<{ id: string }>(em, "SELECT id FROM holds WHERE generation_id = ?", [generationId]);
  return row?.id ?? null;
}

/** Inserts an active hold expiring `ttlMs` after now, with the grants it took from. */
export async function insertHold(
  em: Transaction,
  hold: { id: string; accountId: string; generationId: string; amount: bigint; trialAmount: bigint; tokenAmount: bigint; ttlMs: number },
  allocations: readonly Allocation[],
): Promise<Hold> {
  const [row] = await query<HoldRow>(
    em,
    `INSERT INTO holds (id, account_id, generation_id, status, amount, trial_amount, purchased_amount, expires_at)
     VALUES (?::uuid, ?::uuid, ?, 'active', ?::bigint, ?::bigint, ?::bigint, now() + ?::bigint * interval '1 millisecond')
     RETURNING ${HOLD_COLUMNS}`,
    [hold.id, hold.accountId, hold.generationId, hold.amount, hold.trialAmount, hold.tokenAmount, BigInt(hold.ttlMs)],
  );
  const values = allocations.map(() => "(?::uuid, ?::uuid, ?, ?::bigint)").join(", ");
  await query(
    em,
    `INSERT INTO hold_allocations (hold_id, grant_id, sequence, amount) VALUES ${values}`,
    allocations.flatMap((a, index) => [hold.id, a.grantId, index, a.amount]),
  );
  return toHold(row!);
}

/** The account a hold belongs to (no lock: the account is locked first, then the hold). */
export async function findHoldAccountId(em: Transaction, holdId: string): Promise<string | null> {
  const [row] = await query<{ account_id: string }>(em, "SELECT account_id FROM holds WHERE id = ?::uuid", [holdId]);
  return row?.account_id ?? null;
}

/** Locks a hold row (second in the fixed lock order). */
export async function lockHold(em: Transaction, holdId: string): Promise<Hold | null> {
  const [row] = await query<HoldRow>(em, `SELECT ${HOLD_COLUMNS} FROM holds WHERE id = ?::uuid FOR UPDATE`, [holdId]);
  return row ? toHold(row) : null;
}

/** The grants a hold took from, in the order it took them. */
export async function readAllocations(em: Transaction, holdId: string): Promise<Allocation[]> {
  const rows = await query<{ grant_id: string; kind: GrantKind; amount: string }>(
    em,
    `SELECT a.grant_id, g.kind, a.amount FROM hold_allocations a JOIN grants g ON g.id = a.grant_id
     WHERE a.hold_id = ?::uuid ORDER BY a.sequence`,
    [holdId],
  );
  return rows.map((r) => ({ grantId: r.grant_id, kind: r.kind, amount: toBigInt(r.amount) }));
}

/** Ends an active hold as captured, released or expired. */
export async function endHold(
  em: Transaction,
  holdId: string,
  end: { status: Exclude<HoldStatus, "active">; capturedAmount: bigint; reason: string | null },
): Promise<Hold> {
  const [row] = await query<HoldRow>(
    em,
    `UPDATE holds SET status = ?, captured_amount = ?::bigint, release_reason = ?, ended_at = clock_timestamp()
     WHERE id = ?::uuid AND status = 'active' RETURNING ${HOLD_COLUMNS}`,
    [end.status, end.capturedAmount, end.reason, holdId],
  );
  if (!row) throw new Error(`hold ${holdId} was not active under its own lock`);
  return toHold(row);
}

/** Accounts with active holds past their deadline (no lock; candidates for the sweeper). */
export async function findAccountsWithExpiredHolds(em: Transaction, limit: number): Promise<string[]> {
  const rows = await query<{ account_id: string }>(
    em,
    `SELECT DISTINCT account_id FROM (
       SELECT account_id FROM holds WHERE status = 'active' AND expires_at <= now() ORDER BY expires_at LIMIT ?
     ) AS due`,
    [limit],
  );
  return rows.map((r) => r.account_id);
}

/**
 * Locks those of `accountIds` no one else holds right now, in id order (SKIP LOCKED: a busy
 * account is swept on a later pass, and several sweepers share the work without waiting).
 */
export async function lockAccountsSkipLocked(em: Transaction, accountIds: readonly string[]): Promise<string[]> {
  if (accountIds.length === 0) return [];
  const rows = await query<{ id: string }>(
    em,
    "SELECT id FROM accounts WHERE id = ANY(?::uuid[]) ORDER BY id FOR UPDATE SKIP LOCKED",
    [uuidArray(accountIds)],
  );
  return rows.map((r) => r.id);
}

/** Locks the active holds past their deadline of accounts this transaction has locked. */
export async function lockExpiredHolds(em: Transaction, accountIds: readonly string[], limit: number): Promise<Hold[]> {
  if (accountIds.length === 0) return [];
  const rows = await query<HoldRow>(
    em,
    `SELECT ${HOLD_COLUMNS} FROM holds WHERE account_id = ANY(?::uuid[]) AND status = 'active' AND expires_at <= now()
     ORDER BY account_id, id LIMIT ? FOR UPDATE`,
    [uuidArray(accountIds), limit],
  );
  return rows.map(toHold);
}

// ---------------------------------------------------------------- ledger

interface LedgerRow {
  id: string;
  position: string;
  account_id: string;
  kind: LedgerEntryKind;
  amount: string;
  grant_kind: GrantKind | null;
  hold_id: string | null;
  generation_id: string | null;
  balance_after: string;
  held_after: string;
  created_at: Date;
}

const LEDGER_COLUMNS = "id, position, account_id, kind, amount, grant_kind, hold_id, generation_id, balance_after, held_after, created_at";

const toLedgerEntry = (row: LedgerRow): LedgerEntry & { position: bigint } => ({
  id: row.id,
  position: toBigInt(row.position),
  accountId: row.account_id,
  kind: row.kind,
  amount: toBigInt(row.amount),
  grantKind: row.grant_kind,
  holdId: row.hold_id,
  generationId: row.generation_id,
  balanceAfter: toBigInt(row.balance_after),
  heldAfter: toBigInt(row.held_after),
  createdAt: new Date(row.created_at),
});

/** A movement to record: signed balance changes and the balances after them. */
export interface NewLedgerEntry {
  id: string;
  accountId: string;
  kind: LedgerEntryKind;
  /** Signed change of available credits. */
  amount: bigint;
  heldChange: bigint;
  capturedChange: bigint;
  expiredChange: bigint;
  grantKind: GrantKind | null;
  grantId: string | null;
  holdId: string | null;
  generationId: string | null;
  reason: string | null;
  balanceAfter: bigint;
  heldAfter: bigint;
}

export async function insertLedgerEntry(em: Transaction, entry: NewLedgerEntry): Promise<void> {
  await query(
    em,
    `INSERT INTO ledger_entries (id, account_id, kind, amount, held_change, captured_change, expired_change,
       grant_kind, grant_id, hold_id, generation_id, reason, balance_after, held_after, created_at)
     VALUES (?::uuid, ?::uuid, ?, ?::bigint, ?::bigint, ?::bigint, ?::bigint, ?, ?::uuid, ?::uuid, ?, ?, ?::bigint, ?::bigint,
       clock_timestamp())`,
    [
      entry.id,
      entry.accountId,
      entry.kind,
      entry.amount,
      entry.heldChange,
      entry.capturedChange,
      entry.expiredChange,
      entry.grantKind,
      entry.grantId,
      entry.holdId,
      entry.generationId,
      entry.reason,
      entry.balanceAfter,
      entry.heldAfter,
    ],
  );
}

/** Up to `limit` entries of an account, newest first, strictly below `beforePosition` when given. */
export async function listLedgerEntries(
  em: Transaction,
  accountId: string,
  beforePosition: bigint | null,
  limit: number,
): Promise<(LedgerEntry & { position: bigint })[]> {
  const rows =
    beforePosition === null
      ? await query<LedgerRow>(
          em,
          `SELECT ${LEDGER_COLUMNS} FROM ledger_entries WHERE account_id = ?::uuid ORDER BY position DESC LIMIT ?`,
          [accountId, limit],
        )
      : await query<LedgerRow>(
          em,
          `SELECT ${LEDGER_COLUMNS} FROM ledger_entries WHERE account_id = ?::uuid AND position < ?::bigint
           ORDER BY position DESC LIMIT ?`,
          [accountId, beforePosition, limit],
        );
  return rows.map(toLedgerEntry);
}

/** Sums of an account's ledger columns: what replaying the ledger gives for each balance. */
export async function replayLedger(em: Transaction, accountId: string): Promise<StoredBalances> {
  const [row] = await query<BalancesRow>(
    em,
    `SELECT coalesce(sum(amount), 0) AS available_credits, coalesce(sum(held_change), 0) AS held_credits,
            coalesce(sum(captured_change), 0) AS captured_credits, coalesce(sum(expired_change), 0) AS expired_credits
     FROM ledger_entries WHERE account_id = ?::uuid`,
    [accountId],
  );
  return toBalances(row!);
}

/** True when a database error is a unique violation of `constraint`. */
export const isUniqueViolation = (error: unknown, constraint: string): boolean =>
  (error as { code?: string }).code === "23505" && (error as { constraint?: string }).constraint === constraint;
export const ACCOUNTS_EMAIL_KEY = "accounts_email_key";
export const HOLDS_GENERATION_ID_KEY = "holds_generation_id_key";
