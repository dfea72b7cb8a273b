/**
 * The SQL of bench/usage-scale.ts: seeding the usage log, filling what the service derives
 * from it, and counting what differs from it.
 */

/** The subject id of seeded subject number `n` (SQL expression over an integer `n`). */
export const subjectUuidSql = (n: string) => `('00000000-0000-4000-a000-' || lpad(to_hex(${n}), 12, '0'))::uuid`;
export const subjectUuid = (n: number) => `00000000-0000-4000-a000-${n.toString(16).padStart(12, "0")}`;

/**
 * Seeded subject `n` as credits would name it now: kind; plan by the seed's rule for its newest
 * entries, except that `business` (not in the built-in plans) is `pro`; billing anchor the 1st
 * of the month 24 months before `end`.
 */
export function seededSubject(n: number, end: Date): { id: string; kind: "user" | "guest"; plan: string; periodAnchor: Date } {
  const guest = n % 5 === 0;
  const plan = guest ? "guest" : n % 7 === 1 || n % 10 >= 6 ? "pro" : "free";
  return { id: subjectUuid(n), kind: guest ? "guest" : "user", plan, periodAnchor: anchorOf(end) };
}

const anchorOf = (end: Date) => new Date(Date.UTC(end.getUTCFullYear() - 2, end.getUTCMonth(), 1));

/** The `subjects` rows of every seeded subject, as usage stores them once each has reserved quota (`seededSubject`). */
export function subjectsSql(subjects: number, end: Date): string {
  return `INSERT INTO subjects (id, kind, plan, period_anchor)
   SELECT ${subjectUuidSql("s")}, CASE WHEN s % 5 = 0 THEN 'guest' ELSE 'user' END,
          CASE WHEN s % 5 = 0 THEN 'guest' WHEN s % 7 = 1 OR s % 10 >= 6 THEN 'pro' ELSE 'free' END,
          timestamptz '${anchorOf(end).toISOString()}'
     FROM generate_series(0, ${subjects - 1}) s`;
}

/**
 * INSERT … SELECT of entries [lo, hi) of `total`, over 24 months ending at `end`. Per entry n:
 * time grows with n (as a log fills); the subject is skewed (random()^2: subject 0 busiest);
 * ids are n-derived (sequential, so the primary keys append). Guests: subject % 5 = 0.
 */
export function seedSql(lo: number, hi: number, total: number, subjects: number, end: Date): string {
  const spanSeconds = Math.round((end.getTime() - Date.UTC(end.getUTCFullYear() - 2, end.getUTCMonth(), end.getUTCDate())) / 1000);
  return `
INSERT INTO usage_log (id, event_id, user_id, generation_id, outcome, billable, input_type, provider, credit_type, credits, cost_micros,
  processing_time_ms, error_message, error_code, occurred_at, recorded_at, plan, plan_limits, period_start, period_end,
  billing_classification, billing_reason, parent_generation_id, output_bytes, subject_kind)
SELECT ('00000000-0000-4000-8000-' || lpad(to_hex(n), 12, '0'))::uuid,
       ('00000000-0000-4000-9000-' || lpad(to_hex(n), 12, '0'))::uuid,
       ${subjectUuidSql("s")},
       ('00000000-0000-4000-b000-' || lpad(to_hex(n), 12, '0'))::uuid,
       CASE WHEN failed THEN 'failed' ELSE 'completed' END, NOT failed, input_type, provider,
       CASE WHEN guest OR r3 < 0.4 THEN 'trial' ELSE 'purchased' END,
       credits, credits * 9000 + (r4 * 5000)::bigint, processing_ms,
       CASE WHEN failed THEN 'provider returned an error' END, CASE WHEN failed THEN 'provider_error' END,
       at, at + interval '2 seconds', plan,
       CASE plan WHEN 'guest' THEN '{"generations_per_day": 5}'::jsonb WHEN 'free' THEN '{"generations_per_day": 50, "credits_per_period": 500}'::jsonb END,
       date_trunc('month', at), date_trunc('month', at) + interval '1 month',
       classification, CASE classification WHEN 'free_retry' THEN 'provider_error_retry' WHEN 'paid_regeneration' THEN 'user_regeneration' END,
       CASE WHEN classification <> 'original' THEN ('00000000-0000-4000-b000-' || lpad(to_hex(greatest(n - 1, 0)), 12, '0'))::uuid END,
       CASE WHEN failed THEN 0 ELSE 20000 + (r4 * 2000000)::bigint END,
       CASE WHEN guest THEN 'guest' ELSE 'user' END
  FROM (
    SELECT n, s, at, r3, r4, guest, failed, input_type, provider, classification,
           CASE WHEN guest THEN 'guest'
                WHEN s % 7 = 1 AND n > ${Math.floor(total / 2)} THEN 'pro'
                ELSE (ARRAY['free', 'free', 'free', 'free', 'free', 'free', 'pro', 'pro', 'pro', 'business'])[s % 10 + 1] END AS plan,
           CASE input_type WHEN 'text' THEN 1 WHEN 'photo' THEN 2 ELSE 2 END * (1 + (r3 * 4)::int) AS credits,
           (500 + r4 * 60000)::bigint AS processing_ms
      FROM (
        SELECT n, s, s % 5 = 0 AS guest, at, r3, r4, r1 < 0.08 AS failed,
               CASE WHEN r2 < 0.55 THEN 'text' WHEN r2 < 0.9 THEN 'photo' ELSE 'address' END AS input_type,
               CASE WHEN r5 < 0.5 THEN 'builtin-renderer' WHEN r5 < 0.75 THEN 'openai-images' WHEN r5 < 0.9 THEN 'stability' ELSE 'replicate' END AS provider,
               CASE WHEN r6 < 0.9 THEN 'original' WHEN r6 < 0.97 THEN 'free_retry' ELSE 'paid_regeneration' END AS classification
          FROM (
            SELECT n, floor(power(random(), 2) * ${subjects})::bigint AS s,
                   timestamptz '${end.toISOString()}' - make_interval(secs => ${spanSeconds}::float8 * (${total} - n) / ${total} - random()) AS at,
                   random() AS r1, random() AS r2, random() AS r3, random() AS r4, random() AS r5, random() AS r6
              FROM generate_series(${lo}, ${hi - 1}) n
          ) raw
      ) picked
  ) e`;
}

/** Sets a session up for bulk work: more memory for sorts and index builds, no wait on each commit. */
export const BULK_SESSION = ["SET timezone = 'UTC'", "SET maintenance_work_mem = '1GB'", "SET work_mem = '256MB'", "SET synchronous_commit = off", "SET max_parallel_maintenance_workers = 2"];

/** The tables the service derives from the log, filled from it with set-based SQL (what its rebuilds write). */
export const DERIVED_SQL = [
  `INSERT INTO user_stats (user_id, total_generations, total_failed, total_cost_micros, total_credits_spent, last_activity_at)
   SELECT user_id, count(*) FILTER (WHERE outcome = 'completed'), count(*) FILTER (WHERE outcome = 'failed'),
          coalesce(sum(cost_micros) FILTER (WHERE outcome = 'completed'), 0), coalesce(sum(credits) FILTER (WHERE outcome = 'completed'), 0), max(occurred_at)
     FROM usage_log GROUP BY user_id`,
  // What the view monthly_analytics_from_log gives (the service's rebuild), one hash
  // aggregate per part instead of merging each entry's JSON contribution (the --reconcile check
  // compares the two): totals, then {completed, failed} by input type, provider and
  // classification, joined per subject and month.
  `CREATE TEMP TABLE bench_month_totals AS
   SELECT user_id, date_trunc('month', occurred_at AT TIME ZONE 'UTC')::date AS month,
          count(*) FILTER (WHERE outcome = 'completed') AS generations, count(*) FILTER (WHERE outcome = 'failed') AS failed,
          coalesce(sum(credits) FILTER (WHERE outcome = 'completed'), 0) AS credits, coalesce(sum(cost_micros) FILTER (WHERE outcome = 'completed'), 0) AS cost_micros,
          coalesce(sum(processing_time_ms) FILTER (WHERE outcome = 'completed'), 0) AS processing_ms, coalesce(sum(output_bytes) FILTER (WHERE outcome = 'completed'), 0) AS output_bytes,
          coalesce(array_agg(DISTINCT plan ORDER BY plan) FILTER (WHERE plan IS NOT NULL), '{}') AS plans
     FROM usage_log GROUP BY 1, 2`,
  ...["input_type", "provider", "billing_classification"].map(
    (column) => `CREATE TEMP TABLE bench_month_${column} AS
     SELECT user_id, month, jsonb_object_agg(key, jsonb_build_object('completed', completed, 'failed', failed)) AS counts
       FROM (SELECT user_id, date_trunc('month', occurred_at AT TIME ZONE 'UTC')::date AS month, ${column} AS key,
                    count(*) FILTER (WHERE outcome = 'completed') AS completed, count(*) FILTER (WHERE outcome = 'failed') AS failed
               FROM usage_log GROUP BY 1, 2, 3) g
      GROUP BY 1, 2`,
  ),
  "ANALYZE bench_month_totals, bench_month_input_type, bench_month_provider, bench_month_billing_classification",
  `INSERT INTO monthly_analytics (subject_id, month, generations, failed, credits, cost_micros, processing_ms, output_bytes, by_input_type, by_provider, by_classification, plans)
   SELECT t.user_id, t.month, t.generations, t.failed, t.credits, t.cost_micros, t.processing_ms, t.output_bytes, i.counts, p.counts, c.counts, t.plans
     FROM bench_month_totals t
     JOIN bench_month_input_type i USING (user_id, month)
     JOIN bench_month_provider p USING (user_id, month)
     JOIN bench_month_billing_classification c USING (user_id, month)`,
  "INSERT INTO platform_daily_usage SELECT * FROM platform_daily_usage_from_log",
  "INSERT INTO subject_activity SELECT * FROM subject_activity_from_log",
];

/**
 * The usage counters a running service would hold for the seeded log (it writes a window's row
 * when a completion first counts in it): a `period_usage` row for every billing period with a
 * completion (seeded anchors are the 1st of a month, so periods are UTC months) and a
 * `daily_usage` row for every subject with a completion on `end`'s UTC day; no reservation is
 * active. Without them every ingested completion and every summary would count its subject's
 * window from the log, which a running service does once per window.
 */
export function countersSql(end: Date): string[] {
  return [
    `INSERT INTO period_usage (subject_id, period_start, period_end, generations, credits, processing_ms)
     SELECT user_id, month, (month AT TIME ZONE 'UTC' + interval '1 month') AT TIME ZONE 'UTC', count(*), sum(credits), sum(processing_time_ms)
       FROM (SELECT user_id, date_trunc('month', occurred_at, 'UTC') AS month, credits, processing_time_ms FROM usage_log WHERE outcome = 'completed') e
      GROUP BY 1, 2`,
    `INSERT INTO daily_usage (subject_id, day, generations)
     SELECT user_id, date_trunc('day', occurred_at, 'UTC'), count(*) FROM usage_log
      WHERE outcome = 'completed' AND occurred_at >= date_trunc('day', timestamptz '${end.toISOString()}', 'UTC') GROUP BY 1, 2`,
  ];
}

/** Rows of user_stats, monthly_analytics, the platform rollups and the period counters that differ from the log (as the services' reconciliations compare; no guest is adopted in the seed). */
export const RECONCILE_SQL = `SELECT (SELECT count(*) FROM (
               (SELECT user_id, total_generations, total_failed, total_cost_micros, total_credits_spent, last_activity_at FROM user_stats
                EXCEPT ALL
                SELECT user_id, count(*) FILTER (WHERE outcome = 'completed'), count(*) FILTER (WHERE outcome = 'failed'),
                       coalesce(sum(cost_micros) FILTER (WHERE outcome = 'completed'), 0), coalesce(sum(credits) FILTER (WHERE outcome = 'completed'), 0), max(occurred_at)
                  FROM usage_log GROUP BY user_id)) d)
          + (SELECT count(*) FROM (SELECT to_jsonb(m) FROM monthly_analytics m EXCEPT ALL SELECT to_jsonb(x) FROM monthly_analytics_from_log x) d)
          + (SELECT count(*) FROM (SELECT * FROM platform_daily_usage EXCEPT ALL SELECT * FROM platform_daily_usage_from_log) d)
          + (SELECT count(*) FROM (SELECT * FROM platform_daily_usage_from_log EXCEPT ALL SELECT * FROM platform_daily_usage) d)
          + (SELECT count(*) FROM (SELECT * FROM subject_activity EXCEPT ALL SELECT * FROM subject_activity_from_log) d)
          + (SELECT count(*) FROM (SELECT * FROM subject_activity_from_log EXCEPT ALL SELECT * FROM subject_activity) d)
          + (SELECT count(*) FROM (SELECT subject_id, period_start, generations, credits, processing_ms FROM period_usage
                                   EXCEPT ALL
                                   SELECT user_id, date_trunc('month', occurred_at, 'UTC'), count(*), sum(credits), sum(processing_time_ms)
                                     FROM usage_log WHERE outcome = 'completed' GROUP BY 1, 2) d) AS n`;
