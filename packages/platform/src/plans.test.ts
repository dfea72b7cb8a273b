import { mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { DEFAULT_PLANS_DOCUMENT, DEFAULT_REFUND_RULES, loadPlanCatalog, parsePlanCatalog, planNamed, PlansConfigError } from "./plans";

const file = (name: string, text: string) => {
  const full = path.join(mkdtempSync(path.join(os.tmpdir(), "tally-plans-")), name);
  writeFileSync(full, text);
  return full;
};

describe("plan catalogue", () => {
  it("has the built-in plans when PLANS_FILE is unset", () => {
    const catalog = loadPlanCatalog(undefined);
    expect(catalog.defaultPlan).toBe("free");
    expect(catalog.guestPlan).toBe("guest");
    expect(catalog.plans.free).toEqual({
      name: "free",
      trialCredits: 10,
      freeRetries: 1,
      limits: {
        generations_per_period: { limit: 100, thresholds: [] },
        concurrent_generations: { limit: 20, thresholds: [] },
        requests_per_minute: { limit: 600, thresholds: [] },
      },
      creditPriceMicros: 10_000n,
      refundRules: {
        failed: { kind: "release" },
        cancelledBeforeStart: { kind: "release" },
        cancelledWhileProcessing: { kind: "capture_spent" },
        partialOutput: { kind: "capture_fraction", fraction: 0.5 },
      },
    });
    expect(catalog.plans.pro!.limits.credits_per_period).toEqual({ limit: 20000, thresholds: [0.8, 1] });
    expect(catalog.plans.guest!.limits.generations_per_day).toEqual({ limit: 3, thresholds: [] });
    expect([catalog.plans.guest!.freeRetries, catalog.plans.pro!.freeRetries]).toEqual([0, 3]);
  });

  it("reads free_retries, 0 when absent, and refuses a negative or fractional one", () => {
    const plans = (basic: unknown) => ({ default_plan: "basic", guest_plan: "basic", plans: { basic } });
    expect(parsePlanCatalog(plans({ trial_credits: 1 })).plans.basic!.freeRetries).toBe(0);
    expect(parsePlanCatalog(plans({ trial_credits: 1, free_retries: 4 })).plans.basic!.freeRetries).toBe(4);
    expect(() => parsePlanCatalog(plans({ trial_credits: 1, free_retries: -1 }))).toThrow(/plans\.basic\.free_retries/);
    expect(() => parsePlanCatalog(plans({ trial_credits: 1, free_retries: 1.5 }))).toThrow(/plans\.basic\.free_retries/);
  });

  it("reads credit_price_micros (0 when absent) and each refund rule, defaults for the absent ones", () => {
    const plans = (basic: unknown) => ({ default_plan: "basic", guest_plan: "basic", plans: { basic } });
    const bare = parsePlanCatalog(plans({ trial_credits: 1 })).plans.basic!;
    expect(bare.creditPriceMicros).toBe(0n);
    expect(bare.refundRules.cancelledWhileProcessing).toEqual({ kind: "capture_spent" });
    expect(bare.refundRules).toEqual(DEFAULT_REFUND_RULES);
    expect(DEFAULT_REFUND_RULES).toEqual({
      failed: { kind: "release" },
      cancelledBeforeStart: { kind: "release" },
      cancelledWhileProcessing: { kind: "capture_spent" },
      partialOutput: { kind: "capture_fraction", fraction: 0.5 },
    });
    const custom = parsePlanCatalog(
      plans({ trial_credits: 1, credit_price_micros: 2_500, refund_rules: { failed: "capture_spent", partial_output: "capture", cancelled_while_processing: { capture_fraction: 0.25 } } }),
    ).plans.basic!;
    expect(custom.creditPriceMicros).toBe(2_500n);
    expect(custom.refundRules).toEqual({
      failed: { kind: "capture_spent" },
      cancelledBeforeStart: { kind: "release" },
      cancelledWhileProcessing: { kind: "capture_fraction", fraction: 0.25 },
      partialOutput: { kind: "capture" },
    });
    expect(() => parsePlanCatalog(plans({ trial_credits: 1, credit_price_micros: -1 }))).toThrow(/plans\.basic\.credit_price_micros/);
    expect(() => parsePlanCatalog(plans({ trial_credits: 1, refund_rules: { failed: "refund" } }))).toThrow(/plans\.basic\.refund_rules\.failed/);
    expect(() => parsePlanCatalog(plans({ trial_credits: 1, refund_rules: { partial_output: { capture_fraction: 1.5 } } }))).toThrow(/plans\.basic\.refund_rules\.partial_output/);
    expect(() => parsePlanCatalog(plans({ trial_credits: 1, refund_rules: { timeout: "release" } }))).toThrow(/plans\.basic\.refund_rules/);
  });

  it("lets TRIAL_CREDITS override the default plan's trial credits only", () => {
    const catalog = loadPlanCatalog(undefined, 25);
    expect(catalog.plans.free!.trialCredits).toBe(25);
    expect(catalog.plans.guest!.trialCredits).toBe(3);
  });

  it("reads YAML and JSON files", () => {
    const yaml = file("plans.yaml", "default_plan: basic\nguest_plan: basic\nplans:\n  basic: { trial_credits: 1, limits: { generations_per_day: 2 } }\n");
    expect(loadPlanCatalog(yaml).plans.basic!.limits).toEqual({ generations_per_day: { limit: 2, thresholds: [] } });
    const json = file("plans.json", JSON.stringify(DEFAULT_PLANS_DOCUMENT));
    expect(Object.keys(loadPlanCatalog(json).plans).sort()).toEqual(["free", "guest", "pro"]);
  });

  it("names the bad key of an invalid file", () => {
    const bad = (document: unknown) => () => parsePlanCatalog(document);
    expect(bad({ ...DEFAULT_PLANS_DOCUMENT, default_plan: "gold" })).toThrow(/default_plan: names no plan/);
    expect(bad({ ...DEFAULT_PLANS_DOCUMENT, plans: { ...DEFAULT_PLANS_DOCUMENT.plans, free: { trial_credits: 10, limits: { generations_per_month: 5 } } } })).toThrow(
      /plans\.free\.limits/,
    );
    expect(bad({ ...DEFAULT_PLANS_DOCUMENT, plans: { ...DEFAULT_PLANS_DOCUMENT.plans, pro: { trial_credits: 10, limits: { credits_per_period: { limit: -1 } } } } })).toThrow(
      /plans\.pro\.limits\.credits_per_period/,
    );
    expect(bad({ ...DEFAULT_PLANS_DOCUMENT, plans: { ...DEFAULT_PLANS_DOCUMENT.plans, free: { trial_credits: 10, limits: { credits_per_period: { limit: 5, thresholds: [1.5] } } } } })).toThrow(
      /thresholds/,
    );
    expect(bad({ ...DEFAULT_PLANS_DOCUMENT, plans: { ...DEFAULT_PLANS_DOCUMENT.plans, free: { limits: {} } } })).toThrow(/plans\.free\.trial_credits/);
    expect(() => loadPlanCatalog(file("broken.yaml", "plans: [unclosed"))).toThrow(PlansConfigError);
    expect(() => loadPlanCatalog("/nonexistent/plans.yaml")).toThrow(/cannot be read/);
  });

  it("answers validation for an unknown plan, listing the known ones", () => {
    expect(() => planNamed(loadPlanCatalog(undefined), "gold")).toThrow(
      expect.objectContaining({ reason: "validation", details: { field: "plan", known_plans: ["free", "guest", "pro"] } }),
    );
  });
});
