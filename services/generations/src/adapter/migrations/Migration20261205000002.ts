import { Migration } from "@mikro-orm/migrations";

/**
 * Refund rules by outcome, cost and margin:
 * - `plan` and `credit_price_micros`: the plan the job was created under and its price per
 *   credit then (a snapshot: the job is settled and its revenue counted at those terms);
 * - `spent_micros`: the provider's measured spend so far, persisted with the lease renewals
 *   (what `capture_spent` converts into credits when a running job is cancelled);
 * - `partial_output`: the provider said its output is partial;
 * - the settlement as decided before credits is called: `settlement_outcome`, `settlement_rule`,
 *   `credits_captured` + `credits_released` = `credit_cost`. `settlement` keeps naming the call
 *   made to credits: `capture` (of `credits_captured`) when something is charged, else `release`.
 * Rows settled before this migration are given the settlement they had (a completed job
 * captured its whole cost; a failed or cancelled one released it). A replica of the previous
 * version, still running during a rolling upgrade, records `settlement` alone: such a row reads
 * as that legacy settlement (adapter/generation-store.ts), so the constraints below bind only
 * rows whose outcome is recorded.
 */
export class Migration20261205000002 extends Migration {
  async up(): Promise<void> {
    this.addSql(`
      ALTER TABLE generations
        ADD COLUMN plan text NOT NULL DEFAULT '',
        ADD COLUMN credit_price_micros bigint NOT NULL DEFAULT 0 CHECK (credit_price_micros >= 0),
        ADD COLUMN spent_micros bigint NOT NULL DEFAULT 0 CHECK (spent_micros >= 0),
        ADD COLUMN partial_output boolean NOT NULL DEFAULT false,
        ADD COLUMN settlement_outcome text
          CHECK (settlement_outcome IN ('completed', 'partial_output', 'failed', 'cancelled_before_start', 'cancelled_while_processing')),
        ADD COLUMN settlement_rule text CHECK (settlement_rule IN ('capture', 'release', 'capture_spent', 'capture_fraction')),
        ADD COLUMN credits_captured bigint NOT NULL DEFAULT 0 CHECK (credits_captured >= 0),
        ADD COLUMN credits_released bigint NOT NULL DEFAULT 0 CHECK (credits_released >= 0)`);
    this.addSql(`
      UPDATE generations SET
        settlement_outcome = CASE
          WHEN status = 'completed' THEN 'completed'
          WHEN status = 'cancelled' AND started_at IS NULL THEN 'cancelled_before_start'
          WHEN status = 'cancelled' THEN 'cancelled_while_processing'
          WHEN settlement = 'capture' THEN 'completed'
          ELSE 'failed' END,
        settlement_rule = settlement,
        credits_captured = CASE WHEN settlement = 'capture' THEN credit_cost ELSE 0 END,
        credits_released = CASE WHEN settlement = 'capture' THEN 0 ELSE credit_cost END
      WHERE settlement IS NOT NULL`);
    // The old checks tied the status to the credits call; the outcome now says what the job came to.
    this.addSql(`
      DO $$
      DECLARE c record;
      BEGIN
        FOR c IN SELECT conname FROM pg_constraint
                  WHERE conrelid = 'generations'::regclass AND contype = 'c' AND pg_get_constraintdef(oid) LIKE '%settlement = %'
        LOOP
          EXECUTE format('ALTER TABLE generations DROP CONSTRAINT %I', c.conname);
        END LOOP;
      END $$`);
    this.addSql(`
      ALTER TABLE generations
        ADD CONSTRAINT generations_settlement_decided
          CHECK (settlement_outcome IS NULL OR (settlement IS NOT NULL AND settlement_rule IS NOT NULL)),
        ADD CONSTRAINT generations_settlement_splits_hold
          CHECK (settlement_outcome IS NULL OR (credits_captured + credits_released = credit_cost AND (settlement = 'capture') = (credits_captured > 0))),
        ADD CONSTRAINT generations_status_matches_outcome
          CHECK (CASE status
                   WHEN 'completed' THEN settlement_outcome IN ('completed', 'partial_output')
                   WHEN 'failed' THEN settlement_outcome = 'failed'
                   WHEN 'cancelled' THEN settlement_outcome IN ('cancelled_before_start', 'cancelled_while_processing')
                   ELSE true END)`);
  }
}
