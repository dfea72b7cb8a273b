import {
  checkRequestId,
  controlCharacterMessage,
  hasControlCharacter,
  isStorableTime,
  PLAN_NAME_LENGTH_MAX,
  parseUuid,
  REQUEST_ID_LENGTH_MAX,
  requireUuidField,
  resolveOffset,
  resolvePageSize,
  validationError,
  type PageSizeRule,
} from "@tally/platform";
import type { AccountView } from "./ports";
import type { GenerationInput, InputTypeName } from "./types";

/**
 * Longest request_id accepted, in characters: the stored idempotency key prefixes it with the
 * operation and user id, and must stay within the platform's REQUEST_ID_LENGTH_MAX (INV-4).
 */
export const CALLER_REQUEST_ID_LENGTH_MAX = REQUEST_ID_LENGTH_MAX - 50;

/** Length limits of CreateGeneration's text fields, in characters (from config). */
export interface InputLimits {
  promptLengthMax: number;
  photoUrlLengthMax: number;
  addressLengthMax: number;
  styleLengthMax: number;
}

/** Raw CreateGeneration fields, with the input type already named (undefined when unknown). */
export interface RawGenerationInput {
  userId: string;
  inputType: InputTypeName | undefined;
  prompt: string;
  photoUrl: string;
  address: string;
  style: string;
}

/** Raw CreateGeneration request: the fields and the caller's idempotency key. */
export interface RawCreateGenerationInput extends RawGenerationInput {
  requestId: string;
  /** The account as the caller read it from credits in this request, when it passes one. */
  account?: { id: string; guest: boolean; plan: string; periodAnchor: Date | undefined };
}

/** Checked CreateGeneration request. */
export interface CreateGenerationInput {
  requestId: string;
  generation: GenerationInput;
  /** The caller's read of the account (then credits is not asked again); undefined: read it. */
  account?: AccountView;
}

/**
 * Checks CreateGeneration (INV-7): the request_id first (1..CALLER_REQUEST_ID_LENGTH_MAX
 * characters, no control characters), then the fields (`parseGenerationInput`), then the
 * caller's account when given (`account.id` the user's, a plan, a billing anchor). Throws a
 * `validation` DomainError naming the field.
 */
export function parseCreateGenerationInput(raw: RawCreateGenerationInput, limits: InputLimits): CreateGenerationInput {
  checkRequestId(raw.requestId, CALLER_REQUEST_ID_LENGTH_MAX);
  const generation = parseGenerationInput(raw, limits);
  if (!raw.account) return { requestId: raw.requestId, generation };
  const { id, guest, plan, periodAnchor } = raw.account;
  if (parseUuid(id) !== generation.userId) throw fieldError("account.id", "account.id must be the account of user_id");
  if (!plan || plan.length > PLAN_NAME_LENGTH_MAX || hasControlCharacter(plan, "identifier")) throw fieldError("account.plan", "account.plan must name a plan");
  if (!periodAnchor || Number.isNaN(periodAnchor.getTime())) throw fieldError("account.current_period_start", "account.current_period_start is required");
  if (!isStorableTime(periodAnchor)) throw fieldError("account.current_period_start", "account.current_period_start must fall in the years 1 to 9999");
  return { requestId: raw.requestId, generation, account: { id: generation.userId, kind: guest ? "guest" : "user", plan, periodAnchor } };
}


/**
 * Checks CreateGeneration's fields: `input_type` text|photo|address; a prompt for text, an
 * http(s) `photo_url` for photo, an `address` for address; `user_id` a UUID; length limits
 * from config; no NUL or other C0 control character except tab, line feed and carriage
 * return (PostgreSQL text cannot store NUL, and the user would not see the others). Returns
 * the trimmed input with the user id lower-cased, or throws a `validation` DomainError whose
 * message and `details.field` name the offending field.
 */
export function parseGenerationInput(raw: RawGenerationInput, limits: InputLimits): GenerationInput {
  const userId = requireUuidField(raw.userId, "user_id");
  if (!raw.inputType) throw fieldError("input_type", "input_type is required: text, photo or address");

  const prompt = raw.prompt.trim();
  const photoUrl = raw.photoUrl.trim();
  const address = raw.address.trim();
  const style = raw.style.trim();

  checkLength("prompt", prompt, limits.promptLengthMax);
  checkLength("photo_url", photoUrl, limits.photoUrlLengthMax);
  checkLength("address", address, limits.addressLengthMax);
  checkLength("style", style, limits.styleLengthMax);
  checkCharacters("prompt", prompt);
  checkCharacters("photo_url", photoUrl);
  checkCharacters("address", address);
  checkCharacters("style", style);

  switch (raw.inputType) {
    case "text":
      if (!prompt) throw fieldError("prompt", "prompt is required for input_type text");
      break;
    case "photo":
      if (!photoUrl) throw fieldError("photo_url", "photo_url is required for input_type photo");
      if (!isHttpUrl(photoUrl)) throw fieldError("photo_url", "photo_url must be an http or https URL");
      break;
    case "address":
      if (!address) throw fieldError("address", "address is required for input_type address");
      break;
  }
  // A photo_url given for another input type is still shown back to the user, so it must be sane too.
  if (photoUrl && !isHttpUrl(photoUrl)) throw fieldError("photo_url", "photo_url must be an http or https URL");

  return { userId, inputType: raw.inputType, prompt, photoUrl, address, style };
}

/** True for an absolute http: or https: URL with a host. */
export function isHttpUrl(value: string): boolean {
  try {
    const url = new URL(value);
    return (url.protocol === "http:" || url.protocol === "https:") && url.hostname.length > 0;
  } catch {
    return false;
  }
}

function checkCharacters(field: string, value: string): void {
  if (hasControlCharacter(value, "text")) throw fieldError(field, controlCharacterMessage(field, "text"));
}

// Keeps its own wording and the `length_max` detail callers already read (platform requireText words it otherwise).
function checkLength(field: string, value: string, max: number): void {
  if (value.length > max) throw fieldError(field, `${field} is longer than ${max} characters`, { length_max: max });
}

const fieldError = (field: string, message: string, details: Record<string, unknown> = {}) =>
  validationError(message, { field, ...details });

/** ListGenerations' page size: `limit` 1..100, 0 means 20 (docs/api.md). */
export const LIST_LIMIT_RULE: PageSizeRule = { sizeDefault: 20, sizeMax: 100, field: "limit" };

/** Raw ListGenerations request. */
export interface RawListGenerationsInput {
  userId: string;
  limit: number;
  offset: number;
}

/** Checked ListGenerations request; `userId` is null when it cannot name any user (the list is empty). */
export interface ListGenerationsInput {
  userId: string | null;
  limit: number;
  offset: number;
}

/**
 * Checks ListGenerations' paging (INV-7): `limit` per LIST_LIMIT_RULE, `offset` >= 0; throws
 * `validation` naming `limit` or `offset`. A user id that is not a UUID owns nothing: it is
 * not an error, it gives `userId` null.
 */
export function parseListGenerationsInput(raw: RawListGenerationsInput): ListGenerationsInput {
  const limit = resolvePageSize(raw.limit, LIST_LIMIT_RULE);
  const offset = resolveOffset(raw.offset);
  return { userId: parseUuid(raw.userId), limit, offset };
}

/** A user's reference to one generation (get, output). */
export interface GenerationRef {
  userId: string;
  generationId: string;
}

/**
 * Lower-cased ids of a reference to one generation, or null when either is not a UUID: a
 * malformed id answers like a missing generation (INV-7), so the caller throws its `not_found`.
 */
export function parseGenerationRef(raw: GenerationRef): GenerationRef | null {
  const userId = parseUuid(raw.userId);
  const generationId = parseUuid(raw.generationId);
  return userId && generationId ? { userId, generationId } : null;
}

/** Raw CancelGeneration request. */
export interface RawCancelGenerationInput extends GenerationRef {
  requestId: string;
}

/** Checked CancelGeneration request; `ref` is null when an id is malformed (answered `not_found`). */
export interface CancelGenerationInput {
  requestId: string;
  ref: GenerationRef | null;
}

/** Checks CancelGeneration's request_id (INV-4; `validation`) and its ids. */
export function parseCancelGenerationInput(raw: RawCancelGenerationInput): CancelGenerationInput {
  checkRequestId(raw.requestId, CALLER_REQUEST_ID_LENGTH_MAX);
  return { requestId: raw.requestId, ref: parseGenerationRef(raw) };
}

/** Raw RetryGeneration request: the same fields as a cancel (the generation is the one retried). */
export type RawRetryGenerationInput = RawCancelGenerationInput;

/** Checks RetryGeneration's request_id (its idempotency key, INV-4; `validation`) and its ids (`ref` null when malformed). */
export function parseRetryGenerationInput(raw: RawRetryGenerationInput): CancelGenerationInput {
  return parseCancelGenerationInput(raw);
}

/** Raw RecordDownload request: the same fields as a cancel. */
export type RawRecordDownloadInput = RawCancelGenerationInput;

/** Checks RecordDownload's request_id (its idempotency key, INV-4; `validation`) and its ids (`ref` null when malformed). */
export function parseRecordDownloadInput(raw: RawRecordDownloadInput): CancelGenerationInput {
  return parseCancelGenerationInput(raw);
}

/** Raw AdoptGuestGenerations request. */
export interface RawAdoptGuestInput {
  guestId: string;
  userId: string;
}

/** Checked AdoptGuestGenerations request: two different lower-cased UUIDs. */
export interface AdoptGuestInput {
  guestId: string;
  userId: string;
}

/**
 * Checks AdoptGuestGenerations: `guest_id` and `user_id` are UUIDs (lower-cased) and differ.
 * Throws a `validation` DomainError naming the field.
 */
export function parseAdoptGuestInput(raw: RawAdoptGuestInput): AdoptGuestInput {
  const guestId = requireUuidField(raw.guestId, "guest_id");
  const userId = requireUuidField(raw.userId, "user_id");
  if (guestId === userId) throw validationError("guest_id must differ from user_id", { field: "guest_id" });
  return { guestId, userId };
}
