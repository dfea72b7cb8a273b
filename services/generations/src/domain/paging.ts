import { validationError } from "@tally/platform";

/** Page size of ListGenerations when the caller asks for 0 (the public contract's default). */
export const LIST_LIMIT_DEFAULT = 20;
/** Largest page of ListGenerations. */
export const LIST_LIMIT_MAX = 100;

/**
 * Resolves ListGenerations paging (API.md: `limit` 1..100, default 20; `offset` >= 0):
 * 0 means the default; anything else outside the range is a `validation` error.
 */
export function resolvePaging(limit: number, offset: number): { limit: number; offset: number } {
  const resolvedLimit = limit === 0 ? LIST_LIMIT_DEFAULT : limit;
  if (!Number.isInteger(resolvedLimit) || resolvedLimit < 1 || resolvedLimit > LIST_LIMIT_MAX) {
    throw validationError(`limit must be between 1 and ${LIST_LIMIT_MAX} (0 means ${LIST_LIMIT_DEFAULT})`, { field: "limit" });
  }
  if (!Number.isInteger(offset) || offset < 0) throw validationError("offset must be 0 or more", { field: "offset" });
  return { limit: resolvedLimit, offset };
}
