import { usage } from "@tally/contracts";
import type { UsageLogEntry, UsageLogPage, UserStats } from "../domain/types";

/** Domain → proto for the UsageService answers. Absent values become proto defaults ("" or unset). */

export function toUserStatsMessage(stats: UserStats): usage.UserStats {
  return {
    userId: stats.userId,
    totalGenerations: stats.totalGenerations,
    totalFailed: stats.totalFailed,
    totalCostMicros: stats.totalCostMicros,
    totalCreditsSpent: stats.totalCreditsSpent,
    lastActivityAt: stats.lastActivityAt ?? undefined,
  };
}

export function toListUsageLogEntriesResponse(page: UsageLogPage): usage.ListUsageLogEntriesResponse {
  return { entries: page.entries.map(toUsageLogEntryMessage), nextPageToken: page.nextPageToken };
}

function toUsageLogEntryMessage(entry: UsageLogEntry): usage.UsageLogEntry {
  return {
    id: entry.id,
    eventId: entry.eventId,
    userId: entry.userId,
    generationId: entry.generationId,
    outcome: entry.outcome === "completed" ? usage.UsageOutcome.USAGE_OUTCOME_COMPLETED : usage.UsageOutcome.USAGE_OUTCOME_FAILED,
    billable: entry.billable,
    inputType: entry.inputType,
    provider: entry.provider,
    credits: entry.credits,
    costMicros: entry.costMicros,
    processingTimeMs: entry.processingTimeMs,
    errorMessage: entry.errorMessage ?? "",
    occurredAt: entry.occurredAt,
    recordedAt: entry.recordedAt,
  };
}
