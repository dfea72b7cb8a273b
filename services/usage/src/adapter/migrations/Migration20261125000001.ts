import { Migration } from "@mikro-orm/migrations";

/**
 * Richer usage log entries and counted downloads.
 *
 * - `usage_log` gains the plan snapshot (`plan`, `plan_limits`), the billing period the entry
 *   counts in (`period_start`, `period_end`), the billing classification
 *   (`billing_classification`, `billing_reason`, `parent_generation_id`), `output_bytes` and
 *   `subject_kind`. ADD COLUMN with a constant DEFAULT writes no row (PostgreSQL keeps the
 *   default in the catalogue), so the immutability triggers (INV-8) never fire: entries written
 *   before this migration read as `original`, 0 bytes, with no plan, period or kind (null).
 * - `download_log`: one immutable row per `generation.downloaded` event (not billable; the
 *   source `user_stats.total_downloaded` is reconciled with).
 */
export class Migration20261125000001 extends Migration {
  async up(): Promise<void> {
    this.addSql(`
ALTER TABLE usage_log
  ADD COLUMN plan text,
  ADD COLUMN plan_limits jsonb,
  ADD COLUMN period_start timestamptz,
  ADD COLUMN period_end timestamptz,
  ADD COLUMN billing_classification text NOT NULL DEFAULT 'original'
    CHECK (billing_classification IN ('original', 'free_retry', 'paid_regeneration')),
  ADD COLUMN billing_reason text,
  ADD COLUMN parent_generation_id uuid,
  ADD COLUMN output_bytes bigint NOT NULL DEFAULT 0 CHECK (output_bytes >= 0),
  ADD COLUMN subject_kind text CHECK (subject_kind IN ('user', 'guest')),
  ADD CONSTRAINT usage_log_period_whole CHECK ((period_start IS NULL) = (period_end IS NULL))`);

    this.addSql("ALTER TABLE user_stats ADD COLUMN total_downloaded bigint NOT NULL DEFAULT 0 CHECK (total_downloaded >= 0)");

    this.addSql(`
CREATE TABLE download_log (
  event_id uuid PRIMARY KEY,
  user_id uuid NOT NULL,
  generation_id uuid NOT NULL,
  output_bytes bigint NOT NULL CHECK (output_bytes >= 0),
  occurred_at timestamptz NOT NULL,
  recorded_at timestamptz NOT NULL DEFAULT now()
)`);
    this.addSql("CREATE INDEX download_log_user ON download_log (user_id)");
    this.addSql(`
CREATE FUNCTION download_log_reject_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'download_log is immutable: % rejected', TG_OP USING ERRCODE = 'restrict_violation';
END
$$`);
    this.addSql(`
CREATE TRIGGER download_log_immutable
  BEFORE UPDATE OR DELETE ON download_log
  FOR EACH ROW EXECUTE FUNCTION download_log_reject_change()`);
    this.addSql(`
CREATE TRIGGER download_log_no_truncate
  BEFORE TRUNCATE ON download_log
  FOR EACH STATEMENT EXECUTE FUNCTION download_log_reject_change()`);
  }
}
