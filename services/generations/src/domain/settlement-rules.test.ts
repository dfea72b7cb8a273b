import fc from "fast-check";
import type { RefundRule, RefundRules } from "@tally/platform";
import { decideSettlement, type SettlementOutcomeName } from "./settlement-rules";

const rules = (overrides: Partial<RefundRules> = {}): RefundRules => ({
  failed: { kind: "release" },
  cancelledBeforeStart: { kind: "release" },
  cancelledWhileProcessing: { kind: "capture_spent" },
  partialOutput: { kind: "capture_fraction", fraction: 0.5 },
  ...overrides,
});
const terms = (refundRules = rules(), creditPriceMicros = 10_000n) => ({ creditPriceMicros, refundRules });

describe("decideSettlement", () => {
  it("captures the whole hold of a completed job whatever the rules", () => {
    expect(decideSettlement("completed", 4n, 0n, terms(rules({ failed: { kind: "capture" } }), 0n))).toEqual({
      outcome: "completed",
      rule: "capture",
      creditsCaptured: 4n,
      creditsReleased: 0n,
    });
  });

  it("applies each outcome's rule", () => {
    expect(decideSettlement("failed", 4n, 30_000n, terms())).toMatchObject({ rule: "release", creditsCaptured: 0n, creditsReleased: 4n });
    expect(decideSettlement("cancelled_before_start", 4n, 0n, terms())).toMatchObject({ rule: "release", creditsCaptured: 0n });
    expect(decideSettlement("cancelled_while_processing", 4n, 10_001n, terms())).toMatchObject({ rule: "capture_spent", creditsCaptured: 2n, creditsReleased: 2n });
    expect(decideSettlement("cancelled_while_processing", 4n, 10_000n, terms())).toMatchObject({ creditsCaptured: 1n });
    expect(decideSettlement("cancelled_while_processing", 4n, 0n, terms())).toMatchObject({ creditsCaptured: 0n, creditsReleased: 4n });
    expect(decideSettlement("partial_output", 5n, 0n, terms())).toMatchObject({ rule: "capture_fraction", creditsCaptured: 2n, creditsReleased: 3n });
    expect(decideSettlement("failed", 4n, 0n, terms(rules({ failed: { kind: "capture" } })))).toMatchObject({ rule: "capture", creditsCaptured: 4n });
  });

  it("captures nothing by spend when the plan has no price, and never more than the hold", () => {
    expect(decideSettlement("cancelled_while_processing", 4n, 99_000n, terms(rules(), 0n))).toMatchObject({ creditsCaptured: 0n, creditsReleased: 4n });
    expect(decideSettlement("cancelled_while_processing", 4n, 99_000_000n, terms())).toMatchObject({ creditsCaptured: 4n, creditsReleased: 0n });
  });

  it("always splits the hold exactly: captured + released = held, both >= 0", () => {
    const rule: fc.Arbitrary<RefundRule> = fc.oneof(
      fc.constant({ kind: "release" as const }),
      fc.constant({ kind: "capture" as const }),
      fc.constant({ kind: "capture_spent" as const }),
      fc.double({ min: 0, max: 1, noNaN: true }).map((fraction) => ({ kind: "capture_fraction" as const, fraction })),
    );
    const outcome = fc.constantFrom<SettlementOutcomeName>("completed", "partial_output", "failed", "cancelled_before_start", "cancelled_while_processing");
    fc.assert(
      fc.property(outcome, fc.bigInt({ min: 0n, max: 10n ** 12n }), fc.bigInt({ min: 0n, max: 10n ** 15n }), fc.bigInt({ min: 0n, max: 10n ** 9n }), rule, (o, held, spent, price, r) => {
        const decision = decideSettlement(o, held, spent, terms(rules({ failed: r, cancelledBeforeStart: r, cancelledWhileProcessing: r, partialOutput: r }), price));
        return decision.creditsCaptured >= 0n && decision.creditsReleased >= 0n && decision.creditsCaptured + decision.creditsReleased === held;
      }),
      { numRuns: 2_000 },
    );
  });
});
