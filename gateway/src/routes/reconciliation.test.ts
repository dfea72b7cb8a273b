import { presentCreditsReconciliation, presentUsageReconciliation } from "./reconciliation";

describe("reconciliation presenters", () => {
  it("presents credits differences with integers, and a per-account check's grant as null", () => {
    expect(
      presentCreditsReconciliation({
        differencesTotal: 2n,
        differences: [
          { check: "ledger_available", accountId: "a", grantId: "", expected: 16n, actual: 21n },
          { check: "grant_parts", accountId: "a", grantId: "g", expected: 20n, actual: 23n },
        ],
      }),
    ).toEqual({
      differences: 2,
      items: [
        { check: "ledger_available", account_id: "a", grant_id: null, expected: 16, actual: 21 },
        { check: "grant_parts", account_id: "a", grant_id: "g", expected: 20, actual: 23 },
      ],
    });
  });

  it("presents usage differences with strings, and a missing key or side as null", () => {
    expect(
      presentUsageReconciliation({
        differencesTotal: 3n,
        differences: [
          { check: "user_stats.total_generations", subjectId: "u", key: "", expected: "2", actual: "3" },
          { check: "monthly_analytics", subjectId: "u", key: "2026-10", expected: "{}", actual: "" },
        ],
      }),
    ).toEqual({
      differences: 3,
      items: [
        { check: "user_stats.total_generations", subject_id: "u", key: null, expected: "2", actual: "3" },
        { check: "monthly_analytics", subject_id: "u", key: "2026-10", expected: "{}", actual: null },
      ],
    });
  });
});
