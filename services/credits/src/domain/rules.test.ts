import { EFFECT_TIME_RESERVE_MS, requireTimeForEffect, resolveHoldTtlMs, roleForRegistration, trialCreditsForPlan, validatePassword } from "./rules";
import { loadPlanCatalog, parseEmail, parsePlanCatalog, resolvePageSize, storedAnswerCodec } from "@tally/platform";

describe("account rules", () => {
  it("trims and lower-cases emails", () => {
    expect(parseEmail("  Ada@Example.COM ")).toBe("ada@example.com");
  });

  it.each(["", "   ", "no-at-sign", "two@@example.com", "a@b", "space in@example.com", `${"x".repeat(250)}@example.com`])(
    "refuses email %p",
    (email) => {
      expect(() => parseEmail(email)).toThrow(expect.objectContaining({ reason: "validation" }));
    },
  );

  it("accepts passwords of 8..256 characters, counted as characters", () => {
    expect(() => validatePassword("12345678")).not.toThrow();
    expect(() => validatePassword("x".repeat(256))).not.toThrow();
    expect(() => validatePassword("🔑".repeat(8))).not.toThrow();
    expect(() => validatePassword("1234567")).toThrow(expect.objectContaining({ reason: "validation" }));
    expect(() => validatePassword("x".repeat(257))).toThrow(expect.objectContaining({ reason: "validation" }));
  });

  it("gives each plan its trial credits and refuses unknown plans", () => {
    const document = { default_plan: "free", guest_plan: "free", plans: { free: { trial_credits: 10 }, pro: { trial_credits: 0 }, team: { trial_credits: 50 } } };
    const plans = parsePlanCatalog(document);
    expect(trialCreditsForPlan("free", plans)).toBe(10n);
    expect(trialCreditsForPlan("team", plans)).toBe(50n);
    expect(trialCreditsForPlan("pro", plans)).toBe(0n);
    // TRIAL_CREDITS overrides the default plan's trial credits (here of the built-in plans).
    expect(trialCreditsForPlan("free", loadPlanCatalog(undefined, 3))).toBe(3n);
    expect(() => trialCreditsForPlan("gold", plans)).toThrow(expect.objectContaining({ reason: "validation" }));
    expect(() => trialCreditsForPlan("gold", plans)).toThrow(
      expect.objectContaining({ details: { field: "plan", known_plans: ["free", "pro", "team"] } }),
    );
  });

  it("makes the emails of TALLY_ADMIN_EMAILS admins and leaves others the role they asked for", () => {
    const admins = new Set(["root@example.com"]);
    expect(roleForRegistration("root@example.com", "user", admins)).toBe("admin");
    expect(roleForRegistration("ada@example.com", "user", admins)).toBe("user");
    expect(roleForRegistration("ada@example.com", "admin", admins)).toBe("admin");
  });

  it("starts an effect only with EFFECT_TIME_RESERVE_MS left before the deadline", () => {
    const now = 1_000_000;
    expect(() => requireTimeForEffect(Infinity, now)).not.toThrow();
    expect(() => requireTimeForEffect(now + EFFECT_TIME_RESERVE_MS, now)).not.toThrow();
    for (const deadline of [now - 1, now, now + EFFECT_TIME_RESERVE_MS - 1]) {
      expect(() => requireTimeForEffect(deadline, now)).toThrow(
        expect.objectContaining({ reason: "unavailable", details: { retry_after_seconds: 1 } }),
      );
    }
  });
});

describe("hold and ledger rules", () => {
  it("defaults and caps the hold time to live", () => {
    expect(resolveHoldTtlMs(0n, 60_000, 120_000)).toBe(60_000);
    expect(resolveHoldTtlMs(5_000n, 60_000, 120_000)).toBe(5_000);
    expect(resolveHoldTtlMs(10n ** 15n, 60_000, 120_000)).toBe(120_000);
    expect(() => resolveHoldTtlMs(-1n, 60_000, 120_000)).toThrow(expect.objectContaining({ reason: "validation" }));
  });

  it("resolves ledger page sizes", () => {
    expect(resolvePageSize(0)).toBe(20);
    expect(resolvePageSize(100)).toBe(100);
    expect(() => resolvePageSize(101)).toThrow(expect.objectContaining({ reason: "validation" }));
    expect(() => resolvePageSize(-1)).toThrow(expect.objectContaining({ reason: "validation" }));
  });
});

describe("stored answers", () => {
  it("keep bigints and dates exact", () => {
    const answer = { hold: { amount: 2n ** 62n, createdAt: new Date("2026-11-21T10:00:00.123Z"), endedAt: null, id: "x" }, list: [1n] };
    expect(storedAnswerCodec.decode(storedAnswerCodec.encode(answer))).toEqual(answer);
  });
});
