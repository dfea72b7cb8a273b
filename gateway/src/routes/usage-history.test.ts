import { historyStart, prefersCsv } from "./usage-history";

describe("usage history", () => {
  it("starts at the first instant of the UTC month months - 1 before now", () => {
    expect(historyStart(new Date("2027-03-20T12:00:00Z"), 1)).toEqual(new Date("2027-03-01T00:00:00Z"));
    expect(historyStart(new Date("2027-03-20T12:00:00Z"), 3)).toEqual(new Date("2027-01-01T00:00:00Z"));
    expect(historyStart(new Date("2027-01-31T23:59:59Z"), 12)).toEqual(new Date("2026-02-01T00:00:00Z"));
  });

  it("answers CSV only when Accept prefers text/csv to JSON (quality, then specificity, then order)", () => {
    expect(prefersCsv("text/csv")).toBe(true);
    expect(prefersCsv("text/csv, application/json;q=0.5")).toBe(true);
    expect(prefersCsv("application/json;q=0.1, text/csv;q=0.9")).toBe(true);
    expect(prefersCsv("text/*, application/*;q=0.5")).toBe(true);
    expect(prefersCsv("TEXT/CSV")).toBe(true);
    expect(prefersCsv("application/json, text/csv")).toBe(false);
    expect(prefersCsv("text/csv;q=0")).toBe(false);
    expect(prefersCsv("text/csv;q=0, */*")).toBe(false);
    expect(prefersCsv("*/*")).toBe(false);
    expect(prefersCsv("image/png")).toBe(false);
    expect(prefersCsv("")).toBe(false);
    expect(prefersCsv(undefined)).toBe(false);
  });
});
