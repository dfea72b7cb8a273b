import { PROTO_FILES, PROTO_ROOT, usage } from "@tally/contracts";
import { bindService, type AsyncService, type Logger, type ServiceMetrics } from "@tally/platform";
import type { PlanCatalog } from "@tally/platform";
import {
  parseAdoptGuestInput,
  parseCheckAndReserveInput,
  parseGetUserStatsInput,
  parseListLimitsInput,
  parseListUsageLogEntriesInput,
  parseReleaseReservationInput,
} from "../domain/inputs";
import type { AdoptionService } from "../service/adoption";
import type { QuotaService } from "../service/quota";
import type { StatsService } from "../service/stats";
import type { UsageLogService } from "../service/usage-log";
import type { UsageSummaryService } from "../service/usage-summary";
import { fromSubjectMessage, toListLimitsResponse, toListUsageLogEntriesResponse, toMonthlyAnalyticsMessage, toPlatformAnalyticsResponse, toReconcileResponse, toReservationMessage, toUsageSummaryResponse, toUserStatsMessage } from "./mapping";

/** Fully qualified name of the service, as health and reflection report it. */
export const USAGE_SERVICE_NAME = "tally.usage.v1.UsageService";

/** What the handlers call. */
export interface UsageHandlerServices {
  stats: StatsService;
  usageLog: UsageLogService;
  quota: QuotaService;
  adoption: AdoptionService;
  summary: UsageSummaryService;
  /** The plan catalogue requests' plans are checked against. */
  plans: PlanCatalog;
}

/**
 * The UsageService gRPC handlers: decode → service → encode. Errors are DomainErrors
 * (`validation`, INVALID_ARGUMENT, for a malformed user id, page size, page token, subject,
 * generation id or credits: INV-7; the limit errors below), mapped to gRPC codes by
 * `bindService`.
 */
export function usageHandlers(services: UsageHandlerServices, logger: Logger, metrics?: ServiceMetrics): usage.UsageServiceServer {
  const implementation: AsyncService<usage.UsageServiceServer> = {
    /** Reconcile() → how many derived figures differ from the usage log and the first 100 (StatsService.reconcileAll; INV-6; read only). */
    async reconcile() {
      return toReconcileResponse(await services.stats.reconcileAll());
    },
    /** GetUserStats(user_id) → lifetime stats (money in micro-units); zeros for a user with no usage yet. */
    async getUserStats(request) {
      return { stats: toUserStatsMessage(await services.stats.get(parseGetUserStatsInput(request))) };
    },
    /** ListUsageLogEntries(user_id, page_size 1..100 or 0 → 20, page_token) → entries newest first and next_page_token ("" at the end). */
    async listUsageLogEntries(request) {
      return toListUsageLogEntriesResponse(await services.usageLog.list(parseListUsageLogEntriesInput(request)));
    },
    /**
     * CheckAndReserve(subject, generation_id, credits) → the reservation (idempotent on
     * generation_id). Errors: `plan_limit_exceeded` (PERMISSION_DENIED, users) or
     * `guest_limit_exceeded` (RESOURCE_EXHAUSTED, guests) with details limit_name, window, plan,
     * used, reserved, limit, period_start, resets_at; `validation`.
     */
    async checkAndReserve(request) {
      const input = parseCheckAndReserveInput({ ...request, subject: fromSubjectMessage(request.subject) }, services.plans);
      return { reservation: toReservationMessage(await services.quota.checkAndReserve(input)) };
    },
    /** ReleaseReservation(generation_id, reason) → the reservation as it now is (an ended one unchanged). Errors: `not_found`, `validation`. */
    async releaseReservation(request) {
      return { reservation: toReservationMessage(await services.quota.release(parseReleaseReservationInput(request))) };
    },
    /** ListLimits(subject) → plan, current period, every limit but requests_per_minute. Errors: `validation`. */
    async listLimits(request) {
      const input = parseListLimitsInput({ subject: fromSubjectMessage(request.subject) }, services.plans);
      return toListLimitsResponse(await services.quota.listLimits(input));
    },
    /** GetUsageTotals(user_id, occurred_since, occurred_before) → totals of that window (UsageLogService.totals). Errors: `validation`. */
    async getUsageTotals(request) {
      const t = await services.usageLog.totals(request.userId, request.occurredSince, request.occurredBefore);
      return { generations: t.generations, failed: t.failed, credits: t.credits, costMicros: t.costMicros, processingTimeMs: t.processingMs, outputBytes: t.outputBytes };
    },
    /** GetPlatformAnalytics(occurred_since, occurred_before, plan) → platform-wide figures (StatsService.platformAnalytics). Errors: `validation`. */
    async getPlatformAnalytics(request) {
      return toPlatformAnalyticsResponse(await services.stats.platformAnalytics(request.occurredSince, request.occurredBefore, request.plan || null));
    },
    /** GetMonthlyAnalytics(subject_id, months) → the last months, newest first (StatsService.monthlyAnalytics). Errors: `validation`. */
    async getMonthlyAnalytics(request) {
      return { months: (await services.stats.monthlyAnalytics(request.subjectId, request.months)).map(toMonthlyAnalyticsMessage) };
    },
    /**
     * GetUsageSummary(subject, recent_count 0..100, 0 → 10) → limits (as ListLimits), the current
     * period's totals, lifetime stats and the newest entries, read in one statement
     * (UsageSummaryService.summary; INV-6). Errors: `validation` (subject, recent_count).
     */
    async getUsageSummary(request) {
      const input = parseListLimitsInput({ subject: fromSubjectMessage(request.subject) }, services.plans);
      return toUsageSummaryResponse(await services.summary.summary(input, request.recentCount));
    },
    /** AdoptGuest(guest_id, user) → generations moved (0 on a retry). Errors: `validation`. */
    async adoptGuest(request) {
      const input = parseAdoptGuestInput({ guestId: request.guestId, user: fromSubjectMessage(request.user) }, services.plans);
      return { generationsMoved: await services.adoption.adoptGuest(input) };
    },
  };
  return bindService<usage.UsageServiceServer>(USAGE_SERVICE_NAME, implementation, logger, metrics);
}

/** The UsageService as `startGrpcServer` takes it: name, definition, handlers (each RPC counted and timed in `metrics`), and the proto files reflection serves. */
export function usageGrpcService(services: UsageHandlerServices, logger: Logger, metrics?: ServiceMetrics) {
  return {
    service: { name: USAGE_SERVICE_NAME, definition: usage.UsageServiceService, implementation: usageHandlers(services, logger, metrics) },
    protoRoot: PROTO_ROOT,
    protoFiles: [PROTO_FILES.usage],
  };
}
