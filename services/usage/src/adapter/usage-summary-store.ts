import { optionalDate, toBigInt, type Sql } from "@tally/platform";
import type { UsageSummaryStore } from "../domain/ports";
import type { Window } from "../domain/types";
import type { UsageSummaryRead } from "../domain/usage-summary";
import { counts } from "./monthly-analytics-store";
import { countedEntries, dayFromRow, periodFromRow, RESERVED_IN_PERIOD } from "./usage-counter-store";
import { USAGE_LOG_COLUMNS, usageLogEntryFromRow, type UsageLogRow } from "./usage-log-store";
import { userStatsFromRow } from "./user-stats-store";

/*
 * A subject's usage summary in ONE statement (one snapshot, one round trip), bind parameters
 * $1 subject id, $2/$3 the billing period [start, end), $4/$5 the UTC day [start, end), $6 how
 * many newest entries. The counter rows are read as ListLimits reads them; a window with no
 * row yet is counted from the log exactly as ListLimits would create it (the NOT EXISTS gates
 * are one-time filters: an existing row never pays for the counting), without writing it.
 * The head row (subject, counters, stats, lifetime detail, period totals) is repeated on each
 * of the newest entries (one row with null entry columns when there is none).
 */
const SUMMARY = {
  name: "usage_summary_read",
  text: `WITH wp AS (SELECT $1::uuid AS subject_id, $2::timestamptz AS start, $3::timestamptz AS finish),
    wd AS (SELECT $1::uuid AS subject_id, $4::timestamptz AS start, $5::timestamptz AS finish),
    pf AS (SELECT generations, credits, processing_ms, reserved_generations, reserved_credits FROM period_usage
            WHERE subject_id = $1::uuid AND period_start = $2::timestamptz),
    pn AS (SELECT c.generations, c.credits, c.processing_ms, r.generations AS reserved_generations, r.credits AS reserved_credits
             FROM wp w CROSS JOIN LATERAL (${countedEntries("period")}) c CROSS JOIN LATERAL (${RESERVED_IN_PERIOD}) r
            WHERE NOT EXISTS (SELECT 1 FROM pf)),
    df AS (SELECT generations, reserved_generations FROM daily_usage WHERE subject_id = $1::uuid AND day = $4::timestamptz),
    dn AS (SELECT c.generations, 0::bigint AS reserved_generations FROM wd w CROSS JOIN LATERAL (${countedEntries("day")}) c
            WHERE NOT EXISTS (SELECT 1 FROM df)),
    head AS (
      SELECT sj.id IS NOT NULL AS sj_found, sj.kind AS sj_kind, sj.plan AS sj_plan, sj.period_anchor AS sj_period_anchor,
             coalesce(sj.active_reservations, 0) AS sj_active_reservations,
             p.generations AS p_generations, p.credits AS p_credits, p.processing_ms AS p_processing_ms,
             p.reserved_generations AS p_reserved_generations, p.reserved_credits AS p_reserved_credits,
             d.generations AS d_generations, d.reserved_generations AS d_reserved_generations,
             coalesce(st.total_generations, 0) AS st_total_generations, coalesce(st.total_failed, 0) AS st_total_failed,
             coalesce(st.total_cost_micros, 0) AS st_total_cost_micros, coalesce(st.total_credits_spent, 0) AS st_total_credits_spent,
             st.last_activity_at AS st_last_activity_at, coalesce(st.total_downloaded, 0) AS st_total_downloaded,
             ma.*, t.*,
             (SELECT count(*) FROM cancellation_log WHERE user_id = $1::uuid) AS lt_cancelled,
             (SELECT count(*) FROM quota_reservations WHERE subject_id = $1::uuid AND status = 'active') AS lt_running,
             (SELECT min(occurred_at) FROM usage_log WHERE user_id = $1::uuid) AS lt_first_activity_at
        FROM (SELECT * FROM pf UNION ALL SELECT * FROM pn) p
        CROSS JOIN (SELECT * FROM df UNION ALL SELECT * FROM dn) d
        LEFT JOIN subjects sj ON sj.id = $1::uuid
        LEFT JOIN user_stats st ON st.user_id = $1::uuid
        CROSS JOIN (SELECT coalesce(sum(output_bytes), 0) AS lt_output_bytes, coalesce(sum(processing_ms), 0) AS lt_processing_ms,
                           usage_counts_sum(by_input_type) AS lt_by_input_type, usage_counts_sum(by_provider) AS lt_by_provider
                      FROM monthly_analytics WHERE subject_id = $1::uuid) ma
        CROSS JOIN (SELECT count(*) FILTER (WHERE outcome = 'completed') AS t_generations, count(*) FILTER (WHERE outcome = 'failed') AS t_failed,
                           coalesce(sum(credits) FILTER (WHERE outcome = 'completed'), 0) AS t_credits,
                           coalesce(sum(cost_micros) FILTER (WHERE outcome = 'completed'), 0) AS t_cost_micros,
                           coalesce(sum(processing_time_ms) FILTER (WHERE outcome = 'completed'), 0) AS t_processing_ms,
                           coalesce(sum(output_bytes) FILTER (WHERE outcome = 'completed'), 0) AS t_output_bytes
                      FROM usage_log WHERE user_id = $1::uuid AND occurred_at >= $2::timestamptz AND occurred_at < $3::timestamptz) t
    )
    SELECT h.*, r.* FROM head h
      LEFT JOIN LATERAL (SELECT ${USAGE_LOG_COLUMNS} FROM usage_log WHERE user_id = $1::uuid ORDER BY occurred_at DESC, id DESC LIMIT $6::integer) r ON true
     ORDER BY r.occurred_at DESC, r.id DESC`,
};

type Counted = "p_generations" | "p_credits" | "p_processing_ms" | "p_reserved_generations" | "p_reserved_credits" | "d_generations" | "d_reserved_generations";
type Totals = "t_generations" | "t_failed" | "t_credits" | "t_cost_micros" | "t_processing_ms" | "t_output_bytes";
type Stats = "st_total_generations" | "st_total_failed" | "st_total_cost_micros" | "st_total_credits_spent" | "st_total_downloaded";
type SummaryRow = Record<Counted | Totals | Stats | "lt_output_bytes" | "lt_processing_ms" | "lt_cancelled" | "lt_running", string> & {
  sj_found: boolean;
  sj_kind: "user" | "guest" | null;
  sj_plan: string | null;
  sj_period_anchor: Date | string | null;
  sj_active_reservations: number;
  st_last_activity_at: Date | string | null;
  lt_by_input_type: Parameters<typeof counts>[0] | null;
  lt_by_provider: Parameters<typeof counts>[0] | null;
  lt_first_activity_at: Date | string | null;
} & { [K in keyof UsageLogRow]: UsageLogRow[K] | null };

export class SqlUsageSummaryStore implements UsageSummaryStore {
  constructor(private readonly sql: Sql) {}

  async read(subjectId: string, period: Window, day: Window, recent: number): Promise<UsageSummaryRead> {
    const rows = await this.sql.bound<SummaryRow>(SUMMARY, [subjectId, period.start, period.end, day.start, day.end, recent]);
    const h = rows[0]!;
    return {
      stored: h.sj_found
        ? { kind: h.sj_kind, plan: h.sj_plan, periodAnchor: optionalDate(h.sj_period_anchor) ?? null, activeReservations: Number(h.sj_active_reservations) }
        : null,
      period: periodFromRow({
        subject_id: subjectId, period_start: period.start, period_end: period.end, generations: h.p_generations, credits: h.p_credits,
        processing_ms: h.p_processing_ms, reserved_generations: h.p_reserved_generations, reserved_credits: h.p_reserved_credits,
      }),
      day: dayFromRow({ subject_id: subjectId, day: day.start, generations: h.d_generations, reserved_generations: h.d_reserved_generations }),
      stats: userStatsFromRow({
        user_id: subjectId, total_generations: h.st_total_generations, total_failed: h.st_total_failed, total_cost_micros: h.st_total_cost_micros,
        total_credits_spent: h.st_total_credits_spent, last_activity_at: h.st_last_activity_at, total_downloaded: h.st_total_downloaded,
      }),
      detail: {
        cancelled: toBigInt(h.lt_cancelled), running: toBigInt(h.lt_running), outputBytes: toBigInt(h.lt_output_bytes), processingMs: toBigInt(h.lt_processing_ms),
        byInputType: counts(h.lt_by_input_type ?? {}), byProvider: counts(h.lt_by_provider ?? {}), firstActivityAt: optionalDate(h.lt_first_activity_at) ?? null,
      },
      totals: {
        generations: toBigInt(h.t_generations), failed: toBigInt(h.t_failed), credits: toBigInt(h.t_credits),
        costMicros: toBigInt(h.t_cost_micros), processingMs: toBigInt(h.t_processing_ms), outputBytes: toBigInt(h.t_output_bytes),
      },
      recent: rows.filter((row) => row.id !== null).map((row) => usageLogEntryFromRow(row as UsageLogRow)),
    };
  }
}
