import assert from "node:assert";
import { DEFAULT_REFUND_RULES, type PlanCatalog, type RefundRule, type RefundRules } from "@tally/platform";

/**
 * Refund rules by outcome (docs/plans.md, "Refund rules"): how much of a job's hold is captured
 * and how much released, decided once, before credits is called, and stored with the job, so a
 * worker that takes over a crashed settlement redoes the very same call (INV-3).
 */

/** What happened to a job, as its settlement sees it. */
export type SettlementOutcomeName = "completed" | "partial_output" | "failed" | "cancelled_before_start" | "cancelled_while_processing";

/** The rule a settlement applied (a full completion always applies `capture`). */
export type SettlementRuleName = RefundRule["kind"];

/** The settlement of a job's hold: its outcome, the rule applied and the split of the hold. */
export interface SettlementDecision {
  outcome: SettlementOutcomeName;
  rule: SettlementRuleName;
  /** Credits charged, 0..held. */
  creditsCaptured: bigint;
  /** Credits given back: held - creditsCaptured. */
  creditsReleased: bigint;
}

/** The plan terms a settlement needs (snapshotted on the job when it was created). */
export interface SettlementTerms {
  /** What one credit costs the customer, in micro-units of the currency (0: `capture_spent` captures nothing). */
  creditPriceMicros: bigint;
  refundRules: RefundRules;
}

/** Scale of a fraction in integer arithmetic: fractions are applied to 6 decimal places. */
const FRACTION_SCALE = 1_000_000n;

/**
 * Decides the split of a hold of `heldCredits` (≥ 0; 0 for a free retry) for `outcome`:
 * - `completed`: the whole hold is captured (not configurable);
 * - any other outcome: its plan rule (`failed`, `cancelled_before_start`,
 *   `cancelled_while_processing`, `partial_output`):
 *   - `release` captures 0;
 *   - `capture` captures everything;
 *   - `capture_spent` captures the provider's measured spend so far (`spentMicros`) converted at
 *     `creditPriceMicros`, rounded up to a whole credit and capped at the hold (0 when the price is 0);
 *   - `capture_fraction` captures ⌊fraction × held⌋.
 * Always creditsCaptured + creditsReleased = heldCredits, both ≥ 0 (INV-2: a settlement moves
 * only what was held).
 */
export function decideSettlement(outcome: SettlementOutcomeName, heldCredits: bigint, spentMicros: bigint, terms: SettlementTerms): SettlementDecision {
  assert.ok(heldCredits >= 0n && spentMicros >= 0n, "held credits and spend are not negative");
  const rule = outcome === "completed" ? ({ kind: "capture" } as const) : ruleFor(outcome, terms.refundRules);
  const captured = min(heldCredits, capturedBy(rule, heldCredits, spentMicros, terms.creditPriceMicros));
  return { outcome, rule: rule.kind, creditsCaptured: captured, creditsReleased: heldCredits - captured };
}

function ruleFor(outcome: Exclude<SettlementOutcomeName, "completed">, rules: RefundRules): RefundRule {
  switch (outcome) {
    case "partial_output":
      return rules.partialOutput;
    case "failed":
      return rules.failed;
    case "cancelled_before_start":
      return rules.cancelledBeforeStart;
    case "cancelled_while_processing":
      return rules.cancelledWhileProcessing;
  }
}

function capturedBy(rule: RefundRule, held: bigint, spentMicros: bigint, creditPriceMicros: bigint): bigint {
  switch (rule.kind) {
    case "release":
      return 0n;
    case "capture":
      return held;
    case "capture_spent":
      return creditPriceMicros === 0n ? 0n : (spentMicros + creditPriceMicros - 1n) / creditPriceMicros;
    case "capture_fraction":
      return (held * BigInt(Math.round(rule.fraction * Number(FRACTION_SCALE)))) / FRACTION_SCALE;
  }
}

const min = (a: bigint, b: bigint): bigint => (a < b ? a : b);

/** Revenue of a settlement: credits captured at the plan's price per credit, in micro-units of the currency. */
export const revenueMicrosOf = (creditsCaptured: bigint, creditPriceMicros: bigint): bigint => creditsCaptured * creditPriceMicros;

/** The default terms: no price, the default refund rules (what a plan the catalogue no longer knows settles under). */
const DEFAULT_TERMS: SettlementTerms = { creditPriceMicros: 0n, refundRules: DEFAULT_REFUND_RULES };

/** The settlement terms of `plan` in `catalog`; DEFAULT_TERMS for a plan it does not know (e.g. removed since). */
export function settlementTermsOf(catalog: PlanCatalog, plan: string): SettlementTerms {
  const known = catalog.plans[plan];
  return known ? { creditPriceMicros: known.creditPriceMicros, refundRules: known.refundRules } : DEFAULT_TERMS;
}

/**
 * The terms a job settles under: its plan's refund rules now, and the price per credit stored
 * with the job when it was created (so its capture_spent conversion and revenue use the price
 * it was sold at).
 */
export function jobSettlementTerms(catalog: PlanCatalog, job: { plan: string; creditPriceMicros: bigint }): SettlementTerms {
  return { ...settlementTermsOf(catalog, job.plan), creditPriceMicros: job.creditPriceMicros };
}
