import type { PlatformFigures } from "../domain/money";
import assert from "node:assert/strict";
import { toBigInt, type Sql } from "@tally/platform";
import type { UsageLogStore } from "../domain/ports";
import { platformAnalyticsFromRows, platformSelect, type PlatformRow } from "./platform-rollup-store";
import type {
  BillingClassification,
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

const USAGE_LOG_COLUMNS = `id, event_id, user_id, generation_id, outcome, billable, input_type, provider, credit_type,
  credits, cost_micros, processing_time_ms, error_message, error_code, occurred_at, recorded_at, plan, plan_limits,
  period_start, period_end, billing_classification, billing_reason, parent_generation_id, output_bytes, subject_kind`;

export class SqlUsageLogStore implements UsageLogStore {
  constructor(private readonly sql: Sql) {}

  async append(id: string, entry: UsageLogEntryDraft, snapshot: SubjectSnapshot): Promise<UsageLogEntry> {
    const row = await this.sql.one<UsageLogRow>(
      `INSERT INTO usage_log (id, event_id, user_id, generation_id, outcome, billable, input_type, provider, credit_type,
         credits, cost_micros, processing_time_ms, error_message, error_code, occurred_at, plan, plan_limits,
         period_start, period_end, billing_classification, billing_reason, parent_generation_id, output_bytes, subject_kind)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?::bigint, ?::bigint, ?::bigint, ?, ?, ?::timestamptz, ?, ?::jsonb,
         ?::timestamptz, ?::timestamptz, ?, ?, ?::uuid, ?::bigint, ?)
       RETURNING ${USAGE_LOG_COLUMNS}`,
      [
        id,
        entry.eventId,
        entry.userId,
        entry.generationId,
        entry.outcome,
        entry.billable,
        entry.inputType,
        entry.provider,
        entry.creditType,
        entry.credits,
        entry.costMicros,
        entry.processingTimeMs,
        entry.errorMessage,
        entry.errorCode,
        entry.occurredAt,
        snapshot.plan,
        snapshot.planLimits === null ? null : JSON.stringify(snapshot.planLimits),
        snapshot.period?.start ?? null,
        snapshot.period?.end ?? null,
        entry.billingClassification,
        entry.billingReason,
        entry.parentGenerationId,
        entry.outputBytes,
        snapshot.subjectKind,
      ],
    );
    assert.ok(row, "INV-8: an INSERT … RETURNING of a usage log entry returns the entry");
    return usageLogEntryFromRow(row);
  }

  async appendDownload(download: DownloadDraft): Promise<void> {
    await this.sql.query(
      `INSERT INTO download_log (event_id, user_id, generation_id, output_bytes, occurred_at)
       VALUES (?, ?, ?, ?::bigint, ?::timestamptz)`,
      [download.eventId, download.userId, download.generationId, download.outputBytes, download.occurredAt],
    );
  }

  async appendCancellation(cancellation: { eventId: string; userId: string; generationId: string; occurredAt: Date }): Promise<void> {
    await this.sql.query(
      "INSERT INTO cancellation_log (event_id, user_id, generation_id, occurred_at) VALUES (?, ?, ?, ?::timestamptz)",
      [cancellation.eventId, cancellation.userId, cancellation.generationId, cancellation.occurredAt],
    );
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

interface UsageLogRow {
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

function usageLogEntryFromRow(row: UsageLogRow): UsageLogEntry {
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
