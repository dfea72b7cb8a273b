import { validationError } from "./errors";

/**
 * Paging rules every list RPC shares: one page-size rule with one error shape, and one
 * opaque page-token codec with one length cap.
 */

export interface PageSizeRule {
  /** The size used when the caller asks for 0. */
  sizeDefault: number;
  /** The largest size a caller may ask for. */
  sizeMax: number;
  /** The request field, named in the error (`page_size`, `limit`). */
  field: string;
}

/** ListLedgerEntries, ListUsageLogEntries and ListGenerations: 0 means 20, else 1..100. */
export const PAGE_SIZE_RULE: PageSizeRule = { sizeDefault: 20, sizeMax: 100, field: "page_size" };

/**
 * The page size a list request asks for: 0 means `rule.sizeDefault`, otherwise 1..`rule.sizeMax`.
 * Throws `validation` with details `{ field }` ("<field> must be between 1 and <max> (0 means <default>)").
 */
export function resolvePageSize(pageSize: number, rule: PageSizeRule = PAGE_SIZE_RULE): number {
  if (pageSize === 0) return rule.sizeDefault;
  if (!Number.isInteger(pageSize) || pageSize < 1 || pageSize > rule.sizeMax) {
    throw validationError(`${rule.field} must be between 1 and ${rule.sizeMax} (0 means ${rule.sizeDefault})`, { field: rule.field });
  }
  return pageSize;
}

/** An offset into a listing: an integer >= 0. Throws `validation` (field `offset`) otherwise. */
export function resolveOffset(offset: number): number {
  if (!Number.isInteger(offset) || offset < 0) throw validationError("offset must be 0 or more", { field: "offset" });
  return offset;
}

/** Longest page token accepted, in characters (a real one is far shorter). */
export const PAGE_TOKEN_LENGTH_MAX = 512;

const TOKEN_VERSION = 1;
const TOKEN_PATTERN = /^[A-Za-z0-9_-]+$/;

/**
 * A keyset position: string fields only (bigints and timestamps travel as decimal strings, so
 * the token never loses precision). `scope` names the listing (e.g. the account id) so that a
 * token issued for one listing is refused by another.
 */
export type PagePosition = Record<string, string>;

/** Encodes `position` in `scope` as an opaque, URL-safe token. */
export function encodePageToken(scope: string, position: PagePosition): string {
  return Buffer.from(JSON.stringify({ v: TOKEN_VERSION, s: scope, p: position }), "utf8").toString("base64url");
}

/**
 * Decodes a token from `encodePageToken` for `scope` and checks each of `fields` against its
 * pattern. Throws `validation` (field `page_token`, no echo of the token) for anything else:
 * longer than PAGE_TOKEN_LENGTH_MAX, malformed, of another version, issued for another scope, or
 * with a field that is missing or does not match.
 */
export function decodePageToken(token: string, scope: string, fields: Record<string, RegExp>): PagePosition {
  const invalid = () => validationError("page_token is not a token this service issued for this listing", { field: "page_token" });
  if (token.length > PAGE_TOKEN_LENGTH_MAX || !TOKEN_PATTERN.test(token)) throw invalid();
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
  } catch {
    throw invalid();
  }
  if (typeof parsed !== "object" || parsed === null) throw invalid();
  const { v, s, p } = parsed as { v?: unknown; s?: unknown; p?: unknown };
  if (v !== TOKEN_VERSION || s !== scope || typeof p !== "object" || p === null) throw invalid();
  const position: PagePosition = {};
  for (const [name, pattern] of Object.entries(fields)) {
    const value = (p as Record<string, unknown>)[name];
    if (typeof value !== "string" || !pattern.test(value)) throw invalid();
    position[name] = value;
  }
  return position;
}

/**
 * The scope a well-formed token from `encodePageToken` names, without checking it against any
 * listing; undefined for anything else. Lets a listing whose error must say "this token belongs
 * to another listing" tell that case apart from a token that is not one at all.
 */
export function pageTokenScope(token: string): string | undefined {
  if (token.length > PAGE_TOKEN_LENGTH_MAX || !TOKEN_PATTERN.test(token)) return undefined;
  try {
    const parsed: unknown = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
    const { v, s } = (parsed ?? {}) as { v?: unknown; s?: unknown };
    return v === TOKEN_VERSION && typeof s === "string" ? s : undefined;
  } catch {
    return undefined;
  }
}
