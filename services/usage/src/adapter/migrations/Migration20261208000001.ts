import { Migration } from "@mikro-orm/migrations";

/**
 * Ingest in lanes: the two platform rollups move at different points of a batch's transaction.
 * `subject_activity` rows belong to one subject each, so they keep moving with the log entries
 * (`usage_subject_activity_add_entries`, the same SQL as before, except that a group of one day
 * is the bitmap B'1' without a PL/pgSQL call, as `usage_days_bitmap` answers it); `platform_daily_usage` rows
 * are shared by every batch (one per day, plan, provider, input type and outcome), so the
 * consumer moves them in the transaction's last statement (`usage_platform_daily_add` over one
 * row per entry: its UTC day, plan, provider, input type, outcome, count, credits and cost;
 * summed per key and upserted in key order, INV-9): their row locks are then held only while
 * the batch commits, and concurrent lanes overlap everything else. `usage_rollups_add_entries`
 * stays and moves both rollups through the two functions (one definition of what an entry
 * adds; INV-6).
 * (No question marks in this SQL: the migration runner would read one as a bind parameter.)
 */
export class Migration20261208000001 extends Migration {
  override async up(): Promise<void> {
    this.addSql(`
CREATE FUNCTION usage_platform_daily_add(p_day date[], p_plan text[], p_provider text[], p_input_type text[], p_outcome text[],
                                         p_entries bigint[], p_credits bigint[], p_cost_micros bigint[]) RETURNS void LANGUAGE sql AS $fn$
  INSERT INTO platform_daily_usage AS t (day, plan, provider, input_type, outcome, entries, credits, cost_micros)
  SELECT day, plan, provider, input_type, outcome, sum(entries), sum(credits), sum(cost_micros)
    FROM unnest(p_day, p_plan, p_provider, p_input_type, p_outcome, p_entries, p_credits, p_cost_micros)
         AS x (day, plan, provider, input_type, outcome, entries, credits, cost_micros)
   GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
  ON CONFLICT ON CONSTRAINT platform_daily_usage_key DO UPDATE SET
    entries = t.entries + excluded.entries, credits = t.credits + excluded.credits, cost_micros = t.cost_micros + excluded.cost_micros;
$fn$`);
    this.addSql(`
CREATE FUNCTION usage_subject_activity_add_entries(p_entries usage_log[]) RETURNS void LANGUAGE sql AS $fn$
  INSERT INTO subject_activity AS a (subject_id, guest, all_plans, plan, first_day, days)
  SELECT user_id, guest, all_plans, plan, min(day), CASE WHEN min(day) = max(day) THEN B'1' ELSE usage_days_bitmap(min(day), max(day), array_agg(day)) END
    FROM (SELECT e.user_id, e.subject_kind IS NOT DISTINCT FROM 'guest' AS guest, s.all_plans, CASE WHEN s.all_plans THEN NULL ELSE e.plan END AS plan,
                 (e.occurred_at AT TIME ZONE 'UTC')::date AS day
            FROM unnest(p_entries) e CROSS JOIN (VALUES (true), (false)) s (all_plans)) x
   GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
  ON CONFLICT ON CONSTRAINT subject_activity_key DO UPDATE SET
    first_day = least(a.first_day, excluded.first_day),
    days = usage_days_merge(a.first_day, a.days, excluded.first_day, excluded.days)
   WHERE excluded.first_day < a.first_day OR usage_days_merge(a.first_day, a.days, excluded.first_day, excluded.days) <> a.days;
$fn$`);
    this.addSql(`
CREATE OR REPLACE FUNCTION usage_rollups_add_entries(p_entries usage_log[]) RETURNS void LANGUAGE sql AS $fn$
  SELECT usage_platform_daily_add(array_agg((e.occurred_at AT TIME ZONE 'UTC')::date), array_agg(e.plan), array_agg(e.provider), array_agg(e.input_type),
                                  array_agg(e.outcome), array_agg(1::bigint), array_agg(e.credits), array_agg(e.cost_micros))
    FROM unnest(p_entries) e;
  SELECT usage_subject_activity_add_entries(p_entries);
$fn$`);
  }
}
