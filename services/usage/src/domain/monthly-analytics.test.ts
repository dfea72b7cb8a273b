import { emptyMonth, lastMonths } from "./monthly-analytics";

describe("monthly analytics windows", () => {
  it("lists the last months in UTC, newest first, across a year boundary", () => {
    expect(lastMonths(new Date("2027-02-28T23:59:59.999Z"), 4)).toEqual(["2027-02", "2027-01", "2026-12", "2026-11"]);
    // 00:30 on Mar 1 in UTC is still February in New York: the month is UTC's.
    expect(lastMonths(new Date("2027-03-01T00:30:00.000Z"), 1)).toEqual(["2027-03"]);
  });

  it("gives a month without usage as zeros", () => {
    expect(emptyMonth("s", "2027-01")).toMatchObject({ month: "2027-01", generations: 0n, plans: [], planChanged: false });
  });
});
