import type { LimitName, Plan } from "@tally/platform";
import type { DayCounters, PeriodCounters } from "./types";

/*
 * Soft thresholds: a limit `{limit, thresholds: [0.8, 1.0]}` announces once per window when
 * used / limit reaches each threshold (docs/plans.md). Pure: the service reads the counters
 * after the usage event under the subject's lock, and the store records each crossing once.
 */

/** A threshold reached, before it is tied to a subject and an event. */
export interface ReachedThreshold {
  limitName: LimitName;
  /** The threshold in per mille of the limit (0.8 → 800), so no float is compared or sent. */
  thresholdPerMille: number;
  limit: bigint;
  used: bigint;
  windowStart: Date;
}

const PER_MILLE = 1_000n;
const MS_PER_SECOND = 1_000n;

/** True when some limit of `plan` has thresholds (so the counters need reading after an event). */
export const hasThresholds = (plan: Plan): boolean => Object.values(plan.limits).some((limit) => (limit?.thresholds.length ?? 0) > 0);

/**
 * Every threshold of `plan`'s period and day limits that `used` (after the event) has reached:
 * used × 1000 >= per mille × limit. `period` is null when the subject has no anchor (its period
 * limits are then not looked at); `day` null when the event counted in another subject's day.
 */
export function reachedThresholds(plan: Plan, period: PeriodCounters | null, day: DayCounters | null): ReachedThreshold[] {
  const counted: Partial<Record<LimitName, { used: bigint; windowStart: Date }>> = {};
  if (period) {
    counted.generations_per_period = { used: period.generations, windowStart: period.periodStart };
    counted.credits_per_period = { used: period.credits, windowStart: period.periodStart };
    counted.processing_seconds_per_period = { used: period.processingMs / MS_PER_SECOND, windowStart: period.periodStart };
  }
  if (day) counted.generations_per_day = { used: day.generations, windowStart: day.day };
  const reached: ReachedThreshold[] = [];
  for (const [name, usage] of Object.entries(counted) as [LimitName, { used: bigint; windowStart: Date }][]) {
    const limit = plan.limits[name];
    if (!limit || limit.limit <= 0) continue;
    for (const threshold of limit.thresholds) {
      const thresholdPerMille = Math.round(threshold * 1000);
      if (thresholdPerMille <= 0) continue;
      if (usage.used * PER_MILLE >= BigInt(thresholdPerMille) * BigInt(limit.limit)) {
        reached.push({ limitName: name, thresholdPerMille, limit: BigInt(limit.limit), used: usage.used, windowStart: usage.windowStart });
      }
    }
  }
  return reached;
}
