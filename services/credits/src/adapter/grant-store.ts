/** Grants in SQL: what an account was given and how much of each grant is left. */
import assert from "node:assert/strict";
import { toBigInt, type Sql } from "@tally/platform";
import { GRANT_KIND_PRIORITY, type AllocatableGrant } from "../domain/allocation";
import type { GrantStore, NewGrant } from "../domain/ports";
import type { Grant, GrantKind } from "../domain/types";

interface GrantRow {
  id: string;
  account_id: string;
  kind: GrantKind;
  amount: string;
  remaining_amount: string;
  expires_at: Date | null;
  created_at: Date;
  priority: number;
  reference: string | null;
  voided_at: Date | null;
}

const GRANT_COLUMNS = "id, account_id, kind, amount, remaining_amount, expires_at, created_at, priority, reference, voided_at";
/** The kind's rank (GRANT_KIND_PRIORITY) in SQL: the tie-breaker after priority and expiry. */
const KIND_RANK_SQL = `CASE kind ${Object.entries(GRANT_KIND_PRIORITY).map(([kind, rank]) => `WHEN '${kind}' THEN ${rank}`).join(" ")} END`;

const toGrant = (row: GrantRow): Grant => ({
  id: row.id,
  accountId: row.account_id,
  kind: row.kind,
  amount: toBigInt(row.amount),
  remainingAmount: toBigInt(row.remaining_amount),
  expiresAt: row.expires_at === null ? null : new Date(row.expires_at),
  createdAt: new Date(row.created_at),
  priority: Number(row.priority),
  reference: row.reference,
  voidedAt: row.voided_at === null ? null : new Date(row.voided_at),
});

export class SqlGrantStore implements GrantStore {
  constructor(private readonly sql: Sql) {}

  /** `created_at` is the statement's clock so that two grants made in one transaction still order by age. */
  async insert(grant: NewGrant): Promise<Grant> {
    const row = await this.sql.one<GrantRow>(
      `INSERT INTO grants (id, account_id, kind, priority, amount, remaining_amount, expires_at, reference, created_at)
       VALUES (?::uuid, ?::uuid, ?, ?, ?::bigint, ?::bigint, ?::timestamptz, ?, clock_timestamp()) RETURNING ${GRANT_COLUMNS}`,
      [grant.id, grant.accountId, grant.kind, grant.priority ?? GRANT_KIND_PRIORITY[grant.kind], grant.amount, grant.amount, grant.expiresAt, grant.reference ?? null],
    );
    assert.ok(row, "INSERT … RETURNING returns the inserted grant");
    return toGrant(row);
  }

  /** In the order of domain/allocation.ts `compareForConsumption` (index grants_consumption_order). */
  async lockForConsumption(accountId: string): Promise<AllocatableGrant[]> {
    const rows = await this.sql.query<GrantRow>(
      `SELECT ${GRANT_COLUMNS} FROM grants WHERE account_id = ?::uuid AND remaining_amount > 0
       ORDER BY priority, expires_at NULLS LAST, ${KIND_RANK_SQL}, created_at, id FOR UPDATE`,
      [accountId],
    );
    return rows.map(toGrant);
  }

  async findByReference(accountId: string, reference: string): Promise<Grant | null> {
    const row = await this.sql.one<GrantRow>(`SELECT ${GRANT_COLUMNS} FROM grants WHERE account_id = ?::uuid AND reference = ?`, [accountId, reference]);
    return row ? toGrant(row) : null;
  }

  async lockOne(accountId: string, grantId: string): Promise<Grant | null> {
    const row = await this.sql.one<GrantRow>(`SELECT ${GRANT_COLUMNS} FROM grants WHERE id = ?::uuid AND account_id = ?::uuid FOR UPDATE`, [grantId, accountId]);
    return row ? toGrant(row) : null;
  }

  async markVoided(grantId: string): Promise<Grant> {
    const row = await this.sql.one<GrantRow>(
      `UPDATE grants SET remaining_amount = 0, voided_at = clock_timestamp() WHERE id = ?::uuid AND voided_at IS NULL RETURNING ${GRANT_COLUMNS}`,
      [grantId],
    );
    assert.ok(row, "a grant is voided once, under its account's lock (INV-9)");
    return toGrant(row);
  }

  async hasDue(accountId: string, now: Date): Promise<boolean> {
    const row = await this.sql.one<{ due: boolean }>(
      "SELECT EXISTS (SELECT 1 FROM grants WHERE account_id = ?::uuid AND remaining_amount > 0 AND expires_at <= ?::timestamptz) AS due",
      [accountId, now],
    );
    return row?.due === true;
  }

  async lockDue(accountId: string, now: Date): Promise<Grant[]> {
    const rows = await this.sql.query<GrantRow>(
      `SELECT ${GRANT_COLUMNS} FROM grants WHERE account_id = ?::uuid AND remaining_amount > 0 AND expires_at <= ?::timestamptz ORDER BY id FOR UPDATE`,
      [accountId, now],
    );
    return rows.map(toGrant);
  }

  async findAccountsWithDue(now: Date, limit: number): Promise<string[]> {
    const rows = await this.sql.query<{ account_id: string }>(
      `SELECT DISTINCT account_id FROM (
         SELECT account_id FROM grants WHERE remaining_amount > 0 AND expires_at <= ?::timestamptz ORDER BY expires_at LIMIT ?
       ) AS due`,
      [now, limit],
    );
    return rows.map((r) => r.account_id);
  }

  async lockRemaining(accountId: string): Promise<Grant[]> {
    const rows = await this.sql.query<GrantRow>(
      `SELECT ${GRANT_COLUMNS} FROM grants WHERE account_id = ?::uuid AND remaining_amount > 0 ORDER BY id FOR UPDATE`,
      [accountId],
    );
    return rows.map(toGrant);
  }

  async changeRemaining(deltas: readonly { grantId: string; delta: bigint }[]): Promise<void> {
    if (deltas.length === 0) return;
    const values = deltas.map(() => "(?::uuid, ?::bigint)").join(", ");
    const changed = await this.sql.query<{ id: string }>(
      `UPDATE grants AS g SET remaining_amount = g.remaining_amount + v.delta
       FROM (VALUES ${values}) AS v (id, delta) WHERE g.id = v.id RETURNING g.id`,
      deltas.flatMap((d) => [d.grantId, d.delta]),
    );
    assert.equal(changed.length, deltas.length, "INV-2: every hold allocation names an existing grant (grants are never deleted)");
  }
}
