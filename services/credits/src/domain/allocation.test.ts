import fc from "fast-check";
import { allocate, amountsByFamily, compareForConsumption, GRANT_KIND_PRIORITY, singleKind, splitCapture, type AllocatableGrant } from "./allocation";

const at = (iso: string) => new Date(iso);
const grant = (id: string, kind: AllocatableGrant["kind"], remaining: bigint, expiresAt: Date | null, createdAt = at("2026-01-01"), priority = GRANT_KIND_PRIORITY[kind]): AllocatableGrant => ({
  id,
  kind,
  priority,
  remainingAmount: remaining,
  expiresAt,
  createdAt,
});

describe("consumption order", () => {
  it("takes trial before purchased before promotional, whatever the expiry", () => {
    const grants = [
      grant("promo", "promotional", 5n, at("2026-01-02")),
      grant("bought", "purchased", 5n, at("2026-01-03")),
      grant("trial", "trial", 5n, null),
    ];
    expect([...grants].sort(compareForConsumption).map((g) => g.id)).toEqual(["trial", "bought", "promo"]);
  });

  it("within a kind takes earlier expiry first, no expiry last, then older first", () => {
    const grants = [
      grant("never-old", "purchased", 1n, null, at("2025-01-01")),
      grant("late", "purchased", 1n, at("2027-01-01")),
      grant("never-new", "purchased", 1n, null, at("2026-06-01")),
      grant("soon", "purchased", 1n, at("2026-02-01")),
    ];
    expect([...grants].sort(compareForConsumption).map((g) => g.id)).toEqual(["soon", "late", "never-old", "never-new"]);
  });

  it("takes a lower priority first, then earlier expiry, then trial before purchased", () => {
    const grants = [
      grant("trial", "trial", 1n, null),
      grant("bought-first", "purchased", 1n, null, at("2026-01-01"), 0),
      grant("promo-soon", "promotional", 1n, at("2026-03-01"), at("2026-01-01"), 1),
      grant("bought-tied", "purchased", 1n, null, at("2025-01-01"), 1),
    ];
    expect([...grants].sort(compareForConsumption).map((g) => g.id)).toEqual(["bought-first", "promo-soon", "trial", "bought-tied"]);
  });

  it("is a total order that follows priority, then expiry, then kind (property)", () => {
    const kinds = ["trial", "purchased", "promotional"] as const;
    const arbitraryGrant = fc.record({
      id: fc.uuid(),
      kind: fc.constantFrom(...kinds),
      priority: fc.integer({ min: 0, max: 4 }),
      remainingAmount: fc.bigInt({ min: 0n, max: 10n }),
      expiresAt: fc.option(fc.integer({ min: 0, max: 5 }).map((day) => new Date(Date.UTC(2026, 0, 1 + day))), { nil: null }),
      createdAt: fc.integer({ min: 0, max: 5 }).map((day) => new Date(Date.UTC(2025, 0, 1 + day))),
    });
    fc.assert(
      fc.property(fc.uniqueArray(arbitraryGrant, { selector: (g) => g.id, maxLength: 8 }), (grants) => {
        const sorted = [...grants].sort(compareForConsumption);
        const expiry = (g: AllocatableGrant) => g.expiresAt?.getTime() ?? Number.POSITIVE_INFINITY;
        for (let i = 1; i < sorted.length; i++) {
          const [a, b] = [sorted[i - 1], sorted[i]];
          expect(compareForConsumption(a, b)).toBeLessThan(0);
          if (a.priority !== b.priority) expect(a.priority).toBeLessThan(b.priority);
          else if (expiry(a) !== expiry(b)) expect(expiry(a)).toBeLessThan(expiry(b));
          else expect(GRANT_KIND_PRIORITY[a.kind]).toBeLessThanOrEqual(GRANT_KIND_PRIORITY[b.kind]);
        }
      }),
      { numRuns: 500 },
    );
  });
});

describe("allocate", () => {
  const grants = [grant("bought", "purchased", 10n, null), grant("trial", "trial", 3n, null), grant("empty", "trial", 0n, null)];

  it("takes the trial remainder first and the rest from purchased credits", () => {
    expect(allocate(grants, 5n)).toEqual([
      { grantId: "trial", kind: "trial", amount: 3n },
      { grantId: "bought", kind: "purchased", amount: 2n },
    ]);
  });

  it("uses only the first grant when it covers the amount", () => {
    expect(allocate(grants, 2n)).toEqual([{ grantId: "trial", kind: "trial", amount: 2n }]);
  });

  it("treats running short as a broken invariant", () => {
    expect(() => allocate(grants, 14n)).toThrow(/fewer remaining credits/);
  });

  it("summarises amounts by family and kind", () => {
    const allocations = allocate(grants, 5n);
    expect(amountsByFamily(allocations)).toEqual({ trialAmount: 3n, tokenAmount: 2n });
    expect(singleKind(allocations)).toBeNull();
    expect(singleKind(allocate(grants, 1n))).toBe("trial");
  });
});

describe("splitCapture", () => {
  const allocations = [
    { grantId: "trial", kind: "trial" as const, amount: 3n },
    { grantId: "bought", kind: "purchased" as const, amount: 4n },
  ];

  it("charges in the order taken and returns the rest to the grants taken last", () => {
    expect(splitCapture(allocations, 2n)).toEqual({
      charged: [{ grantId: "trial", kind: "trial", amount: 2n }],
      returned: [
        { grantId: "trial", kind: "trial", amount: 1n },
        { grantId: "bought", kind: "purchased", amount: 4n },
      ],
    });
    expect(splitCapture(allocations, 5n)).toEqual({
      charged: [
        { grantId: "trial", kind: "trial", amount: 3n },
        { grantId: "bought", kind: "purchased", amount: 2n },
      ],
      returned: [{ grantId: "bought", kind: "purchased", amount: 2n }],
    });
  });

  it("returns nothing for a full capture", () => {
    expect(splitCapture(allocations, 7n).returned).toEqual([]);
  });

  it("refuses a capture above the held amount", () => {
    expect(() => splitCapture(allocations, 8n)).toThrow();
  });
});
