import { Migration } from "@mikro-orm/migrations";

/**
 * Plan limits: the subjects limits apply to, their used and reserved counters per billing
 * period and per UTC day, the quota reservations of running generations, and the guests
 * adopted by users. Counters never go negative (CHECKs): a release or a consumption that
 * would take one below zero is a bug, refused by the database.
 */
export class Migration20261123000001 extends Migration {
  async up(): Promise<void> {
    // The latest kind, plan and anchor the callers named; the row every limit change of a
    // subject locks (FOR UPDATE), so checks and counter moves of one subject serialise.
    this.addSql(`
CREATE TABLE subjects (
  id uuid PRIMARY KEY,
  kind text NOT NULL DEFAULT 'user' CHECK (kind IN ('user', 'guest')),
  plan text,
  period_anchor timestamptz,
  active_reservations integer NOT NULL DEFAULT 0 CHECK (active_reservations >= 0),
  adopted_by uuid,
  updated_at timestamptz NOT NULL DEFAULT now()
)`);

    this.addSql(`
CREATE TABLE period_usage (
  subject_id uuid NOT NULL REFERENCES subjects (id),
  period_start timestamptz NOT NULL,
  period_end timestamptz NOT NULL,
  generations bigint NOT NULL DEFAULT 0 CHECK (generations >= 0),
  credits bigint NOT NULL DEFAULT 0 CHECK (credits >= 0),
  processing_ms bigint NOT NULL DEFAULT 0 CHECK (processing_ms >= 0),
  reserved_generations bigint NOT NULL DEFAULT 0 CHECK (reserved_generations >= 0),
  reserved_credits bigint NOT NULL DEFAULT 0 CHECK (reserved_credits >= 0),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (subject_id, period_start),
  CHECK (period_end > period_start)
)`);

    // One row per subject and UTC day (day = that day's 00:00 UTC).
    this.addSql(`
CREATE TABLE daily_usage (
  subject_id uuid NOT NULL REFERENCES subjects (id),
  day timestamptz NOT NULL,
  generations bigint NOT NULL DEFAULT 0 CHECK (generations >= 0),
  reserved_generations bigint NOT NULL DEFAULT 0 CHECK (reserved_generations >= 0),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (subject_id, day)
)`);

    this.addSql(`
CREATE TABLE quota_reservations (
  generation_id uuid PRIMARY KEY,
  subject_id uuid NOT NULL REFERENCES subjects (id),
  kind text NOT NULL CHECK (kind IN ('user', 'guest')),
  plan text NOT NULL,
  period_start timestamptz NOT NULL,
  day timestamptz NOT NULL,
  credits bigint NOT NULL CHECK (credits >= 0),
  status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'consumed', 'released', 'expired')),
  expires_at timestamptz NOT NULL,
  created_at timestamptz NOT NULL,
  ended_at timestamptz,
  CONSTRAINT quota_reservations_ended_iff_not_active CHECK ((status = 'active') = (ended_at IS NULL))
)`);
    // The expiry runner's scan: active reservations by expiry.
    this.addSql("CREATE INDEX quota_reservations_active_expiry ON quota_reservations (expires_at) WHERE status = 'active'");
    this.addSql("CREATE INDEX quota_reservations_subject ON quota_reservations (subject_id, period_start) WHERE status = 'active'");
    // Counting a window from the log (seeding a new counter row, reconciliation): completed entries by user and time.
    this.addSql("CREATE INDEX usage_log_user_completed ON usage_log (user_id, occurred_at) WHERE outcome = 'completed'");

    // Once per guest: which user adopted it, and the windows its usage moved from (the guest's
    // period and day at adoption) and into (the user's), so reconciliation stays exact.
    this.addSql(`
CREATE TABLE guest_adoptions (
  guest_id uuid PRIMARY KEY REFERENCES subjects (id),
  user_id uuid NOT NULL REFERENCES subjects (id),
  guest_period_start timestamptz,
  guest_period_end timestamptz,
  user_period_start timestamptz NOT NULL,
  user_period_end timestamptz NOT NULL,
  day timestamptz NOT NULL,
  generations_moved bigint NOT NULL CHECK (generations_moved >= 0),
  adopted_at timestamptz NOT NULL DEFAULT now(),
  CHECK (guest_id <> user_id)
)`);
    this.addSql("CREATE INDEX guest_adoptions_user ON guest_adoptions (user_id, user_period_start)");
  }
}
