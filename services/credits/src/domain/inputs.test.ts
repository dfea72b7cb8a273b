import {
  parseAuthenticateInput,
  parseCaptureHoldInput,
  parseCreateAccountInput,
  parseCreateGrantInput,
  parseCreateHoldInput,
  parseGuestId,
  parseListLedgerEntriesInput,
  parseReleaseHoldInput,
  parseSetBillingAnchorInput,
  parseSetPlanInput,
  parseSetRoleInput,
} from "./inputs";
import { parsePlanCatalog } from "@tally/platform";
import { encodeLedgerCursor } from "./ledger-cursor";
import type { CreditsRules } from "./rules";

const rules: CreditsRules = {
  plans: parsePlanCatalog({ default_plan: "free", guest_plan: "free", plans: { free: { trial_credits: 10 }, pro: { trial_credits: 0 } } }),
  adminEmails: new Set(["root@example.com"]),
  holdTtlMs: 60_000,
  holdTtlMsMax: 120_000,
  creditAmountMax: 1_000n,
  reconcileBatchAccounts: 1_000,
};
const accountId = "7B0E1F9A-3C1D-4C59-9D59-0D3A3C5A1E11";
const reason = (fn: () => unknown) => {
  try {
    fn();
  } catch (error) {
    return (error as { reason?: string }).reason;
  }
  return "accepted";
};

describe("request parsers", () => {
  it("normalizes a registration and resolves its plan's trial credits", () => {
    const raw = { requestId: "r", email: " Ada@Example.COM ", password: "12345678", plan: " ", role: "user" as const, adoptGuestId: "" };
    const input = parseCreateAccountInput(raw, rules);
    expect(input).toEqual({ requestId: "r", email: "ada@example.com", password: "12345678", plan: "free", role: "user", trialCredits: 10n, adoptGuestId: null });
    expect(reason(() => parseCreateAccountInput({ ...raw, plan: "gold" }, rules))).toBe("validation");
  });

  it("checks the guest to adopt and makes TALLY_ADMIN_EMAILS admins", () => {
    const raw = { requestId: "r", email: "Root@Example.com", password: "12345678", plan: "", role: "user" as const, adoptGuestId: accountId };
    expect(parseCreateAccountInput(raw, rules)).toMatchObject({ role: "admin", adoptGuestId: accountId.toLowerCase() });
    expect(reason(() => parseCreateAccountInput({ ...raw, adoptGuestId: "not-a-uuid" }, rules))).toBe("validation");
  });

  it("checks guest ids, plan changes, billing anchors and role changes", () => {
    expect(parseGuestId(accountId)).toBe(accountId.toLowerCase());
    expect(reason(() => parseGuestId("guest-1"))).toBe("validation");
    expect(reason(() => parseGuestId(""))).toBe("validation");
    expect(parseSetPlanInput({ requestId: "r", accountId, plan: "pro" }, rules)).toEqual({ requestId: "r", accountId: accountId.toLowerCase(), plan: "pro" });
    expect(reason(() => parseSetPlanInput({ requestId: "r", accountId, plan: "gold" }, rules))).toBe("validation");
    expect(reason(() => parseSetPlanInput({ requestId: "r", accountId: "x", plan: "pro" }, rules))).toBe("not_found");
    const nowMs = Date.parse("2026-11-21T10:00:00.000Z");
    const anchor = new Date(nowMs);
    expect(parseSetBillingAnchorInput({ requestId: "r", accountId, anchor }, nowMs)).toEqual({ requestId: "r", accountId: accountId.toLowerCase(), anchor });
    expect(parseSetBillingAnchorInput({ requestId: "r", accountId, anchor: new Date(0) }, nowMs).anchor).toEqual(new Date(0));
    for (const bad of [null, new Date(nowMs + 1), new Date(-1), new Date(Number.NaN)]) {
      expect(reason(() => parseSetBillingAnchorInput({ requestId: "r", accountId, anchor: bad }, nowMs))).toBe("validation");
    }
    expect(reason(() => parseSetBillingAnchorInput({ requestId: "r", accountId: "x", anchor }, nowMs))).toBe("not_found");
    expect(parseSetRoleInput({ requestId: "r", email: " Ada@Example.com", role: "admin" }).email).toBe("ada@example.com");
    expect(reason(() => parseSetRoleInput({ requestId: "r", email: "nope", role: "admin" }))).toBe("validation");
  });

  it("answers sign-in input no stored account can have with unauthenticated", () => {
    const ok = { requestId: "r", email: "ada@example.com", password: "12345678" };
    expect(parseAuthenticateInput({ ...ok, email: " ADA@example.com" }).email).toBe("ada@example.com");
    expect(reason(() => parseAuthenticateInput({ ...ok, email: " " }))).toBe("validation");
    expect(reason(() => parseAuthenticateInput({ ...ok, password: "" }))).toBe("validation");
    expect(reason(() => parseAuthenticateInput({ ...ok, email: "a\u0000@example.com" }))).toBe("unauthenticated");
    expect(reason(() => parseAuthenticateInput({ ...ok, password: "x".repeat(257) }))).toBe("unauthenticated");
  });

  it("checks grants: amount, future expiry, then the account id", () => {
    const ok = { requestId: "r", accountId, kind: "purchased" as const, amount: 5n, expiresAt: null, reference: "", priority: null };
    expect(parseCreateGrantInput(ok, rules)).toMatchObject({ accountId: accountId.toLowerCase(), reference: null, priority: 2 });
    expect(parseCreateGrantInput({ ...ok, reference: "pi_123", priority: 0 }, rules)).toMatchObject({ reference: "pi_123", priority: 0 });
    expect(reason(() => parseCreateGrantInput({ ...ok, priority: 1_001 }, rules))).toBe("validation");
    expect(reason(() => parseCreateGrantInput({ ...ok, priority: -1 }, rules))).toBe("validation");
    expect(reason(() => parseCreateGrantInput({ ...ok, reference: "x".repeat(201) }, rules))).toBe("validation");
    expect(reason(() => parseCreateGrantInput({ ...ok, reference: "pay\u0000ment" }, rules))).toBe("validation");
    expect(reason(() => parseCreateGrantInput({ ...ok, amount: 1_001n }, rules))).toBe("validation");
    expect(reason(() => parseCreateGrantInput({ ...ok, expiresAt: new Date(0) }, rules))).toBe("validation");
    expect(reason(() => parseCreateGrantInput({ ...ok, accountId: "nope" }, rules))).toBe("not_found");
  });

  it("checks holds and keeps the requested time to live for the fingerprint", () => {
    const ok = { requestId: "r", accountId, generationId: "g", amount: 5n, ttlMs: 10n ** 9n };
    expect(parseCreateHoldInput(ok, rules)).toMatchObject({ ttlMs: 120_000, requestedTtlMs: 10n ** 9n });
    expect(reason(() => parseCreateHoldInput({ ...ok, generationId: "g\u0007" }, rules))).toBe("validation");
    expect(reason(() => parseCreateHoldInput({ ...ok, accountId: "" }, rules))).toBe("not_found");
  });

  it("checks captures and releases", () => {
    expect(parseCaptureHoldInput({ requestId: "r", holdId: accountId, amount: undefined }).amount).toBeNull();
    expect(reason(() => parseCaptureHoldInput({ requestId: "r", holdId: accountId, amount: 0n }))).toBe("validation");
    expect(parseReleaseHoldInput({ requestId: "r", holdId: accountId, reason: "  " }).reason).toBe("released");
    expect(reason(() => parseReleaseHoldInput({ requestId: "r", holdId: accountId, reason: "x".repeat(201) }))).toBe("validation");
    expect(reason(() => parseReleaseHoldInput({ requestId: "r", holdId: "x", reason: "" }))).toBe("not_found");
  });

  it("checks ledger listings and their tokens", () => {
    const token = encodeLedgerCursor({ accountId: accountId.toLowerCase(), position: 9n });
    expect(parseListLedgerEntriesInput({ accountId, pageSize: 0, pageToken: token })).toEqual({
      accountId: accountId.toLowerCase(),
      pageSize: 20,
      cursor: { accountId: accountId.toLowerCase(), position: 9n },
    });
    expect(reason(() => parseListLedgerEntriesInput({ accountId, pageSize: 101, pageToken: "" }))).toBe("validation");
    expect(reason(() => parseListLedgerEntriesInput({ accountId: "x", pageSize: 0, pageToken: "" }))).toBe("not_found");
  });
});
