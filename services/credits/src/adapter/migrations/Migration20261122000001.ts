import { Migration } from "@mikro-orm/migrations";

/**
 * `holds.purchased_amount` counts the credits a hold took from purchased AND promotional
 * grants: it is renamed `token_amount`, the name the domain and the proto use (tokenAmount).
 * A rename keeps the data and the CHECK constraints, which follow the column.
 */
export class Migration20261122000001 extends Migration {
  override async up(): Promise<void> {
    this.addSql("ALTER TABLE holds RENAME COLUMN purchased_amount TO token_amount");
  }
}
