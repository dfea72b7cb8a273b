import type { Money, PlanProviderSpend, PlatformMoney, Window } from "./types";

const DAY_MS = 24 * 60 * 60 * 1000;

/**
 * A window [start, end) cut where the platform rollups can serve it: `days`, the whole UTC days
 * inside it (`from` inclusive, `to` exclusive, `YYYY-MM-DD`; null when it holds none), and
 * `edges`, the partial days before and after them (at most two, each non-empty), which are read
 * from the usage log. Together they cover the window exactly once.
 */
export interface WindowByDays {
  days: { from: string; to: string } | null;
  edges: Window[];
}

const dayOf = (date: Date) => date.toISOString().slice(0, 10);

/** Cuts `window` into whole UTC days and the partial days at its edges (see WindowByDays). */
export function splitAtUtcDays(window: Window): WindowByDays {
  const first = new Date(Math.ceil(window.start.getTime() / DAY_MS) * DAY_MS);
  const last = new Date(Math.floor(window.end.getTime() / DAY_MS) * DAY_MS);
  if (first >= last) return { days: null, edges: [window] };
  const edges = [
    { start: window.start, end: first },
    { start: last, end: window.end },
  ].filter((edge) => edge.start < edge.end);
  return { days: { from: dayOf(first), to: dayOf(last) }, edges };
}

/**
 * Values platform figures: each plan and provider's credits charged for completed generations
 * at the plan's `credit_price_micros` (`priceOf(plan)`, 0 for a plan the catalogue does not
 * know) is revenue; the provider cost of every entry is cost; margin = revenue − cost. Sums in
 * all, by plan and by provider (exact integers, micro-units).
 */
export function platformMoney(spend: readonly PlanProviderSpend[], priceOf: (plan: string) => bigint): PlatformMoney {
  const zero = (): Money => ({ credits: 0n, revenueMicros: 0n, costMicros: 0n, marginMicros: 0n });
  const total = zero();
  const byPlan: Record<string, Money> = {};
  const byProvider: Record<string, Money> = {};
  for (const row of spend) {
    const revenueMicros = row.credits * priceOf(row.plan);
    for (const money of [total, (byPlan[row.plan] ??= zero()), (byProvider[row.provider] ??= zero())]) {
      money.credits += row.credits;
      money.revenueMicros += revenueMicros;
      money.costMicros += row.costMicros;
      money.marginMicros += revenueMicros - row.costMicros;
    }
  }
  return { total, byPlan, byProvider };
}
