/**
 * `Retry-After` (seconds, RFC 9110 §10.2.3) for the answers that say "not now, later", and the
 * limit details of plan and guest limit problems (docs/errors.md).
 */

/** Retry-After of a guest limit with no reset time (concurrent_generations: a running job ends soon). */
export const GUEST_LIMIT_RETRY_AFTER_SECONDS = 5;
/** Retry-After when a service gives no hint. */
const DEFAULT_RETRY_AFTER_SECONDS = 1;

/** A positive whole number of seconds from a detail (number or decimal string), else undefined. */
function secondsFrom(value: unknown): number | undefined {
  const seconds = typeof value === "string" && value.trim() !== "" ? Number(value) : value;
  return typeof seconds === "number" && Number.isFinite(seconds) && seconds > 0 ? Math.ceil(seconds) : undefined;
}

/**
 * The Retry-After of a domain error, in seconds, or undefined when the answer has none.
 * - `guest_limit_exceeded`: until `resets_at` (at least 1); GUEST_LIMIT_RETRY_AFTER_SECONDS when
 *   it is empty (concurrent_generations) or not a time.
 * - `unavailable` and `rate_limited`: `retry_after_seconds` of the details, else 1.
 * @param nowMs the clock, in epoch milliseconds
 */
export function retryAfterSeconds(reason: string, details: Record<string, unknown>, nowMs: number): number | undefined {
  if (reason === "guest_limit_exceeded") {
    const resetsAtMs = typeof details.resets_at === "string" && details.resets_at !== "" ? Date.parse(details.resets_at) : Number.NaN;
    if (Number.isNaN(resetsAtMs)) return GUEST_LIMIT_RETRY_AFTER_SECONDS;
    return Math.max(1, Math.ceil((resetsAtMs - nowMs) / 1000));
  }
  if (reason === "unavailable" || reason === "rate_limited") return secondsFrom(details.retry_after_seconds) ?? DEFAULT_RETRY_AFTER_SECONDS;
  return undefined;
}

/**
 * The details of a limit problem as its members: `resets_at` is null rather than empty when
 * the limit has no window that resets (concurrent_generations). Other details pass as they are.
 */
export function limitDetails(reason: string, details: Record<string, unknown>): Record<string, unknown> {
  if (reason !== "plan_limit_exceeded" && reason !== "guest_limit_exceeded") return details;
  return { ...details, resets_at: typeof details.resets_at === "string" && details.resets_at !== "" ? details.resets_at : null };
}
