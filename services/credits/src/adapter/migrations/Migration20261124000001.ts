import { Migration } from "@mikro-orm/migrations";
import { OUTBOX_TABLE_SQL } from "@tally/platform";

/**
 * Account erasure (DeleteAccount). `deleted_at` marks a deleted user's account: the CHECK now
 * allows a user without email and password only once deleted (and refuses a deleted account
 * that still has either), so erasure cannot leave a credential behind. Remaining credits are
 * written off: `accounts.written_off_credits` counts them and WRITE_OFF ledger entries record
 * them (`written_off_change`), so INV-2 reads: everything granted is available, held,
 * captured, expired or written off. `outbox` is credits' transactional outbox (platform
 * SqlOutboxStore), for `account.deleted` events.
 */
export class Migration20261124000001 extends Migration {
  override async up(): Promise<void> {
    this.addSql(`
      ALTER TABLE accounts
        ADD COLUMN deleted_at timestamptz,
        ADD COLUMN written_off_credits bigint NOT NULL DEFAULT 0 CHECK (written_off_credits >= 0),
        DROP CONSTRAINT accounts_credentials_by_kind`);
    this.addSql(`
      ALTER TABLE accounts ADD CONSTRAINT accounts_credentials_by_kind CHECK (
        (kind = 'user' AND deleted_at IS NULL AND email IS NOT NULL AND password_hash IS NOT NULL)
        OR (kind = 'user' AND deleted_at IS NOT NULL AND email IS NULL AND password_hash IS NULL)
        OR (kind = 'guest' AND deleted_at IS NULL AND email IS NULL AND password_hash IS NULL))`);
    this.addSql(`
      ALTER TABLE ledger_entries
        ADD COLUMN written_off_change bigint NOT NULL DEFAULT 0,
        DROP CONSTRAINT ledger_entries_kind_check`);
    this.addSql(`
      ALTER TABLE ledger_entries ADD CONSTRAINT ledger_entries_kind_check
        CHECK (kind IN ('grant', 'hold', 'capture', 'release', 'expiry', 'adjustment', 'write_off'))`);
    for (const statement of OUTBOX_TABLE_SQL) this.addSql(statement);
  }
}
