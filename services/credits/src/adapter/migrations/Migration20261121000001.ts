import { Migration } from "@mikro-orm/migrations";
import { IDEMPOTENCY_TABLE_SQL } from "@tally/platform";

/**
 * The credits schema: accounts with their balances, grants, holds with the grants they took
 * from (hold_allocations), the immutable ledger and the idempotency store.
 *
 * Balances live on `accounts` so that a hold is one conditional UPDATE (INV-1: a conditional
 * UPDATE … WHERE available >= n at READ COMMITTED is atomic); CHECKs make a negative balance
 * impossible even for a bug, and the ledger refuses UPDATE and DELETE (INV-8).
 */
export class Migration20261121000001 extends Migration {
  override async up(): Promise<void> {
    this.addSql(IDEMPOTENCY_TABLE_SQL);

    this.addSql(`
      CREATE TABLE accounts (
        id uuid PRIMARY KEY,
        email text NOT NULL,
        password_hash text NOT NULL,
        plan text NOT NULL,
        role text NOT NULL CHECK (role IN ('user', 'admin')),
        created_at timestamptz NOT NULL DEFAULT now(),
        last_login_at timestamptz,
        current_period_start timestamptz NOT NULL,
        available_credits bigint NOT NULL DEFAULT 0 CHECK (available_credits >= 0),
        held_credits bigint NOT NULL DEFAULT 0 CHECK (held_credits >= 0),
        captured_credits bigint NOT NULL DEFAULT 0 CHECK (captured_credits >= 0),
        expired_credits bigint NOT NULL DEFAULT 0 CHECK (expired_credits >= 0)
      )`);
    this.addSql("CREATE UNIQUE INDEX accounts_email_key ON accounts (email)");

    this.addSql(`
      CREATE TABLE grants (
        id uuid PRIMARY KEY,
        account_id uuid NOT NULL REFERENCES accounts (id),
        kind text NOT NULL CHECK (kind IN ('trial', 'purchased', 'promotional')),
        priority smallint NOT NULL,
        amount bigint NOT NULL CHECK (amount > 0),
        remaining_amount bigint NOT NULL CHECK (remaining_amount >= 0 AND remaining_amount <= amount),
        expires_at timestamptz,
        created_at timestamptz NOT NULL DEFAULT now()
      )`);
    // The consumption order (domain/allocation.ts), so allocation reads grants in index order.
    this.addSql("CREATE INDEX grants_consumption_order ON grants (account_id, priority, expires_at NULLS LAST, created_at, id)");

    this.addSql(`
      CREATE TABLE holds (
        id uuid PRIMARY KEY,
        account_id uuid NOT NULL REFERENCES accounts (id),
        generation_id text NOT NULL,
        status text NOT NULL CHECK (status IN ('active', 'captured', 'released', 'expired')),
        amount bigint NOT NULL CHECK (amount > 0),
        trial_amount bigint NOT NULL CHECK (trial_amount >= 0),
        purchased_amount bigint NOT NULL CHECK (purchased_amount >= 0),
        captured_amount bigint NOT NULL DEFAULT 0 CHECK (captured_amount >= 0 AND captured_amount <= amount),
        release_reason text,
        expires_at timestamptz NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        ended_at timestamptz,
        CHECK (trial_amount + purchased_amount = amount),
        CHECK ((status = 'active') = (ended_at IS NULL))
      )`);
    // One hold per generation (INV-3).
    this.addSql("CREATE UNIQUE INDEX holds_generation_id_key ON holds (generation_id)");
    this.addSql("CREATE INDEX holds_account_id ON holds (account_id)");
    // What the expiry sweeper scans: only active holds, by deadline.
    this.addSql("CREATE INDEX holds_active_expires_at ON holds (expires_at) WHERE status = 'active'");

    this.addSql(`
      CREATE TABLE hold_allocations (
        hold_id uuid NOT NULL REFERENCES holds (id),
        grant_id uuid NOT NULL REFERENCES grants (id),
        -- Position in consumption order, so a capture burns allocations in the order taken.
        sequence smallint NOT NULL,
        amount bigint NOT NULL CHECK (amount > 0),
        PRIMARY KEY (hold_id, grant_id)
      )`);
    this.addSql("CREATE INDEX hold_allocations_grant_id ON hold_allocations (grant_id)");

    this.addSql(`
      CREATE TABLE ledger_entries (
        id uuid PRIMARY KEY,
        -- Grows in commit order per account (each movement holds the account's row lock):
        -- the keyset for newest-first pagination and the replay order.
        position bigserial NOT NULL UNIQUE,
        account_id uuid NOT NULL REFERENCES accounts (id),
        kind text NOT NULL CHECK (kind IN ('grant', 'hold', 'capture', 'release', 'expiry', 'adjustment')),
        -- Signed changes of the account's balances; each column sums to the stored balance.
        amount bigint NOT NULL,
        held_change bigint NOT NULL DEFAULT 0,
        captured_change bigint NOT NULL DEFAULT 0,
        expired_change bigint NOT NULL DEFAULT 0,
        grant_kind text CHECK (grant_kind IN ('trial', 'purchased', 'promotional')),
        grant_id uuid REFERENCES grants (id),
        hold_id uuid REFERENCES holds (id),
        generation_id text,
        reason text,
        balance_after bigint NOT NULL CHECK (balance_after >= 0),
        held_after bigint NOT NULL CHECK (held_after >= 0),
        created_at timestamptz NOT NULL DEFAULT now()
      )`);
    this.addSql("CREATE INDEX ledger_entries_account_position ON ledger_entries (account_id, position DESC)");
    this.addSql(`
      CREATE FUNCTION ledger_entries_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        RAISE EXCEPTION 'ledger entries are immutable';
      END $$`);
    this.addSql(`
      CREATE TRIGGER ledger_entries_immutable BEFORE UPDATE OR DELETE ON ledger_entries
      FOR EACH ROW EXECUTE FUNCTION ledger_entries_immutable()`);
  }
}
