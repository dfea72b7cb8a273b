import type { CounterDifference, MonthlyAnalytics, MonthlyAnalyticsDifference, StatsDifference, UserStats } from "./types";

/** Most differences a reconciliation lists (the total counts them all). */
export const RECONCILIATION_DIFFERENCES_MAX = 100;

/**
 * One derived figure that differs from the usage log (INV-6): `expected` is what the log says,
 * `actual` what is stored ("" when that side has no row). Integers are decimal strings, a last
 * activity an ISO 8601 time, a breakdown or plan list JSON. `check` is `<table>.<column>` (or
 * `monthly_analytics` for a month present on one side only); `key` is the row's window within
 * the subject (a period or day start, a month `YYYY-MM`) or "" for user stats and the active count.
 */
export interface UsageReconciliationDifference {
  check: string;
  subjectId: string;
  key: string;
  expected: string;
  actual: string;
}

/** A reconciliation's answer: how many figures differ, and the first of them (bounded). */
export interface UsageReconciliation {
  differencesTotal: number;
  differences: UsageReconciliationDifference[];
}

const STATS_COLUMNS: readonly [string, (s: UserStats) => string][] = [
  ["total_generations", (s) => s.totalGenerations.toString()],
  ["total_failed", (s) => s.totalFailed.toString()],
  ["total_cost_micros", (s) => s.totalCostMicros.toString()],
  ["total_credits_spent", (s) => s.totalCreditsSpent.toString()],
  ["total_downloaded", (s) => s.totalDownloaded.toString()],
  ["last_activity_at", (s) => s.lastActivityAt?.toISOString() ?? ""],
];

/** Keys sorted, so two breakdowns compare (and print) the same whatever order they were built in. */
const sortedJson = (value: Record<string, { completed: bigint; failed: bigint }>): string =>
  JSON.stringify(Object.fromEntries(Object.keys(value).sort().map((k) => [k, { completed: String(value[k]!.completed), failed: String(value[k]!.failed) }])));

const ANALYTICS_COLUMNS: readonly [string, (m: MonthlyAnalytics) => string][] = [
  ["generations", (m) => m.generations.toString()],
  ["failed", (m) => m.failed.toString()],
  ["credits", (m) => m.credits.toString()],
  ["cost_micros", (m) => m.costMicros.toString()],
  ["processing_ms", (m) => m.processingMs.toString()],
  ["output_bytes", (m) => m.outputBytes.toString()],
  ["by_input_type", (m) => sortedJson(m.byInputType)],
  ["by_provider", (m) => sortedJson(m.byProvider)],
  ["by_classification", (m) => sortedJson(m.byClassification)],
  ["plans", (m) => JSON.stringify(m.plans)],
];

const TABLE_OF_WINDOW: Record<CounterDifference["window"], string> = { period: "period_usage", day: "daily_usage", concurrent: "subjects" };

/** The whole row as one JSON figure (a month present on one side only). */
const rowJson = (m: MonthlyAnalytics | null): string => (m ? JSON.stringify(Object.fromEntries(ANALYTICS_COLUMNS.map(([name, read]) => [name, read(m)]))) : "");

/**
 * Flattens the three reconciliations of stats.ts (user stats, limit counters, monthly
 * analytics, in that order) into one list of differing figures, field by field: the total of
 * them all and the first `max`.
 */
export function usageReconciliation(
  stats: readonly StatsDifference[],
  counters: readonly CounterDifference[],
  analytics: readonly MonthlyAnalyticsDifference[],
  max: number = RECONCILIATION_DIFFERENCES_MAX,
): UsageReconciliation {
  const all: UsageReconciliationDifference[] = [];
  for (const d of stats) {
    for (const [column, read] of STATS_COLUMNS) {
      const [expected, actual] = [read(d.fromUsageLog), read(d.stored)];
      if (expected !== actual) all.push({ check: `user_stats.${column}`, subjectId: d.userId, key: "", expected, actual });
    }
  }
  for (const d of counters) {
    all.push({
      check: `${TABLE_OF_WINDOW[d.window]}.${d.counter}`,
      subjectId: d.subjectId,
      key: d.windowStart?.toISOString() ?? "",
      expected: d.expected.toString(),
      actual: d.stored.toString(),
    });
  }
  for (const d of analytics) {
    if (!d.stored || !d.expected) {
      all.push({ check: "monthly_analytics", subjectId: d.subjectId, key: d.month, expected: rowJson(d.expected), actual: rowJson(d.stored) });
      continue;
    }
    const before = all.length;
    for (const [column, read] of ANALYTICS_COLUMNS) {
      const [expected, actual] = [read(d.expected), read(d.stored)];
      if (expected !== actual) all.push({ check: `monthly_analytics.${column}`, subjectId: d.subjectId, key: d.month, expected, actual });
    }
    // The rows differ in a way no figure shows (e.g. a zero breakdown key on one side only): the whole row, so none is hidden.
    if (all.length === before) all.push({ check: "monthly_analytics", subjectId: d.subjectId, key: d.month, expected: rowJson(d.expected), actual: rowJson(d.stored) });
  }
  return { differencesTotal: all.length, differences: all.slice(0, max) };
}
