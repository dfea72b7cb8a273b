import { isUuid, validationError } from "@tally/platform";

/** Page size used when a list request asks for 0 (usage.proto). */
export const PAGE_SIZE_DEFAULT = 20;
/** Largest page a list request may ask for (usage.proto: 1..100). */
export const PAGE_SIZE_MAX = 100;
/** Longest page token accepted, in characters (a real one is far shorter). */
const PAGE_TOKEN_LENGTH_MAX = 512;

/**
 * The page size a list request asks for: 0 means `PAGE_SIZE_DEFAULT`; otherwise 1..PAGE_SIZE_MAX.
 * Throws `validation` outside that range.
 */
export function resolvePageSize(pageSize: number): number {
  if (pageSize === 0) return PAGE_SIZE_DEFAULT;
  if (!Number.isInteger(pageSize) || pageSize < 1 || pageSize > PAGE_SIZE_MAX) {
    throw validationError(`page_size must be between 1 and ${PAGE_SIZE_MAX} (0 means ${PAGE_SIZE_DEFAULT})`, { page_size: pageSize });
  }
  return pageSize;
}

/**
 * Where the next page of a user's usage log starts: after the entry with this `occurred_at`
 * (microseconds since the epoch, PostgreSQL's precision) and `id`, newest first. The token also
 * names the user, so a token from one user's listing is refused for another's.
 */
export interface UsageLogCursor {
  userId: string;
  occurredAtMicros: bigint;
  id: string;
}

const TOKEN_VERSION = 1;

/** Encodes a cursor as an opaque URL-safe token. */
export function encodePageToken(cursor: UsageLogCursor): string {
  const body = JSON.stringify({ v: TOKEN_VERSION, u: cursor.userId, t: cursor.occurredAtMicros.toString(), i: cursor.id });
  return Buffer.from(body, "utf8").toString("base64url");
}

/**
 * Decodes a token made by `encodePageToken` for `userId`. Throws `validation` for a token that
 * is malformed, of another version or of another user's listing.
 */
export function decodePageToken(token: string, userId: string): UsageLogCursor {
  const invalid = () => validationError("page_token is invalid", { page_token: token.slice(0, 64) });
  if (token.length > PAGE_TOKEN_LENGTH_MAX || !/^[A-Za-z0-9_-]+$/.test(token)) throw invalid();
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
  } catch {
    throw invalid();
  }
  const body = parsed as { v?: unknown; u?: unknown; t?: unknown; i?: unknown };
  if (
    typeof parsed !== "object" ||
    parsed === null ||
    body.v !== TOKEN_VERSION ||
    typeof body.u !== "string" ||
    typeof body.t !== "string" ||
    typeof body.i !== "string" ||
    !isUuid(body.i) ||
    !/^-?\d{1,19}$/.test(body.t)
  ) {
    throw invalid();
  }
  if (body.u !== userId) throw validationError("page_token belongs to another listing");
  return { userId: body.u, occurredAtMicros: BigInt(body.t), id: body.i };
}
