import { Migration } from "@mikro-orm/migrations";

/**
 * Soft thresholds: one row per (subject, limit, threshold, window start) crossed, so a
 * crossing is announced once, and the usage outbox its UsageThresholdCrossed event waits in
 * until the relay has published it (INV-5, producer half: written in the transaction of the
 * usage log entry that crossed it).
 */
export class Migration20261123000002 extends Migration {
  async up(): Promise<void> {
    this.addSql(`
CREATE TABLE threshold_crossings (
  subject_id uuid NOT NULL,
  limit_name text NOT NULL,
  threshold_per_mille integer NOT NULL CHECK (threshold_per_mille > 0),
  window_start timestamptz NOT NULL,
  event_id uuid NOT NULL UNIQUE,
  crossed_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (subject_id, limit_name, threshold_per_mille, window_start)
)`);
    this.addSql(`
CREATE TABLE outbox (
  id bigserial PRIMARY KEY,
  event_id uuid NOT NULL UNIQUE,
  subject text NOT NULL,
  payload bytea NOT NULL,
  traceparent text,
  created_at timestamptz NOT NULL DEFAULT now(),
  claimed_until timestamptz,
  published_at timestamptz
)`);
    this.addSql("CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL");
  }
}
