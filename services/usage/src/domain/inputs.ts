import { resolvePageSize, requireUuidField } from "@tally/platform";
import { decodeUsageLogCursor, type UsageLogCursor } from "./usage-log-cursor";

/*
 * The checked inputs of the usage RPCs (INV-7: bad input is a `validation` error naming the
 * field, never a server error). The raw shapes are plain objects, so the proto types stay in
 * grpc/.
 */

/** GetUserStats, checked: `userId` is a lower-case UUID. */
export interface GetUserStatsInput {
  userId: string;
}

/** Checks a GetUserStats request. Throws `validation` (field `user_id`) for a malformed id. */
export function parseGetUserStatsInput(raw: { userId: string }): GetUserStatsInput {
  return { userId: requireUuidField(raw.userId, "user_id") };
}

/** ListUsageLogEntries, checked: whose entries, how many (1..100), and after which entry (null = from the newest). */
export interface ListUsageLogEntriesInput {
  userId: string;
  pageSize: number;
  after: UsageLogCursor | null;
}

/**
 * Checks a ListUsageLogEntries request: `userId` a UUID, `pageSize` 0 (means 20) or 1..100
 * (platform PAGE_SIZE_RULE), `pageToken` "" or a token this listing issued for this user.
 * Throws `validation` naming `user_id`, `page_size` or `page_token`, checked in that order.
 */
export function parseListUsageLogEntriesInput(raw: { userId: string; pageSize: number; pageToken: string }): ListUsageLogEntriesInput {
  const userId = requireUuidField(raw.userId, "user_id");
  const pageSize = resolvePageSize(raw.pageSize);
  const after = raw.pageToken ? decodeUsageLogCursor(raw.pageToken, userId) : null;
  return { userId, pageSize, after };
}
