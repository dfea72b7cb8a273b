import { optionalDate, toBigInt, type Sql } from "@tally/platform";
import type { UsageSummaryStore } from "../domain/ports";
import type { Window } from "../domain/types";
import type { UsageSummaryRead } from "../domain/usage-summary";
import { counts } from "./monthly-analytics-store";
import { dayFromRow, periodFromRow } from "./usage-counter-store";
import { usageLogEntryFromRow, type UsageLogRow } from "./usage-log-store";
import { userStatsFromRow } from "./user-stats-store";

/*
 * A subject's usage summary in ONE statement (one snapshot, one round trip): the function
 * `usage_summary_read` (migrations 20261207000051 and 20261209000001; its SQL and why it is a
 * function with a generic plan are there), bind parameters $1 subject id, $2/$3 the billing
 * period [start, end), $4/$5 the UTC day [start, end), $6 how many newest entries. The counter
 * rows are read as ListLimits reads them; a window with no row yet is counted from the log
 * exactly as ListLimits would create it, without writing it. One row per newest entry, newest
 * first; the head (subject, counters, stats, lifetime detail, period totals) is on the first row
 * only (one row with null entry columns when there is no entry).
 */
const SUMMARY = {
  name: "usage_summary_read",
  text: `SELECT * FROM usage_summary_read($1::uuid, $2::timestamptz, $3::timestamptz, $4::timestamptz, $5::timestamptz, $6::integer)
          ORDER BY occurred_at DESC, id DESC`,
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
