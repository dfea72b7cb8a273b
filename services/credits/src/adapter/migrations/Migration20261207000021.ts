import { Migration } from "@mikro-orm/migrations";

/**
 * Drops `hold_allocations_grant_id`, an index no statement reads: allocations are always found
 * by their hold (the primary key `(hold_id, grant_id)`: a capture or release reads its hold's
 * allocations, Reconcile and the balance at a moment join them from `holds`). Every CreateHold
 * paid one insert into it, and as the tables outgrow shared_buffers its leaf pages (one per
 * grant in use) keep falling out of the cache: bench/credits-growth.ts measured 0.4 blocks read
 * per operation for this 5 MB index at 1 GB of credits tables, 73 % hit. Its only other use was
 * the foreign key check when a grant row is deleted or its id changed, which nothing does
 * (grants are written off, never deleted). Invariants are untouched: INV-2 and INV-3 are kept
 * by the statements and the primary key, not by this index.
 */
export class Migration20261207000021 extends Migration {
  override async up(): Promise<void> {
    this.addSql("DROP INDEX IF EXISTS hold_allocations_grant_id");
  }
}
