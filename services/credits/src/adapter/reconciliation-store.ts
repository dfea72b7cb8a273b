/**
 * Credits reconciliation in SQL: every equality of INV-2 over one batch of accounts (the next
 * `batch` accounts by id) and their grants, in ONE statement (one snapshot even outside a
 * transaction, so movements committed meanwhile can never show up as a false difference: an
 * account's balances, ledger, grants and holds are all read in its batch's snapshot).
 * Set-based: one aggregate per source table, restricted to the batch, no loop per account.
 */
import { toBigInt, type Sql } from "@tally/platform";
import type { ReconciliationBatch, ReconciliationStore } from "../domain/ports";

/*
 * Per account (expected ← actual):
 *   ledger_<kind>          sum of the ledger column of that balance kind ← the stored balance
 *                          (amount → available, held_change → held, captured_change → captured,
 *                          expired_change → expired, written_off_change → written off)
 *   last_entry_available   the newest entry's balance_after (0 without entries) ← available
 *   last_entry_held        the newest entry's held_after (0 without entries) ← held
 *   grants_remaining       sum of the grants' remaining credits ← available
 *   active_holds           sum of the active holds' amounts ← held
 *   captured_holds         sum of the captured holds' captured amounts ← captured
 *   granted_total          sum of the grants' amounts ← available + held + captured + expired + written off
 * Per grant:
 *   grant_parts            the grant's amount ← remaining + held by active holds (their
 *                          allocations) + charged by captured holds (a capture charges the
 *                          allocations in sequence order, as domain/allocation.ts splitCapture)
 *                          + expired and written off (its ledger entries' columns)
 */
const RECONCILIATION_SQL = `
WITH batch AS (
  SELECT id FROM accounts WHERE ?::uuid IS NULL OR id > ?::uuid ORDER BY id LIMIT ?
), ledger AS (
  SELECT account_id, sum(amount) AS available, sum(held_change) AS held, sum(captured_change) AS captured,
         sum(expired_change) AS expired, sum(written_off_change) AS written_off
    FROM ledger_entries WHERE account_id IN (SELECT id FROM batch) GROUP BY account_id
), last_entry AS (
  SELECT DISTINCT ON (account_id) account_id, balance_after, held_after FROM ledger_entries
   WHERE account_id IN (SELECT id FROM batch) ORDER BY account_id, position DESC
), grant_totals AS (
  SELECT account_id, sum(amount) AS granted, sum(remaining_amount) AS remaining FROM grants
   WHERE account_id IN (SELECT id FROM batch) GROUP BY account_id
), hold_totals AS (
  SELECT account_id, sum(amount) FILTER (WHERE status = 'active') AS held,
         sum(captured_amount) FILTER (WHERE status = 'captured') AS captured
    FROM holds WHERE account_id IN (SELECT id FROM batch) GROUP BY account_id
), account_checks AS (
  SELECT a.id AS account_id, NULL::uuid AS grant_id, x.check_name, x.expected, x.actual
    FROM accounts a
    JOIN batch b ON b.id = a.id
    LEFT JOIN ledger l ON l.account_id = a.id
    LEFT JOIN last_entry e ON e.account_id = a.id
    LEFT JOIN grant_totals g ON g.account_id = a.id
    LEFT JOIN hold_totals h ON h.account_id = a.id
    CROSS JOIN LATERAL (VALUES
      ('ledger_available', coalesce(l.available, 0), a.available_credits),
      ('ledger_held', coalesce(l.held, 0), a.held_credits),
      ('ledger_captured', coalesce(l.captured, 0), a.captured_credits),
      ('ledger_expired', coalesce(l.expired, 0), a.expired_credits),
      ('ledger_written_off', coalesce(l.written_off, 0), a.written_off_credits),
      ('last_entry_available', coalesce(e.balance_after, 0), a.available_credits),
      ('last_entry_held', coalesce(e.held_after, 0), a.held_credits),
      ('grants_remaining', coalesce(g.remaining, 0), a.available_credits),
      ('active_holds', coalesce(h.held, 0), a.held_credits),
      ('captured_holds', coalesce(h.captured, 0), a.captured_credits),
      ('granted_total', coalesce(g.granted, 0),
        a.available_credits + a.held_credits + a.captured_credits + a.expired_credits + a.written_off_credits)
    ) x (check_name, expected, actual)
   WHERE x.expected <> x.actual
), allocations AS (
  SELECT al.grant_id, al.amount, h.status, h.captured_amount,
         sum(al.amount) OVER (PARTITION BY al.hold_id ORDER BY al.sequence) - al.amount AS taken_before
    FROM hold_allocations al JOIN holds h ON h.id = al.hold_id
   WHERE h.status IN ('active', 'captured') AND h.account_id IN (SELECT id FROM batch)
), grant_holds AS (
  SELECT grant_id,
         sum(amount) FILTER (WHERE status = 'active') AS held,
         sum(least(amount, greatest(captured_amount - taken_before, 0))) FILTER (WHERE status = 'captured') AS captured
    FROM allocations GROUP BY grant_id
), grant_ledger AS (
  SELECT grant_id, sum(expired_change) AS expired, sum(written_off_change) AS written_off
    FROM ledger_entries WHERE grant_id IS NOT NULL AND account_id IN (SELECT id FROM batch) GROUP BY grant_id
), grant_checks AS (
  SELECT g.account_id, g.id AS grant_id, 'grant_parts' AS check_name, g.amount AS expected,
         g.remaining_amount + coalesce(h.held, 0) + coalesce(h.captured, 0) + coalesce(l.expired, 0) + coalesce(l.written_off, 0) AS actual
    FROM grants g
    JOIN batch b ON b.id = g.account_id
    LEFT JOIN grant_holds h ON h.grant_id = g.id
    LEFT JOIN grant_ledger l ON l.grant_id = g.id
), differences AS (
  SELECT * FROM account_checks
  UNION ALL
  SELECT * FROM grant_checks WHERE expected <> actual
)
SELECT d.account_id, d.grant_id, d.check_name, d.expected::text AS expected, d.actual::text AS actual, t.total, t.last_account_id
  FROM (SELECT count(*) AS total FROM differences) c
  CROSS JOIN LATERAL (SELECT c.total, (SELECT max(id::text)::uuid FROM batch) AS last_account_id) t
  LEFT JOIN LATERAL (SELECT * FROM differences ORDER BY account_id, grant_id NULLS FIRST, check_name LIMIT ?) d ON true`;

/** One difference (all its fields null when the batch has none), with the batch's total and last account. */
interface DifferenceRow {
  account_id: string | null;
  grant_id: string | null;
  check_name: string | null;
  expected: string | null;
  actual: string | null;
  total: string;
  last_account_id: string | null;
}

export class SqlReconciliationStore implements ReconciliationStore {
  constructor(private readonly sql: Sql) {}

  async differencesOfBatch(afterAccountId: string | null, batchSize: number, limit: number): Promise<ReconciliationBatch> {
    const rows = await this.sql.query<DifferenceRow>(RECONCILIATION_SQL, [afterAccountId, afterAccountId, batchSize, limit]);
    const first = rows[0];
    return {
      differencesTotal: first ? Number(first.total) : 0,
      lastAccountId: first?.last_account_id ?? null,
      differences: rows
        .filter((row) => row.check_name !== null)
        .map((row) => ({
          check: row.check_name!,
          accountId: row.account_id!,
          grantId: row.grant_id,
          expected: toBigInt(row.expected!),
          actual: toBigInt(row.actual!),
        })),
    };
  }
}
