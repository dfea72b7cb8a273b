import { emptyMonth, lastMonths, monthContributions, type MonthEntry } from "./monthly-analytics";

describe("monthly analytics windows", () => {
  it("lists the last months in UTC, newest first, across a year boundary", () => {
    expect(lastMonths(new Date("2027-02-28T23:59:59.999Z"), 4)).toEqual(["2027-02", "2027-01", "2026-12", "2026-11"]);
    // 00:30 on Mar 1 in UTC is still February in New York: the month is UTC's.
    expect(lastMonths(new Date("2027-03-01T00:30:00.000Z"), 1)).toEqual(["2027-03"]);
  });

  it("gives a month without usage as zeros", () => {
    expect(emptyMonth("s", "2027-01")).toMatchObject({ month: "2027-01", generations: 0n, plans: [], planChanged: false });
  });

  it("sums a batch's entries per subject and UTC month, as usage_month_contribution summed does", () => {
    const entry = (over: Partial<MonthEntry>): MonthEntry => ({
      userId: "a", outcome: "completed", occurredAt: new Date("2027-01-31T23:59:59.999Z"), credits: 2n, costMicros: 10n, processingTimeMs: 100n,
      outputBytes: 7n, inputType: "text", provider: "p1", billingClassification: "original", plan: "free", ...over,
    });
    const months = monthContributions([
      entry({}),
      entry({ outcome: "failed", inputType: "photo", plan: "pro" }),
      entry({ occurredAt: new Date("2027-02-01T00:00:00.000Z"), plan: null }),
      entry({ userId: "b", provider: "p2", billingClassification: "free_retry" }),
      entry({ credits: 3n, plan: "free" }),
    ]);
    expect(months.map((m) => `${m.subjectId}/${m.month}`)).toEqual(["a/2027-01", "a/2027-02", "b/2027-01"]);
    expect(months[0]).toEqual({
      ...emptyMonth("a", "2027-01"),
      generations: 2n, failed: 1n, credits: 5n, costMicros: 20n, processingMs: 200n, outputBytes: 14n, // a failure adds only its count
      byInputType: { text: { completed: 2n, failed: 0n }, photo: { completed: 0n, failed: 1n } },
      byProvider: { p1: { completed: 2n, failed: 1n } },
      byClassification: { original: { completed: 2n, failed: 1n } },
      plans: ["free", "pro"], planChanged: true,
    });
    expect(months[1]).toMatchObject({ generations: 1n, plans: [], planChanged: false });
    expect(months[2]).toMatchObject({ byProvider: { p2: { completed: 1n, failed: 0n } }, byClassification: { free_retry: { completed: 1n, failed: 0n } } });
  });
});
