import { Migration } from "@mikro-orm/migrations";
import { IDEMPOTENCY_TABLE_SQL } from "@tally/platform";

/**
 * The usage service's schema: the consumer's inbox (`processed_events`), the immutable usage
 * log, lifetime user stats and the dead letters of messages that can never be processed.
 */
export class Migration20261121000001 extends Migration {
  async up(): Promise<void> {
    this.addSql(IDEMPOTENCY_TABLE_SQL);

    // Inbox: one row per event id, written in the same transaction as the effects, so a
    // redelivered or republished event is recognised and skipped (INV-5).
    this.addSql(`
CREATE TABLE processed_events (
  event_id uuid PRIMARY KEY,
  subject text NOT NULL,
  processed_at timestamptz NOT NULL DEFAULT now()
)`);

    this.addSql(`
CREATE TABLE usage_log (
  id uuid PRIMARY KEY,
  event_id uuid NOT NULL UNIQUE,
  user_id uuid NOT NULL,
  generation_id uuid NOT NULL,
  outcome text NOT NULL CHECK (outcome IN ('completed', 'failed')),
  billable boolean NOT NULL,
  input_type text NOT NULL,
  provider text NOT NULL,
  credit_type text,
  credits bigint NOT NULL CHECK (credits >= 0),
  cost_micros bigint NOT NULL CHECK (cost_micros >= 0),
  processing_time_ms bigint NOT NULL CHECK (processing_time_ms >= 0),
  error_message text,
  error_code text,
  occurred_at timestamptz NOT NULL,
  recorded_at timestamptz NOT NULL DEFAULT now(),
  -- Billing classification: a completion is billable, a failure never is.
  CONSTRAINT usage_log_billable_iff_completed CHECK (billable = (outcome = 'completed'))
)`);
    // Newest-first keyset pagination per user.
    this.addSql("CREATE INDEX usage_log_user_newest ON usage_log (user_id, occurred_at DESC, id DESC)");

    // The usage log is immutable: entries are facts, never edited or deleted.
    this.addSql(`
CREATE FUNCTION usage_log_reject_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'usage_log is immutable: % rejected', TG_OP USING ERRCODE = 'restrict_violation';
END
$$`);
    this.addSql(`
CREATE TRIGGER usage_log_immutable
  BEFORE UPDATE OR DELETE ON usage_log
  FOR EACH ROW EXECUTE FUNCTION usage_log_reject_change()`);
    this.addSql(`
CREATE TRIGGER usage_log_no_truncate
  BEFORE TRUNCATE ON usage_log
  FOR EACH STATEMENT EXECUTE FUNCTION usage_log_reject_change()`);

    this.addSql(`
CREATE TABLE user_stats (
  user_id uuid PRIMARY KEY,
  total_generations bigint NOT NULL DEFAULT 0 CHECK (total_generations >= 0),
  total_failed bigint NOT NULL DEFAULT 0 CHECK (total_failed >= 0),
  total_cost_micros bigint NOT NULL DEFAULT 0 CHECK (total_cost_micros >= 0),
  total_credits_spent bigint NOT NULL DEFAULT 0 CHECK (total_credits_spent >= 0),
  last_activity_at timestamptz,
  updated_at timestamptz NOT NULL DEFAULT now()
)`);

    // Messages that can never be processed, kept raw so that none is lost. No unique key on
    // the stream position: a crash between commit and term may store one twice, which is
    // harmless here, whereas a key could drop a letter after the stream was recreated.
    this.addSql(`
CREATE TABLE dead_letters (
  id bigserial PRIMARY KEY,
  stream text NOT NULL,
  stream_sequence bigint NOT NULL,
  subject text NOT NULL,
  payload bytea NOT NULL,
  headers jsonb NOT NULL DEFAULT '{}'::jsonb,
  error text NOT NULL,
  delivery_count integer NOT NULL,
  received_at timestamptz NOT NULL DEFAULT now()
)`);
  }
}
