import { Migration } from "@mikro-orm/migrations";

/**
 * Outbox claim lease: the relay claims a batch in a short transaction (`claimed_until`), then
 * publishes with no transaction or row lock open. A claim whose relay died runs out and the
 * rows are claimed again.
 */
export class Migration20261122000001 extends Migration {
  async up(): Promise<void> {
    this.addSql("ALTER TABLE outbox ADD COLUMN claimed_until timestamptz");
  }
}
