import { Migration } from "@mikro-orm/migrations";
import { CLAIM_RUN_SQL, FINISH_RUN_SQL, HOLD_RUN_SQL, RUN_START_SQL } from "./Migration20261207000001-hold-run";

/**
 * Concurrent holds on one hot account move its row ONCE per batch: `credits_hold_operations`
 * (same signature and result as Migration20261206000001's) is replaced by one that cuts the
 * members, ordered as before (ascending account id, arrival order within an account, INV-9),
 * into runs: each run of consecutive CreateHold and whole CaptureHold members of one account
 * is applied by `credits_hold_run` (one account lock, one write-off of due grants, each member
 * decided in arrival order against the running balances, one `UPDATE accounts`, one
 * `UPDATE grants`, set-based writes of holds, allocations and ledger entries); every other
 * member (a partial capture, a release, an extension, an unknown hold) is applied alone,
 * exactly as before, and ends the run. Each member's outcome is the one it would have had
 * applied one after another (INV-1, INV-2, INV-4).
 */
export class Migration20261207000001 extends Migration {
  override async up(): Promise<void> {
    for (const statement of [CLAIM_RUN_SQL, FINISH_RUN_SQL, RUN_START_SQL, HOLD_RUN_SQL, OPERATIONS_SQL]) this.addSql(statement);
  }
}

/**
 * The set form, as before but by runs: `run` numbers the members in lock order; a member
 * continues the run before it when both are `grouped` (a CreateHold, or a CaptureHold of a
 * known hold without an amount or for its whole amount) on the same account. A run of one
 * member is applied by its per-operation function, as before (the same outcome, fewer steps).
 */
const OPERATIONS_SQL = `
  CREATE OR REPLACE FUNCTION credits_hold_operations(
    p_operations text[], p_request_ids text[], p_fingerprints text[], p_account_ids uuid[], p_hold_ids uuid[],
    p_generation_ids text[], p_amounts bigint[], p_ttls_ms bigint[], p_reasons text[],
    p_now timestamptz, p_capture_rest_reason text, p_grant_expired_reason text)
  RETURNS SETOF credits_hold_outcome LANGUAGE plpgsql AS $$
  DECLARE
    m record;
    r credits_hold_outcome;
  BEGIN
    FOR m IN
      WITH o AS (
        SELECT o.*, coalesce(o.account_id, h.account_id) AS lock_account,
               o.operation = 'CreateHold' OR (o.operation = 'CaptureHold' AND h.id IS NOT NULL AND (o.amount IS NULL OR o.amount = h.amount)) AS grouped
        FROM unnest(p_operations, p_request_ids, p_fingerprints, p_account_ids, p_hold_ids, p_generation_ids, p_amounts,
                    p_ttls_ms, p_reasons) WITH ORDINALITY
          AS o (operation, request_id, fingerprint, account_id, hold_id, generation_id, amount, ttl_ms, reason, n)
        LEFT JOIN holds h ON h.id = o.hold_id),
      starts AS (
        SELECT o.*, CASE WHEN grouped AND lag(grouped) OVER w AND lag(lock_account) OVER w = lock_account THEN 0 ELSE 1 END AS starts
        FROM o WINDOW w AS (ORDER BY lock_account NULLS FIRST, n)),
      runs AS (SELECT starts.*, sum(starts) OVER (ORDER BY lock_account NULLS FIRST, n) AS run FROM starts)
      SELECT run, bool_and(grouped) AS grouped, (array_agg(operation))[1] AS operation, (array_agg(lock_account))[1] AS account_id,
             array_agg(operation ORDER BY n) AS operations,
             array_agg(n::integer ORDER BY n) AS members, array_agg(request_id ORDER BY n) AS request_ids,
             array_agg(fingerprint ORDER BY n) AS fingerprints, array_agg(hold_id ORDER BY n) AS hold_ids,
             array_agg(generation_id ORDER BY n) AS generation_ids, array_agg(amount ORDER BY n) AS amounts,
             array_agg(ttl_ms ORDER BY n) AS ttls_ms, array_agg(reason ORDER BY n) AS reasons
      FROM runs GROUP BY run ORDER BY run
    LOOP
      IF m.grouped AND cardinality(m.members) > 1 THEN
        RETURN QUERY SELECT * FROM credits_hold_run(m.account_id, m.members, m.operations, m.request_ids, m.fingerprints,
          m.hold_ids, m.generation_ids, m.amounts, m.ttls_ms, p_now, p_grant_expired_reason);
        CONTINUE;
      ELSIF m.operation = 'CreateHold' THEN
        r := credits_create_hold(m.request_ids[1], m.fingerprints[1], m.account_id, m.generation_ids[1], m.amounts[1], m.ttls_ms[1], p_now, p_grant_expired_reason);
      ELSIF m.operation = 'CaptureHold' THEN
        r := credits_capture_hold(m.request_ids[1], m.fingerprints[1], m.hold_ids[1], m.amounts[1], p_capture_rest_reason, p_now, p_grant_expired_reason);
      ELSIF m.operation = 'ReleaseHold' THEN
        r := credits_release_hold(m.request_ids[1], m.fingerprints[1], m.hold_ids[1], m.reasons[1], p_now, p_grant_expired_reason);
      ELSIF m.operation = 'ExtendHold' THEN
        r := credits_extend_hold(m.request_ids[1], m.fingerprints[1], m.hold_ids[1], m.ttls_ms[1]);
      ELSE
        RAISE EXCEPTION 'unknown hold operation %', m.operation;
      END IF;
      r.member := m.members[1];
      RETURN NEXT r;
    END LOOP;
  END $$`;
