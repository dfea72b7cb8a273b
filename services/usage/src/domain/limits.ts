import { billingPeriodAt, DomainError, LIMIT_NAMES, LIMIT_WINDOWS, utcDayAt, type LimitName, type Plan } from "@tally/platform";
import type { DayCounters, LimitStatus, PeriodCounters, Subject, Window } from "./types";

/*
 * The limit rules: which windows a moment falls in, where a subject stands against each limit
 * of its plan, whether one more generation fits, and the error when it does not. Pure: the
 * service reads the counters under the subject's lock and applies these.
 */

/** The limits usage enforces: every one but requests_per_minute, which the gateway enforces. */
export const USAGE_LIMITS: readonly LimitName[] = LIMIT_NAMES.filter((name) => name !== "requests_per_minute");

/** A subject's counters in the windows a check looks at. */
export interface CurrentUsage {
  period: PeriodCounters;
  day: DayCounters;
  /** Reservations now active (concurrent generations). */
  activeReservations: number;
}

/** One limit of a plan with what counts against it and what one more generation would add. */
export interface LimitUsage {
  name: LimitName;
  window: "period" | "day" | "concurrent";
  limit: bigint;
  used: bigint;
  reserved: bigint;
  /** What the checked generation adds (1 generation, its credits, 0 processing seconds). */
  amount: bigint;
  resetsAt: Date | null;
}

/** The billing period (monthly from `anchor`, UTC, clamped at month end) and the UTC day that contain `at`. */
export function windowsAt(anchor: Date, at: Date): { period: Window; day: Window } {
  return { period: billingPeriodAt(anchor, at), day: utcDayAt(at) };
}

const MS_PER_SECOND = 1_000n;

/** The limits of `plan` usage enforces (USAGE_LIMITS), by name; a limit the plan does not set is absent (unlimited). */
export function planLimits(plan: Plan): Partial<Record<LimitName, bigint>> {
  const limits: Partial<Record<LimitName, bigint>> = {};
  for (const name of USAGE_LIMITS) {
    const limit = plan.limits[name];
    if (limit) limits[name] = BigInt(limit.limit);
  }
  return limits;
}

/**
 * Every limit `plan` sets (except requests_per_minute), in LIMIT_NAMES order, with its used
 * and reserved amounts from `usage` and the amount one generation of `credits` credits adds.
 * Processing time counts in whole seconds (completed jobs' milliseconds, rounded down).
 */
export function limitUsages(plan: Plan, usage: CurrentUsage, credits: bigint): LimitUsage[] {
  const { period, day } = usage;
  const counted: Record<Exclude<LimitName, "requests_per_minute">, Omit<LimitUsage, "name" | "window" | "limit">> = {
    generations_per_period: { used: period.generations, reserved: period.reservedGenerations, amount: 1n, resetsAt: period.periodEnd },
    credits_per_period: { used: period.credits, reserved: period.reservedCredits, amount: credits, resetsAt: period.periodEnd },
    processing_seconds_per_period: { used: period.processingMs / MS_PER_SECOND, reserved: 0n, amount: 0n, resetsAt: period.periodEnd },
    generations_per_day: { used: day.generations, reserved: day.reservedGenerations, amount: 1n, resetsAt: new Date(day.day.getTime() + 86_400_000) },
    concurrent_generations: { used: BigInt(usage.activeReservations), reserved: 0n, amount: 1n, resetsAt: null },
  };
  const usages: LimitUsage[] = [];
  for (const name of USAGE_LIMITS) {
    const limit = plan.limits[name];
    if (!limit) continue;
    const window = LIMIT_WINDOWS[name] as LimitUsage["window"];
    usages.push({ name, window, limit: BigInt(limit.limit), ...counted[name as keyof typeof counted] });
  }
  return usages;
}

/**
 * Whether one more generation fits `usage`: used + reserved + amount <= limit. A limit whose
 * amount is not known in advance (processing seconds: 0) refuses only once used >= limit.
 */
export function allows(usage: LimitUsage): boolean {
  if (usage.amount === 0n) return usage.used + usage.reserved < usage.limit;
  return usage.used + usage.reserved + usage.amount <= usage.limit;
}

/** The first limit (LIMIT_NAMES order) that one more generation of `credits` credits would break; undefined when all allow it. */
export function firstExceeded(plan: Plan, usage: CurrentUsage, credits: bigint): LimitUsage | undefined {
  return limitUsages(plan, usage, credits).find((limit) => !allows(limit));
}

/**
 * The error for a subject over `limit`: `plan_limit_exceeded` for a user (403 at the gateway),
 * `guest_limit_exceeded` for a guest (429). Details: limit_name, window, plan, used, reserved,
 * limit (JSON numbers), period_start (the billing period's start) and resets_at (when the
 * limit's window starts again), as ISO-8601 UTC strings with milliseconds; resets_at is "" for
 * concurrent_generations.
 */
export function limitExceededError(subject: Subject, limit: LimitUsage, period: Window): DomainError {
  const reason = subject.kind === "guest" ? "guest_limit_exceeded" : "plan_limit_exceeded";
  const resetsAt = limit.resetsAt ? limit.resetsAt.toISOString() : "";
  const when = resetsAt ? `; it resets at ${resetsAt}` : "; it frees up when a running generation ends";
  const message = `${subject.kind === "guest" ? "guest" : "plan"} limit ${limit.name} reached on plan ${subject.plan}: ${limit.used} used and ${limit.reserved} reserved of ${limit.limit}${when}`;
  return new DomainError(reason, message, {
    limit_name: limit.name,
    window: limit.window,
    plan: subject.plan,
    used: Number(limit.used),
    reserved: Number(limit.reserved),
    limit: Number(limit.limit),
    period_start: period.start.toISOString(),
    resets_at: resetsAt,
  });
}

/** Where `usage` stands against every limit of `plan` (ListLimits): remaining = max(0, limit - used - reserved), within = one more generation fits. */
export function limitStatuses(plan: Plan, usage: CurrentUsage): LimitStatus[] {
  return limitUsages(plan, usage, 0n).map((limit) => {
    const left = limit.limit - limit.used - limit.reserved;
    const remaining = left > 0n ? left : 0n;
    return {
      name: limit.name,
      window: limit.window,
      limit: limit.limit,
      used: limit.used,
      reserved: limit.reserved,
      remaining,
      withinLimit: remaining > 0n,
      resetsAt: limit.resetsAt,
    };
  });
}
