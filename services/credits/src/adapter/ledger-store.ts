/**
 * The ledger in SQL: one immutable entry per movement (INV-8: only ever INSERTed; a trigger
 * refuses UPDATE and DELETE), and the balance snapshot that INV-2 is checked against.
 */
import { toBigInt, type Sql } from "@tally/platform";
import type { LedgerStore } from "../domain/ports";
import type { BalanceSnapshot, GrantKind, LedgerEntryKind, NewLedgerEntry, PositionedLedgerEntry } from "../domain/types";
import { toBalances, type BalancesRow } from "./account-store";

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
  grant_id: string | null;
  reason: string | null;
  hold_deadline: Date | null;
}

const LEDGER_COLUMNS = "id, position, account_id, kind, amount, grant_kind, hold_id, generation_id, balance_after, held_after, created_at, grant_id, reason, hold_deadline";

const toLedgerEntry = (row: LedgerRow): PositionedLedgerEntry => ({
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
  grantId: row.grant_id,
  reason: row.reason,
  holdDeadline: row.hold_deadline === null ? null : new Date(row.hold_deadline),
});

interface SnapshotRow extends BalancesRow {
  trial_remaining: string;
  token_remaining: string;
  granted: string;
  /** Null when the account has no ledger entry yet. */
  last_balance_after: string | null;
  last_held_after: string | null;
}

// ONE statement, so that the account row, its grants and its newest ledger entry come from the
// same snapshot even outside a transaction (two statements at READ COMMITTED could straddle a
// concurrent movement). The newest entry is one probe of ledger_entries_account_position.
const BALANCE_SNAPSHOT_SQL = `
  SELECT a.available_credits, a.held_credits, a.captured_credits, a.expired_credits, a.written_off_credits,
         coalesce(g.trial_remaining, 0) AS trial_remaining, coalesce(g.token_remaining, 0) AS token_remaining,
         coalesce(g.granted, 0) AS granted,
         l.balance_after AS last_balance_after, l.held_after AS last_held_after
  FROM accounts a
  LEFT JOIN LATERAL (
    SELECT sum(remaining_amount) FILTER (WHERE kind = 'trial') AS trial_remaining,
           sum(remaining_amount) FILTER (WHERE kind <> 'trial') AS token_remaining,
           sum(amount) AS granted
    FROM grants WHERE account_id = a.id
  ) g ON true
  LEFT JOIN LATERAL (
    SELECT balance_after, held_after FROM ledger_entries WHERE account_id = a.id ORDER BY position DESC LIMIT 1
  ) l ON true
  WHERE a.id = ?::uuid`;

export class SqlLedgerStore implements LedgerStore {
  constructor(private readonly sql: Sql) {}

  async insert(entry: NewLedgerEntry): Promise<void> {
    await this.sql.query(
      `INSERT INTO ledger_entries (id, account_id, kind, amount, held_change, captured_change, expired_change,
         written_off_change, grant_kind, grant_id, hold_id, generation_id, reason, balance_after, held_after, hold_deadline, created_at)
       VALUES (?::uuid, ?::uuid, ?, ?::bigint, ?::bigint, ?::bigint, ?::bigint, ?::bigint, ?, ?::uuid, ?::uuid, ?, ?, ?::bigint,
         ?::bigint, ?::timestamptz, clock_timestamp())`,
      [
        entry.id,
        entry.accountId,
        entry.kind,
        entry.amount,
        entry.heldChange,
        entry.capturedChange,
        entry.expiredChange,
        entry.writtenOffChange,
        entry.grantKind,
        entry.grantId,
        entry.holdId,
        entry.generationId,
        entry.reason,
        entry.balanceAfter,
        entry.heldAfter,
        entry.holdDeadline ?? null,
      ],
    );
  }

  async list(accountId: string, beforePosition: bigint | null, limit: number): Promise<PositionedLedgerEntry[]> {
    const rows =
      beforePosition === null
        ? await this.sql.query<LedgerRow>(
            `SELECT ${LEDGER_COLUMNS} FROM ledger_entries WHERE account_id = ?::uuid ORDER BY position DESC LIMIT ?`,
            [accountId, limit],
          )
        : await this.sql.query<LedgerRow>(
            `SELECT ${LEDGER_COLUMNS} FROM ledger_entries WHERE account_id = ?::uuid AND position < ?::bigint
             ORDER BY position DESC LIMIT ?`,
            [accountId, beforePosition, limit],
          );
    return rows.map(toLedgerEntry);
  }

  async readBalanceSnapshot(accountId: string): Promise<BalanceSnapshot | null> {
    const row = await this.sql.one<SnapshotRow>(BALANCE_SNAPSHOT_SQL, [accountId]);
    if (!row) return null;
    return {
      stored: toBalances(row),
      totals: {
        trialRemaining: toBigInt(row.trial_remaining),
        tokenRemaining: toBigInt(row.token_remaining),
        granted: toBigInt(row.granted),
      },
      lastEntry:
        row.last_balance_after === null || row.last_held_after === null
          ? null
          : { balanceAfter: toBigInt(row.last_balance_after), heldAfter: toBigInt(row.last_held_after) },
    };
  }
}
