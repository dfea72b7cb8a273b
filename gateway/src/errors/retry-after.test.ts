import { GUEST_LIMIT_RETRY_AFTER_SECONDS, limitDetails, retryAfterSeconds } from "./retry-after";

describe("Retry-After", () => {
  const now = Date.parse("2026-11-21T10:00:00.000Z");

  it("counts a guest limit's seconds until resets_at, at least 1, and a fixed wait without one", () => {
    expect(retryAfterSeconds("guest_limit_exceeded", { resets_at: "2026-11-22T00:00:00.000Z" }, now)).toBe(14 * 3600);
    expect(retryAfterSeconds("guest_limit_exceeded", { resets_at: "2026-11-21T10:00:00.200Z" }, now)).toBe(1);
    expect(retryAfterSeconds("guest_limit_exceeded", { resets_at: "2026-11-21T09:00:00.000Z" }, now)).toBe(1);
    expect(retryAfterSeconds("guest_limit_exceeded", { resets_at: "" }, now)).toBe(GUEST_LIMIT_RETRY_AFTER_SECONDS);
    expect(retryAfterSeconds("guest_limit_exceeded", {}, now)).toBe(5);
  });

  it("takes retry_after_seconds for unavailable and rate_limited, else 1; none for other reasons", () => {
    expect(retryAfterSeconds("unavailable", { retry_after_seconds: 3 }, now)).toBe(3);
    expect(retryAfterSeconds("unavailable", { retry_after_seconds: "2" }, now)).toBe(2);
    expect(retryAfterSeconds("unavailable", { retry_after_seconds: 0.2 }, now)).toBe(1);
    expect(retryAfterSeconds("unavailable", {}, now)).toBe(1);
    expect(retryAfterSeconds("rate_limited", { retry_after_seconds: 42 }, now)).toBe(42);
    expect(retryAfterSeconds("plan_limit_exceeded", { resets_at: "2026-11-22T00:00:00.000Z" }, now)).toBeUndefined();
    expect(retryAfterSeconds("validation", {}, now)).toBeUndefined();
  });

  it("shows an empty resets_at of a limit problem as null", () => {
    expect(limitDetails("plan_limit_exceeded", { limit_name: "concurrent_generations", resets_at: "" })).toEqual({ limit_name: "concurrent_generations", resets_at: null });
    expect(limitDetails("guest_limit_exceeded", { resets_at: "2026-11-22T00:00:00.000Z" })).toEqual({ resets_at: "2026-11-22T00:00:00.000Z" });
    expect(limitDetails("insufficient_credits", { requested: "2" })).toEqual({ requested: "2" });
  });
});
