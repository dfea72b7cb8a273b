import { emptyMonth } from "./monthly-analytics";
import { usageReconciliation } from "./reconciliation";
import { emptyUserStats } from "./usage-log";

describe("usage reconciliation, flattened", () => {
  const user = "00000000-0000-4000-8000-000000000001";

  it("lists each differing figure with the log's value as expected, the stored one as actual", () => {
    const stored = { ...emptyUserStats(user), totalGenerations: 3n, lastActivityAt: new Date("2026-11-02T00:00:00Z") };
    const fromUsageLog = { ...emptyUserStats(user), totalGenerations: 2n, lastActivityAt: new Date("2026-11-02T00:00:00Z") };
    const month = emptyMonth(user, "2026-11");
    const answer = usageReconciliation(
      [{ userId: user, stored, fromUsageLog }],
      [{ subjectId: user, window: "day", windowStart: new Date("2026-11-02T00:00:00Z"), counter: "reserved_generations", stored: 1n, expected: 0n }],
      [
        { subjectId: user, month: "2026-11", stored: { ...month, byProvider: { b: { completed: 1n, failed: 0n }, a: { completed: 0n, failed: 1n } } }, expected: { ...month, byProvider: { a: { completed: 0n, failed: 1n } } } },
        { subjectId: user, month: "2026-10", stored: null, expected: { ...month, month: "2026-10", generations: 1n } },
      ],
    );
    expect(answer.differencesTotal).toBe(4);
    expect(answer.differences).toEqual([
      { check: "user_stats.total_generations", subjectId: user, key: "", expected: "2", actual: "3" },
      { check: "daily_usage.reserved_generations", subjectId: user, key: "2026-11-02T00:00:00.000Z", expected: "0", actual: "1" },
      {
        check: "monthly_analytics.by_provider",
        subjectId: user,
        key: "2026-11",
        expected: '{"a":{"completed":"0","failed":"1"}}',
        actual: '{"a":{"completed":"0","failed":"1"},"b":{"completed":"1","failed":"0"}}',
      },
      { check: "monthly_analytics", subjectId: user, key: "2026-10", expected: expect.stringContaining('"generations":"1"'), actual: "" },
    ]);
  });

  it("counts every difference but lists at most the bound", () => {
    const counters = Array.from({ length: 5 }, (_, i) => ({ subjectId: user, window: "concurrent" as const, windowStart: null, counter: "active_reservations", stored: BigInt(i + 1), expected: 0n }));
    const answer = usageReconciliation([], counters, [], 2);
    expect(answer.differencesTotal).toBe(5);
    expect(answer.differences.map((d) => d.check)).toEqual(["subjects.active_reservations", "subjects.active_reservations"]);
  });

  it("finds nothing when nothing differs", () => {
    expect(usageReconciliation([], [], [])).toEqual({ differencesTotal: 0, differences: [] });
  });
});
