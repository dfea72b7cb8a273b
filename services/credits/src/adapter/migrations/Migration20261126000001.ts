import { Migration } from "@mikro-orm/migrations";

/**
 * Top-ups and voids (CreateGrant with a reference and a priority, VoidGrant).
 * - `grants.reference`: an outside reference of a grant (a payment id), unique per account, so
 *   two requests for one payment grant once whatever their idempotency keys.
 * - `grants.voided_at`: when an unused grant was voided (its credits written off at once).
 * - Ledger kind `void`: the write-off of a voided grant (`written_off_change` = its amount), so
 *   INV-2 stays: everything granted is available, held, captured, expired or written off.
 * - Ledger kind `extension` and `ledger_entries.hold_deadline`: a hold's deadline is on its HOLD
 *   entry, and each ExtendHold that moves it later writes an EXTENSION entry (no credit moves)
 *   with the new deadline, so the ledger shows how long every hold was meant to live.
 * - `grants_due`: grants with credits left and an expiry, by expiry, so the sweeper and the
 *   lazy check before a hold or a balance read find due grants with one index probe.
 * - `grants.priority` stays the consumption rank; an explicit priority may now tie with
 *   another kind's, and the order then goes on by expiry and kind (domain/allocation.ts).
 */
export class Migration20261126000001 extends Migration {
  override async up(): Promise<void> {
    this.addSql(`
      ALTER TABLE grants
        ADD COLUMN reference text CHECK (length(reference) BETWEEN 1 AND 200),
        ADD COLUMN voided_at timestamptz,
        ADD CONSTRAINT grants_voided_without_remaining CHECK (voided_at IS NULL OR remaining_amount = 0)`);
    this.addSql("CREATE UNIQUE INDEX grants_account_reference ON grants (account_id, reference) WHERE reference IS NOT NULL");
    this.addSql("CREATE INDEX grants_due ON grants (expires_at, account_id) WHERE remaining_amount > 0 AND expires_at IS NOT NULL");
    this.addSql("CREATE INDEX grants_account_due ON grants (account_id, expires_at) WHERE remaining_amount > 0 AND expires_at IS NOT NULL");
    this.addSql("ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_kind_check");
    this.addSql(`
      ALTER TABLE ledger_entries ADD CONSTRAINT ledger_entries_kind_check
        CHECK (kind IN ('grant', 'hold', 'capture', 'release', 'expiry', 'adjustment', 'write_off', 'void', 'extension'))`);
    this.addSql("ALTER TABLE ledger_entries ADD COLUMN hold_deadline timestamptz");
  }
}
