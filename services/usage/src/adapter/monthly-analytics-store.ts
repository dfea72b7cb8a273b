import { toBigInt, type Sql } from "@tally/platform";
import type { MonthlyAnalyticsStore } from "../domain/ports";
import type { LifetimeDetail, MonthlyAnalytics, MonthlyAnalyticsDifference, OutcomeCounts } from "../domain/types";

/*
 * Monthly analytics on `monthly_analytics` (Migration20261126000001). What an entry adds is the
 * SQL function `usage_month_contribution`; the view `monthly_analytics_from_log` aggregates it
 * over the whole log. The per-entry upsert, the rebuild and the reconciliation all use them.
 */

const COLUMNS = "subject_id, month, generations, failed, credits, cost_micros, processing_ms, output_bytes, by_input_type, by_provider, by_classification, plans";
export const MONTHLY_ANALYTICS_COLUMNS = COLUMNS;

/** The SET list of an upsert into `monthly_analytics AS m` that adds the `excluded` row to the stored one. */
export const MONTHLY_ANALYTICS_ADD = `generations = m.generations + excluded.generations, failed = m.failed + excluded.failed,
         credits = m.credits + excluded.credits, cost_micros = m.cost_micros + excluded.cost_micros,
         processing_ms = m.processing_ms + excluded.processing_ms, output_bytes = m.output_bytes + excluded.output_bytes,
         by_input_type = usage_counts_merge(m.by_input_type, excluded.by_input_type),
         by_provider = usage_counts_merge(m.by_provider, excluded.by_provider),
         by_classification = usage_counts_merge(m.by_classification, excluded.by_classification),
         plans = usage_plans_merge(m.plans, excluded.plans)`;

export class SqlMonthlyAnalyticsStore implements MonthlyAnalyticsStore {
  constructor(private readonly sql: Sql) {}

  async rebuild(): Promise<number> {
    // EXCLUSIVE blocks every writer (each holds ROW EXCLUSIVE until it commits) and waits for
    // those in flight: the rows written below are the committed log, and an entry appended
    // meanwhile adds itself after this commits, so none is lost or counted twice.
    await this.sql.query("LOCK TABLE monthly_analytics IN EXCLUSIVE MODE");
    await this.sql.query("DELETE FROM monthly_analytics");
    const rows = await this.sql.query<{ subject_id: string }>(`INSERT INTO monthly_analytics (${COLUMNS}) SELECT ${COLUMNS} FROM monthly_analytics_from_log RETURNING subject_id`);
    return rows.length;
  }

  async differences(subjectId?: string): Promise<MonthlyAnalyticsDifference[]> {
    const only = subjectId ?? null;
    const rows = await this.sql.query<{ subject_id: string; month: string; stored: AnalyticsJson | null; expected: AnalyticsJson | null }>(
      `SELECT coalesce(s.subject_id, x.subject_id) AS subject_id, to_char(coalesce(s.month, x.month), 'YYYY-MM') AS month,
              CASE WHEN s.subject_id IS NULL THEN NULL ELSE to_jsonb(s) END AS stored,
              CASE WHEN x.subject_id IS NULL THEN NULL ELSE to_jsonb(x) END AS expected
         FROM (SELECT * FROM monthly_analytics WHERE ?::uuid IS NULL OR subject_id = ?::uuid) s
         FULL JOIN (SELECT * FROM monthly_analytics_from_log WHERE ?::uuid IS NULL OR subject_id = ?::uuid) x
           ON x.subject_id = s.subject_id AND x.month = s.month
        WHERE (s.subject_id IS NULL) <> (x.subject_id IS NULL) OR to_jsonb(s) <> to_jsonb(x)
        ORDER BY 1, 2`,
      [only, only, only, only],
    );
    return rows.map((row) => ({
      subjectId: row.subject_id,
      month: monthOf(row.month),
      stored: row.stored ? fromJson(row.stored) : null,
      expected: row.expected ? fromJson(row.expected) : null,
    }));
  }

  async lifetime(subjectId: string): Promise<LifetimeDetail> {
    const row = await this.sql.one<{
      output_bytes: string; processing_ms: string; by_input_type: AnalyticsRow["by_input_type"]; by_provider: AnalyticsRow["by_provider"];
      cancelled: string; running: string; first_activity_at: Date | null;
    }>(
      `SELECT coalesce(sum(m.output_bytes), 0) AS output_bytes, coalesce(sum(m.processing_ms), 0) AS processing_ms,
              usage_counts_sum(m.by_input_type) AS by_input_type, usage_counts_sum(m.by_provider) AS by_provider,
              (SELECT count(*) FROM cancellation_log WHERE user_id = ?::uuid) AS cancelled,
              (SELECT count(*) FROM quota_reservations WHERE subject_id = ?::uuid AND status = 'active') AS running,
              (SELECT min(occurred_at) FROM usage_log WHERE user_id = ?::uuid) AS first_activity_at
         FROM monthly_analytics m WHERE m.subject_id = ?::uuid`,
      [subjectId, subjectId, subjectId, subjectId],
    );
    return {
      cancelled: toBigInt(row?.cancelled ?? "0"),
      running: toBigInt(row?.running ?? "0"),
      outputBytes: toBigInt(row?.output_bytes ?? "0"),
      processingMs: toBigInt(row?.processing_ms ?? "0"),
      byInputType: counts(row?.by_input_type ?? {}),
      byProvider: counts(row?.by_provider ?? {}),
      firstActivityAt: row?.first_activity_at ? new Date(row.first_activity_at) : null,
    };
  }

  async months(subjectId: string, from: string, to: string): Promise<MonthlyAnalytics[]> {
    const rows = await this.sql.query<AnalyticsRow>(
      `SELECT ${COLUMNS.replace("month", "to_char(month, 'YYYY-MM') AS month")} FROM monthly_analytics
        WHERE subject_id = ? AND month >= (? || '-01')::date AND month <= (? || '-01')::date ORDER BY month DESC`,
      [subjectId, from, to],
    );
    return rows.map(fromRow);
  }
}


interface AnalyticsRow {
  subject_id: string;
  /** `YYYY-MM`, or `YYYY-MM-DD` in a `to_jsonb` row. */
  month: string;
  generations: string;
  failed: string;
  credits: string;
  cost_micros: string;
  processing_ms: string;
  output_bytes: string;
  by_input_type: Record<string, { completed: number | string; failed: number | string }>;
  by_provider: Record<string, { completed: number | string; failed: number | string }>;
  by_classification: Record<string, { completed: number | string; failed: number | string }>;
  plans: string[];
}

/** A row as `to_jsonb` gives it (numbers as JSON numbers). */
type AnalyticsJson = Omit<AnalyticsRow, "generations" | "failed" | "credits" | "cost_micros" | "processing_ms" | "output_bytes"> &
  Record<"generations" | "failed" | "credits" | "cost_micros" | "processing_ms" | "output_bytes", number | string>;

/** `YYYY-MM` of a month as selected (`YYYY-MM`) or as `to_jsonb` writes a date (`YYYY-MM-DD`). */
const monthOf = (value: string): string => value.slice(0, 7);

/** Outcome counts by key as `usage_counts_sum` gives them (JSON numbers or strings). */
export const counts = (map: AnalyticsRow["by_input_type"]): Record<string, OutcomeCounts> =>
  Object.fromEntries(Object.entries(map).map(([key, value]) => [key, { completed: toBigInt(String(value.completed)), failed: toBigInt(String(value.failed)) }]));

function fromJson(row: AnalyticsJson): MonthlyAnalytics {
  return fromRow({ ...row, generations: String(row.generations), failed: String(row.failed), credits: String(row.credits), cost_micros: String(row.cost_micros), processing_ms: String(row.processing_ms), output_bytes: String(row.output_bytes) });
}

function fromRow(row: AnalyticsRow): MonthlyAnalytics {
  return {
    subjectId: row.subject_id,
    month: monthOf(row.month),
    generations: toBigInt(row.generations),
    failed: toBigInt(row.failed),
    credits: toBigInt(row.credits),
    costMicros: toBigInt(row.cost_micros),
    processingMs: toBigInt(row.processing_ms),
    outputBytes: toBigInt(row.output_bytes),
    byInputType: counts(row.by_input_type),
    byProvider: counts(row.by_provider),
    byClassification: counts(row.by_classification),
    plans: row.plans,
    planChanged: row.plans.length > 1,
  };
}
