import { Migration } from "@mikro-orm/migrations";

/**
 * Live progress (WatchGeneration): `event_seq` numbers the changes a watcher sees of one
 * generation: 1 at insert, +1 at every change of `status` or `progress_percent`, whatever
 * statement makes it (claim, lease renewal with progress, finish, cancel), so no code path
 * can forget it. The same trigger sends `pg_notify('generation_events', payload)` with the
 * payload `{"id","seq","status","progress_percent"}` (well under NOTIFY's 8000 bytes):
 * PostgreSQL delivers it to every listening replica at commit only, in commit order, and
 * never for a rolled-back change. Rows stored before start at 1.
 */
export class Migration20261205000003 extends Migration {
  async up(): Promise<void> {
    this.addSql("ALTER TABLE generations ADD COLUMN event_seq bigint NOT NULL DEFAULT 1 CHECK (event_seq >= 1)");
    this.addSql(`
      CREATE FUNCTION generations_event_seq() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF TG_OP = 'UPDATE' THEN
          IF NEW.status IS NOT DISTINCT FROM OLD.status AND NEW.progress_percent IS NOT DISTINCT FROM OLD.progress_percent THEN
            RETURN NEW;
          END IF;
          NEW.event_seq := OLD.event_seq + 1;
        ELSE
          NEW.event_seq := 1;
        END IF;
        PERFORM pg_notify('generation_events', json_build_object(
          'id', NEW.id, 'seq', NEW.event_seq, 'status', NEW.status, 'progress_percent', NEW.progress_percent)::text);
        RETURN NEW;
      END
      $$`);
    this.addSql(`
      CREATE TRIGGER generations_event_seq BEFORE INSERT OR UPDATE OF status, progress_percent ON generations
        FOR EACH ROW EXECUTE FUNCTION generations_event_seq()`);
  }
}
