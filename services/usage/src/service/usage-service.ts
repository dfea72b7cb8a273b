import assert from "node:assert/strict";
import { IsolationLevel } from "@mikro-orm/postgresql";
import { isUuid, newId, validationError, type Orm } from "@tally/platform";
import {
  addToUserStats,
  insertDeadLetter,
  insertProcessedEvent,
  insertUsageLogEntry,
  selectStatsFromUsageLog,
  selectStoredStats,
  selectUsageLogPage,
  selectUserStats,
  type DeadLetter,
} from "../adapter/usage-repository";
import { decodePageToken, encodePageToken, resolvePageSize } from "../domain/page-token";
import { emptyUserStats, statsDelta, type UsageLogEntry, type UsageLogEntryDraft, type UserStats } from "../domain/usage-log";

export type { DeadLetter };

/** What recording one event did. */
export type RecordOutcome = { kind: "recorded"; entry: UsageLogEntry } | { kind: "duplicate"; eventId: string };

/**
 * Records one generation event, in ONE transaction: the event id goes into the inbox, the
 * immutable usage log entry is appended and the user's stats move by the entry's delta (seed
 * 000: stats updated atomically with the record; DESIGN invariant 5: exactly once in effect).
 * An event id already in the inbox records nothing and answers `duplicate`.
 *
 * Errors: database errors propagate (the caller retries later); nothing is half-written.
 */
export async function recordUsage(orm: Orm, subject: string, draft: UsageLogEntryDraft): Promise<RecordOutcome> {
  return orm.em.fork().transactional(async (em) => {
    const first = await insertProcessedEvent(em, draft.eventId, subject);
    if (!first) return { kind: "duplicate", eventId: draft.eventId };
    const entry = await insertUsageLogEntry(em, newId(), draft);
    await addToUserStats(em, draft.userId, statsDelta(draft), draft.occurredAt);
    return { kind: "recorded", entry };
  });
}

/** Stores a message that can never be processed, raw, with the reason (one transaction). */
export async function recordDeadLetter(orm: Orm, letter: DeadLetter): Promise<void> {
  await orm.em.fork().transactional((em) => insertDeadLetter(em, letter));
}

/**
 * A user's lifetime stats (usage.proto GetUserStats). A user with no usage yet has zeros, not
 * an error. Errors: `validation` when `userId` is not a UUID.
 */
export async function getUserStats(orm: Orm, userId: string): Promise<UserStats> {
  const id = requireUserId(userId);
  return (await selectUserStats(orm.em.fork(), id)) ?? emptyUserStats(id);
}

/** One page of a user's usage log, newest first, and the token of the next page ("" at the end). */
export interface UsageLogPage {
  entries: UsageLogEntry[];
  nextPageToken: string;
}

/**
 * A user's usage log entries, newest first, with keyset pagination (usage.proto
 * ListUsageLogEntries): `pageSize` 1..100 (0 means 20), `pageToken` "" for the first page or
 * the previous page's `nextPageToken`. Entries recorded while paging never shift a page.
 * Errors: `validation` for a malformed user id, a page size out of range or a bad token.
 */
export async function listUsageLogEntries(orm: Orm, request: { userId: string; pageSize: number; pageToken: string }): Promise<UsageLogPage> {
  const userId = requireUserId(request.userId);
  const pageSize = resolvePageSize(request.pageSize);
  const cursor = request.pageToken ? decodePageToken(request.pageToken, userId) : null;
  // One row more than the page tells whether another page follows.
  const rows = await selectUsageLogPage(orm.em.fork(), userId, pageSize + 1, cursor);
  const page = rows.slice(0, pageSize);
  const last = page[page.length - 1];
  const nextPageToken =
    rows.length > pageSize && last ? encodePageToken({ userId, occurredAtMicros: last.occurredAtMicros, id: last.entry.id }) : "";
  return { entries: page.map((row) => row.entry), nextPageToken };
}

/** One user's stored stats against what the usage log says. */
export interface StatsDifference {
  userId: string;
  stored: UserStats;
  fromUsageLog: UserStats;
}

/**
 * Recomputes lifetime stats from the usage log and compares them with the stored stats, for
 * every user or for `userId` (DESIGN invariant 6: stats equal what the usage log says, to the
 * unit). Returns the users whose stats differ; an empty list means they agree. Reads in one
 * REPEATABLE READ snapshot so events recorded meanwhile cannot show up as a false difference.
 */
export async function reconcileUserStats(orm: Orm, userId?: string): Promise<StatsDifference[]> {
  const id = userId === undefined ? undefined : requireUserId(userId);
  return orm.em.fork().transactional(
    async (em) => {
      const [stored, fromLog] = [await selectStoredStats(em, id), await selectStatsFromUsageLog(em, id)];
      const storedByUser = new Map(stored.map((s) => [s.userId, s]));
      const fromLogByUser = new Map(fromLog.map((s) => [s.userId, s]));
      const users = new Set([...storedByUser.keys(), ...fromLogByUser.keys()]);
      const differences: StatsDifference[] = [];
      for (const user of users) {
        const a = storedByUser.get(user) ?? emptyUserStats(user);
        const b = fromLogByUser.get(user) ?? emptyUserStats(user);
        if (!sameStats(a, b)) differences.push({ userId: user, stored: a, fromUsageLog: b });
      }
      return differences;
    },
    { isolationLevel: IsolationLevel.REPEATABLE_READ },
  );
}

function sameStats(a: UserStats, b: UserStats): boolean {
  assert.equal(a.userId, b.userId);
  return (
    a.totalGenerations === b.totalGenerations &&
    a.totalFailed === b.totalFailed &&
    a.totalCostMicros === b.totalCostMicros &&
    a.totalCreditsSpent === b.totalCreditsSpent &&
    (a.lastActivityAt?.getTime() ?? null) === (b.lastActivityAt?.getTime() ?? null)
  );
}

function requireUserId(userId: string): string {
  if (!isUuid(userId)) throw validationError("user_id must be a UUID", { field: "user_id" });
  return userId.toLowerCase();
}
