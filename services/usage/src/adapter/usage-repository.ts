import type { EntityManager } from "@mikro-orm/postgresql";
import { optionalDate, toBigInt } from "@tally/platform";
import type { UsageLogCursor } from "../domain/page-token";
import type { UsageLogEntry, UsageLogEntryDraft, UserStats, UserStatsDelta } from "../domain/usage-log";

/*
 * SQL of the usage service. Everything here runs inside a transaction or a forked
 * EntityManager the service layer passes in; no row type leaves this module. PostgreSQL int8
 * arrives as a string and is converted to bigint; bigints go out as strings.
 */

/**
 * Records `eventId` in the inbox. Returns false when it is already there (a duplicate): the
 * caller then records nothing. Concurrent inserts of one id wait on the primary key until the
 * first commits, so exactly one wins.
 */
export async function insertProcessedEvent(em: EntityManager, eventId: string, subject: string): Promise<boolean> {
  const rows = await em.execute<{ event_id: string }[]>(
    "INSERT INTO processed_events (event_id, subject) VALUES (?, ?) ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
    [eventId, subject],
  );
  return rows.length === 1;
}

/** Appends one immutable usage log entry and returns it as stored. */
export async function insertUsageLogEntry(em: EntityManager, id: string, entry: UsageLogEntryDraft): Promise<UsageLogEntry> {
  const rows = await em.execute<UsageLogRow[]>(
    `INSERT INTO usage_log (id, event_id, user_id, generation_id, outcome, billable, input_type, provider, credit_type,
       credits, cost_micros, processing_time_ms, error_message, error_code, occurred_at)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
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
      entry.credits.toString(),
      entry.costMicros.toString(),
      entry.processingTimeMs.toString(),
      entry.errorMessage,
      entry.errorCode,
      entry.occurredAt,
    ],
  );
  return usageLogEntryFromRow(rows[0]!);
}

/**
 * Adds `delta` to a user's stats in one statement (an upsert), so concurrent events for one
 * user serialise on the row and none is lost; `last_activity_at` only moves forward.
 */
export async function addToUserStats(em: EntityManager, userId: string, delta: UserStatsDelta, occurredAt: Date): Promise<void> {
  await em.execute(
    `INSERT INTO user_stats AS s (user_id, total_generations, total_failed, total_cost_micros, total_credits_spent, last_activity_at)
     VALUES (?, ?, ?, ?, ?, ?)
     ON CONFLICT (user_id) DO UPDATE SET
       total_generations = s.total_generations + excluded.total_generations,
       total_failed = s.total_failed + excluded.total_failed,
       total_cost_micros = s.total_cost_micros + excluded.total_cost_micros,
       total_credits_spent = s.total_credits_spent + excluded.total_credits_spent,
       last_activity_at = greatest(s.last_activity_at, excluded.last_activity_at),
       updated_at = now()`,
    [userId, delta.generations.toString(), delta.failed.toString(), delta.costMicros.toString(), delta.creditsSpent.toString(), occurredAt],
  );
}

/** Reads a user's stored stats, or null when the user has none yet. */
export async function selectUserStats(em: EntityManager, userId: string): Promise<UserStats | null> {
  const rows = await em.execute<UserStatsRow[]>(`SELECT ${USER_STATS_COLUMNS} FROM user_stats WHERE user_id = ?`, [userId]);
  return rows[0] ? userStatsFromRow(rows[0]) : null;
}

/** Reads the stored stats of every user, or of one user when `userId` is given. */
export async function selectStoredStats(em: EntityManager, userId?: string): Promise<UserStats[]> {
  const rows = userId
    ? await em.execute<UserStatsRow[]>(`SELECT ${USER_STATS_COLUMNS} FROM user_stats WHERE user_id = ?`, [userId])
    : await em.execute<UserStatsRow[]>(`SELECT ${USER_STATS_COLUMNS} FROM user_stats`);
  return rows.map(userStatsFromRow);
}

/**
 * Recomputes stats from the usage log alone (every user, or one): completions count as
 * generations with their cost and credits, failures as failures; last activity is the latest
 * entry. Written independently of `statsDelta` so reconciliation checks one against the other.
 */
export async function selectStatsFromUsageLog(em: EntityManager, userId?: string): Promise<UserStats[]> {
  const sql = `
    SELECT user_id,
           count(*) FILTER (WHERE outcome = 'completed') AS total_generations,
           count(*) FILTER (WHERE outcome = 'failed') AS total_failed,
           coalesce(sum(cost_micros) FILTER (WHERE outcome = 'completed'), 0) AS total_cost_micros,
           coalesce(sum(credits) FILTER (WHERE outcome = 'completed'), 0) AS total_credits_spent,
           max(occurred_at) AS last_activity_at
      FROM usage_log
     ${userId ? "WHERE user_id = ?" : ""}
     GROUP BY user_id`;
  const rows = await em.execute<UserStatsRow[]>(sql, userId ? [userId] : []);
  return rows.map(userStatsFromRow);
}

/**
 * Reads up to `limit` of a user's usage log entries, newest first (by `occurred_at`, then id),
 * starting after `cursor`. Each entry comes with its `occurred_at` in microseconds, the
 * precision PostgreSQL keeps, for the next cursor.
 */
export async function selectUsageLogPage(
  em: EntityManager,
  userId: string,
  limit: number,
  cursor: UsageLogCursor | null,
): Promise<{ entry: UsageLogEntry; occurredAtMicros: bigint }[]> {
  const params: unknown[] = [userId];
  let after = "";
  if (cursor) {
    // Integer microseconds added to the epoch: exact, unlike a floating-point to_timestamp.
    after = "AND (occurred_at, id) < (timestamptz 'epoch' + ?::bigint * interval '1 microsecond', ?::uuid)";
    params.push(cursor.occurredAtMicros.toString(), cursor.id);
  }
  params.push(limit);
  const rows = await em.execute<(UsageLogRow & { occurred_at_micros: string })[]>(
    `SELECT ${USAGE_LOG_COLUMNS},
            (extract(epoch FROM occurred_at) * 1000000)::bigint AS occurred_at_micros
       FROM usage_log
      WHERE user_id = ? ${after}
      ORDER BY occurred_at DESC, id DESC
      LIMIT ?`,
    params,
  );
  return rows.map((row) => ({ entry: usageLogEntryFromRow(row), occurredAtMicros: toBigInt(row.occurred_at_micros) }));
}

/** A message that can never be processed, as the consumer received it. */
export interface DeadLetter {
  stream: string;
  streamSequence: number;
  subject: string;
  payload: Uint8Array;
  headers: Record<string, string[]>;
  error: string;
  deliveryCount: number;
}

/** Stores a dead letter (raw payload and why it failed). */
export async function insertDeadLetter(em: EntityManager, letter: DeadLetter): Promise<void> {
  await em.execute(
    `INSERT INTO dead_letters (stream, stream_sequence, subject, payload, headers, error, delivery_count)
     VALUES (?, ?, ?, ?, ?::jsonb, ?, ?)`,
    [
      letter.stream,
      letter.streamSequence,
      withoutNul(letter.subject),
      Buffer.from(letter.payload),
      // jsonb cannot hold \u0000 either.
      withoutNul(JSON.stringify(letter.headers)),
      withoutNul(letter.error),
      letter.deliveryCount,
    ],
  );
}

const withoutNul = (value: string) => value.replace(/\u0000|\\u0000/g, "\uFFFD");

const USAGE_LOG_COLUMNS = `id, event_id, user_id, generation_id, outcome, billable, input_type, provider, credit_type,
  credits, cost_micros, processing_time_ms, error_message, error_code, occurred_at, recorded_at`;

const USER_STATS_COLUMNS = "user_id, total_generations, total_failed, total_cost_micros, total_credits_spent, last_activity_at";

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

interface UserStatsRow {
  user_id: string;
  total_generations: string;
  total_failed: string;
  total_cost_micros: string;
  total_credits_spent: string;
  last_activity_at: Date | string | null;
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

function userStatsFromRow(row: UserStatsRow): UserStats {
  return {
    userId: row.user_id,
    totalGenerations: toBigInt(row.total_generations),
    totalFailed: toBigInt(row.total_failed),
    totalCostMicros: toBigInt(row.total_cost_micros),
    totalCreditsSpent: toBigInt(row.total_credits_spent),
    lastActivityAt: optionalDate(row.last_activity_at) ?? null,
  };
}
