/** Holds in SQL: credits set aside for one generation, and the grants they were taken from. */
import assert from "node:assert/strict";
import { isUniqueViolation, toBigInt, type Sql } from "@tally/platform";
import type { Allocation } from "../domain/allocation";
import type { HoldStore } from "../domain/ports";
import { generationConflict } from "../domain/rules";
import type { GrantKind, Hold, HoldStatus } from "../domain/types";
import { uuidArray } from "./account-store";

interface HoldRow {
  id: string;
  account_id: string;
  generation_id: string;
  status: HoldStatus;
  amount: string;
  trial_amount: string;
  token_amount: string;
  captured_amount: string;
  expires_at: Date;
  created_at: Date;
  ended_at: Date | null;
}

const HOLD_COLUMNS =
  "id, account_id, generation_id, status, amount, trial_amount, token_amount, captured_amount, expires_at, created_at, ended_at";

const toHold = (row: HoldRow): Hold => ({
  id: row.id,
  accountId: row.account_id,
  generationId: row.generation_id,
  status: row.status,
  amount: toBigInt(row.amount),
  trialAmount: toBigInt(row.trial_amount),
  tokenAmount: toBigInt(row.token_amount),
  capturedAmount: toBigInt(row.captured_amount),
  expiresAt: new Date(row.expires_at),
  createdAt: new Date(row.created_at),
  endedAt: row.ended_at === null ? null : new Date(row.ended_at),
});

/** The unique index that gives a generation one hold at most (INV-3). */
const HOLDS_GENERATION_ID_KEY = "holds_generation_id_key";

export class SqlHoldStore implements HoldStore {
  constructor(private readonly sql: Sql) {}

  async findIdByGeneration(generationId: string): Promise<string | null> {
    const row = await this.sql.one<{ id: string }>("SELECT id FROM holds WHERE generation_id = ?", [generationId]);
    return row?.id ?? null;
  }

  async insert(
    hold: { id: string; accountId: string; generationId: string; amount: bigint; trialAmount: bigint; tokenAmount: bigint; ttlMs: number },
    allocations: readonly Allocation[],
  ): Promise<Hold> {
    const row = await this.sql
      .one<HoldRow>(
        `INSERT INTO holds (id, account_id, generation_id, status, amount, trial_amount, token_amount, expires_at)
         VALUES (?::uuid, ?::uuid, ?, 'active', ?::bigint, ?::bigint, ?::bigint, now() + ?::bigint * interval '1 millisecond')
         RETURNING ${HOLD_COLUMNS}`,
        [hold.id, hold.accountId, hold.generationId, hold.amount, hold.trialAmount, hold.tokenAmount, BigInt(hold.ttlMs)],
      )
      .catch((error: unknown) => {
        // Two holds of one generation racing (on different accounts): the unique index decides.
        throw isUniqueViolation(error, HOLDS_GENERATION_ID_KEY) ? generationConflict(hold.generationId) : error;
      });
    assert.ok(row, "INSERT … RETURNING returns the inserted hold");
    const values = allocations.map(() => "(?::uuid, ?::uuid, ?, ?::bigint)").join(", ");
    await this.sql.query(
      `INSERT INTO hold_allocations (hold_id, grant_id, sequence, amount) VALUES ${values}`,
      allocations.flatMap((a, index) => [hold.id, a.grantId, index, a.amount]),
    );
    return toHold(row);
  }

  async findAccountId(holdId: string): Promise<string | null> {
    const row = await this.sql.one<{ account_id: string }>("SELECT account_id FROM holds WHERE id = ?::uuid", [holdId]);
    return row?.account_id ?? null;
  }

  async lock(holdId: string): Promise<Hold | null> {
    const row = await this.sql.one<HoldRow>(`SELECT ${HOLD_COLUMNS} FROM holds WHERE id = ?::uuid FOR UPDATE`, [holdId]);
    return row ? toHold(row) : null;
  }

  async readAllocations(holdId: string): Promise<Allocation[]> {
    const rows = await this.sql.query<{ grant_id: string; kind: GrantKind; amount: string }>(
      `SELECT a.grant_id, g.kind, a.amount FROM hold_allocations a JOIN grants g ON g.id = a.grant_id
       WHERE a.hold_id = ?::uuid ORDER BY a.sequence`,
      [holdId],
    );
    return rows.map((r) => ({ grantId: r.grant_id, kind: r.kind, amount: toBigInt(r.amount) }));
  }

  async end(holdId: string, end: { status: Exclude<HoldStatus, "active">; capturedAmount: bigint; reason: string | null }): Promise<Hold> {
    const row = await this.sql.one<HoldRow>(
      `UPDATE holds SET status = ?, captured_amount = ?::bigint, release_reason = ?, ended_at = clock_timestamp()
       WHERE id = ?::uuid AND status = 'active' RETURNING ${HOLD_COLUMNS}`,
      [end.status, end.capturedAmount, end.reason, holdId],
    );
    assert.ok(row, `INV-3: hold ${holdId} is still active under this transaction's lock, so it ends exactly once`);
    return toHold(row);
  }

  async extend(holdId: string, ttlMs: number): Promise<Hold> {
    const row = await this.sql.one<HoldRow>(
      `UPDATE holds SET expires_at = greatest(expires_at, clock_timestamp() + ?::bigint * interval '1 millisecond')
       WHERE id = ?::uuid AND status = 'active' RETURNING ${HOLD_COLUMNS}`,
      [ttlMs, holdId],
    );
    assert.ok(row, `INV-3: hold ${holdId} is still active under this transaction's lock`);
    return toHold(row);
  }

  async countActive(accountId: string): Promise<number> {
    const row = await this.sql.one<{ count: string }>("SELECT count(*) AS count FROM holds WHERE account_id = ?::uuid AND status = 'active'", [accountId]);
    return Number(row?.count ?? 0);
  }

  async findAccountsWithExpired(limit: number): Promise<string[]> {
    const rows = await this.sql.query<{ account_id: string }>(
      `SELECT DISTINCT account_id FROM (
         SELECT account_id FROM holds WHERE status = 'active' AND expires_at <= now() ORDER BY expires_at LIMIT ?
       ) AS due`,
      [limit],
    );
    return rows.map((r) => r.account_id);
  }

  async lockExpired(accountIds: readonly string[], limit: number): Promise<Hold[]> {
    if (accountIds.length === 0) return [];
    const rows = await this.sql.query<HoldRow>(
      `SELECT ${HOLD_COLUMNS} FROM holds WHERE account_id = ANY(?::uuid[]) AND status = 'active' AND expires_at <= now()
       ORDER BY account_id, id LIMIT ? FOR UPDATE`,
      [uuidArray(accountIds), limit],
    );
    return rows.map(toHold);
  }
}
