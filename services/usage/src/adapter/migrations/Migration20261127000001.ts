import { Migration } from "@mikro-orm/migrations";

/**
 * The outbox's index for pruning published rows (`outbox_published_at`, as platform's
 * OUTBOX_TABLE_SQL has it): the relay deletes rows published past their retention, which
 * without it scans the whole table.
 */
export class Migration20261127000001 extends Migration {
  async up(): Promise<void> {
    this.addSql("CREATE INDEX IF NOT EXISTS outbox_published_at ON outbox (published_at) WHERE published_at IS NOT NULL");
  }
}
