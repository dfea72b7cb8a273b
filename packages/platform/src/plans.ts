import { readFileSync } from "node:fs";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { validationError } from "./errors";

/**
 * Plans are configuration: a catalogue of named plans, each with its trial credits and its
 * limits, read from the YAML or JSON file named by `PLANS_FILE` (the built-in DEFAULT_PLANS
 * when unset) by every service that needs it, and validated at start-up with an error naming
 * the bad key. The file's shape is part of the public contract (docs/plans.md).
 */

/** The limits a plan may set; a missing one means unlimited. */
export const LIMIT_NAMES = [
  "generations_per_period",
  "credits_per_period",
  "processing_seconds_per_period",
  "generations_per_day",
  "concurrent_generations",
  "requests_per_minute",
] as const;
export type LimitName = (typeof LIMIT_NAMES)[number];

/** The window a limit counts in. */
export type LimitWindow = "period" | "day" | "concurrent" | "minute";
export const LIMIT_WINDOWS: Record<LimitName, LimitWindow> = {
  generations_per_period: "period",
  credits_per_period: "period",
  processing_seconds_per_period: "period",
  generations_per_day: "day",
  concurrent_generations: "concurrent",
  requests_per_minute: "minute",
};

/** A limit: its value and the soft thresholds (fractions of it, 0 < t <= 1) that raise an event when crossed. */
export interface Limit {
  limit: number;
  thresholds: number[];
}

export interface Plan {
  name: string;
  /** Credits of the trial grant a new account of this plan receives. */
  trialCredits: number;
  /**
   * Free retries of a failed generation per original job (a retry of a retry belongs to the
   * same job): nothing is held or charged for them. 0 (the default) means none.
   */
  freeRetries: number;
  limits: Partial<Record<LimitName, Limit>>;
  /**
   * What one credit costs a customer of this plan, in micro-units of the currency (10,000 =
   * 0.01): converts a provider's measured cost into credits (the `capture_spent` rule) and
   * credits captured into revenue (cost and margin per generation). 0 (the default) means the
   * plan's credits earn nothing and `capture_spent` captures nothing.
   */
  creditPriceMicros: bigint;
  /** How a job's hold is settled when it does not complete in full (docs/plans.md, "Refund rules"). */
  refundRules: RefundRules;
}

/**
 * What a settlement does with a job's hold:
 * - `release`: give every held credit back;
 * - `capture`: charge the whole hold;
 * - `capture_spent`: charge the provider's measured spend converted at the plan's
 *   `credit_price_micros` (rounded up to whole credits), capped at the hold, and give back the rest;
 * - `capture_fraction`: charge `fraction` (0..1) of the hold (rounded down to whole credits).
 */
export type RefundRule = { kind: "release" } | { kind: "capture" } | { kind: "capture_spent" } | { kind: "capture_fraction"; fraction: number };

/** The refund rule of each outcome other than a full completion (which always captures the whole hold). */
export interface RefundRules {
  /** The provider failed or timed out before any output (default `release`). */
  failed: RefundRule;
  /** Cancelled while pending, before any work started (default `release`). */
  cancelledBeforeStart: RefundRule;
  /** Cancelled while processing (default `capture_spent`). */
  cancelledWhileProcessing: RefundRule;
  /** The provider delivered a partial output and said so (default `capture_fraction` 0.5). */
  partialOutput: RefundRule;
}

export interface PlanCatalog {
  /** The plan of a new user. */
  defaultPlan: string;
  /** The plan of a guest. */
  guestPlan: string;
  plans: Record<string, Plan>;
}

const limitValue = z.number().int().nonnegative();
const limitSchema = z.union([
  limitValue,
  z.strictObject({ limit: limitValue, thresholds: z.array(z.number().gt(0).lte(1)).max(10).default([]) }),
]);
const limitsSchema = z.strictObject(Object.fromEntries(LIMIT_NAMES.map((name) => [name, limitSchema.optional()])) as Record<LimitName, z.ZodOptional<typeof limitSchema>>);
const refundRuleSchema = z.union([
  z.enum(["release", "capture", "capture_spent"]),
  z.strictObject({ capture_fraction: z.number().min(0).max(1) }),
]);
const refundRulesSchema = z.strictObject({
  failed: refundRuleSchema.default("release"),
  cancelled_before_start: refundRuleSchema.default("release"),
  cancelled_while_processing: refundRuleSchema.default("capture_spent"),
  partial_output: refundRuleSchema.default({ capture_fraction: 0.5 }),
});
const planSchema = z.strictObject({
  trial_credits: z.number().int().nonnegative(),
  free_retries: z.number().int().nonnegative().default(0),
  credit_price_micros: z.number().int().nonnegative().default(0),
  refund_rules: refundRulesSchema.prefault({}),
  limits: limitsSchema.default({}),
});

/** A refund rule as the file states it, as the services use it. */
function toRefundRule(rule: z.infer<typeof refundRuleSchema>): RefundRule {
  return typeof rule === "string" ? { kind: rule } : { kind: "capture_fraction", fraction: rule.capture_fraction };
}

/** A plan's `refund_rules` as the services use them. */
function toRefundRules(rules: z.infer<typeof refundRulesSchema>): RefundRules {
  return {
    failed: toRefundRule(rules.failed),
    cancelledBeforeStart: toRefundRule(rules.cancelled_before_start),
    cancelledWhileProcessing: toRefundRule(rules.cancelled_while_processing),
    partialOutput: toRefundRule(rules.partial_output),
  };
}

/** The refund rules of a plan whose file states none (the schema's defaults, docs/plans.md "Refund rules"). */
export const DEFAULT_REFUND_RULES: RefundRules = toRefundRules(refundRulesSchema.parse({}));
const catalogSchema = z
  .strictObject({
    default_plan: z.string().min(1),
    guest_plan: z.string().min(1),
    plans: z.record(z.string().regex(/^[a-z0-9][a-z0-9_-]{0,63}$/, "plan names are 1..64 of a-z, 0-9, _ and -"), planSchema),
  })
  .superRefine((catalog, ctx) => {
    for (const key of ["default_plan", "guest_plan"] as const) {
      if (!(catalog[key] in catalog.plans)) ctx.addIssue({ code: "custom", path: [key], message: `names no plan in "plans"` });
    }
  });

/** The built-in catalogue, used when PLANS_FILE is unset. */
export const DEFAULT_PLANS_DOCUMENT = {
  default_plan: "free",
  guest_plan: "guest",
  plans: {
    guest: { trial_credits: 3, free_retries: 0, credit_price_micros: 10_000, limits: { generations_per_day: 3, concurrent_generations: 2, requests_per_minute: 120 } },
    free: { trial_credits: 10, free_retries: 1, credit_price_micros: 10_000, limits: { generations_per_period: 100, concurrent_generations: 20, requests_per_minute: 600 } },
    pro: {
      trial_credits: 10,
      free_retries: 3,
      credit_price_micros: 8_000,
      limits: {
        generations_per_period: 5000,
        concurrent_generations: 50,
        requests_per_minute: 3000,
        credits_per_period: { limit: 20000, thresholds: [0.8, 1.0] },
      },
    },
  },
};

/** A plans file that does not validate; the message names the file and each bad key. */
export class PlansConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PlansConfigError";
  }
}

/**
 * Validates a plans document (already parsed from YAML or JSON) and returns the catalogue.
 * Throws PlansConfigError naming every bad key path (e.g. `plans.pro.limits.credits_per_period.limit`).
 */
export function parsePlanCatalog(document: unknown, source = "plans"): PlanCatalog {
  const parsed = catalogSchema.safeParse(document);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `${issue.path.join(".") || "(root)"}: ${issue.message}`);
    throw new PlansConfigError(`${source} is invalid: ${problems.join("; ")}`);
  }
  const plans: Record<string, Plan> = {};
  for (const [name, plan] of Object.entries(parsed.data.plans)) {
    const limits: Partial<Record<LimitName, Limit>> = {};
    for (const limitName of LIMIT_NAMES) {
      const value = plan.limits[limitName];
      if (value === undefined) continue;
      limits[limitName] = typeof value === "number" ? { limit: value, thresholds: [] } : { limit: value.limit, thresholds: [...value.thresholds].sort() };
    }
    plans[name] = {
      name,
      trialCredits: plan.trial_credits,
      freeRetries: plan.free_retries,
      limits,
      creditPriceMicros: BigInt(plan.credit_price_micros),
      refundRules: toRefundRules(plan.refund_rules),
    };
  }
  return { defaultPlan: parsed.data.default_plan, guestPlan: parsed.data.guest_plan, plans };
}

/**
 * The plan catalogue of this process: the file named by `plansFile` (YAML or JSON; YAML is a
 * superset of JSON), else DEFAULT_PLANS_DOCUMENT. `trialCreditsOverride` (TRIAL_CREDITS), when
 * given, replaces the default plan's trial credits. Throws PlansConfigError for an unreadable
 * or invalid file.
 */
export function loadPlanCatalog(plansFile: string | undefined, trialCreditsOverride?: number): PlanCatalog {
  let document: unknown = DEFAULT_PLANS_DOCUMENT;
  if (plansFile) {
    let text: string;
    try {
      text = readFileSync(plansFile, "utf8");
    } catch (error) {
      throw new PlansConfigError(`PLANS_FILE ${plansFile} cannot be read: ${(error as Error).message}`);
    }
    try {
      document = parseYaml(text);
    } catch (error) {
      throw new PlansConfigError(`PLANS_FILE ${plansFile} is not valid YAML or JSON: ${(error as Error).message}`);
    }
  }
  const catalog = parsePlanCatalog(document, plansFile ? `PLANS_FILE ${plansFile}` : "the built-in plans");
  if (trialCreditsOverride !== undefined) {
    const plan = catalog.plans[catalog.defaultPlan]!;
    catalog.plans[catalog.defaultPlan] = { ...plan, trialCredits: trialCreditsOverride };
  }
  return catalog;
}

/**
 * Longest plan name a caller may hand a service (an account's plan, a filter), in characters.
 * Catalogue names are at most 64 (the `plans` key rule above); a longer bound lets a service
 * meet a name from an earlier catalogue without refusing it.
 */
export const PLAN_NAME_LENGTH_MAX = 100;

/** The plan named `name`. Throws `validation` (field `plan`, listing the known plans) for an unknown one. */
export function planNamed(catalog: PlanCatalog, name: string): Plan {
  const plan = catalog.plans[name];
  if (!plan) throw validationError(`unknown plan "${name}"`, { field: "plan", known_plans: Object.keys(catalog.plans).sort() });
  return plan;
}
