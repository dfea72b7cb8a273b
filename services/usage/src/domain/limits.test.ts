import { DomainError, parsePlanCatalog } from "@tally/platform";
import { allows, firstExceeded, limitExceededError, limitStatuses, windowsAt, type CurrentUsage } from "./limits";

const catalog = parsePlanCatalog({
  default_plan: "free",
  guest_plan: "guest",
  plans: {
    guest: { trial_credits: 3, limits: { generations_per_day: 3, concurrent_generations: 2, requests_per_minute: 120 } },
    free: { trial_credits: 10, limits: { generations_per_period: 20, credits_per_period: 50, processing_seconds_per_period: 10, requests_per_minute: 600 } },
  },
});
const period = { start: new Date("2027-01-31T00:00:00.000Z"), end: new Date("2027-02-28T00:00:00.000Z") };
const usage = (over: Partial<CurrentUsage["period"]> = {}, day: Partial<CurrentUsage["day"]> = {}, active = 0): CurrentUsage => ({
  period: { subjectId: "s", periodStart: period.start, periodEnd: period.end, generations: 0n, credits: 0n, processingMs: 0n, reservedGenerations: 0n, reservedCredits: 0n, ...over },
  day: { subjectId: "s", day: new Date("2027-02-10T00:00:00.000Z"), generations: 0n, reservedGenerations: 0n, ...day },
  activeReservations: active,
});

describe("limit rules", () => {
  it("allows used + reserved + amount up to the limit, and processing time until used reaches it", () => {
    const free = catalog.plans.free!;
    expect(firstExceeded(free, usage({ generations: 15n, reservedGenerations: 4n }), 1n)).toBeUndefined();
    expect(firstExceeded(free, usage({ generations: 15n, reservedGenerations: 5n }), 1n)?.name).toBe("generations_per_period");
    expect(firstExceeded(free, usage({ credits: 40n, reservedCredits: 5n }), 6n)?.name).toBe("credits_per_period");
    expect(firstExceeded(free, usage({ processingMs: 9_999n }), 1n)).toBeUndefined();
    expect(firstExceeded(free, usage({ processingMs: 10_000n }), 1n)?.name).toBe("processing_seconds_per_period");
    expect(allows({ name: "concurrent_generations", window: "concurrent", limit: 2n, used: 1n, reserved: 0n, amount: 1n, resetsAt: null })).toBe(true);
    expect(firstExceeded(catalog.plans.guest!, usage({}, {}, 2), 1n)?.name).toBe("concurrent_generations");
  });

  it("names the limit, plan, usage and windows in the error, by the subject's kind", () => {
    const guest = catalog.plans.guest!;
    const over = firstExceeded(guest, usage({}, { generations: 2n, reservedGenerations: 1n }), 1n)!;
    const error = limitExceededError({ id: "g", kind: "guest", plan: "guest", periodAnchor: period.start }, over, period);
    expect(error).toBeInstanceOf(DomainError);
    expect(error.reason).toBe("guest_limit_exceeded");
    expect(error.details).toEqual({
      limit_name: "generations_per_day",
      window: "day",
      plan: "guest",
      used: 2,
      reserved: 1,
      limit: 3,
      period_start: "2027-01-31T00:00:00.000Z",
      resets_at: "2027-02-11T00:00:00.000Z",
    });
    const concurrent = firstExceeded(guest, usage({}, {}, 2), 1n)!;
    const userError = limitExceededError({ id: "u", kind: "user", plan: "guest", periodAnchor: period.start }, concurrent, period);
    expect(userError.reason).toBe("plan_limit_exceeded");
    expect(userError.details.resets_at).toBe("");
  });

  it("lists every limit but requests_per_minute with remaining and within_limit", () => {
    const statuses = limitStatuses(catalog.plans.free!, usage({ generations: 18n, reservedGenerations: 3n }));
    expect(statuses.map((s) => s.name)).toEqual(["generations_per_period", "credits_per_period", "processing_seconds_per_period"]);
    expect(statuses[0]).toMatchObject({ used: 18n, reserved: 3n, remaining: 0n, withinLimit: false, resetsAt: period.end });
  });

  it("places a moment in its billing period and UTC day", () => {
    const { period: p, day } = windowsAt(new Date("2027-01-31T00:00:00.000Z"), new Date("2027-02-28T05:00:00.000Z"));
    expect([p.start, p.end]).toEqual([new Date("2027-02-28T00:00:00.000Z"), new Date("2027-03-31T00:00:00.000Z")]);
    expect(day.start).toEqual(new Date("2027-02-28T00:00:00.000Z"));
  });
});
