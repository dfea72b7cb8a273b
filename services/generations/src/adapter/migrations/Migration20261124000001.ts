import { Migration } from "@mikro-orm/migrations";

/**
 * Account erasure: `processed_events` is the inbox of consumed events (one row per event id,
 * written in the transaction of the event's effect, so an `account.deleted` event erases once
 * in effect, INV-5), and `generations.erased_at` marks the generations whose personal data
 * (prompt, photo URL, address, style, output) was erased when their account was deleted.
 */
export class Migration20261124000001 extends Migration {
  async up(): Promise<void> {
    this.addSql(`
      CREATE TABLE processed_events (
        event_id uuid PRIMARY KEY,
        subject text NOT NULL,
        processed_at timestamptz NOT NULL DEFAULT now()
      )`);
    this.addSql("ALTER TABLE generations ADD COLUMN erased_at timestamptz");
  }
}
