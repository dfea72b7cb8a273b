import { DomainError, validationError } from "./errors";

/**
 * Text rules every service applies to what it stores (INV-7: bad input is a `validation`
 * error, never a database error). PostgreSQL `text` cannot hold NUL, and control characters
 * in identifiers, emails or keys are never meant; free text (a prompt, an address) may carry
 * tab and line breaks but no other C0 control character.
 */

/** C0 control characters and DEL: never part of an identifier, an email or a key. */
export const IDENTIFIER_CONTROL_CHARACTERS = /[\u0000-\u001f\u007f]/;
/** C0 control characters other than tab, line feed and carriage return: never part of free text. */
export const TEXT_CONTROL_CHARACTERS = /[\u0000-\u0008\u000b\u000c\u000e-\u001f]/;

/** Which rule a string follows: `identifier` (no control character at all) or `text` (tab and line breaks allowed). */
export type TextKind = "identifier" | "text";

/** True when `value` holds a control character that `kind` does not allow. */
export function hasControlCharacter(value: string, kind: TextKind): boolean {
  return (kind === "identifier" ? IDENTIFIER_CONTROL_CHARACTERS : TEXT_CONTROL_CHARACTERS).test(value);
}

/** The message for a control character in `field`, the same in every service. */
export function controlCharacterMessage(field: string, kind: TextKind): string {
  return kind === "identifier"
    ? `${field} must not contain control characters`
    : `${field} must not contain control characters (other than tab and line breaks)`;
}

export interface TextRule {
  /** Longest accepted value, in UTF-16 code units (`String#length`). */
  lengthMax: number;
  kind: TextKind;
  /** True when the empty string is refused (default true). */
  required?: boolean;
}

/**
 * Checks `value` against `rule` and returns it unchanged. Throws a `validation` DomainError
 * naming `field` (details `{ field }`) when it is empty but required, longer than
 * `rule.lengthMax`, or holds a control character its kind does not allow.
 */
export function requireText(value: string, field: string, rule: TextRule): string {
  if (value.length === 0) {
    if (rule.required === false) return value;
    throw validationError(`${field} is required`, { field });
  }
  if (value.length > rule.lengthMax) throw validationError(`${field} must be at most ${rule.lengthMax} characters`, { field });
  if (hasControlCharacter(value, rule.kind)) throw validationError(controlCharacterMessage(field, rule.kind), { field });
  return value;
}

/** Longest accepted email address, in characters (the RFC 5321 path limit). */
export const EMAIL_LENGTH_MAX = 254;

// Deliberately simple: one "@", no spaces, a dot in the domain. Deliverability is proven by
// sending mail, not by a regular expression.
const EMAIL_PATTERN = /^[^\s@]+@[^\s@.]+(\.[^\s@.]+)+$/;

/** The one form an email is compared and stored in: trimmed and lower-cased. */
export const normalizeEmail = (email: string): string => email.trim().toLowerCase();

/**
 * Normalizes an email (`normalizeEmail`) and checks its shape. Throws `validation` (field
 * `email`) for an empty, too long (over EMAIL_LENGTH_MAX) or malformed address, or one with a
 * control character.
 */
export function parseEmail(email: string): string {
  const normalized = normalizeEmail(email);
  if (normalized.length === 0) throw validationError("email is required", { field: "email" });
  if (normalized.length > EMAIL_LENGTH_MAX) throw validationError(`email must be at most ${EMAIL_LENGTH_MAX} characters`, { field: "email" });
  if (hasControlCharacter(normalized, "identifier")) throw validationError(controlCharacterMessage("email", "identifier"), { field: "email" });
  if (!EMAIL_PATTERN.test(normalized)) throw validationError("email is not a valid address", { field: "email" });
  return normalized;
}

const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** True when `value` is a UUID in canonical (8-4-4-4-12 hex) form, in either case. */
export const isUuid = (value: string): boolean => UUID_PATTERN.test(value);

/** `value` lower-cased when it is a UUID (the one form ids are stored in), else null. */
export const parseUuid = (value: string): string | null => (isUuid(value) ? value.toLowerCase() : null);

/**
 * `value` lower-cased when it is a UUID; otherwise throws `orElse()` (e.g. a `not_found` for an
 * id that cannot name anything, or a `validation` naming the field).
 */
export function requireUuid(value: string, orElse: () => DomainError): string {
  const id = parseUuid(value);
  if (id === null) throw orElse();
  return id;
}

/** `requireUuid` that throws `validation` naming `field` ("<field> must be a UUID"). */
export const requireUuidField = (value: string, field: string): string =>
  requireUuid(value, () => validationError(`${field} must be a UUID`, { field }));
