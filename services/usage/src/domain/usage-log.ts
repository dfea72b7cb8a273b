import { events } from "@tally/contracts";
import { isUuid, validationError } from "@tally/platform";

/** Outcome of a generation as the usage log records it. */
export type UsageOutcome = "completed" | "failed";

/**
 * A usage log entry before it is stored: the immutable fact that one generation completed
 * (billable) or failed (not billable). Money is int64 micro-units, credits are int64.
 */
export interface UsageLogEntryDraft {
  eventId: string;
  userId: string;
  generationId: string;
  outcome: UsageOutcome;
  /** True for a completion only: a failed generation's credits were released, not charged (seed 004, billing classification). */
  billable: boolean;
  inputType: string;
  provider: string;
  /** "trial", "purchased" or "mixed" for a completion; null for a failure. */
  creditType: string | null;
  /** Credits captured (completion) or held then released (failure). */
  credits: bigint;
  costMicros: bigint;
  processingTimeMs: bigint;
  errorMessage: string | null;
  errorCode: string | null;
  occurredAt: Date;
}

/** A usage log entry as stored, with its id and the time it was recorded. */
export interface UsageLogEntry extends UsageLogEntryDraft {
  id: string;
  recordedAt: Date;
}

/** How one usage log entry moves a user's lifetime stats. */
export interface UserStatsDelta {
  generations: bigint;
  failed: bigint;
  costMicros: bigint;
  creditsSpent: bigint;
}

/** A user's lifetime totals (DESIGN "User stats"). */
export interface UserStats {
  userId: string;
  /** Completed generations. */
  totalGenerations: bigint;
  /** Failed generations. */
  totalFailed: bigint;
  totalCostMicros: bigint;
  totalCreditsSpent: bigint;
  /** Null when the user has no usage yet. */
  lastActivityAt: Date | null;
}

/** Stats of a user with no usage yet: zeros, not an error (usage.proto GetUserStats). */
export const emptyUserStats = (userId: string): UserStats => ({
  userId,
  totalGenerations: 0n,
  totalFailed: 0n,
  totalCostMicros: 0n,
  totalCreditsSpent: 0n,
  lastActivityAt: null,
});

/** Longest free-text field (input type, provider, codes) accepted, in characters. */
export const SHORT_TEXT_LENGTH_MAX = 200;
/** Longest error message accepted, in characters. */
export const ERROR_MESSAGE_LENGTH_MAX = 10_000;
/** Largest value an int8 column holds. */
const INT64_MAX = (1n << 63n) - 1n;

/**
 * The usage log entry a `GenerationCompleted` event records: billable, counting one generation,
 * its cost and the credits captured (seed 000: total_generations + 1, total_cost + cost).
 * Throws a `validation` DomainError when a field can never be stored (the message is poison).
 */
export function usageLogEntryFromCompleted(event: events.GenerationCompleted): UsageLogEntryDraft {
  const common = validateCommon(event);
  if (!event.provider) throw validationError("provider is required on a completion");
  return {
    ...common,
    outcome: "completed",
    billable: true,
    creditType: event.creditType || null,
    errorMessage: null,
    errorCode: null,
  };
}

/**
 * The usage log entry a `GenerationFailed` event records: not billable; it counts one failure
 * and nothing of the money (its credits were released). Throws a `validation` DomainError when
 * a field can never be stored.
 */
export function usageLogEntryFromFailed(event: events.GenerationFailed): UsageLogEntryDraft {
  const common = validateCommon(event);
  checkText("error_message", event.errorMessage, ERROR_MESSAGE_LENGTH_MAX);
  checkText("error_code", event.errorCode, SHORT_TEXT_LENGTH_MAX);
  return {
    ...common,
    outcome: "failed",
    billable: false,
    creditType: null,
    errorMessage: event.errorMessage || null,
    errorCode: event.errorCode || null,
  };
}

/**
 * How an entry moves its user's stats: a completion adds one generation, its cost and its
 * credits; a failure adds one failure only. Reconciliation recomputes the same totals from the
 * usage log, so this rule and `reconcileUserStats` must agree.
 */
export function statsDelta(entry: Pick<UsageLogEntryDraft, "outcome" | "costMicros" | "credits">): UserStatsDelta {
  if (entry.outcome === "completed") {
    return { generations: 1n, failed: 0n, costMicros: entry.costMicros, creditsSpent: entry.credits };
  }
  return { generations: 0n, failed: 1n, costMicros: 0n, creditsSpent: 0n };
}

type CommonFields = Pick<
  UsageLogEntryDraft,
  "eventId" | "userId" | "generationId" | "inputType" | "provider" | "credits" | "costMicros" | "processingTimeMs" | "occurredAt"
>;

function validateCommon(event: events.GenerationCompleted | events.GenerationFailed): CommonFields {
  checkUuid("event_id", event.eventId);
  checkUuid("user_id", event.userId);
  checkUuid("generation_id", event.generationId);
  if (!event.occurredAt || Number.isNaN(event.occurredAt.getTime())) throw validationError("occurred_at is required");
  if (!event.inputType) throw validationError("input_type is required");
  checkText("input_type", event.inputType, SHORT_TEXT_LENGTH_MAX);
  checkText("provider", event.provider, SHORT_TEXT_LENGTH_MAX);
  checkAmount("credits", event.credits);
  checkAmount("cost_micros", event.costMicros);
  checkAmount("processing_time_ms", event.processingTimeMs);
  return {
    eventId: event.eventId.toLowerCase(),
    userId: event.userId.toLowerCase(),
    generationId: event.generationId.toLowerCase(),
    inputType: event.inputType,
    provider: event.provider,
    credits: event.credits,
    costMicros: event.costMicros,
    processingTimeMs: event.processingTimeMs,
    occurredAt: event.occurredAt,
  };
}

function checkUuid(field: string, value: string): void {
  if (!isUuid(value)) throw validationError(`${field} must be a UUID`, { field });
}

function checkAmount(field: string, value: bigint): void {
  if (typeof value !== "bigint" || value < 0n || value > INT64_MAX) {
    throw validationError(`${field} must be a non-negative int64`, { field });
  }
}

function checkText(field: string, value: string, lengthMax: number): void {
  if (value.length > lengthMax) throw validationError(`${field} is longer than ${lengthMax} characters`, { field });
  // PostgreSQL text cannot hold NUL: such a value could never be stored, however often retried.
  if (value.includes("\u0000")) throw validationError(`${field} contains a NUL character`, { field });
}
