import type { PlatformFigures } from "../domain/money";
import { toBigInt, type BoundParam, type Sql } from "@tally/platform";
import { monthContributions } from "../domain/monthly-analytics";
import type { UsageLogStore } from "../domain/ports";
import { MONTHLY_ANALYTICS_ADD, MONTHLY_ANALYTICS_COLUMNS } from "./monthly-analytics-store";
import { platformAnalyticsFromRows, platformSelect, type PlatformRow } from "./platform-rollup-store";
import type {
  BillingClassification,
  MonthlyAnalytics,
  OutcomeCounts,
  DownloadDraft,
  PagedUsageLogEntry,
  SubjectKind,
  SubjectSnapshot,
  UsageLogEntry,
  UsageLogEntryDraft,
  UsageTotals,
  Window,
} from "../domain/types";
import type { UsageLogCursor } from "../domain/usage-log-cursor";

/*
 * The usage log on `usage_log`, and the download log on `download_log`. Both only ever
 * INSERTed (INV-8; triggers reject UPDATE, DELETE and TRUNCATE). PostgreSQL int8 arrives as a string and becomes a bigint.
 */

export const USAGE_LOG_COLUMNS = `id, event_id, user_id, generation_id, outcome, billable, input_type, provider, credit_type,
  credits, cost_micros, processing_time_ms, error_message, error_code, occurred_at, recorded_at, plan, plan_limits,
  period_start, period_end, billing_classification, billing_reason, parent_generation_id, output_bytes, subject_kind`;

/*
 * A batch's entries in ONE statement: appended from arrays (bind parameters $1..$24); the monthly
 * analytics moved by the batch's contributions summed per subject and month in memory
 * (`monthContributions`, the same sums as `usage_month_contribution` over the entries; $25..$36),
 * upserted in key order (INV-9); and the rows the INSERT returns (the log's row type) moved into
 * the subjects' activity rollup (`usage_subject_activity_add_entries`), so the derived rows move
 * with the log and nothing is read back (INV-6). The plans of a month arrive as JSON arrays and are sorted here
 * as PostgreSQL sorts them (what `usage_plans_sum` stores). The platform's daily rollup moves
 * later, by `addToPlatformDaily`, the last statement of the transaction.
 */
const APPEND_MANY = {
  name: "usage_log_append_many",
  text: `WITH e AS (
    INSERT INTO usage_log AS u (id, event_id, user_id, generation_id, outcome, billable, input_type, provider, credit_type,
      credits, cost_micros, processing_time_ms, error_message, error_code, occurred_at, plan, plan_limits,
      period_start, period_end, billing_classification, billing_reason, parent_generation_id, output_bytes, subject_kind)
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::text[], $6::boolean[], $7::text[], $8::text[], $9::text[],
      $10::bigint[], $11::bigint[], $12::bigint[], $13::text[], $14::text[], $15::timestamptz[], $16::text[], $17::jsonb[],
      $18::timestamptz[], $19::timestamptz[], $20::text[], $21::text[], $22::uuid[], $23::bigint[], $24::text[])
    RETURNING u
  ), m AS (
    INSERT INTO monthly_analytics AS m (${MONTHLY_ANALYTICS_COLUMNS})
    SELECT c.subject_id, c.month, c.generations, c.failed, c.credits, c.cost_micros, c.processing_ms, c.output_bytes,
           c.by_input_type, c.by_provider, c.by_classification, ARRAY(SELECT p FROM jsonb_array_elements_text(c.plans) p ORDER BY p)
      FROM unnest($25::uuid[], $26::date[], $27::bigint[], $28::bigint[], $29::bigint[], $30::bigint[], $31::bigint[], $32::bigint[],
                  $33::jsonb[], $34::jsonb[], $35::jsonb[], $36::jsonb[])
           AS c (subject_id, month, generations, failed, credits, cost_micros, processing_ms, output_bytes, by_input_type, by_provider, by_classification, plans)
     ORDER BY c.subject_id, c.month
    ON CONFLICT (subject_id, month) DO UPDATE SET ${MONTHLY_ANALYTICS_ADD}
  )
  SELECT usage_subject_activity_add_entries(array_agg(e.u)) FROM e`,
};

/** The platform's daily rollup moved by a batch's entries (migration 20261208000001); $1..$8 each entry's key, count, credits and cost. */
const PLATFORM_DAILY_ADD = {
  name: "usage_platform_daily_add",
  text: "SELECT usage_platform_daily_add($1::date[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::bigint[], $8::bigint[])",
};

const APPEND_DOWNLOADS = {
  name: "usage_download_log_append_many",
  text: `INSERT INTO download_log (event_id, user_id, generation_id, output_bytes, occurred_at)
         SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::bigint[], $5::timestamptz[])`,
};

const APPEND_CANCELLATIONS = {
  name: "usage_cancellation_log_append_many",
  text: `INSERT INTO cancellation_log (event_id, user_id, generation_id, occurred_at)
         SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::timestamptz[])`,
};

/** Monthly contributions as the bind parameters $25..$36 of APPEND_MANY (counts as JSON of integers). */
function monthColumns(months: readonly MonthlyAnalytics[]): BoundParam[] {
  const counts = (map: Record<string, OutcomeCounts>) =>
    JSON.stringify(Object.fromEntries(Object.entries(map).map(([key, c]) => [key, { completed: Number(c.completed), failed: Number(c.failed) }])));
  const column = <T>(pick: (m: MonthlyAnalytics) => T) => months.map(pick);
  return [
    column((m) => m.subjectId), column((m) => `${m.month}-01`), column((m) => m.generations), column((m) => m.failed), column((m) => m.credits),
    column((m) => m.costMicros), column((m) => m.processingMs), column((m) => m.outputBytes), column((m) => counts(m.byInputType)),
    column((m) => counts(m.byProvider)), column((m) => counts(m.byClassification)), column((m) => JSON.stringify(m.plans)),
  ] as BoundParam[];
}

export class SqlUsageLogStore implements UsageLogStore {
  constructor(private readonly sql: Sql) {}

  async appendMany(entries: readonly { id: string; draft: UsageLogEntryDraft; snapshot: SubjectSnapshot }[]): Promise<void> {
    if (entries.length === 0) return;
    const column = <T>(pick: (e: UsageLogEntryDraft, s: SubjectSnapshot) => T) => entries.map((e) => pick(e.draft, e.snapshot));
    await this.sql.bound(APPEND_MANY, [
      entries.map((e) => e.id), column((d) => d.eventId), column((d) => d.userId), column((d) => d.generationId), column((d) => d.outcome),
      column((d) => d.billable), column((d) => d.inputType), column((d) => d.provider), column((d) => d.creditType), column((d) => d.credits),
      column((d) => d.costMicros), column((d) => d.processingTimeMs), column((d) => d.errorMessage), column((d) => d.errorCode), column((d) => d.occurredAt),
      column((_, s) => s.plan), column((_, s) => (s.planLimits === null ? null : JSON.stringify(s.planLimits))), column((_, s) => s.period?.start ?? null),
      column((_, s) => s.period?.end ?? null), column((d) => d.billingClassification), column((d) => d.billingReason), column((d) => d.parentGenerationId),
      column((d) => d.outputBytes), column((_, s) => s.subjectKind),
      ...monthColumns(monthContributions(entries.map((e) => ({ ...e.draft, plan: e.snapshot.plan })))),
    ]);
  }

  async addToPlatformDaily(entries: readonly { draft: UsageLogEntryDraft; snapshot: SubjectSnapshot }[]): Promise<void> {
    if (entries.length === 0) return;
    // One row per entry (its UTC day, the snapshot's plan, provider, input type, outcome, credits
    // and cost); `usage_platform_daily_add` sums them per key, as `usage_rollups_add_entries` does.
    const column = <T>(pick: (d: UsageLogEntryDraft, s: SubjectSnapshot) => T) => entries.map((e) => pick(e.draft, e.snapshot));
    await this.sql.bound(PLATFORM_DAILY_ADD, [
      column((d) => d.occurredAt.toISOString().slice(0, 10)), column((_, s) => s.plan), column((d) => d.provider), column((d) => d.inputType),
      column((d) => d.outcome), column(() => 1), column((d) => d.credits), column((d) => d.costMicros),
    ]);
  }

  async appendDownloads(downloads: readonly DownloadDraft[]): Promise<void> {
    if (downloads.length === 0) return;
    const column = <T>(pick: (d: DownloadDraft) => T) => downloads.map(pick);
    await this.sql.bound(APPEND_DOWNLOADS, [column((d) => d.eventId), column((d) => d.userId), column((d) => d.generationId), column((d) => d.outputBytes), column((d) => d.occurredAt)]);
  }

  async appendCancellations(cancellations: readonly { eventId: string; userId: string; generationId: string; occurredAt: Date }[]): Promise<void> {
    if (cancellations.length === 0) return;
    const column = <T>(pick: (c: (typeof cancellations)[number]) => T) => cancellations.map(pick);
    await this.sql.bound(APPEND_CANCELLATIONS, [column((c) => c.eventId), column((c) => c.userId), column((c) => c.generationId), column((c) => c.occurredAt)]);
  }

  async totals(userId: string, window: Window): Promise<UsageTotals> {
    const row = await this.sql.one<Record<"generations" | "failed" | "credits" | "cost_micros" | "processing_ms" | "output_bytes", string>>(
      `SELECT count(*) FILTER (WHERE outcome = 'completed') AS generations, count(*) FILTER (WHERE outcome = 'failed') AS failed,
              coalesce(sum(credits) FILTER (WHERE outcome = 'completed'), 0) AS credits,
              coalesce(sum(cost_micros) FILTER (WHERE outcome = 'completed'), 0) AS cost_micros,
              coalesce(sum(processing_time_ms) FILTER (WHERE outcome = 'completed'), 0) AS processing_ms,
              coalesce(sum(output_bytes) FILTER (WHERE outcome = 'completed'), 0) AS output_bytes
         FROM usage_log WHERE user_id = ? AND occurred_at >= ?::timestamptz AND occurred_at < ?::timestamptz`,
      [userId, window.start, window.end],
    );
    return {
      generations: toBigInt(row?.generations ?? "0"),
      failed: toBigInt(row?.failed ?? "0"),
      credits: toBigInt(row?.credits ?? "0"),
      costMicros: toBigInt(row?.cost_micros ?? "0"),
      processingMs: toBigInt(row?.processing_ms ?? "0"),
      outputBytes: toBigInt(row?.output_bytes ?? "0"),
    };
  }

  async platform(window: Window, plan: string | null): Promise<PlatformFigures> {
    // Straight from the log (the reference the rollups are checked against). One scan: the totals row (kind 'total') and one row per plan, provider and input type.
    const rows = await this.sql.query<PlatformRow>(
      `WITH e AS (SELECT user_id, subject_kind, plan, provider, input_type, outcome, 1 AS entries, credits, cost_micros FROM usage_log
                    WHERE occurred_at >= ?::timestamptz AND occurred_at < ?::timestamptz AND (?::text IS NULL OR plan = ?::text))
       ${platformSelect("count(DISTINCT user_id) FILTER (WHERE subject_kind IS DISTINCT FROM 'guest')", "count(DISTINCT user_id) FILTER (WHERE subject_kind = 'guest')")}`,
      [window.start, window.end, plan, plan],
    );
    return platformAnalyticsFromRows(rows);
  }

  async page(userId: string, limit: number, after: UsageLogCursor | null, since: Date | null = null): Promise<PagedUsageLogEntry[]> {
    // Integer microseconds added to the epoch: exact, unlike a floating-point to_timestamp.
    const afterCursor = after
      ? "AND (occurred_at, id) < (timestamptz 'epoch' + ?::bigint * interval '1 microsecond', ?::uuid)"
      : "";
    const sinceFilter = since ? "AND occurred_at >= ?::timestamptz" : "";
    const params = [userId, ...(after ? [after.occurredAtMicros, after.id] : []), ...(since ? [since] : []), limit];
    const rows = await this.sql.query<UsageLogRow & { occurred_at_micros: string }>(
      `SELECT ${USAGE_LOG_COLUMNS},
              (extract(epoch FROM occurred_at) * 1000000)::bigint AS occurred_at_micros
         FROM usage_log
        WHERE user_id = ? ${afterCursor} ${sinceFilter}
        ORDER BY occurred_at DESC, id DESC
        LIMIT ?`,
      params,
    );
    return rows.map((row) => ({ entry: usageLogEntryFromRow(row), occurredAtMicros: toBigInt(row.occurred_at_micros) }));
  }
}

export interface UsageLogRow {
  id: string;
  event_id: string;
  user_id: string;
  generation_id: string;
  outcome: "completed" | "failed";
  billable: boolean;
  input_type: string;
  provider: string;
  credit_type: string | null;
  credits: string;
  cost_micros: string;
  processing_time_ms: string;
  error_message: string | null;
  error_code: string | null;
  occurred_at: Date | string;
  recorded_at: Date | string;
  plan: string | null;
  plan_limits: Record<string, number> | string | null;
  period_start: Date | string | null;
  period_end: Date | string | null;
  billing_classification: BillingClassification;
  billing_reason: string | null;
  parent_generation_id: string | null;
  output_bytes: string;
  subject_kind: SubjectKind | null;
}

export function usageLogEntryFromRow(row: UsageLogRow): UsageLogEntry {
  return {
    id: row.id,
    eventId: row.event_id,
    userId: row.user_id,
    generationId: row.generation_id,
    outcome: row.outcome,
    billable: row.billable,
    inputType: row.input_type,
    provider: row.provider,
    creditType: row.credit_type,
    credits: toBigInt(row.credits),
    costMicros: toBigInt(row.cost_micros),
    processingTimeMs: toBigInt(row.processing_time_ms),
    errorMessage: row.error_message,
    errorCode: row.error_code,
    occurredAt: new Date(row.occurred_at),
    recordedAt: new Date(row.recorded_at),
    plan: row.plan,
    planLimits: typeof row.plan_limits === "string" ? (JSON.parse(row.plan_limits) as Record<string, number>) : row.plan_limits,
    period: row.period_start && row.period_end ? { start: new Date(row.period_start), end: new Date(row.period_end) } : null,
    billingClassification: row.billing_classification,
    billingReason: row.billing_reason,
    parentGenerationId: row.parent_generation_id,
    outputBytes: toBigInt(row.output_bytes),
    subjectKind: row.subject_kind,
  };
}
