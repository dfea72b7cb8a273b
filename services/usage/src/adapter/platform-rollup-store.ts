import { toBigInt, type Sql } from "@tally/platform";
import type { PlatformRollupStore } from "../domain/ports";
import { splitAtUtcDays } from "../domain/platform-analytics";
import type { PlatformFigures, RollupDifference, Window } from "../domain/types";

/*
 * The platform rollups (Migration20261129000001): `platform_daily_usage` (per UTC day, plan,
 * provider, input type and outcome) and `subject_activity` (per subject and kind, for all plans
 * and per plan, a bitmap of its active days). `usage_rollups_add` moves both for the entries of a
 * transaction; the views `platform_daily_usage_from_log` and `subject_activity_from_log` are
 * what the log says, for the rebuild and the reconciliation.
 */

/**
 * One row of the grouping-sets query: the totals (`kind` 'total'), one plan, provider or input
 * type (`key`), or one plan and provider (`kind` 'plan_provider', `plan_key` and
 * `provider_key`, with `all_cost_micros`, the cost of its completed and failed entries).
 */
export interface PlatformRow {
  kind: string;
  key: string | null;
  plan_key: string | null;
  provider_key: string | null;
  generations: string;
  failed: string;
  credits: string;
  cost_micros: string;
  all_cost_micros: string;
  users: string;
  guests: string;
}

/**
 * The select list and grouping of the platform queries over a relation `e` of (plan, provider,
 * input_type, outcome, entries, credits, cost_micros) rows; `users` and `guests` are given.
 */
export const platformSelect = (users: string, guests: string) => `
SELECT CASE WHEN GROUPING(plan, provider) = 0 THEN 'plan_provider' WHEN GROUPING(plan) = 0 THEN 'plan' WHEN GROUPING(provider) = 0 THEN 'provider'
            WHEN GROUPING(input_type) = 0 THEN 'input_type' ELSE 'total' END AS kind,
       coalesce(plan, provider, input_type) AS key, plan AS plan_key, provider AS provider_key,
       coalesce(sum(entries) FILTER (WHERE outcome = 'completed'), 0) AS generations,
       coalesce(sum(entries) FILTER (WHERE outcome = 'failed'), 0) AS failed,
       coalesce(sum(credits) FILTER (WHERE outcome = 'completed'), 0) AS credits,
       coalesce(sum(cost_micros) FILTER (WHERE outcome = 'completed'), 0) AS cost_micros,
       coalesce(sum(cost_micros), 0) AS all_cost_micros,
       ${users} AS users, ${guests} AS guests
  FROM e GROUP BY GROUPING SETS ((), (plan), (provider), (input_type), (plan, provider))`;

/** The PlatformFigures of the grouping-sets rows (the 'total' row's counts, the other kinds as breakdowns; a null key is ""). */
export function platformAnalyticsFromRows(rows: PlatformRow[]): PlatformFigures {
  const empty = { generations: "0", failed: "0", credits: "0", cost_micros: "0", users: "0", guests: "0" };
  const total = rows.find((row) => row.kind === "total") ?? empty;
  const breakdown = (kind: string) =>
    Object.fromEntries(rows.filter((row) => row.kind === kind).map((row) => [row.key ?? "", { completed: toBigInt(row.generations), failed: toBigInt(row.failed) }]));
  const generations = toBigInt(total.generations);
  const costMicros = toBigInt(total.cost_micros);
  return {
    generations,
    failed: toBigInt(total.failed),
    credits: toBigInt(total.credits),
    costMicros,
    averageCostMicros: generations > 0n ? costMicros / generations : 0n,
    uniqueUsers: toBigInt(total.users),
    uniqueGuests: toBigInt(total.guests),
    byPlan: breakdown("plan"),
    byProvider: breakdown("provider"),
    byInputType: breakdown("input_type"),
    spend: rows
      .filter((row) => row.kind === "plan_provider")
      .map((row) => ({ plan: row.plan_key ?? "", provider: row.provider_key ?? "", credits: toBigInt(row.credits), costMicros: toBigInt(row.all_cost_micros) }))
      .sort((a, b) => (a.plan === b.plan ? (a.provider < b.provider ? -1 : 1) : a.plan < b.plan ? -1 : 1)),
  };
}

/** A range of days that holds none (the rollups give nothing for it). */
const NO_DAYS = { from: "1970-01-01", to: "1970-01-01" };

/*
 * One statement (one snapshot). `edge`: the log's entries in the partial days (by
 * usage_log_occurred_at); `e`: the rollup rows of the whole days with the edge entries as rows
 * of one entry; `counted`: the subjects (rows of their plan scope) active in the whole days;
 * `extra`: the subjects of the edges not among them. Params: edge bounds (4), plan (2),
 * days (2), plan (2), plan (2), days (2), plan (2), days (2).
 */
const PLATFORM_SQL = `
WITH edge AS MATERIALIZED (
  SELECT user_id, subject_kind IS NOT DISTINCT FROM 'guest' AS guest, plan, provider, input_type, outcome, credits, cost_micros FROM usage_log
   WHERE ((occurred_at >= ?::timestamptz AND occurred_at < ?::timestamptz) OR (occurred_at >= ?::timestamptz AND occurred_at < ?::timestamptz))
     AND (?::text IS NULL OR plan = ?::text)
), e AS (
  SELECT plan, provider, input_type, outcome, entries, credits, cost_micros FROM platform_daily_usage
   WHERE day >= ?::date AND day < ?::date AND (?::text IS NULL OR plan = ?::text)
  UNION ALL
  SELECT plan, provider, input_type, outcome, 1, credits, cost_micros FROM edge
), scope AS MATERIALIZED (
  SELECT ?::text IS NULL AS all_plans, ?::text AS plan, ?::date AS from_day, ?::date AS to_day
), counted AS (
  SELECT count(*) FILTER (WHERE NOT a.guest) AS users, count(*) FILTER (WHERE a.guest) AS guests
    FROM subject_activity a, scope
   WHERE a.all_plans = scope.all_plans AND (scope.all_plans OR a.plan = scope.plan)
     AND usage_active_between(a.first_day, a.days, scope.from_day, scope.to_day)
), extra AS (
  SELECT count(*) FILTER (WHERE NOT x.guest) AS users, count(*) FILTER (WHERE x.guest) AS guests
    FROM (SELECT DISTINCT user_id, guest FROM edge) x, scope
   WHERE NOT EXISTS (SELECT 1 FROM subject_activity a
                      WHERE a.subject_id = x.user_id AND a.guest = x.guest AND a.all_plans = scope.all_plans AND a.plan IS NOT DISTINCT FROM scope.plan
                        AND usage_active_between(a.first_day, a.days, scope.from_day, scope.to_day))
)
${platformSelect("(SELECT counted.users + extra.users FROM counted, extra)", "(SELECT counted.guests + extra.guests FROM counted, extra)")}`;

export class SqlPlatformRollupStore implements PlatformRollupStore {
  constructor(private readonly sql: Sql) {}

  async platform(window: Window, plan: string | null): Promise<PlatformFigures> {
    const { days, edges } = splitAtUtcDays(window);
    const [first, second] = [edges[0] ?? { start: window.start, end: window.start }, edges[1] ?? { start: window.start, end: window.start }];
    const { from, to } = days ?? NO_DAYS;
    const rows = await this.sql.query<PlatformRow>(PLATFORM_SQL, [first.start, first.end, second.start, second.end, plan, plan, from, to, plan, plan, plan, plan, from, to]);
    return platformAnalyticsFromRows(rows);
  }

  async rebuild(): Promise<number> {
    // As the monthly analytics' rebuild: EXCLUSIVE waits for the writers in flight and blocks
    // new ones until this commits; an entry appended meanwhile then adds itself.
    await this.sql.query("LOCK TABLE platform_daily_usage, subject_activity IN EXCLUSIVE MODE");
    await this.sql.query("DELETE FROM platform_daily_usage");
    await this.sql.query("DELETE FROM subject_activity");
    const [daily] = await this.sql.query<{ n: string }>("WITH w AS (INSERT INTO platform_daily_usage SELECT * FROM platform_daily_usage_from_log RETURNING 1) SELECT count(*) AS n FROM w");
    const [activity] = await this.sql.query<{ n: string }>("WITH w AS (INSERT INTO subject_activity SELECT * FROM subject_activity_from_log RETURNING 1) SELECT count(*) AS n FROM w");
    return Number(daily?.n ?? 0) + Number(activity?.n ?? 0);
  }

  async differences(): Promise<RollupDifference[]> {
    // EXCEPT ALL both ways (nulls compare equal): a row only stored, or only in the log's answer.
    // A changed row shows as both.
    const rows = await this.sql.query<{ rollup: RollupDifference["rollup"]; side: RollupDifference["side"]; row: Record<string, unknown> }>(
      `SELECT 'platform_daily_usage' AS rollup, 'stored' AS side, to_jsonb(d) AS row FROM (SELECT * FROM platform_daily_usage EXCEPT ALL SELECT * FROM platform_daily_usage_from_log) d
       UNION ALL
       SELECT 'platform_daily_usage', 'log', to_jsonb(d) FROM (SELECT * FROM platform_daily_usage_from_log EXCEPT ALL SELECT * FROM platform_daily_usage) d
       UNION ALL
       SELECT 'subject_activity', 'stored', to_jsonb(a) FROM (SELECT * FROM subject_activity EXCEPT ALL SELECT * FROM subject_activity_from_log) a
       UNION ALL
       SELECT 'subject_activity', 'log', to_jsonb(a) FROM (SELECT * FROM subject_activity_from_log EXCEPT ALL SELECT * FROM subject_activity) a
       ORDER BY 1, 3, 2`,
    );
    return rows.map((row) => ({ rollup: row.rollup, side: row.side, row: row.row }));
  }
}
