import { usage } from "@tally/contracts";
import type { RawSubject } from "../domain/inputs";
import type { UsageReconciliation } from "../domain/reconciliation";
import type { UsageSummary } from "../domain/usage-summary";
import type { LifetimeStats, LimitsReport, MonthlyAnalytics, OutcomeCounts, PlatformAnalytics, Reservation, ReservationStatus, UsageLogEntry, UsageLogPage, UserStats } from "../domain/types";

/** Proto ⇄ domain for the UsageService: requests to plain values, answers to messages. Absent values become proto defaults ("" or unset). */

export function toUserStatsMessage(stats: LifetimeStats): usage.UserStats {
  return {
    userId: stats.userId,
    totalGenerations: stats.totalGenerations,
    totalFailed: stats.totalFailed,
    totalCostMicros: stats.totalCostMicros,
    totalCreditsSpent: stats.totalCreditsSpent,
    lastActivityAt: stats.lastActivityAt ?? undefined,
    totalDownloaded: stats.totalDownloaded,
    totalCreated: stats.created,
    totalCancelled: stats.cancelled,
    running: stats.running,
    totalOutputBytes: stats.outputBytes,
    totalProcessingTimeMs: stats.processingMs,
    byInputType: stats.byInputType,
    byProvider: stats.byProvider,
    firstActivityAt: stats.firstActivityAt ?? undefined,
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
    plan: entry.plan ?? "",
    planLimitsJson: entry.planLimits === null ? "" : JSON.stringify(entry.planLimits),
    periodStart: entry.period?.start,
    periodEnd: entry.period?.end,
    billingClassification: entry.billingClassification,
    billingReason: entry.billingReason ?? "",
    parentGenerationId: entry.parentGenerationId ?? "",
    outputBytes: entry.outputBytes,
    subjectKind: entry.subjectKind ?? "",
  };
}

/** Proto → the plain subject the domain checks: the kind as "user", "guest" or "" (unspecified, refused by the check). */
export function fromSubjectMessage(subject: usage.Subject | undefined): RawSubject | undefined {
  if (!subject) return undefined;
  const kind = subject.kind === usage.SubjectKind.SUBJECT_KIND_USER ? "user" : subject.kind === usage.SubjectKind.SUBJECT_KIND_GUEST ? "guest" : "";
  return { id: subject.id, kind, plan: subject.plan, periodAnchor: subject.periodAnchor };
}

const RESERVATION_STATUSES: Record<ReservationStatus, usage.ReservationStatus> = {
  active: usage.ReservationStatus.RESERVATION_STATUS_ACTIVE,
  consumed: usage.ReservationStatus.RESERVATION_STATUS_CONSUMED,
  released: usage.ReservationStatus.RESERVATION_STATUS_RELEASED,
  expired: usage.ReservationStatus.RESERVATION_STATUS_EXPIRED,
};

export function toReservationMessage(reservation: Reservation): usage.Reservation {
  return {
    generationId: reservation.generationId,
    subjectId: reservation.subjectId,
    status: RESERVATION_STATUSES[reservation.status],
    credits: reservation.credits,
    periodStart: reservation.periodStart,
    expiresAt: reservation.expiresAt,
  };
}

export function toListLimitsResponse(report: LimitsReport): usage.ListLimitsResponse {
  return {
    plan: report.plan,
    periodStart: report.period.start,
    periodEnd: report.period.end,
    limits: report.limits.map((limit) => ({
      name: limit.name,
      window: limit.window,
      limit: limit.limit,
      used: limit.used,
      reserved: limit.reserved,
      remaining: limit.remaining,
      withinLimit: limit.withinLimit,
      resetsAt: limit.resetsAt ?? undefined,
    })),
  };
}

const toOutcomeCounts = (map: Record<string, OutcomeCounts>): Record<string, usage.OutcomeCounts> =>
  Object.fromEntries(Object.entries(map).map(([key, counts]) => [key, { completed: counts.completed, failed: counts.failed }]));

/** One month of analytics as its proto message. */
export function toMonthlyAnalyticsMessage(month: MonthlyAnalytics): usage.MonthlyAnalytics {
  return {
    month: month.month,
    generations: month.generations,
    failed: month.failed,
    credits: month.credits,
    costMicros: month.costMicros,
    processingTimeMs: month.processingMs,
    outputBytes: month.outputBytes,
    byInputType: toOutcomeCounts(month.byInputType),
    byProvider: toOutcomeCounts(month.byProvider),
    byBillingClassification: toOutcomeCounts(month.byClassification),
    plans: month.plans,
    planChanged: month.planChanged,
  };
}

/** Platform analytics as its proto answer. */
export function toPlatformAnalyticsResponse(a: PlatformAnalytics): usage.GetPlatformAnalyticsResponse {
  return {
    generations: a.generations,
    failed: a.failed,
    credits: a.credits,
    costMicros: a.costMicros,
    averageCostMicros: a.averageCostMicros,
    uniqueUsers: a.uniqueUsers,
    uniqueGuests: a.uniqueGuests,
    byPlan: toOutcomeCounts(a.byPlan),
    byProvider: toOutcomeCounts(a.byProvider),
    byInputType: toOutcomeCounts(a.byInputType),
    money: a.money.total,
    moneyByPlan: a.money.byPlan,
    moneyByProvider: a.money.byProvider,
  };
}

/** The reconciliation's answer (domain/reconciliation.ts), figure by figure. */
export const toReconcileResponse = (r: UsageReconciliation): usage.ReconcileResponse => ({
  differencesTotal: BigInt(r.differencesTotal),
  differences: r.differences.map((d) => ({ check: d.check, subjectId: d.subjectId, key: d.key, expected: d.expected, actual: d.actual })),
});

/** A usage summary (UsageSummaryService.summary) as GetUsageSummaryResponse. */
export function toUsageSummaryResponse(summary: UsageSummary): usage.GetUsageSummaryResponse {
  const t = summary.totals;
  return {
    limits: toListLimitsResponse(summary.limits),
    periodTotals: { generations: t.generations, failed: t.failed, credits: t.credits, costMicros: t.costMicros, processingTimeMs: t.processingMs, outputBytes: t.outputBytes },
    stats: toUserStatsMessage(summary.stats),
    recent: summary.recent.map(toUsageLogEntryMessage),
  };
}
