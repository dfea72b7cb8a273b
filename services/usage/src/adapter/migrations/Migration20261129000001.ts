import { Migration } from "@mikro-orm/migrations";

/**
 * Platform rollups, so admin analytics (GetPlatformAnalytics) never scans the usage log for
 * whole UTC days, with exact answers:
 *
 * - `platform_daily_usage`: one row per UTC day, plan (null for entries recorded without one),
 *   provider, input type and outcome (billable iff completed): the entries, their credits and
 *   their cost. Sums over any set of whole days are the log's sums.
 * - `subject_activity`: one row per subject, plan, kind (`guest` or not) and UTC year, whose
 *   `days` bitmap (bit n = day n of the year, 0-based, bit 0 leftmost) marks the days the subject
 *   has an entry of that plan and kind. Unique users and guests of a range of days are the
 *   subjects with a bit set in it: exact, and about one row per subject and year to read.
 *
 * Both are moved in the transaction that appends each entry by `usage_rollups_add(ids)` (one
 * statement per table, for one entry or a batch: rows are aggregated per key first and locked
 * in key order), filled here from the entries recorded before, and compared with the log by the
 * reconciliation through the views `platform_daily_usage_from_log` and
 * `subject_activity_from_log` (which a rebuild writes). `usage_log_occurred_at` serves the
 * partial days at a window's edges. (No `?` in this SQL: the migration runner would read it as
 * a bind parameter.)
 */
export class Migration20261129000001 extends Migration {
  async up(): Promise<void> {
    this.addSql(`
CREATE TABLE platform_daily_usage (
  day date NOT NULL,
  plan text,
  provider text NOT NULL,
  input_type text NOT NULL,
  outcome text NOT NULL CHECK (outcome IN ('completed', 'failed')),
  entries bigint NOT NULL CHECK (entries > 0),
  credits bigint NOT NULL CHECK (credits >= 0),
  cost_micros bigint NOT NULL CHECK (cost_micros >= 0),
  CONSTRAINT platform_daily_usage_key UNIQUE NULLS NOT DISTINCT (day, plan, provider, input_type, outcome)
)`);

    this.addSql(`
CREATE TABLE subject_activity (
  subject_id uuid NOT NULL,
  plan text,
  guest boolean NOT NULL,
  year integer NOT NULL,
  days bit(366) NOT NULL,
  CONSTRAINT subject_activity_key UNIQUE NULLS NOT DISTINCT (year, plan, guest, subject_id)
)`);

    // A day of the year as a one-bit bitmap (0-based: January 1st is bit 0).
    this.addSql(`
CREATE FUNCTION usage_day_bit(at timestamptz) RETURNS bit(366) LANGUAGE sql IMMUTABLE AS $fn$
  SELECT set_bit(repeat('0', 366)::bit(366), extract(doy FROM at AT TIME ZONE 'UTC')::int - 1, 1)
$fn$`);

    // The rollups as the usage log says they are (the backfill and a rebuild write these; the reconciliation compares with them).
    this.addSql(`
CREATE VIEW platform_daily_usage_from_log AS
  SELECT (occurred_at AT TIME ZONE 'UTC')::date AS day, plan, provider, input_type, outcome,
         count(*)::bigint AS entries, sum(credits)::bigint AS credits, sum(cost_micros)::bigint AS cost_micros
    FROM usage_log
   GROUP BY 1, 2, 3, 4, 5`);
    this.addSql(`
CREATE VIEW subject_activity_from_log AS
  SELECT user_id AS subject_id, plan, subject_kind IS NOT DISTINCT FROM 'guest' AS guest,
         extract(year FROM occurred_at AT TIME ZONE 'UTC')::int AS year, bit_or(usage_day_bit(occurred_at)) AS days
    FROM usage_log
   GROUP BY 1, 2, 3, 4`);

    // What the entries `p_entry_ids` (appended in the caller's transaction) add to the rollups.
    // Call it once per entry or once per batch, in the transaction that appends them (INV-6).
    this.addSql(`
CREATE FUNCTION usage_rollups_add(p_entry_ids uuid[]) RETURNS void LANGUAGE sql AS $fn$
  INSERT INTO platform_daily_usage AS t (day, plan, provider, input_type, outcome, entries, credits, cost_micros)
  SELECT (occurred_at AT TIME ZONE 'UTC')::date, plan, provider, input_type, outcome, count(*), sum(credits), sum(cost_micros)
    FROM usage_log WHERE id = ANY (p_entry_ids)
   GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
  ON CONFLICT ON CONSTRAINT platform_daily_usage_key DO UPDATE SET
    entries = t.entries + excluded.entries, credits = t.credits + excluded.credits, cost_micros = t.cost_micros + excluded.cost_micros;
  INSERT INTO subject_activity AS a (subject_id, plan, guest, year, days)
  SELECT user_id, plan, subject_kind IS NOT DISTINCT FROM 'guest', extract(year FROM occurred_at AT TIME ZONE 'UTC')::int,
         bit_or(usage_day_bit(occurred_at))
    FROM usage_log WHERE id = ANY (p_entry_ids)
   GROUP BY 1, 2, 3, 4 ORDER BY 4, 2, 3, 1
  ON CONFLICT ON CONSTRAINT subject_activity_key DO UPDATE SET days = a.days | excluded.days
   WHERE a.days | excluded.days <> a.days;
$fn$`);

    // Admin analytics' partial days at a window's edges read the log by time.
    this.addSql("CREATE INDEX usage_log_occurred_at ON usage_log (occurred_at)");
    this.addSql("INSERT INTO platform_daily_usage SELECT * FROM platform_daily_usage_from_log");
    this.addSql("INSERT INTO subject_activity SELECT * FROM subject_activity_from_log");
  }
}
