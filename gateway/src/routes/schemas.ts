import { z } from "zod";
import { EMAIL_LENGTH_MAX, IDENTIFIER_CONTROL_CHARACTERS, PAGE_SIZE_RULE, REQUEST_ID_LENGTH_MAX, TEXT_CONTROL_CHARACTERS } from "@tally/platform/src/stateless";
import { BILLING_CLASSIFICATIONS, CREDIT_TYPES, GENERATION_STATUSES, INPUT_TYPES, SETTLEMENT_OUTCOMES, SETTLEMENT_RULES } from "./presenters";

/**
 * Zod schemas of the public routes: they validate requests (400 `validation` naming the
 * field) and generate the OpenAPI document. Names and meanings are the REST contract's
 * (docs/api.md).
 */

/** Named limits of request fields (the services check their own rules too). */
export const LIMITS = {
  emailLengthMax: EMAIL_LENGTH_MAX,
  passwordLengthMin: 8,
  /** The credits service accepts 8..256 characters; one constant for register and login. */
  passwordLengthMax: 256,
  promptLengthMax: 2000,
  urlLengthMax: 2048,
  addressLengthMax: 500,
  styleLengthMax: 100,
  idempotencyKeyLengthMax: REQUEST_ID_LENGTH_MAX,
  listLimitMax: PAGE_SIZE_RULE.sizeMax,
  listLimitDefault: PAGE_SIZE_RULE.sizeDefault,
  /** The list RPC's offset is an int32. */
  listOffsetMax: 2_147_483_647,
} as const;

/**
 * The strings holding no character of `characters` (a one-class pattern such as platform's
 * TEXT_CONTROL_CHARACTERS), anchored, so the OpenAPI document publishes the rule as `pattern`.
 */
const without = (characters: RegExp): RegExp => new RegExp(`^[^${characters.source.slice(1, -1)}]*$`);

/**
 * Identifiers (email, URL, Idempotency-Key) follow platform's identifier rule: no C0 control
 * character and no DEL (a NUL or an escape sequence is never part of one, and PostgreSQL text
 * cannot hold NUL), so such input is a 400 naming the field and never reaches a service (INV-7).
 */
export const NO_CONTROL_CHARACTERS = without(IDENTIFIER_CONTROL_CHARACTERS);
/**
 * A password is a secret, not an identifier: the one rule of its own is that it holds no C0
 * control character. DEL stays allowed, as it always was, so no account whose password holds
 * one is locked out.
 */
const NO_CONTROL_CHARACTERS_IN_PASSWORD = /^[^\u0000-\u001f]*$/;
/** Free text (prompt, address, style) follows platform's text rule: tab, CR and LF only (INV-7). */
const NO_CONTROL_CHARACTERS_IN_TEXT = without(TEXT_CONTROL_CHARACTERS);
export const CONTROL_CHARACTERS_MESSAGE = "must not contain control characters";
const CONTROL_CHARACTERS_IN_TEXT_MESSAGE = "must not contain control characters other than tab, CR and LF";

const timestamp = z.iso.datetime().describe("RFC 3339 UTC");
const nullableTimestamp = timestamp.nullable();

export const problemSchema = z
  .looseObject({
    type: z.string(),
    title: z.string(),
    status: z.number().int(),
    detail: z.string(),
    code: z.string().describe("Stable reason, e.g. validation, insufficient_credits, not_found"),
    instance: z.string().optional(),
    trace_id: z.string().optional(),
  })
  .meta({ id: "Problem", description: "RFC 9457 problem details (application/problem+json)" });

/** Error answers every route may give, for the OpenAPI document. */
export const problemResponses = {
  "4xx": { description: "Client error", content: { "application/problem+json": { schema: problemSchema } } },
  "5xx": { description: "Server or dependency error", content: { "application/problem+json": { schema: problemSchema } } },
} as const;

/** Headers of mutating routes: an optional Idempotency-Key (other headers pass through). */
export const idempotencyHeaders = z.looseObject({
  "idempotency-key": z
    .string()
    .min(1)
    .max(LIMITS.idempotencyKeyLengthMax)
    .regex(NO_CONTROL_CHARACTERS, CONTROL_CHARACTERS_MESSAGE)
    .optional()
    .describe("A retry with the same key returns the first answer; the same key with another body answers 409"),
});

/** How a guest names itself: a UUID it made up (checked by the principal hook: 400 unless a UUID). */
const guestIdHeader = z
  .string()
  .optional()
  .describe("Guest id (a UUID the client keeps): without a bearer token, the request acts for this guest; on sign-up, the guest to adopt");

/** Headers of sign-up: an optional Idempotency-Key and the guest to adopt. (Elsewhere `X-Guest-ID` is a security scheme.) */
export const idempotencyAndGuestHeaders = idempotencyHeaders.extend({ "x-guest-id": guestIdHeader });

/** OpenAPI security of routes for users and guests: a bearer token, or `X-Guest-ID` (the `guestId` scheme). */
export const userOrGuestSecurity: { [scheme: string]: string[] }[] = [{ bearerAuth: [] }, { guestId: [] }];

export const credentialsBody = z.object({
  email: z.email().max(LIMITS.emailLengthMax).regex(NO_CONTROL_CHARACTERS, CONTROL_CHARACTERS_MESSAGE),
  password: z.string().min(LIMITS.passwordLengthMin).max(LIMITS.passwordLengthMax).regex(NO_CONTROL_CHARACTERS_IN_PASSWORD, CONTROL_CHARACTERS_MESSAGE),
});

export const loginBody = z.object({
  email: z.string().min(1).max(LIMITS.emailLengthMax).regex(NO_CONTROL_CHARACTERS, CONTROL_CHARACTERS_MESSAGE),
  password: z.string().min(1).max(LIMITS.passwordLengthMax).regex(NO_CONTROL_CHARACTERS_IN_PASSWORD, CONTROL_CHARACTERS_MESSAGE),
});

export const accountSchema = z
  .object({
    id: z.uuid(),
    email: z.string().nullable().describe("null for a guest"),
    plan: z.string(),
    role: z.enum(["user", "admin"]),
    created_at: nullableTimestamp,
    last_login: nullableTimestamp,
    current_period_start: nullableTimestamp,
  })
  .meta({ id: "Account" });

export const registerResponse = z.object({
  user: accountSchema,
  access_token: z.string(),
  token_type: z.literal("Bearer"),
  expires_in: z.number().int().describe("seconds"),
});

export const loginResponse = z.object({
  access_token: z.string(),
  token_type: z.literal("Bearer"),
  expires_in: z.number().int().describe("seconds"),
});

export const limitSchema = z
  .object({
    name: z.string().describe("e.g. generations_per_period, requests_per_minute"),
    window: z.enum(["period", "day", "concurrent", "minute"]),
    limit: z.number().int(),
    used: z.number().int(),
    reserved: z.number().int().describe("held by jobs not ended yet"),
    remaining: z.number().int().describe("max(0, limit - used - reserved)"),
    within_limit: z.boolean(),
    resets_at: nullableTimestamp.describe("when the window starts again; null for concurrent_generations"),
  })
  .meta({ id: "Limit" });

const periodSchema = z.object({ start: nullableTimestamp, end: nullableTimestamp }).describe("the current billing period, [start, end)");

export const limitsResponse = z
  .object({ plan: z.string(), period: periodSchema, limits: z.array(limitSchema) })
  .meta({ id: "Limits" });

const outcomeCounts = z.record(z.string(), z.object({ completed: z.number().int(), failed: z.number().int() }));

export const monthlyAnalyticsResponse = z
  .object({
    months: z
      .array(
        z.object({
          month: z.string().describe("YYYY-MM (UTC)"),
          generations: z.number().int().describe("completed generations"),
          failed: z.number().int(),
          credits: z.number().int().describe("credits charged for completed generations"),
          cost_micros: z.number().int(),
          processing_time_ms: z.number().int(),
          output_bytes: z.number().int(),
          by_input_type: outcomeCounts,
          by_provider: outcomeCounts,
          by_billing_classification: outcomeCounts.describe("original, free_retry, paid_regeneration"),
          plans: z.array(z.string()).describe("the plans in force on the month's generations, sorted"),
          plan_changed: z.boolean().describe("more than one plan was in force during the month"),
        }),
      )
      .describe("the last 12 UTC months, newest first; a month without usage has zeros"),
  })
  .meta({ id: "MonthlyAnalytics" });

/** Lifetime stats (GET /v1/me `stats`, GET /v1/usage/summary `lifetime`). */
export const lifetimeStatsSchema = z.object({
  total_generations: z.number().int(),
  total_failed: z.number().int(),
  total_cost_micros: z.number().int(),
  total_credits_spent: z.number().int(),
  total_downloaded: z.number().int().describe("download requests of the user's outputs (GET /v1/generations/{id}/output); not billable"),
  total_created: z.number().int().describe("generations accepted: completed + failed + cancelled + running"),
  total_cancelled: z.number().int(),
  running: z.number().int().describe("generations pending or processing now"),
  total_output_bytes: z.number().int().describe("of completed generations"),
  average_output_bytes: z.number().int().describe("per completed generation, rounded down (0 when none)"),
  total_processing_time_ms: z.number().int().describe("of completed generations"),
  average_processing_time_ms: z.number().int().describe("per completed generation, rounded down (0 when none)"),
  success_rate: z.number().nullable().describe("completed / (completed + failed), 0..1; null before the first one ends"),
  by_input_type: outcomeCounts,
  by_provider: outcomeCounts,
  first_activity_at: nullableTimestamp,
  last_activity_at: nullableTimestamp,
});

/** The current billing period with the totals of its usage log entries (GET /v1/usage/summary). */
export const periodTotalsSchema = z
  .object({
    start: nullableTimestamp,
    end: nullableTimestamp,
    generations: z.number().int().describe("completed generations in the period"),
    failed: z.number().int(),
    credits: z.number().int(),
    cost_micros: z.number().int(),
    processing_time_ms: z.number().int(),
    output_bytes: z.number().int(),
  })
  .describe("the current billing period, [start, end), and the totals of the caller's usage log entries in it");

export const meResponse = accountSchema
  .extend({
    stats: lifetimeStatsSchema,
    period: periodSchema,
    limits: z.array(limitSchema).describe("the plan's limits, as GET /v1/usage/limits lists them"),
  })
  .meta({ id: "Me" });

/** A path account id; non-UUIDs are answered 404 by the route. */
export const accountParams = z.object({ user_id: z.string() });

export const setPlanBody = z.object({
  plan: z.string().min(1).max(64).regex(/^[a-z0-9][a-z0-9_-]*$/, "must be a plan name (a-z, 0-9, _ and -)").describe("a plan of the plans file"),
});

export const setBillingAnchorBody = z.object({
  anchor: z.iso
    .datetime({ offset: true })
    .describe("RFC 3339 timestamp, not in the future: the account's new current_period_start (billing periods are monthly from it, UTC)"),
});

export const balanceResponse = z
  .object({
    trial_credits: z.number().int(),
    token_balance: z.number().int(),
    held: z.number().int(),
    total_available: z.number().int().describe("trial + tokens not held"),
  })
  .meta({ id: "Balance" });

export const generationSchema = z
  .object({
    id: z.uuid(),
    user_id: z.string(),
    status: z.enum(GENERATION_STATUSES),
    input_type: z.enum(INPUT_TYPES),
    prompt: z.string().nullable(),
    photo_url: z.string().nullable(),
    address: z.string().nullable(),
    style: z.string().nullable(),
    credit_cost: z.number().int(),
    credit_type: z.enum(CREDIT_TYPES).nullable().describe("token = purchased credits"),
    progress: z.number().int().min(0).max(100),
    output_url: z.string().nullable().describe("Absolute URL of the output, once completed"),
    error_message: z.string().nullable(),
    provider: z.string().nullable(),
    cost_micros: z.number().int(),
    processing_time_ms: z.number().int(),
    created_at: nullableTimestamp,
    started_at: nullableTimestamp,
    completed_at: nullableTimestamp,
    parent_generation_id: z.string().nullable().describe("The generation this one retries or regenerates; null for an original"),
    billing_classification: z.enum(BILLING_CLASSIFICATIONS),
    billing_reason: z.string().nullable().describe('Why the classification, e.g. "free retry 1 of 2"; null for an original'),
    partial_output: z.boolean().describe("The provider delivered only part of the output (settled under the plan's partial_output rule)"),
    settlement: z
      .object({
        outcome: z.enum(SETTLEMENT_OUTCOMES),
        rule: z.enum(SETTLEMENT_RULES),
        credits_captured: z.number().int().describe("Credits charged"),
        credits_released: z.number().int().describe("Credits given back; credits_captured + credits_released = credit_cost"),
      })
      .nullable()
      .describe("How the job's hold is settled under the plan's refund rules; null until its ending is decided"),
  })
  .meta({ id: "Generation" });

export const generationListResponse = z
  .object({
    items: z.array(generationSchema),
    total: z.number().int(),
    limit: z.number().int(),
    offset: z.number().int(),
  })
  .meta({ id: "GenerationList" });

/** null and absent mean the same for optional inputs. */
const optionalText = (max: number) => z.string().max(max).regex(NO_CONTROL_CHARACTERS_IN_TEXT, CONTROL_CHARACTERS_IN_TEXT_MESSAGE).nullish();

export const createGenerationBody = z
  .object({
    input_type: z.enum(INPUT_TYPES),
    prompt: optionalText(LIMITS.promptLengthMax).describe("required for text"),
    photo_url: z
      .url({ protocol: /^https?$/ })
      .max(LIMITS.urlLengthMax)
      .regex(NO_CONTROL_CHARACTERS, CONTROL_CHARACTERS_MESSAGE)
      .nullish().describe("required for photo"),
    address: optionalText(LIMITS.addressLengthMax).describe("required for address"),
    style: optionalText(LIMITS.styleLengthMax),
  })
  .superRefine((body, ctx) => {
    // Each input type needs its own input (photo_url for photo, address for address, prompt
    // for text). The service checks it too; checking here makes the 400 name the field before any call.
    const required = { text: "prompt", photo: "photo_url", address: "address" } as const;
    const field = required[body.input_type];
    const value = body[field];
    if (typeof value !== "string" || value.trim() === "") {
      ctx.addIssue({ code: "custom", path: [field], message: `${field} is required when input_type is ${body.input_type}` });
    }
  });

export const listQuery = z.object({
  limit: z.coerce.number().int().min(1).max(LIMITS.listLimitMax).default(LIMITS.listLimitDefault),
  offset: z.coerce.number().int().min(0).max(LIMITS.listOffsetMax).default(0),
});

/** A path id; non-UUIDs are answered 404 by the route (an id that cannot exist is not found). */
export const idParams = z.object({ id: z.string() });

/** The empty answer of a deletion (204 No Content). */
export const noContentResponse = z.null().describe("Deleted (or deleted before): no content");
