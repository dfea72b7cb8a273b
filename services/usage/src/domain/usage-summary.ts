import type { DayCounters, LifetimeDetail, LifetimeStats, LimitsReport, PeriodCounters, SubjectKind, UsageLogEntry, UsageTotals, UserStats } from "./types";

/** What UsageSummaryStore.read gives: one snapshot of a subject's usage (see GetUsageSummary). */
export interface UsageSummaryRead {
  /** The subject as usage stored it; null when it never did. */
  stored: { kind: SubjectKind | null; plan: string | null; periodAnchor: Date | null; activeReservations: number } | null;
  period: PeriodCounters;
  day: DayCounters;
  stats: UserStats;
  detail: LifetimeDetail;
  /** Totals of the subject's entries in the period. */
  totals: UsageTotals;
  /** The newest entries, newest first. */
  recent: UsageLogEntry[];
}

/** A subject's usage summary (GetUsageSummary): its limits as ListLimits, the period's totals, lifetime stats, newest entries. */
export interface UsageSummary {
  limits: LimitsReport;
  totals: UsageTotals;
  stats: LifetimeStats;
  recent: UsageLogEntry[];
}
