import type { Sql } from "@tally/platform";
import type { DerivedTablesStore } from "../domain/ports";
import type { DerivedTablesRebuild } from "../domain/types";
import { countedEntries, RESERVED_IN_PERIOD } from "./usage-counter-store";

/*
 * The full rebuild of every table derived from the usage log (INV-6), for `npm run usage-admin
 * -- rebuild`. What is derived, and from what:
 *
 *   user_stats          usage_log (completions, failures, cost, credits, last activity) and
 *                       download_log (total_downloaded): one row per user of either log
 *   period_usage        used counters from the completed entries of the window (with guest
 *                       adoptions, as usage-counter-store.ts countedEntries), reserved counters
 *                       from the active quota_reservations of the period
 *   daily_usage         the same per UTC day
 *   subjects            active_reservations: the subject's active quota_reservations
 *   monthly_analytics   the view monthly_analytics_from_log
 *
 * Not derived, so never rewritten: the logs, the inbox, quota_reservations and guest_adoptions
 * (facts), subjects' kind, plan and anchor (the callers' latest word), threshold_crossings
 * (which crossings were announced, each with its published event id) and the outbox. Period and
 * day rows are rewritten where they exist; a window without a row gets one, counted from the
 * log, the first time a check or an entry needs it (usage-counter-store.ts), so none is lost.
 */

/**
 * The tables rewritten, locked in the order every writer takes them (the subject's row lock
 * first — recording an entry, reserving, releasing, expiring, adopting — then the counters,
 * then the stats and the month), so the rebuild waits for the transactions in flight and never
 * closes a cycle with one. EXCLUSIVE blocks writers (and FOR UPDATE row locks), not readers.
 */
const LOCK_SQL = "LOCK TABLE subjects, period_usage, daily_usage, user_stats, monthly_analytics IN EXCLUSIVE MODE";

const USER_STATS_SQL = `
INSERT INTO user_stats (user_id, total_generations, total_failed, total_cost_micros, total_credits_spent, last_activity_at, total_downloaded)
SELECT coalesce(e.user_id, d.user_id), coalesce(e.total_generations, 0), coalesce(e.total_failed, 0), coalesce(e.total_cost_micros, 0),
       coalesce(e.total_credits_spent, 0), e.last_activity_at, coalesce(d.total_downloaded, 0)
  FROM (SELECT user_id,
               count(*) FILTER (WHERE outcome = 'completed') AS total_generations,
               count(*) FILTER (WHERE outcome = 'failed') AS total_failed,
               coalesce(sum(cost_micros) FILTER (WHERE outcome = 'completed'), 0) AS total_cost_micros,
               coalesce(sum(credits) FILTER (WHERE outcome = 'completed'), 0) AS total_credits_spent,
               max(occurred_at) AS last_activity_at
          FROM usage_log GROUP BY user_id) e
  FULL OUTER JOIN (SELECT user_id, count(*) AS total_downloaded FROM download_log GROUP BY user_id) d ON d.user_id = e.user_id
RETURNING user_id`;

const PERIOD_USAGE_SQL = `
WITH x AS (
  SELECT w.subject_id, w.start, c.generations AS used_generations, c.credits AS used_credits, c.processing_ms AS used_processing_ms,
         r.generations AS reserved_generations, r.credits AS reserved_credits
    FROM (SELECT subject_id, period_start AS start, period_end AS finish FROM period_usage) w
    CROSS JOIN LATERAL (${countedEntries("period")}) c
    CROSS JOIN LATERAL (${RESERVED_IN_PERIOD}) r
)
UPDATE period_usage p SET generations = x.used_generations, credits = x.used_credits, processing_ms = x.used_processing_ms,
       reserved_generations = x.reserved_generations, reserved_credits = x.reserved_credits, updated_at = now()
  FROM x WHERE p.subject_id = x.subject_id AND p.period_start = x.start
RETURNING p.subject_id`;

const DAILY_USAGE_SQL = `
WITH x AS (
  SELECT w.subject_id, w.start, c.generations AS used_generations,
         (SELECT count(*) FROM quota_reservations q WHERE q.subject_id = w.subject_id AND q.day = w.start AND q.status = 'active') AS reserved_generations
    FROM (SELECT subject_id, day AS start, day + interval '1 day' AS finish FROM daily_usage) w
    CROSS JOIN LATERAL (${countedEntries("day")}) c
)
UPDATE daily_usage d SET generations = x.used_generations, reserved_generations = x.reserved_generations, updated_at = now()
  FROM x WHERE d.subject_id = x.subject_id AND d.day = x.start
RETURNING d.subject_id`;

const ACTIVE_RESERVATIONS_SQL = `
UPDATE subjects s SET active_reservations = (SELECT count(*) FROM quota_reservations q WHERE q.subject_id = s.id AND q.status = 'active')
RETURNING s.id`;

const MONTHLY_ANALYTICS_COLUMNS = "subject_id, month, generations, failed, credits, cost_micros, processing_ms, output_bytes, by_input_type, by_provider, by_classification, plans";

export class SqlDerivedTablesStore implements DerivedTablesStore {
  constructor(private readonly sql: Sql) {}

  async rebuild(): Promise<DerivedTablesRebuild> {
    // After the lock every statement's snapshot sees every entry committed so far, and no
    // writer of these tables can commit until this transaction does: an entry recorded
    // meanwhile waits, then adds itself on top of the rebuilt rows (counted once).
    await this.sql.query(LOCK_SQL);
    await this.sql.query("DELETE FROM user_stats");
    const userStats = (await this.sql.query(USER_STATS_SQL)).length;
    const periodUsage = (await this.sql.query(PERIOD_USAGE_SQL)).length;
    const dailyUsage = (await this.sql.query(DAILY_USAGE_SQL)).length;
    const subjects = (await this.sql.query(ACTIVE_RESERVATIONS_SQL)).length;
    await this.sql.query("DELETE FROM monthly_analytics");
    const monthlyAnalytics = (
      await this.sql.query(`INSERT INTO monthly_analytics (${MONTHLY_ANALYTICS_COLUMNS}) SELECT ${MONTHLY_ANALYTICS_COLUMNS} FROM monthly_analytics_from_log RETURNING subject_id`)
    ).length;
    return { userStats, periodUsage, dailyUsage, subjects, monthlyAnalytics };
  }
}
