/**
 * Credits reconciliation in SQL: every equality of INV-2, over every account and grant, in ONE
 * statement (one snapshot even outside a transaction, so movements committed meanwhile can never
 * show up as a false difference). Set-based: one aggregate per source table, no loop per account.
 */
import { toBigInt, type Sql } from "@tally/platform";
import type { ReconciliationStore } from "../domain/ports";
import type { CreditsReconciliation } from "../domain/types";

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
WITH ledger AS (
  SELECT account_id, sum(amount) AS available, sum(held_change) AS held, sum(captured_change) AS captured,
         sum(expired_change) AS expired, sum(written_off_change) AS written_off
    FROM ledger_entries GROUP BY account_id
), last_entry AS (
  SELECT DISTINCT ON (account_id) account_id, balance_after, held_after FROM ledger_entries ORDER BY account_id, position DESC
), grant_totals AS (
  SELECT account_id, sum(amount) AS granted, sum(remaining_amount) AS remaining FROM grants GROUP BY account_id
), hold_totals AS (
  SELECT account_id, sum(amount) FILTER (WHERE status = 'active') AS held,
         sum(captured_amount) FILTER (WHERE status = 'captured') AS captured
    FROM holds GROUP BY account_id
), account_checks AS (
  SELECT a.id AS account_id, NULL::uuid AS grant_id, x.check_name, x.expected, x.actual
    FROM accounts a
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
   WHERE h.status IN ('active', 'captured')
), grant_holds AS (
  SELECT grant_id,
         sum(amount) FILTER (WHERE status = 'active') AS held,
         sum(least(amount, greatest(captured_amount - taken_before, 0))) FILTER (WHERE status = 'captured') AS captured
    FROM allocations GROUP BY grant_id
), grant_ledger AS (
  SELECT grant_id, sum(expired_change) AS expired, sum(written_off_change) AS written_off
    FROM ledger_entries WHERE grant_id IS NOT NULL GROUP BY grant_id
), grant_checks AS (
  SELECT g.account_id, g.id AS grant_id, 'grant_parts' AS check_name, g.amount AS expected,
         g.remaining_amount + coalesce(h.held, 0) + coalesce(h.captured, 0) + coalesce(l.expired, 0) + coalesce(l.written_off, 0) AS actual
    FROM grants g
    LEFT JOIN grant_holds h ON h.grant_id = g.id
    LEFT JOIN grant_ledger l ON l.grant_id = g.id
), differences AS (
  SELECT * FROM account_checks
  UNION ALL
  SELECT * FROM grant_checks WHERE expected <> actual
)
SELECT account_id, grant_id, check_name, expected::text AS expected, actual::text AS actual, count(*) OVER () AS total
  FROM differences
 ORDER BY account_id, grant_id NULLS FIRST, check_name
 LIMIT ?`;

interface DifferenceRow {
  account_id: string;
  grant_id: string | null;
  check_name: string;
  expected: string;
  actual: string;
  total: string;
}

export class SqlReconciliationStore implements ReconciliationStore {
  constructor(private readonly sql: Sql) {}

  async differences(limit: number): Promise<CreditsReconciliation> {
    const rows = await this.sql.query<DifferenceRow>(RECONCILIATION_SQL, [limit]);
    return {
      // The window count rides on every row; with no row there is no difference at all (or
      // `limit` is 0, which callers never pass).
      differencesTotal: rows.length === 0 ? 0 : Number(rows[0]!.total),
      differences: rows.map((row) => ({
        check: row.check_name,
        accountId: row.account_id,
        grantId: row.grant_id,
        expected: toBigInt(row.expected),
        actual: toBigInt(row.actual),
      })),
    };
  }
}
