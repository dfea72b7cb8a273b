/** Money in admin analytics: revenue, provider cost and margin (see platformMoney in platform-analytics.ts). */
import type { PlatformAnalytics } from "./types";

/**
 * What generations earned and cost, in micro-units of the currency: `revenueMicros`, the
 * credits charged for completed generations valued at their plan's `credit_price_micros`;
 * `costMicros`, what the provider's work cost for every entry, completed or failed;
 * `marginMicros` = revenue − cost (negative at a loss).
 */
export interface Money {
  credits: bigint;
  revenueMicros: bigint;
  costMicros: bigint;
  marginMicros: bigint;
}

/** Money in all, by the plan recorded with each entry ("" when unknown) and by provider. */
export interface PlatformMoney {
  total: Money;
  byPlan: Record<string, Money>;
  byProvider: Record<string, Money>;
}

/** Credits of completed entries and cost of all entries of one plan and provider (what money is computed from). */
export interface PlanProviderSpend {
  plan: string;
  provider: string;
  credits: bigint;
  costMicros: bigint;
}

/** What the stores answer for platform analytics: all but the money, with the spend it is valued from. */
export type PlatformFigures = Omit<PlatformAnalytics, "money"> & { spend: PlanProviderSpend[] };
