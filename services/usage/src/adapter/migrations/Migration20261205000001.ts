import { Migration } from "@mikro-orm/migrations";

/**
 * Batched ingest (issue 7): the platform rollups move by the appended entries themselves, not
 * by their ids. `usage_rollups_add_entries(entries)` is `usage_rollups_add` over rows the caller
 * has in hand (the consumer passes the rows its INSERT … RETURNING gave, in the same statement),
 * so a batch never reads the log back: `id = ANY (ids)` without `occurred_at` probes the primary
 * key of every monthly partition. `usage_rollups_add(ids)` now reads the rows once and calls it,
 * so both add exactly the same (one definition of what an entry adds; INV-6).
 *
 * `usage_counts_merge` and `usage_plans_merge` (the monthly analytics' merges: the aggregates'
 * step functions and the upsert's conflict merge, several calls per entry) are rewritten in
 * PL/pgSQL with the same answers for every value in their normal form (`{key: {completed,
 * failed}}` with integer counts; sorted distinct plan names), which every contribution and every
 * stored row is: the counts map walks only the keys of `b` (a third of the time of the old
 * query with its UNION of keys, per call); the plans merge answers `a` when `b` adds nothing.
 * (No `?` in this SQL: the migration runner would read it as a bind parameter.)
 */
export class Migration20261205000001 extends Migration {
  override async up(): Promise<void> {
    this.addSql(`
CREATE FUNCTION usage_rollups_add_entries(p_entries usage_log[]) RETURNS void LANGUAGE sql AS $fn$
  INSERT INTO platform_daily_usage AS t (day, plan, provider, input_type, outcome, entries, credits, cost_micros)
  SELECT (e.occurred_at AT TIME ZONE 'UTC')::date, e.plan, e.provider, e.input_type, e.outcome, count(*), sum(e.credits), sum(e.cost_micros)
    FROM unnest(p_entries) e
   GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
  ON CONFLICT ON CONSTRAINT platform_daily_usage_key DO UPDATE SET
    entries = t.entries + excluded.entries, credits = t.credits + excluded.credits, cost_micros = t.cost_micros + excluded.cost_micros;
  INSERT INTO subject_activity AS a (subject_id, guest, all_plans, plan, first_day, days)
  SELECT user_id, guest, all_plans, plan, min(day), usage_days_bitmap(min(day), max(day), array_agg(day))
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
CREATE OR REPLACE FUNCTION usage_counts_merge(a jsonb, b jsonb) RETURNS jsonb LANGUAGE plpgsql IMMUTABLE AS $fn$
DECLARE
  r jsonb := coalesce(a, '{}'::jsonb);
  k text;
  v jsonb;
BEGIN
  FOR k, v IN SELECT * FROM jsonb_each(coalesce(b, '{}'::jsonb)) LOOP
    r := r || jsonb_build_object(k, jsonb_build_object(
      'completed', coalesce((r -> k ->> 'completed')::bigint, 0) + coalesce((v ->> 'completed')::bigint, 0),
      'failed', coalesce((r -> k ->> 'failed')::bigint, 0) + coalesce((v ->> 'failed')::bigint, 0)));
  END LOOP;
  RETURN r;
END
$fn$`);
    this.addSql(`
CREATE OR REPLACE FUNCTION usage_plans_merge(a text[], b text[]) RETURNS text[] LANGUAGE plpgsql IMMUTABLE AS $fn$
BEGIN
  IF b IS NULL OR cardinality(b) = 0 OR (cardinality(b) = 1 AND (b[1] IS NULL OR b[1] = ANY (coalesce(a, '{}')))) THEN
    RETURN coalesce(a, '{}');
  END IF;
  RETURN coalesce((SELECT array_agg(DISTINCT p ORDER BY p) FROM unnest(coalesce(a, '{}') || b) p WHERE p IS NOT NULL), '{}');
END
$fn$`);
    this.addSql(`
CREATE OR REPLACE FUNCTION usage_rollups_add(p_entry_ids uuid[]) RETURNS void LANGUAGE sql AS $fn$
  SELECT usage_rollups_add_entries(ARRAY(SELECT e FROM usage_log e WHERE e.id = ANY (p_entry_ids)));
$fn$`);
  }
}
