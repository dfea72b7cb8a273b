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
 * length limits from config). Returns the trimmed input or throws a `validation` DomainError
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

function checkLength(field: string, value: string, max: number): void {
  if (value.length > max) throw fieldError(field, `${field} is longer than ${max} characters`, { length_max: max });
}

const fieldError = (field: string, message: string, details: Record<string, unknown> = {}) =>
  validationError(message, { field, ...details });
