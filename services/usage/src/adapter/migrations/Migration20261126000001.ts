import { Migration } from "@mikro-orm/migrations";

/**
 * Monthly analytics: one row per subject (the entry's user or guest id) and UTC month, derived
 * from the usage log and written in the transaction that appends each entry (INV-6), so it is
 * never behind and never counts an entry twice. Completed generations bring their credits,
 * cost, processing time and output bytes; failed ones are counted apart. The breakdowns by
 * input type, provider and billing classification map each key to `{completed, failed}`; `plans`
 * is the sorted set of plans in force on the month's entries (more than one: the plan changed
 * during the month).
 *
 * An entry's contribution and the merge of two contributions are SQL functions, used alike by
 * the per-entry upsert, the rebuild (an aggregate over the log) and the reconciliation, so the
 * three cannot disagree on what an entry adds. (No `?` in this SQL: the migration runner would
 * read it as a bind parameter.)
 */
export class Migration20261126000001 extends Migration {
  async up(): Promise<void> {
    this.addSql(`
CREATE TABLE monthly_analytics (
  subject_id uuid NOT NULL,
  month date NOT NULL CHECK (extract(day FROM month) = 1),
  generations bigint NOT NULL DEFAULT 0 CHECK (generations >= 0),
  failed bigint NOT NULL DEFAULT 0 CHECK (failed >= 0),
  credits bigint NOT NULL DEFAULT 0 CHECK (credits >= 0),
  cost_micros bigint NOT NULL DEFAULT 0 CHECK (cost_micros >= 0),
  processing_ms bigint NOT NULL DEFAULT 0 CHECK (processing_ms >= 0),
  output_bytes bigint NOT NULL DEFAULT 0 CHECK (output_bytes >= 0),
  by_input_type jsonb NOT NULL DEFAULT '{}',
  by_provider jsonb NOT NULL DEFAULT '{}',
  by_classification jsonb NOT NULL DEFAULT '{}',
  plans text[] NOT NULL DEFAULT '{}',
  PRIMARY KEY (subject_id, month)
)`);

    // {key: {completed, failed}} maps, added key by key.
    this.addSql(`
CREATE FUNCTION usage_counts_merge(a jsonb, b jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $fn$
  SELECT coalesce(jsonb_object_agg(k, jsonb_build_object(
           'completed', coalesce((a -> k ->> 'completed')::bigint, 0) + coalesce((b -> k ->> 'completed')::bigint, 0),
           'failed', coalesce((a -> k ->> 'failed')::bigint, 0) + coalesce((b -> k ->> 'failed')::bigint, 0))), '{}'::jsonb)
    FROM (SELECT jsonb_object_keys(coalesce(a, '{}'::jsonb)) UNION SELECT jsonb_object_keys(coalesce(b, '{}'::jsonb))) keys (k)
$fn$`);
    this.addSql("CREATE AGGREGATE usage_counts_sum(jsonb) (SFUNC = usage_counts_merge, STYPE = jsonb, INITCOND = '{}')");
    // Sorted sets of plan names.
    this.addSql(`
CREATE FUNCTION usage_plans_merge(a text[], b text[]) RETURNS text[] LANGUAGE sql IMMUTABLE AS $fn$
  SELECT coalesce(array_agg(DISTINCT p ORDER BY p), '{}') FROM unnest(coalesce(a, '{}') || coalesce(b, '{}')) p WHERE p IS NOT NULL
$fn$`);
    this.addSql("CREATE AGGREGATE usage_plans_sum(text[]) (SFUNC = usage_plans_merge, STYPE = text[], INITCOND = '{}')");

    // What one usage log entry adds to its subject's month.
    this.addSql(`
CREATE FUNCTION usage_month_contribution(e usage_log) RETURNS monthly_analytics LANGUAGE sql IMMUTABLE AS $fn$
  SELECT e.user_id,
         date_trunc('month', e.occurred_at AT TIME ZONE 'UTC')::date,
         (e.outcome = 'completed')::int::bigint,
         (e.outcome = 'failed')::int::bigint,
         CASE WHEN e.outcome = 'completed' THEN e.credits ELSE 0 END,
         CASE WHEN e.outcome = 'completed' THEN e.cost_micros ELSE 0 END,
         CASE WHEN e.outcome = 'completed' THEN e.processing_time_ms ELSE 0 END,
         CASE WHEN e.outcome = 'completed' THEN e.output_bytes ELSE 0 END,
         jsonb_build_object(e.input_type, jsonb_build_object('completed', (e.outcome = 'completed')::int, 'failed', (e.outcome = 'failed')::int)),
         jsonb_build_object(e.provider, jsonb_build_object('completed', (e.outcome = 'completed')::int, 'failed', (e.outcome = 'failed')::int)),
         jsonb_build_object(e.billing_classification, jsonb_build_object('completed', (e.outcome = 'completed')::int, 'failed', (e.outcome = 'failed')::int)),
         CASE WHEN e.plan IS NULL THEN '{}'::text[] ELSE ARRAY[e.plan] END
$fn$`);

    // The months as the usage log says they are (the rebuild writes these; the reconciliation compares with them).
    this.addSql(`
CREATE VIEW monthly_analytics_from_log AS
  SELECT c.subject_id, c.month, sum(c.generations)::bigint AS generations, sum(c.failed)::bigint AS failed,
         sum(c.credits)::bigint AS credits, sum(c.cost_micros)::bigint AS cost_micros, sum(c.processing_ms)::bigint AS processing_ms,
         sum(c.output_bytes)::bigint AS output_bytes, usage_counts_sum(c.by_input_type) AS by_input_type,
         usage_counts_sum(c.by_provider) AS by_provider, usage_counts_sum(c.by_classification) AS by_classification,
         usage_plans_sum(c.plans) AS plans
    FROM usage_log e CROSS JOIN LATERAL usage_month_contribution(e) c
   GROUP BY c.subject_id, c.month`);

    // Analytics of every month so far, from the log (entries recorded before this table existed).
    this.addSql("INSERT INTO monthly_analytics SELECT * FROM monthly_analytics_from_log");
    this.addSql("CREATE INDEX monthly_analytics_month ON monthly_analytics (month)");
  }
}
