import { Migration } from "@mikro-orm/migrations";
import { OUTBOX_NOTIFY_TRIGGER_SQL } from "@tally/platform";

/**
 * Wakes the outbox relay at commit: after each INSERT statement on `outbox`, the trigger
 * `outbox_appended` sends `pg_notify('outbox_appended', '')` (platform's
 * OUTBOX_NOTIFY_TRIGGER_SQL), delivered when the appending transaction commits and never for a
 * rolled-back one. The relay LISTENs on a dedicated connection and drains at once; its poll
 * stays as the fallback.
 */
export class Migration20261206000005 extends Migration {
  override async up(): Promise<void> {
    for (const statement of OUTBOX_NOTIFY_TRIGGER_SQL) this.addSql(statement);
  }
}
