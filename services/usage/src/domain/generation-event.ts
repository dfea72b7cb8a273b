import { requireTime, requireUuidField, validationError } from "@tally/platform";
import { BILLING_CLASSIFICATIONS, type BillingClassification, type DownloadDraft, type UsageLogEntryDraft } from "./types";

/*
 * A generation event as plain values (the adapter decodes the protobuf, see
 * adapter/event-decoding.ts), and the checks that make it a storable usage log entry. A check
 * that fails throws `validation`: such a message can never be stored however often it is
 * retried, so the consumer dead-letters it.
 */

/** The facts every generation event carries. */
export interface GenerationEventFacts {
  eventId: string;
  occurredAt?: Date;
  userId: string;
  generationId: string;
  inputType: string;
  provider: string;
  credits: bigint;
  costMicros: bigint;
  processingTimeMs: bigint;
  /** "original", "free_retry" or "paid_regeneration"; "" means "original" (older producers send none). */
  billingClassification: string;
  /** "" when none. */
  billingReason: string;
  /** "" for an original. */
  parentGenerationId: string;
}

/** A `GenerationCompleted` event. */
export interface GenerationCompletedFacts extends GenerationEventFacts {
  /** "trial", "purchased" or "mixed"; "" when unknown. */
  creditType: string;
  /** Size of the stored output, in bytes (0 from producers that do not send it). */
  outputBytes: bigint;
  /** The provider delivered only part of the output (false from producers that do not send it). */
  partialOutput: boolean;
}

/** A `GenerationFailed` event. */
export interface GenerationFailedFacts extends GenerationEventFacts {
  /** "" when there is none. */
  errorMessage: string;
  /** "" when there is none. */
  errorCode: string;
}

/** Longest free-text field (input type, provider, codes) accepted, in characters. */
export const SHORT_TEXT_LENGTH_MAX = 200;
/** Longest error message accepted, in characters. */
export const ERROR_MESSAGE_LENGTH_MAX = 10_000;
/** Largest value an int8 column holds. */
const INT64_MAX = (1n << 63n) - 1n;

/** The fields of a draft every event gives, checked. */
export type CheckedEventFacts = Pick<
  UsageLogEntryDraft,
  | "eventId"
  | "userId"
  | "generationId"
  | "inputType"
  | "provider"
  | "credits"
  | "costMicros"
  | "processingTimeMs"
  | "occurredAt"
  | "billingClassification"
  | "billingReason"
  | "parentGenerationId"
>;

/**
 * Checks the facts every event carries and returns them ready to store: UUIDs lower-cased (one
 * event id is one inbox key, INV-5), amounts within int64 and not negative, text storable.
 * `provider` may be empty here (a failure before any provider was chosen).
 * Throws `validation` naming the field.
 */
export function checkEventFacts(event: GenerationEventFacts): CheckedEventFacts {
  const eventId = requireUuidField(event.eventId, "event_id");
  const userId = requireUuidField(event.userId, "user_id");
  const generationId = requireUuidField(event.generationId, "generation_id");
  const occurredAt = requireTime(event.occurredAt, "occurred_at");
  if (!event.inputType) throw validationError("input_type is required");
  checkStorableText("input_type", event.inputType, SHORT_TEXT_LENGTH_MAX);
  checkStorableText("provider", event.provider, SHORT_TEXT_LENGTH_MAX);
  checkAmount("credits", event.credits);
  checkAmount("cost_micros", event.costMicros);
  checkAmount("processing_time_ms", event.processingTimeMs);
  const billing = checkBilling(event, generationId);
  return {
    ...billing,
    eventId,
    userId,
    generationId,
    inputType: event.inputType,
    provider: event.provider,
    credits: event.credits,
    costMicros: event.costMicros,
    processingTimeMs: event.processingTimeMs,
    occurredAt,
  };
}

/**
 * Checks that `value` fits a text column: at most `lengthMax` characters and no NUL, which
 * PostgreSQL text cannot hold. Other control characters are stored as sent (an event reports
 * what happened; it is not user input). Throws `validation` naming `field`.
 */
export function checkStorableText(field: string, value: string, lengthMax: number): void {
  if (value.length > lengthMax) throw validationError(`${field} is longer than ${lengthMax} characters`, { field });
  if (value.includes("\u0000")) throw validationError(`${field} contains a NUL character`, { field });
}

/**
 * The event's billing classification: "" is `original`; anything else must be one of the
 * three. A retry or regeneration names its parent (another generation); an original may not.
 * Throws `validation` naming the field.
 */
function checkBilling(
  event: GenerationEventFacts,
  generationId: string,
): Pick<UsageLogEntryDraft, "billingClassification" | "billingReason" | "parentGenerationId"> {
  const classification = (event.billingClassification || "original") as BillingClassification;
  if (!BILLING_CLASSIFICATIONS.includes(classification)) {
    throw validationError(`billing_classification must be one of ${BILLING_CLASSIFICATIONS.join(", ")}`, { field: "billing_classification" });
  }
  checkStorableText("billing_reason", event.billingReason, SHORT_TEXT_LENGTH_MAX);
  const parentGenerationId = event.parentGenerationId ? requireUuidField(event.parentGenerationId, "parent_generation_id") : null;
  if (classification === "original" && parentGenerationId) {
    throw validationError("an original generation has no parent_generation_id", { field: "parent_generation_id" });
  }
  if (classification !== "original" && !parentGenerationId) {
    throw validationError(`a ${classification} names its parent_generation_id`, { field: "parent_generation_id" });
  }
  if (parentGenerationId === generationId) {
    throw validationError("parent_generation_id is the generation itself", { field: "parent_generation_id" });
  }
  return { billingClassification: classification, billingReason: event.billingReason || null, parentGenerationId };
}

/** Checks an amount and returns it (exported for the download event's size). Throws `validation` naming `field`. */
export function checkAmount(field: string, value: bigint): bigint {
  if (typeof value !== "bigint" || value < 0n || value > INT64_MAX) {
    throw validationError(`${field} must be a non-negative int64`, { field });
  }
  return value;
}

/** A `GenerationCancelled` event as the adapter decodes it. */
export interface GenerationCancelledFacts {
  eventId: string;
  occurredAt?: Date;
  userId: string;
  generationId: string;
}

/** A checked cancellation: the ids lower-cased (one event id is one inbox key). */
export interface GenerationCancellation {
  eventId: string;
  userId: string;
  generationId: string;
  occurredAt: Date;
}

/** Checks a cancellation's ids and time. Throws `validation` naming the field (the message is poison). */
export function checkCancellation(event: GenerationCancelledFacts): GenerationCancellation {
  const eventId = requireUuidField(event.eventId, "event_id");
  const userId = requireUuidField(event.userId, "user_id");
  const generationId = requireUuidField(event.generationId, "generation_id");
  const occurredAt = requireTime(event.occurredAt, "occurred_at");
  return { eventId, userId, generationId, occurredAt };
}

/** A `GenerationDownloaded` event as the adapter decodes it. */
export interface GenerationDownloadedFacts {
  eventId: string;
  occurredAt?: Date;
  userId: string;
  generationId: string;
  outputBytes: bigint;
}

/**
 * Checks a download event: ids lower-cased (one event id is one inbox key, INV-5), a time,
 * a size within int64. Throws `validation` naming the field (the message is poison).
 */
export function checkDownload(event: GenerationDownloadedFacts): DownloadDraft {
  const eventId = requireUuidField(event.eventId, "event_id");
  const userId = requireUuidField(event.userId, "user_id");
  const generationId = requireUuidField(event.generationId, "generation_id");
  const occurredAt = requireTime(event.occurredAt, "occurred_at");
  return { eventId, userId, generationId, outputBytes: checkAmount("output_bytes", event.outputBytes), occurredAt };
}
