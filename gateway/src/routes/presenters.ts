import assert from "node:assert";
import { credits, generations, usage } from "@tally/contracts";

/**
 * Proto messages → the public JSON of the REST contract, docs/api.md (snake_case, lower-case enum names, RFC 3339 UTC
 * timestamps, null for unset optional values, int64 as JSON numbers).
 */

/** int64 → JSON number; a value past 2^53 would silently lose precision, which is a bug. */
export function toJsonInteger(value: bigint | number | undefined): number {
  const number = Number(value ?? 0);
  assert(Number.isSafeInteger(number), `integer ${String(value)} is not a safe JSON number`);
  return number;
}

/** Timestamp → RFC 3339 UTC string, or null when unset. */
export const toTimestamp = (value: Date | undefined): string | null => (value ? value.toISOString() : null);

/** proto3 has no null string: an empty optional string means "not set". */
const optionalString = (value: string | undefined): string | null => (value ? value : null);

const ROLE_NAMES: Record<number, "user" | "admin"> = {
  [credits.Role.ROLE_USER]: "user",
  [credits.Role.ROLE_ADMIN]: "admin",
};

/** Role enum → "user" | "admin" (unspecified means a plain user, as CreateAccount defaults). */
export const roleName = (role: credits.Role): "user" | "admin" => ROLE_NAMES[role] ?? "user";

export const GENERATION_STATUSES = ["pending", "processing", "completed", "failed", "cancelled"] as const;
export type GenerationStatusName = (typeof GENERATION_STATUSES)[number];

const STATUS_NAMES: Record<number, GenerationStatusName> = {
  [generations.GenerationStatus.GENERATION_STATUS_PENDING]: "pending",
  [generations.GenerationStatus.GENERATION_STATUS_PROCESSING]: "processing",
  [generations.GenerationStatus.GENERATION_STATUS_COMPLETED]: "completed",
  [generations.GenerationStatus.GENERATION_STATUS_FAILED]: "failed",
  [generations.GenerationStatus.GENERATION_STATUS_CANCELLED]: "cancelled",
};

export const INPUT_TYPES = ["text", "photo", "address"] as const;
export type InputTypeName = (typeof INPUT_TYPES)[number];

const INPUT_TYPE_NAMES: Record<number, InputTypeName> = {
  [generations.InputType.INPUT_TYPE_TEXT]: "text",
  [generations.InputType.INPUT_TYPE_PHOTO]: "photo",
  [generations.InputType.INPUT_TYPE_ADDRESS]: "address",
};

/** Public input type name → proto enum. */
export const INPUT_TYPE_VALUES: Record<InputTypeName, generations.InputType> = {
  text: generations.InputType.INPUT_TYPE_TEXT,
  photo: generations.InputType.INPUT_TYPE_PHOTO,
  address: generations.InputType.INPUT_TYPE_ADDRESS,
};

/** How a generation is billed (usage log entries say the same). */
export const BILLING_CLASSIFICATIONS = ["original", "free_retry", "paid_regeneration"] as const;
/** What a job came to, as its settlement says (docs/plans.md, "Refund rules"). */
export const SETTLEMENT_OUTCOMES = ["completed", "partial_output", "failed", "cancelled_before_start", "cancelled_while_processing"] as const;
/** The refund rules a settlement may apply. */
export const SETTLEMENT_RULES = ["capture", "release", "capture_spent", "capture_fraction"] as const;
export type BillingClassificationName = (typeof BILLING_CLASSIFICATIONS)[number];

/** The public API names purchased credits "token" credits. */
export const CREDIT_TYPES = ["trial", "token", "mixed"] as const;
export type CreditTypeName = (typeof CREDIT_TYPES)[number];

const CREDIT_TYPE_NAMES: Record<number, CreditTypeName> = {
  [generations.CreditType.CREDIT_TYPE_TRIAL]: "trial",
  [generations.CreditType.CREDIT_TYPE_PURCHASED]: "token",
  [generations.CreditType.CREDIT_TYPE_MIXED]: "mixed",
};

function enumName<T extends string>(names: Record<number, T>, value: number, what: string): T {
  const name = names[value];
  assert(name !== undefined, `generations service returned an unknown ${what} (${value})`);
  return name;
}

/** The public account (the `user` of register and the body of `/v1/me` without stats). */
export interface AccountJson {
  id: string;
  /** Null for a guest, which has none. */
  email: string | null;
  plan: string;
  role: "user" | "admin";
  created_at: string | null;
  last_login: string | null;
  current_period_start: string | null;
}

export function presentAccount(account: credits.Account | undefined): AccountJson {
  assert(account, "credits service answered without an account");
  return {
    id: account.id,
    email: account.email || null,
    plan: account.plan,
    role: roleName(account.role),
    created_at: toTimestamp(account.createdAt),
    last_login: toTimestamp(account.lastLoginAt),
    current_period_start: toTimestamp(account.currentPeriodStart),
  };
}

export interface StatsJson {
  total_generations: number;
  total_failed: number;
  total_cost_micros: number;
  total_credits_spent: number;
  total_downloaded: number;
  total_created: number;
  total_cancelled: number;
  running: number;
  total_output_bytes: number;
  average_output_bytes: number;
  total_processing_time_ms: number;
  average_processing_time_ms: number;
  success_rate: number | null;
  by_input_type: Record<string, { completed: number; failed: number }>;
  by_provider: Record<string, { completed: number; failed: number }>;
  first_activity_at: string | null;
  last_activity_at: string | null;
}

/** `total / count` rounded down, 0 when `count` is 0. */
const averageOf = (total: bigint | undefined, count: bigint | undefined): number => (count ? toJsonInteger((total ?? 0n) / count) : 0);

/**
 * Lifetime stats; a user without usage has zeros (the usage service says so too). Averages are
 * per completed generation, rounded down; `success_rate` = completed / (completed + failed),
 * null before any generation has ended.
 */
export function presentStats(stats: usage.UserStats | undefined): StatsJson {
  const [completed, failed] = [stats?.totalGenerations ?? 0n, stats?.totalFailed ?? 0n];
  return {
    total_generations: toJsonInteger(stats?.totalGenerations),
    total_failed: toJsonInteger(stats?.totalFailed),
    total_cost_micros: toJsonInteger(stats?.totalCostMicros),
    total_credits_spent: toJsonInteger(stats?.totalCreditsSpent),
    total_downloaded: toJsonInteger(stats?.totalDownloaded),
    total_created: toJsonInteger(stats?.totalCreated),
    total_cancelled: toJsonInteger(stats?.totalCancelled),
    running: toJsonInteger(stats?.running),
    total_output_bytes: toJsonInteger(stats?.totalOutputBytes),
    average_output_bytes: averageOf(stats?.totalOutputBytes, completed),
    total_processing_time_ms: toJsonInteger(stats?.totalProcessingTimeMs),
    average_processing_time_ms: averageOf(stats?.totalProcessingTimeMs, completed),
    success_rate: completed + failed === 0n ? null : Number(completed) / Number(completed + failed),
    by_input_type: presentOutcomeCounts(stats?.byInputType ?? {}),
    by_provider: presentOutcomeCounts(stats?.byProvider ?? {}),
    first_activity_at: toTimestamp(stats?.firstActivityAt),
    last_activity_at: toTimestamp(stats?.lastActivityAt),
  };
}

export interface BalanceJson {
  trial_credits: number;
  token_balance: number;
  held: number;
  total_available: number;
}

/** Balance: `total_available` = trial + tokens not held. */
export function presentBalance(balance: credits.Balance | undefined): BalanceJson {
  assert(balance, "credits service answered without a balance");
  return {
    trial_credits: toJsonInteger(balance.trialCredits),
    token_balance: toJsonInteger(balance.tokenCredits),
    held: toJsonInteger(balance.heldCredits),
    total_available: toJsonInteger(balance.availableCredits),
  };
}

export interface GenerationJson {
  id: string;
  user_id: string;
  status: GenerationStatusName;
  input_type: InputTypeName;
  prompt: string | null;
  photo_url: string | null;
  address: string | null;
  style: string | null;
  credit_cost: number;
  credit_type: CreditTypeName | null;
  progress: number;
  output_url: string | null;
  error_message: string | null;
  provider: string | null;
  cost_micros: number;
  processing_time_ms: number;
  created_at: string | null;
  started_at: string | null;
  completed_at: string | null;
  parent_generation_id: string | null;
  billing_classification: BillingClassificationName;
  billing_reason: string | null;
  partial_output: boolean;
  settlement: SettlementJson | null;
}

/** A generation's settlement as the public API shows it. */
export interface SettlementJson {
  outcome: (typeof SETTLEMENT_OUTCOMES)[number];
  rule: (typeof SETTLEMENT_RULES)[number];
  credits_captured: number;
  credits_released: number;
}

/** A billing classification the generations service sent; "" (an older answer) is an original. */
function billingClassificationOf(value: string): BillingClassificationName {
  const name = value || "original";
  assert((BILLING_CLASSIFICATIONS as readonly string[]).includes(name), `generations service returned an unknown billing classification (${value})`);
  return name as BillingClassificationName;
}

/** A generation status's public name (`pending`, `processing`, `completed`, `failed`, `cancelled`). */
export function presentGenerationStatus(status: generations.GenerationStatus): string {
  return enumName(STATUS_NAMES, status, "status");
}

/**
 * A generation as the public API shows it. `outputUrlFor(id)` gives the absolute URL of the output
 * route; only a completed generation has one.
 */
export function presentGeneration(generation: generations.Generation | undefined, outputUrlFor: (id: string) => string): GenerationJson {
  assert(generation, "generations service answered without a generation");
  const status = enumName(STATUS_NAMES, generation.status, "status");
  return {
    id: generation.id,
    user_id: generation.userId,
    status,
    input_type: enumName(INPUT_TYPE_NAMES, generation.inputType, "input type"),
    prompt: optionalString(generation.prompt),
    photo_url: optionalString(generation.photoUrl),
    address: optionalString(generation.address),
    style: optionalString(generation.style),
    credit_cost: toJsonInteger(generation.creditCost),
    credit_type: CREDIT_TYPE_NAMES[generation.creditType] ?? null,
    progress: generation.progressPercent,
    output_url: status === "completed" ? outputUrlFor(generation.id) : null,
    error_message: optionalString(generation.errorMessage),
    provider: optionalString(generation.provider),
    cost_micros: toJsonInteger(generation.costMicros),
    processing_time_ms: toJsonInteger(generation.processingTimeMs),
    created_at: toTimestamp(generation.createdAt),
    started_at: toTimestamp(generation.startedAt),
    completed_at: toTimestamp(generation.completedAt),
    parent_generation_id: optionalString(generation.parentGenerationId),
    billing_classification: billingClassificationOf(generation.billingClassification),
    billing_reason: optionalString(generation.billingReason),
    partial_output: generation.partialOutput,
    settlement: generation.settlement ? presentSettlement(generation.settlement) : null,
  };
}

/** A settlement the generations service sent; an unknown outcome or rule is a contract breach. */
function presentSettlement(settlement: generations.Settlement): SettlementJson {
  const { outcome, rule } = settlement;
  assert((SETTLEMENT_OUTCOMES as readonly string[]).includes(outcome), `generations service returned an unknown settlement outcome (${outcome})`);
  assert((SETTLEMENT_RULES as readonly string[]).includes(rule), `generations service returned an unknown settlement rule (${rule})`);
  return {
    outcome: outcome as SettlementJson["outcome"],
    rule: rule as SettlementJson["rule"],
    credits_captured: toJsonInteger(settlement.creditsCaptured),
    credits_released: toJsonInteger(settlement.creditsReleased),
  };
}

/** A breakdown `{key: {completed, failed}}` of usage's OutcomeCounts as public JSON. */
export function presentOutcomeCounts(map: Record<string, usage.OutcomeCounts>): Record<string, { completed: number; failed: number }> {
  return Object.fromEntries(Object.entries(map).map(([key, counts]) => [key, { completed: toJsonInteger(counts.completed), failed: toJsonInteger(counts.failed) }]));
}
