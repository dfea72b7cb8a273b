import { isUuid, validationError } from "@tally/platform";
import type { GenerationInput, InputTypeName } from "./generation";

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

/**
 * Checks CreateGeneration's input (requirements: `input_type` text|photo|address; a prompt
 * for text, an http(s) `photo_url` for photo, an `address` for address; `user_id` a UUID;
 * length limits from config; no NUL or other C0 control character except tab, line feed and
 * carriage return, which PostgreSQL text cannot store or the user would not see). Returns the trimmed input or throws a `validation` DomainError
 * whose message and `details.field` name the offending field.
 */
export function validateGenerationInput(raw: RawGenerationInput, limits: InputLimits): GenerationInput {
  if (!isUuid(raw.userId)) throw fieldError("user_id", "user_id must be a UUID");
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

  return { userId: raw.userId.toLowerCase(), inputType: raw.inputType, prompt, photoUrl, address, style };
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

/** C0 control characters other than \t, \n and \r (NUL among them: PostgreSQL text rejects it). */
const FORBIDDEN_CONTROL_CHARACTER = /[\u0000-\u0008\u000B\u000C\u000E-\u001F]/;

/** True when `value` holds a NUL or another C0 control character other than tab, line feed or carriage return. */
export const hasForbiddenControlCharacter = (value: string): boolean => FORBIDDEN_CONTROL_CHARACTER.test(value);

function checkCharacters(field: string, value: string): void {
  if (hasForbiddenControlCharacter(value)) {
    throw fieldError(field, `${field} must not contain control characters (other than tab and line breaks)`);
  }
}

function checkLength(field: string, value: string, max: number): void {
  if (value.length > max) throw fieldError(field, `${field} is longer than ${max} characters`, { length_max: max });
}

const fieldError = (field: string, message: string, details: Record<string, unknown> = {}) =>
  validationError(message, { field, ...details });
