import { billingPeriodAt, periodStartAfter, utcDayAt } from "./billing-period";

const at = (iso: string) => new Date(iso);

describe("billing periods", () => {
  it("are monthly from the anchor, in UTC, keeping the anchor's time of day", () => {
    const anchor = at("2026-03-15T08:30:00.000Z");
    expect(billingPeriodAt(anchor, at("2026-03-15T08:30:00.000Z"))).toEqual({ start: at("2026-03-15T08:30:00.000Z"), end: at("2026-04-15T08:30:00.000Z") });
    expect(billingPeriodAt(anchor, at("2026-04-15T08:29:59.999Z"))).toEqual({ start: at("2026-03-15T08:30:00.000Z"), end: at("2026-04-15T08:30:00.000Z") });
    expect(billingPeriodAt(anchor, at("2026-04-15T08:30:00.000Z")).start).toEqual(at("2026-04-15T08:30:00.000Z"));
    expect(billingPeriodAt(anchor, at("2027-01-01T00:00:00.000Z"))).toEqual({ start: at("2026-12-15T08:30:00.000Z"), end: at("2027-01-15T08:30:00.000Z") });
  });

  it("clamp an anchor on the 31st to the month's last day, and come back to the 31st", () => {
    const anchor = at("2026-01-31T10:00:00.000Z");
    expect(periodStartAfter(anchor, 1)).toEqual(at("2026-02-28T10:00:00.000Z"));
    expect(periodStartAfter(anchor, 2)).toEqual(at("2026-03-31T10:00:00.000Z"));
    expect(periodStartAfter(anchor, 3)).toEqual(at("2026-04-30T10:00:00.000Z"));
    expect(periodStartAfter(at("2028-01-31T10:00:00.000Z"), 1)).toEqual(at("2028-02-29T10:00:00.000Z"));
    expect(billingPeriodAt(anchor, at("2026-03-01T00:00:00.000Z"))).toEqual({ start: at("2026-02-28T10:00:00.000Z"), end: at("2026-03-31T10:00:00.000Z") });
    expect(billingPeriodAt(anchor, at("2026-02-28T09:59:59.999Z"))).toEqual({ start: at("2026-01-31T10:00:00.000Z"), end: at("2026-02-28T10:00:00.000Z") });
  });

  it("place a time before the anchor in the period before it", () => {
    const anchor = at("2026-05-10T00:00:00.000Z");
    expect(billingPeriodAt(anchor, at("2026-05-09T23:59:59.000Z"))).toEqual({ start: at("2026-04-10T00:00:00.000Z"), end: at("2026-05-10T00:00:00.000Z") });
  });

  it("contain every instant of a long range, each in exactly one period", () => {
    const anchor = at("2024-01-31T23:59:59.999Z");
    for (let t = anchor.getTime(); t < anchor.getTime() + 800 * 86_400_000; t += 86_400_000 / 3) {
      const { start, end } = billingPeriodAt(anchor, new Date(t));
      expect(start.getTime()).toBeLessThanOrEqual(t);
      expect(end.getTime()).toBeGreaterThan(t);
      expect(billingPeriodAt(anchor, start)).toEqual({ start, end });
    }
  });

  it("have UTC days", () => {
    expect(utcDayAt(at("2026-11-22T23:59:59.999Z"))).toEqual({ start: at("2026-11-22T00:00:00.000Z"), end: at("2026-11-23T00:00:00.000Z") });
  });
});
