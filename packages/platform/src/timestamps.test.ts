import { isStorableTime, requireTime, TIME_MAX_MS, TIME_MIN_MS } from "./timestamps";

describe("times the services accept (years 1 to 9999)", () => {
  it("accepts the first and last millisecond of the range and refuses either side, year 0 and invalid dates", () => {
    expect([TIME_MIN_MS, TIME_MAX_MS].map((ms) => new Date(ms).toISOString())).toEqual(["0001-01-01T00:00:00.000Z", "9999-12-31T23:59:59.999Z"]);
    expect([new Date(TIME_MIN_MS), new Date(TIME_MAX_MS), new Date("2026-12-06T10:00:00Z")].map(isStorableTime)).toEqual([true, true, true]);
    expect([new Date(TIME_MIN_MS - 1), new Date(TIME_MAX_MS + 1), new Date("0000-06-01T00:00:00Z"), new Date(Number.NaN)].map(isStorableTime)).toEqual([false, false, false, false]);
  });

  it("requireTime: the time, or validation naming the field", () => {
    const at = new Date("2026-12-06T10:00:00Z");
    expect(requireTime(at, "occurred_at")).toBe(at);
    expect(() => requireTime(undefined, "occurred_at")).toThrow(expect.objectContaining({ reason: "validation", message: "occurred_at is required", details: { field: "occurred_at" } }));
    expect(() => requireTime(new Date(Number.NaN), "occurred_at")).toThrow(expect.objectContaining({ message: "occurred_at is required" }));
    expect(() => requireTime(new Date(TIME_MAX_MS + 1), "occurred_at")).toThrow(expect.objectContaining({ reason: "validation", message: "occurred_at must fall in the years 1 to 9999" }));
  });
});
