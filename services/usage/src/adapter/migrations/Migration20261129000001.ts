import { Migration } from "@mikro-orm/migrations";

/**
 * Platform rollups, so admin analytics (GetPlatformAnalytics) never scans the usage log for
 * whole UTC days, with exact answers:
 *
 * - `platform_daily_usage`: one row per UTC day, plan (null for entries recorded without one),
 *   provider, input type and outcome (billable iff completed): the entries, their credits and
 *   their cost. Sums over any set of whole days are the log's sums.
 * - `subject_activity`: per subject and kind (`guest` or not), one row for all plans
 *   (`all_plans`) and one per plan, whose bitmap `days` (bit i = `first_day` + i days, bit 0
 *   leftmost; its last bit is the last active day) marks the UTC days the subject has an entry
 *   of that kind (and plan). Unique users and guests of a range of days are the rows with a day
 *   in it: exact, one row per subject to read and no DISTINCT (`usage_active_between`).
 *
 * Both are moved in the transaction that appends each entry by `usage_rollups_add(ids)` (one
 * statement per table, for one entry or a batch: rows are aggregated per key first and locked
 * in key order), filled here from the entries recorded before, and compared with the log by the
 * reconciliation through the views `platform_daily_usage_from_log` and
 * `subject_activity_from_log` (which a rebuild writes). `usage_log_occurred_at` serves the
 * partial days at a window's edges; `usage_log_user_totals` makes a user's totals of a window
 * an index-only scan. (No `?` in this SQL: the migration runner would read it as
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

    // all_plans: the subject's days whatever the plan (plan null); else its days on `plan`.
    this.addSql(`
CREATE TABLE subject_activity (
  subject_id uuid NOT NULL,
  guest boolean NOT NULL,
  all_plans boolean NOT NULL,
  plan text,
  first_day date NOT NULL,
  days varbit NOT NULL CHECK (length(days) > 0),
  CONSTRAINT subject_activity_key UNIQUE NULLS NOT DISTINCT (subject_id, guest, all_plans, plan),
  CONSTRAINT subject_activity_all_plans_without_plan CHECK (NOT all_plans OR plan IS NULL)
)`);

    // The bitmap of days in [first_day, last_day] (bit i = first_day + i) with the days `active` set.
    this.addSql(`
CREATE FUNCTION usage_days_bitmap(first_day date, last_day date, active date[]) RETURNS varbit LANGUAGE plpgsql IMMUTABLE AS $fn$
DECLARE
  bitmap varbit := repeat('0', last_day - first_day + 1)::varbit;
  d date;
BEGIN
  FOREACH d IN ARRAY active LOOP
    bitmap := set_bit(bitmap, d - first_day, 1);
  END LOOP;
  RETURN bitmap;
END
$fn$`);
    // Two bitmaps (each from its first day) as one from the earlier first day (OR of both).
    this.addSql(`
CREATE FUNCTION usage_days_merge(f1 date, d1 varbit, f2 date, d2 varbit) RETURNS varbit LANGUAGE sql IMMUTABLE AS $fn$
  SELECT (repeat('0', f1 - f) || d1::text || repeat('0', l - (f1 + length(d1) - 1)))::varbit
       | (repeat('0', f2 - f) || d2::text || repeat('0', l - (f2 + length(d2) - 1)))::varbit
    FROM (SELECT least(f1, f2) AS f, greatest(f1 + length(d1) - 1, f2 + length(d2) - 1) AS l) b
$fn$`);
    // Whether a bitmap from first_day has a day in [from_day, to_day). Its first and last bits
    // are set (the first and last active days), so only a range strictly inside the active span
    // reads bits. Inlined by the planner.
    this.addSql(`
CREATE FUNCTION usage_active_between(first_day date, days varbit, from_day date, to_day date) RETURNS boolean LANGUAGE sql IMMUTABLE AS $fn$
  SELECT CASE
    WHEN first_day >= to_day OR first_day + length(days) <= from_day THEN false
    WHEN first_day >= from_day OR first_day + length(days) <= to_day THEN true
    ELSE bit_count(substring(days FROM from_day - first_day + 1 FOR to_day - from_day)) > 0 END
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
  WITH days AS (
    SELECT DISTINCT user_id, subject_kind IS NOT DISTINCT FROM 'guest' AS guest, plan, (occurred_at AT TIME ZONE 'UTC')::date AS day FROM usage_log
  ), scoped AS (
    SELECT user_id, guest, true AS all_plans, NULL::text AS plan, day FROM days
    UNION
    SELECT user_id, guest, false, plan, day FROM days
  )
  SELECT user_id AS subject_id, guest, all_plans, plan, min(day) AS first_day, usage_days_bitmap(min(day), max(day), array_agg(day)) AS days
    FROM scoped GROUP BY 1, 2, 3, 4`);

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
  INSERT INTO subject_activity AS a (subject_id, guest, all_plans, plan, first_day, days)
  SELECT user_id, guest, all_plans, plan, min(day), usage_days_bitmap(min(day), max(day), array_agg(day))
    FROM (SELECT user_id, subject_kind IS NOT DISTINCT FROM 'guest' AS guest, s.all_plans, CASE WHEN s.all_plans THEN NULL ELSE e.plan END AS plan,
                 (occurred_at AT TIME ZONE 'UTC')::date AS day
            FROM usage_log e CROSS JOIN (VALUES (true), (false)) s (all_plans) WHERE e.id = ANY (p_entry_ids)) x
   GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
  ON CONFLICT ON CONSTRAINT subject_activity_key DO UPDATE SET
    first_day = least(a.first_day, excluded.first_day),
    days = usage_days_merge(a.first_day, a.days, excluded.first_day, excluded.days)
   WHERE excluded.first_day < a.first_day OR usage_days_merge(a.first_day, a.days, excluded.first_day, excluded.days) <> a.days;
$fn$`);

    // Admin analytics' partial days at a window's edges read the log by time.
    this.addSql("CREATE INDEX usage_log_occurred_at ON usage_log (occurred_at)");
    // GetUsageTotals (the summary's billing period) as an index-only scan: a busy user's month
    // is a few index pages instead of one heap page per entry (16 ms → 0.3 ms cold on 10M entries).
    this.addSql("CREATE INDEX usage_log_user_totals ON usage_log (user_id, occurred_at) INCLUDE (outcome, credits, cost_micros, processing_time_ms, output_bytes)");
    this.addSql("INSERT INTO platform_daily_usage SELECT * FROM platform_daily_usage_from_log");
    this.addSql("INSERT INTO subject_activity SELECT * FROM subject_activity_from_log");
  }
}
