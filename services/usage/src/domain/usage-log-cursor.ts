import { decodePageToken, encodePageToken, pageTokenScope, validationError } from "@tally/platform";

/**
 * Where the next page of a user's usage log starts: after the entry with this `occurred_at`
 * (microseconds since the epoch, PostgreSQL's precision) and `id`, newest first. The token's
 * scope is the user id, so a token from one user's listing is refused for another's (INV-7).
 */
export interface UsageLogCursor {
  userId: string;
  occurredAtMicros: bigint;
  id: string;
}

/** What a usage log position holds: `t` the occurred_at micros (int64), `i` the entry id (we issue lower-case UUIDs). */
const POSITION_FIELDS = {
  t: /^-?\d{1,19}$/,
  i: /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/,
};

/** Encodes a cursor as an opaque, URL-safe page token (platform `encodePageToken`, scope = user id). */
export function encodeUsageLogCursor(cursor: UsageLogCursor): string {
  return encodePageToken(cursor.userId, { t: cursor.occurredAtMicros.toString(), i: cursor.id });
}

/**
 * Decodes a token made by `encodeUsageLogCursor` for `userId` (lower-case). Throws `validation`
 * (field `page_token`): "page_token belongs to another listing" for a token of another user's
 * listing, platform's message for anything malformed, too long or of another version.
 */
export function decodeUsageLogCursor(token: string, userId: string): UsageLogCursor {
  const scope = pageTokenScope(token);
  if (scope !== undefined && scope !== userId) throw validationError("page_token belongs to another listing", { field: "page_token" });
  const position = decodePageToken(token, userId, POSITION_FIELDS);
  return { userId, occurredAtMicros: BigInt(position.t), id: position.i };
}
