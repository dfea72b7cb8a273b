import { analyticsWindow } from "./usage-admin";

describe("admin analytics window", () => {
  const today = new Date("2027-03-20T15:00:00Z");

  it("defaults to the last 90 days, today included, as [start, end + 1 day)", () => {
    expect(analyticsWindow({}, today)).toEqual({
      startDate: "2026-12-21",
      endDate: "2027-03-20",
      since: new Date("2026-12-21T00:00:00Z"),
      before: new Date("2027-03-21T00:00:00Z"),
    });
    expect(analyticsWindow({ start_date: "2027-03-01", end_date: "2027-03-01" }, today).before).toEqual(new Date("2027-03-02T00:00:00Z"));
  });

  it("refuses a start after the end and a window over 731 days", () => {
    expect(() => analyticsWindow({ start_date: "2027-03-02", end_date: "2027-03-01" }, today)).toThrow("must not be after end_date");
    expect(() => analyticsWindow({ start_date: "2020-01-01", end_date: "2027-03-01" }, today)).toThrow("at most 731 days");
  });
});
