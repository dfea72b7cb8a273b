import { usage } from "@tally/contracts";
import { bindService, type AsyncService, type Logger, type Orm } from "@tally/platform";
import type { UsageLogEntry, UserStats } from "../domain/usage-log";
import { getUserStats, listUsageLogEntries } from "../service/usage-service";

/** Fully qualified name of the service, as health and reflection report it. */
export const USAGE_SERVICE_NAME = "tally.usage.v1.UsageService";

/**
 * The RPCs of `usage.UsageServiceServer` without its index signature (inherited from
 * grpc-js's UntypedServiceImplementation), which `AsyncService` would otherwise map to never.
 */
type UsageRpcs = Pick<usage.UsageServiceServer, "getUserStats" | "listUsageLogEntries">;

/**
 * The UsageService gRPC handlers: decode → service → encode. Errors are the service layer's
 * DomainErrors (`validation` for a malformed user id, page size or page token), mapped to gRPC
 * codes by `bindService`.
 */
export function usageHandlers(orm: Orm, logger: Logger): UsageRpcs {
  const implementation: AsyncService<UsageRpcs> = {
    /** GetUserStats(user_id) → lifetime stats; zeros for a user with no usage yet. */
    async getUserStats(request) {
      return { stats: toUserStatsMessage(await getUserStats(orm, request.userId)) };
    },
    /** ListUsageLogEntries(user_id, page_size 1..100 or 0 → 20, page_token) → entries newest first and next_page_token. */
    async listUsageLogEntries(request) {
      const page = await listUsageLogEntries(orm, {
        userId: request.userId,
        pageSize: request.pageSize,
        pageToken: request.pageToken,
      });
      return { entries: page.entries.map(toUsageLogEntryMessage), nextPageToken: page.nextPageToken };
    },
  };
  return bindService<UsageRpcs>(USAGE_SERVICE_NAME, implementation, logger);
}

function toUserStatsMessage(stats: UserStats): usage.UserStats {
  return {
    userId: stats.userId,
    totalGenerations: stats.totalGenerations,
    totalFailed: stats.totalFailed,
    totalCostMicros: stats.totalCostMicros,
    totalCreditsSpent: stats.totalCreditsSpent,
    lastActivityAt: stats.lastActivityAt ?? undefined,
  };
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
