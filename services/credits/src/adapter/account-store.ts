/**
 * Accounts in SQL: the row, its credential and its stored balances. Balances change only
 * through the atomic UPDATEs here (INV-1); the schema's CHECKs refuse a negative balance even
 * for a bug.
 */
import assert from "node:assert/strict";
import { FORGET_ANSWERS_MENTIONING_SQL, isUniqueViolation, textArrayLiteral, toBigInt, type Sql } from "@tally/platform";
import type { AccountStore, BalanceChange } from "../domain/ports";
import { emailConflict } from "../domain/rules";
import type { Account, AccountKind, Credentials, LockedAccount, Role, StoredBalances } from "../domain/types";

interface AccountRow {
  id: string;
  kind: AccountKind;
  email: string | null;
  plan: string;
  role: Role;
  adopted_by: string | null;
  created_at: Date;
  last_login_at: Date | null;
  current_period_start: Date;
  deleted_at: Date | null;
}

const ACCOUNT_COLUMNS = "id, kind, email, plan, role, adopted_by, created_at, last_login_at, current_period_start, deleted_at";

const toAccount = (row: AccountRow): Account => ({
  id: row.id,
  kind: row.kind,
  email: row.email,
  plan: row.plan,
  role: row.role,
  adoptedBy: row.adopted_by,
  createdAt: new Date(row.created_at),
  lastLoginAt: row.last_login_at === null ? null : new Date(row.last_login_at),
  currentPeriodStart: new Date(row.current_period_start),
  deletedAt: row.deleted_at === null ? null : new Date(row.deleted_at),
});

/** The stored balance columns, as PostgreSQL returns int8 (decimal strings). */
export interface BalancesRow {
  available_credits: string;
  held_credits: string;
  captured_credits: string;
  expired_credits: string;
  written_off_credits: string;
}

export const BALANCE_COLUMNS = "available_credits, held_credits, captured_credits, expired_credits, written_off_credits";

export const toBalances = (row: BalancesRow): StoredBalances => ({
  available: toBigInt(row.available_credits),
  held: toBigInt(row.held_credits),
  captured: toBigInt(row.captured_credits),
  expired: toBigInt(row.expired_credits),
  writtenOff: toBigInt(row.written_off_credits),
});

/** A PostgreSQL array literal of uuids (they contain no characters that need quoting). */
export const uuidArray = (ids: readonly string[]) => `{${ids.join(",")}}`;

/** The unique index that makes an email belong to one account. */
const ACCOUNTS_EMAIL_KEY = "accounts_email_key";

export class SqlAccountStore implements AccountStore {
  constructor(private readonly sql: Sql) {}

  async insert(account: { id: string; email: string; passwordHash: string; plan: string; role: Role }): Promise<Account> {
    const row = await this.sql
      .one<AccountRow>(
        `INSERT INTO accounts (id, email, password_hash, plan, role, created_at, current_period_start)
         VALUES (?::uuid, ?, ?, ?, ?, now(), now()) RETURNING ${ACCOUNT_COLUMNS}`,
        [account.id, account.email, account.passwordHash, account.plan, account.role],
      )
      .catch((error: unknown) => {
        // Two registrations of one email racing: the unique index decides, the loser gets conflict.
        throw isUniqueViolation(error, ACCOUNTS_EMAIL_KEY) ? emailConflict() : error;
      });
    assert.ok(row, "INSERT … RETURNING returns the inserted account");
    return toAccount(row);
  }

  async insertGuest(guest: { id: string; plan: string }): Promise<Account | null> {
    // ON CONFLICT waits for a concurrent insert of the same id to commit, then does nothing:
    // of any number of racing calls exactly one creates the guest (and grants its trial).
    const row = await this.sql.one<AccountRow>(
      `INSERT INTO accounts (id, kind, plan, role, created_at, current_period_start)
       VALUES (?::uuid, 'guest', ?, 'user', now(), now()) ON CONFLICT (id) DO NOTHING RETURNING ${ACCOUNT_COLUMNS}`,
      [guest.id, guest.plan],
    );
    return row ? toAccount(row) : null;
  }

  async adoptGuest(guestId: string, userId: string): Promise<boolean> {
    const row = await this.sql.one(
      "UPDATE accounts SET adopted_by = ?::uuid WHERE id = ?::uuid AND kind = 'guest' AND adopted_by IS NULL RETURNING id",
      [userId, guestId],
    );
    return row !== null;
  }

  async setPlan(accountId: string, plan: string): Promise<Account | null> {
    const row = await this.sql.one<AccountRow>(`UPDATE accounts SET plan = ? WHERE id = ?::uuid AND deleted_at IS NULL RETURNING ${ACCOUNT_COLUMNS}`, [plan, accountId]);
    return row ? toAccount(row) : null;
  }

  async setBillingAnchor(accountId: string, anchor: Date): Promise<Account | null> {
    const row = await this.sql.one<AccountRow>(
      `UPDATE accounts SET current_period_start = ?::timestamptz WHERE id = ?::uuid AND kind = 'user' AND deleted_at IS NULL RETURNING ${ACCOUNT_COLUMNS}`,
      [anchor, accountId],
    );
    return row ? toAccount(row) : null;
  }

  async setRoleByEmail(email: string, role: Role): Promise<Account | null> {
    const row = await this.sql.one<AccountRow>(`UPDATE accounts SET role = ? WHERE email = ? RETURNING ${ACCOUNT_COLUMNS}`, [role, email]);
    return row ? toAccount(row) : null;
  }

  async find(accountId: string): Promise<Account | null> {
    const row = await this.sql.one<AccountRow>(`SELECT ${ACCOUNT_COLUMNS} FROM accounts WHERE id = ?::uuid`, [accountId]);
    return row ? toAccount(row) : null;
  }

  async emailTaken(email: string): Promise<boolean> {
    return (await this.sql.one("SELECT 1 FROM accounts WHERE email = ?", [email])) !== null;
  }

  async findPasswordHash(accountId: string): Promise<string | null> {
    const row = await this.sql.one<{ password_hash: string | null }>("SELECT password_hash FROM accounts WHERE id = ?::uuid", [accountId]);
    return row?.password_hash ?? null;
  }

  async findCredentials(email: string): Promise<Credentials | null> {
    // Only users have credentials (the schema's CHECK: a user always has both).
    const row = await this.sql.one<AccountRow & { password_hash: string }>(
      `SELECT ${ACCOUNT_COLUMNS}, password_hash FROM accounts WHERE email = ? AND kind = 'user'`,
      [email],
    );
    return row ? { account: toAccount(row), passwordHash: row.password_hash } : null;
  }

  async recordLogin(accountId: string): Promise<Account> {
    const row = await this.sql.one<AccountRow>(
      `UPDATE accounts SET last_login_at = clock_timestamp() WHERE id = ?::uuid RETURNING ${ACCOUNT_COLUMNS}`,
      [accountId],
    );
    assert.ok(row, "accounts are never deleted: a signed-in account still exists");
    return toAccount(row);
  }

  async changeBalances(accountId: string, change: BalanceChange): Promise<StoredBalances> {
    const row = await this.sql.one<BalancesRow>(
      `UPDATE accounts SET available_credits = available_credits + ?::bigint, held_credits = held_credits + ?::bigint,
         captured_credits = captured_credits + ?::bigint, expired_credits = expired_credits + ?::bigint,
         written_off_credits = written_off_credits + ?::bigint
       WHERE id = ?::uuid RETURNING ${BALANCE_COLUMNS}`,
      [change.available ?? 0n, change.held ?? 0n, change.captured ?? 0n, change.expired ?? 0n, change.writtenOff ?? 0n, accountId],
    );
    assert.ok(row, `INV-2: account ${accountId} cannot vanish inside its own movement (accounts are never deleted)`);
    return toBalances(row);
  }

  /** A deleted account is not locked for a movement: it answers null, as a missing one. */
  async lock(accountId: string): Promise<StoredBalances | null> {
    const row = await this.sql.one<BalancesRow>(`SELECT ${BALANCE_COLUMNS} FROM accounts WHERE id = ?::uuid AND deleted_at IS NULL FOR UPDATE`, [accountId]);
    return row ? toBalances(row) : null;
  }

  async lockForDeletion(accountId: string): Promise<LockedAccount | null> {
    const row = await this.sql.one<BalancesRow & { kind: AccountKind; deleted_at: Date | null }>(
      `SELECT kind, deleted_at, ${BALANCE_COLUMNS} FROM accounts WHERE id = ?::uuid FOR UPDATE`,
      [accountId],
    );
    if (!row) return null;
    return { kind: row.kind, deletedAt: row.deleted_at === null ? null : new Date(row.deleted_at), balances: toBalances(row) };
  }

  async markDeleted(accountId: string): Promise<Date> {
    const row = await this.sql.one<{ deleted_at: Date }>(
      `UPDATE accounts SET deleted_at = clock_timestamp(), email = NULL, password_hash = NULL
       WHERE id = ?::uuid AND kind = 'user' AND deleted_at IS NULL RETURNING deleted_at`,
      [accountId],
    );
    assert.ok(row, `account ${accountId} is a live user's, locked by this transaction, so it is deleted exactly once`);
    return new Date(row.deleted_at);
  }

  async forgetStoredAnswers(accountId: string): Promise<number> {
    const operations = textArrayLiteral(["CreateAccount", "Authenticate", "SetPlan", "SetBillingAnchor", "SetRole"]);
    const rows = await this.sql.query<{ request_id: string }>(`${FORGET_ANSWERS_MENTIONING_SQL} RETURNING request_id`, [operations, accountId]);
    return rows.length;
  }

  async lockSkipLocked(accountIds: readonly string[]): Promise<string[]> {
    if (accountIds.length === 0) return [];
    const rows = await this.sql.query<{ id: string }>(
      "SELECT id FROM accounts WHERE id = ANY(?::uuid[]) ORDER BY id FOR UPDATE SKIP LOCKED",
      [uuidArray(accountIds)],
    );
    return rows.map((r) => r.id);
  }
}
