import { Migration } from "@mikro-orm/migrations";

/**
 * `cancellation_log`: one immutable row per `generation.cancelled` event (the inbox makes it
 * exactly once), recorded in the event's transaction, so a subject's cancelled generations are
 * counted from facts like every other figure (INV-6, INV-8). Lifetime stats read it beside the
 * usage log, the monthly analytics and the active reservations.
 */
export class Migration20261201000001 extends Migration {
  override async up(): Promise<void> {
    this.addSql(`
CREATE TABLE cancellation_log (
  event_id uuid PRIMARY KEY,
  user_id uuid NOT NULL,
  generation_id uuid NOT NULL,
  occurred_at timestamptz NOT NULL,
  recorded_at timestamptz NOT NULL DEFAULT now()
)`);
    this.addSql("CREATE INDEX cancellation_log_user ON cancellation_log (user_id)");
    this.addSql(`
CREATE FUNCTION cancellation_log_reject_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'cancellation log entries are immutable';
END $$`);
    this.addSql("CREATE TRIGGER cancellation_log_immutable BEFORE UPDATE OR DELETE ON cancellation_log FOR EACH ROW EXECUTE FUNCTION cancellation_log_reject_change()");
    this.addSql("CREATE TRIGGER cancellation_log_no_truncate BEFORE TRUNCATE ON cancellation_log FOR EACH STATEMENT EXECUTE FUNCTION cancellation_log_reject_change()");
  }
}
