import type { MonthlyAnalytics } from "./types";

/** Most months one analytics read returns. */
export const MONTHS_MAX = 24;

/** `count` UTC months (`YYYY-MM`) ending with the one containing `now`, newest first. */
export function lastMonths(now: Date, count: number): string[] {
  const months: string[] = [];
  for (let i = 0; i < count; i++) months.push(new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - i, 1)).toISOString().slice(0, 7));
  return months;
}

/** A month without usage: zeros, no breakdown, no plan. */
export const emptyMonth = (subjectId: string, month: string): MonthlyAnalytics => ({
  subjectId,
  month,
  generations: 0n,
  failed: 0n,
  credits: 0n,
  costMicros: 0n,
  processingMs: 0n,
  outputBytes: 0n,
  byInputType: {},
  byProvider: {},
  byClassification: {},
  plans: [],
  planChanged: false,
});
