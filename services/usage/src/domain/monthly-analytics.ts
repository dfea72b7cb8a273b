import type { MonthlyAnalytics, OutcomeCounts } from "./types";

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

/** What one usage log entry adds to its subject's month (the fields `monthContributions` reads). */
export interface MonthEntry {
  userId: string;
  outcome: "completed" | "failed";
  occurredAt: Date;
  credits: bigint;
  costMicros: bigint;
  processingTimeMs: bigint;
  outputBytes: bigint;
  inputType: string;
  provider: string;
  billingClassification: string;
  /** The plan snapshot of the entry; null when usage did not know it. */
  plan: string | null;
}

const addCount = (counts: Record<string, OutcomeCounts>, key: string, completed: boolean): void => {
  const current = counts[key] ?? { completed: 0n, failed: 0n };
  counts[key] = completed ? { completed: current.completed + 1n, failed: current.failed } : { completed: current.completed, failed: current.failed + 1n };
};

/**
 * What `entries` add to `monthly_analytics`, summed per subject and UTC month (`YYYY-MM`), in
 * first-seen order: each entry adds 1 generation (completed) or 1 failure; a completion adds its
 * credits, cost, processing time and output bytes; both add {completed, failed} under their
 * input type, provider and billing classification (the key present even at 0) and their plan
 * (distinct; `plans` unsorted, the store sorts them as PostgreSQL does). The same contribution
 * as the SQL function `usage_month_contribution` summed by the view `monthly_analytics_from_log`,
 * which the reconciliation compares the table with (INV-6). Pure.
 */
export function monthContributions(entries: readonly MonthEntry[]): MonthlyAnalytics[] {
  const months = new Map<string, MonthlyAnalytics>();
  for (const e of entries) {
    const month = e.occurredAt.toISOString().slice(0, 7);
    const key = `${e.userId}/${month}`;
    let row = months.get(key);
    if (!row) months.set(key, (row = emptyMonth(e.userId, month)));
    const completed = e.outcome === "completed";
    if (completed) {
      row.generations += 1n;
      row.credits += e.credits;
      row.costMicros += e.costMicros;
      row.processingMs += e.processingTimeMs;
      row.outputBytes += e.outputBytes;
    } else row.failed += 1n;
    addCount(row.byInputType, e.inputType, completed);
    addCount(row.byProvider, e.provider, completed);
    addCount(row.byClassification, e.billingClassification, completed);
    if (e.plan !== null && !row.plans.includes(e.plan)) row.plans.push(e.plan);
  }
  return [...months.values()].map((row) => ({ ...row, planChanged: row.plans.length > 1 }));
}
