import assert from "node:assert/strict";
import { toBigInt, type Sql } from "@tally/platform";
import type { UsageLogStore } from "../domain/ports";
import type { PagedUsageLogEntry, UsageLogEntry, UsageLogEntryDraft } from "../domain/types";
import type { UsageLogCursor } from "../domain/usage-log-cursor";

/*
 * The usage log on `usage_log`. Only ever INSERTed (INV-8; triggers reject UPDATE, DELETE and
 * TRUNCATE). PostgreSQL int8 arrives as a string and becomes a bigint.
 */

const USAGE_LOG_COLUMNS = `id, event_id, user_id, generation_id, outcome, billable, input_type, provider, credit_type,
  credits, cost_micros, processing_time_ms, error_message, error_code, occurred_at, recorded_at`;

export class SqlUsageLogStore implements UsageLogStore {
  constructor(private readonly sql: Sql) {}

  async append(id: string, entry: UsageLogEntryDraft): Promise<UsageLogEntry> {
    const row = await this.sql.one<UsageLogRow>(
      `INSERT INTO usage_log (id, event_id, user_id, generation_id, outcome, billable, input_type, provider, credit_type,
         credits, cost_micros, processing_time_ms, error_message, error_code, occurred_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?::bigint, ?::bigint, ?::bigint, ?, ?, ?::timestamptz)
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
      ],
    );
    assert.ok(row, "INV-8: an INSERT … RETURNING of a usage log entry returns the entry");
    return usageLogEntryFromRow(row);
  }

  async page(userId: string, limit: number, after: UsageLogCursor | null): Promise<PagedUsageLogEntry[]> {
    // Integer microseconds added to the epoch: exact, unlike a floating-point to_timestamp.
    const afterCursor = after
      ? "AND (occurred_at, id) < (timestamptz 'epoch' + ?::bigint * interval '1 microsecond', ?::uuid)"
      : "";
    const params = after ? [userId, after.occurredAtMicros, after.id, limit] : [userId, limit];
    const rows = await this.sql.query<UsageLogRow & { occurred_at_micros: string }>(
      `SELECT ${USAGE_LOG_COLUMNS},
              (extract(epoch FROM occurred_at) * 1000000)::bigint AS occurred_at_micros
         FROM usage_log
        WHERE user_id = ? ${afterCursor}
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
  };
}
