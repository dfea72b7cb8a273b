import { parsePlanCatalog } from "@tally/platform";
import { reachedThresholds, hasThresholds } from "./thresholds";

const plans = parsePlanCatalog({
  default_plan: "pro",
  guest_plan: "pro",
  plans: { pro: { trial_credits: 0, limits: { generations_per_period: 10, credits_per_period: { limit: 100, thresholds: [0.8, 1.0] } } } },
});
const pro = plans.plans.pro!;
const start = new Date("2027-03-01T00:00:00.000Z");
const period = (credits: bigint) => ({
  subjectId: "s",
  periodStart: start,
  periodEnd: new Date("2027-04-01T00:00:00.000Z"),
  generations: 1n,
  credits,
  processingMs: 0n,
  reservedGenerations: 0n,
  reservedCredits: 0n,
});

describe("reachedThresholds", () => {
  it("reaches a threshold at used × 1000 >= per mille × limit, in per mille, and only for limits with thresholds", () => {
    expect(hasThresholds(pro)).toBe(true);
    expect(reachedThresholds(pro, period(79n), null)).toEqual([]);
    expect(reachedThresholds(pro, period(80n), null)).toEqual([
      { limitName: "credits_per_period", thresholdPerMille: 800, limit: 100n, used: 80n, windowStart: start },
    ]);
    expect(reachedThresholds(pro, period(120n), null).map((r) => r.thresholdPerMille)).toEqual([800, 1000]);
    expect(reachedThresholds(pro, null, null)).toEqual([]);
  });
});
