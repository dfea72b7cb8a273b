import { Migration } from "@mikro-orm/migrations";

/**
 * Guests get accounts: `kind` tells a signed-up user's account from a guest's, and a guest has
 * neither email nor password (the CHECK holds both kinds to that, so a user can never lose its
 * credentials and a guest can never sign in). `adopted_by` names the user whose sign-up adopted
 * the guest; once set, the guest id stops working (EnsureGuestAccount answers `unauthenticated`).
 * Existing rows are users, which the default makes them.
 */
export class Migration20261123000001 extends Migration {
  override async up(): Promise<void> {
    this.addSql(`
      ALTER TABLE accounts
        ADD COLUMN kind text NOT NULL DEFAULT 'user' CHECK (kind IN ('user', 'guest')),
        ADD COLUMN adopted_by uuid REFERENCES accounts (id),
        ALTER COLUMN email DROP NOT NULL,
        ALTER COLUMN password_hash DROP NOT NULL`);
    this.addSql(`
      ALTER TABLE accounts ADD CONSTRAINT accounts_credentials_by_kind CHECK (
        (kind = 'user' AND email IS NOT NULL AND password_hash IS NOT NULL)
        OR (kind = 'guest' AND email IS NULL AND password_hash IS NULL))`);
    this.addSql("ALTER TABLE accounts ADD CONSTRAINT accounts_adopted_guests_only CHECK (adopted_by IS NULL OR kind = 'guest')");
  }
}
