import { PROTO_FILES, PROTO_ROOT, usage } from "@tally/contracts";
import { bindService, type AsyncService, type Logger } from "@tally/platform";
import { parseGetUserStatsInput, parseListUsageLogEntriesInput } from "../domain/inputs";
import type { StatsService } from "../service/stats";
import type { UsageLogService } from "../service/usage-log";
import { toListUsageLogEntriesResponse, toUserStatsMessage } from "./mapping";

/** Fully qualified name of the service, as health and reflection report it. */
export const USAGE_SERVICE_NAME = "tally.usage.v1.UsageService";

/** What the handlers call. */
export interface UsageHandlerServices {
  stats: StatsService;
  usageLog: UsageLogService;
}

/**
 * The UsageService gRPC handlers: decode → service → encode. Errors are DomainErrors
 * (`validation`, INVALID_ARGUMENT, for a malformed user id, page size or page token: INV-7),
 * mapped to gRPC codes by `bindService`.
 */
export function usageHandlers(services: UsageHandlerServices, logger: Logger): usage.UsageServiceServer {
  const implementation: AsyncService<usage.UsageServiceServer> = {
    /** GetUserStats(user_id) → lifetime stats (money in micro-units); zeros for a user with no usage yet. */
    async getUserStats(request) {
      return { stats: toUserStatsMessage(await services.stats.get(parseGetUserStatsInput(request))) };
    },
    /** ListUsageLogEntries(user_id, page_size 1..100 or 0 → 20, page_token) → entries newest first and next_page_token ("" at the end). */
    async listUsageLogEntries(request) {
      return toListUsageLogEntriesResponse(await services.usageLog.list(parseListUsageLogEntriesInput(request)));
    },
  };
  return bindService<usage.UsageServiceServer>(USAGE_SERVICE_NAME, implementation, logger);
}

/** The UsageService as `startGrpcServer` takes it: name, definition, handlers, and the proto files reflection serves. */
export function usageGrpcService(services: UsageHandlerServices, logger: Logger) {
  return {
    service: { name: USAGE_SERVICE_NAME, definition: usage.UsageServiceService, implementation: usageHandlers(services, logger) },
    protoRoot: PROTO_ROOT,
    protoFiles: [PROTO_FILES.usage],
  };
}
