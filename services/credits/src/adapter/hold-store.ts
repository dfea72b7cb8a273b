/** Holds in SQL for the expiry sweep and reads (creating, capturing, releasing and extending: hold-operation-store.ts, one statement each). */
import assert from "node:assert/strict";
import { toBigInt, type Sql } from "@tally/platform";
import type { Allocation } from "../domain/allocation";
import type { HoldStore } from "../domain/ports";
import type { GrantKind, Hold, HoldStatus } from "../domain/types";
import { uuidArray } from "./account-store";

/** A `holds` row as pg returns it (int8 as decimal strings). */
export interface HoldRow {
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

/** The domain hold of a `holds` row. */
export const toHold = (row: HoldRow): Hold => ({
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

export class SqlHoldStore implements HoldStore {
  constructor(private readonly sql: Sql) {}

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
