import assert from "node:assert/strict";
import { validationError } from "@tally/platform";
import {
  checkAmount,
  checkEventFacts,
  checkStorableText,
  ERROR_MESSAGE_LENGTH_MAX,
  SHORT_TEXT_LENGTH_MAX,
  type GenerationCompletedFacts,
  type GenerationFailedFacts,
} from "./generation-event";
import type { PlanCatalog } from "@tally/platform";
import type { StatsBesideUsageLog, StatsDifference, StoredSubject, SubjectSnapshot, UsageLogEntryDraft, UserStats, UserStatsDelta, Window } from "./types";

/*
 * The usage log's rules: which entry an event records (billing classification), how an entry
 * moves its user's stats, and when stored stats disagree with the log (INV-6).
 */

/**
 * The usage log entry a `GenerationCompleted` event records: billable, counting one
 * generation, its cost and the credits captured. Throws `validation` when a field can never be
 * stored (the message is poison).
 */
export function usageLogEntryFromCompleted(event: GenerationCompletedFacts): UsageLogEntryDraft {
  const facts = checkEventFacts(event);
  if (!event.provider) throw validationError("provider is required on a completion");
  return {
    ...facts,
    outcome: "completed",
    billable: true,
    creditType: event.creditType || null,
    errorMessage: null,
    errorCode: null,
    outputBytes: checkAmount("output_bytes", event.outputBytes),
  };
}

/**
 * The usage log entry a `GenerationFailed` event records: not billable; it counts one failure
 * and nothing of the money (its credits were released). An empty error is stored as null.
 * Throws `validation` when a field can never be stored.
 */
export function usageLogEntryFromFailed(event: GenerationFailedFacts): UsageLogEntryDraft {
  const facts = checkEventFacts(event);
  checkStorableText("error_message", event.errorMessage, ERROR_MESSAGE_LENGTH_MAX);
  checkStorableText("error_code", event.errorCode, SHORT_TEXT_LENGTH_MAX);
  return {
    ...facts,
    outcome: "failed",
    billable: false,
    creditType: null,
    errorMessage: event.errorMessage || null,
    errorCode: event.errorCode || null,
    outputBytes: 0n,
  };
}

/**
 * How an entry moves its user's stats: a completion adds one generation, its cost and its
 * credits; a failure adds one failure only. The adapter recomputes the same totals from the
 * usage log independently (UserStatsStore.besideUsageLog), so reconciliation checks one
 * against the other (INV-6).
 */
export function statsDelta(entry: Pick<UsageLogEntryDraft, "outcome" | "costMicros" | "credits">): UserStatsDelta {
  if (entry.outcome === "completed") {
    return { generations: 1n, failed: 0n, costMicros: entry.costMicros, creditsSpent: entry.credits };
  }
  return { generations: 0n, failed: 1n, costMicros: 0n, creditsSpent: 0n };
}

/**
 * The stats deltas of `entries` summed per user (one row per user, in first-seen order), with
 * each user's latest `occurredAt` as its last activity: what a batch adds to `user_stats` in one
 * upsert (INV-6: the same totals as adding each entry's `statsDelta` in turn).
 */
export function sumStatsDeltas(
  entries: readonly Pick<UsageLogEntryDraft, "userId" | "outcome" | "costMicros" | "credits" | "occurredAt">[],
): { userId: string; delta: UserStatsDelta; lastActivityAt: Date }[] {
  const byUser = new Map<string, { userId: string; delta: UserStatsDelta; lastActivityAt: Date }>();
  for (const entry of entries) {
    const delta = statsDelta(entry);
    const row = byUser.get(entry.userId);
    if (!row) {
      byUser.set(entry.userId, { userId: entry.userId, delta, lastActivityAt: entry.occurredAt });
      continue;
    }
    row.delta = {
      generations: row.delta.generations + delta.generations,
      failed: row.delta.failed + delta.failed,
      costMicros: row.delta.costMicros + delta.costMicros,
      creditsSpent: row.delta.creditsSpent + delta.creditsSpent,
    };
    if (entry.occurredAt > row.lastActivityAt) row.lastActivityAt = entry.occurredAt;
  }
  return [...byUser.values()];
}

/** Stats of a user with no usage yet: zeros, not an error. */
export const emptyUserStats = (userId: string): UserStats => ({
  userId,
  totalGenerations: 0n,
  totalFailed: 0n,
  totalCostMicros: 0n,
  totalCreditsSpent: 0n,
  lastActivityAt: null,
  totalDownloaded: 0n,
});

/**
 * The users whose stored stats differ from the stats the usage log gives (a missing side
 * counts as zeros); an empty list means INV-6 holds for every user compared.
 */
export function statsDifferences(rows: readonly StatsBesideUsageLog[]): StatsDifference[] {
  const differences: StatsDifference[] = [];
  for (const row of rows) {
    const stored = row.stored ?? emptyUserStats(row.userId);
    const fromUsageLog = row.fromUsageLog ?? emptyUserStats(row.userId);
    if (!sameStats(stored, fromUsageLog)) differences.push({ userId: row.userId, stored, fromUsageLog });
  }
  return differences;
}

function sameStats(a: UserStats, b: UserStats): boolean {
  assert.equal(a.userId, b.userId, "INV-6: stats are compared for one user at a time");
  return (
    a.totalGenerations === b.totalGenerations &&
    a.totalFailed === b.totalFailed &&
    a.totalCostMicros === b.totalCostMicros &&
    a.totalCreditsSpent === b.totalCreditsSpent &&
    a.totalDownloaded === b.totalDownloaded &&
    (a.lastActivityAt?.getTime() ?? null) === (b.lastActivityAt?.getTime() ?? null)
  );
}

/**
 * What an entry records of its subject: the subject's stored plan and that plan's limits from
 * `plans` (null when the subject has no plan, the plan is not in the catalogue or there is no
 * catalogue), the billing period `period` the entry counts in (null when the subject has no
 * anchor) and the subject's kind (null when usage has no row for it).
 */
export function subjectSnapshot(subject: StoredSubject | null, plans: PlanCatalog | null, period: Window | null): SubjectSnapshot {
  const plan = subject?.plan ?? null;
  const known = plan && plans ? plans.plans[plan] : undefined;
  const planLimits = known
    ? Object.fromEntries(Object.entries(known.limits).flatMap(([name, limit]) => (limit ? [[name, limit.limit] as const] : [])))
    : null;
  return { plan, planLimits, period, subjectKind: subject?.kind ?? null };
}
