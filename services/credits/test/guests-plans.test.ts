import { credits } from "@tally/contracts";
import { DomainError, newId } from "@tally/platform";
import { reasonOf, startHarness, writePlansFile, type Harness } from "./harness";

const PLANS = {
  default_plan: "free",
  guest_plan: "guest",
  plans: {
    guest: { trial_credits: 3, limits: { generations_per_day: 3 } },
    free: { trial_credits: 10, limits: { generations_per_period: 100 } },
    pro: { trial_credits: 10, limits: { generations_per_period: 5000 } },
  },
};

/** The error a call failed with (fails the test when the call succeeds). */
async function errorOf(promise: Promise<unknown>): Promise<DomainError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof DomainError) return error;
    throw error;
  }
  throw new Error("expected the call to fail");
}

describe("credits guests, plans, roles and adoption (real PostgreSQL, gRPC)", () => {
  let h: Harness;
  const password = "correct horse battery";
  const email = () => `user-${newId()}@example.com`;

  beforeAll(async () => {
    h = await startHarness("credits_guests", { PLANS_FILE: writePlansFile(PLANS), TALLY_ADMIN_EMAILS: " Root@Example.com ,, ops@example.com" });
  });
  afterAll(async () => {
    await h?.close();
  });
  afterEach(async () => {
    await h.checkInvariants();
  });

  it("creates a guest's account on first use with the guest plan's trial grant, then answers the same account", async () => {
    const guestId = newId().toUpperCase();
    const first = await h.call.ensureGuestAccount({ guestId });
    expect(first.created).toBe(true);
    expect(first.account).toMatchObject({
      id: guestId.toLowerCase(),
      kind: credits.AccountKind.ACCOUNT_KIND_GUEST,
      email: "",
      plan: "guest",
      role: credits.Role.ROLE_USER,
      adoptedBy: "",
    });
    expect(first.balance).toEqual({ trialCredits: 3n, tokenCredits: 0n, heldCredits: 0n, availableCredits: 3n });
    const again = await h.call.ensureGuestAccount({ guestId: guestId.toLowerCase() });
    expect(again).toEqual({ ...first, created: false });
    const { entries } = await h.call.listLedgerEntries({ accountId: first.account!.id });
    expect(entries).toHaveLength(1);
    expect(entries[0]).toMatchObject({ kind: credits.LedgerEntryKind.LEDGER_ENTRY_KIND_GRANT, amount: 3n, grantKind: credits.GrantKind.GRANT_KIND_TRIAL });
    // A guest can pay for generations like a user.
    expect((await h.call.createHold({ accountId: first.account!.id, amount: 2n })).balance!.availableCredits).toBe(1n);
    // A guest has no credentials, so nothing signs in as it.
    const { rows } = await h.sql.query("SELECT email, password_hash FROM accounts WHERE id = $1", [first.account!.id]);
    expect(rows).toEqual([{ email: null, password_hash: null }]);
  });

  it("creates one guest account and one trial grant under 20 concurrent calls", async () => {
    const guestId = newId();
    const answers = await Promise.all(Array.from({ length: 20 }, () => h.call.ensureGuestAccount({ guestId })));
    expect(answers.filter((a) => a.created)).toHaveLength(1);
    expect(new Set(answers.map((a) => a.account!.id))).toEqual(new Set([guestId]));
    for (const answer of answers) expect(answer.balance!.availableCredits).toBe(3n);
    const { rows } = await h.sql.query<{ accounts: string; grants: string; entries: string }>(
      `SELECT (SELECT count(*) FROM accounts WHERE id = $1) AS accounts, (SELECT count(*) FROM grants WHERE account_id = $1) AS grants,
              (SELECT count(*) FROM ledger_entries WHERE account_id = $1) AS entries`,
      [guestId],
    );
    expect(rows[0]).toEqual({ accounts: "1", grants: "1", entries: "1" });
  });

  it("refuses a guest id that is no UUID (validation) or that belongs to a user (unauthenticated)", async () => {
    for (const guestId of ["", "guest-1", "'; DROP TABLE accounts; --"]) {
      expect(await reasonOf(h.call.ensureGuestAccount({ guestId }))).toBe("validation");
    }
    const userId = await h.newAccount();
    expect(await reasonOf(h.call.ensureGuestAccount({ guestId: userId }))).toBe("unauthenticated");
    expect((await h.call.getAccount({ accountId: userId })).account!.kind).toBe(credits.AccountKind.ACCOUNT_KIND_USER);
  });

  it("adopts a guest in the sign-up's transaction; the guest id stops working and a replay answers the same", async () => {
    const guestId = newId();
    await h.call.ensureGuestAccount({ guestId });
    const request = { requestId: newId(), email: email(), password, adoptGuestId: guestId.toUpperCase() };
    const created = await h.call.createAccount(request);
    const userId = created.account!.id;
    expect(created.account).toMatchObject({ kind: credits.AccountKind.ACCOUNT_KIND_USER, adoptedBy: "", plan: "free" });
    expect((await h.call.getAccount({ accountId: guestId })).account).toMatchObject({ adoptedBy: userId, kind: credits.AccountKind.ACCOUNT_KIND_GUEST });
    expect(await reasonOf(h.call.ensureGuestAccount({ guestId }))).toBe("unauthenticated");
    // The sign-up's retry gets the first answer; another guest under the same request_id is another request.
    expect(await h.call.createAccount(request)).toEqual(created);
    expect(await reasonOf(h.call.createAccount({ ...request, adoptGuestId: newId() }))).toBe("idempotency_key_reused");
    // A second sign-up naming the adopted guest leaves it with its first adopter.
    await h.call.createAccount({ email: email(), password, adoptGuestId: guestId });
    expect((await h.call.getAccount({ accountId: guestId })).account!.adoptedBy).toBe(userId);
  });

  it("ignores an adopt_guest_id that is not a live guest, and refuses a malformed one", async () => {
    const userId = await h.newAccount();
    const ofUser = await h.call.createAccount({ email: email(), password, adoptGuestId: userId });
    expect((await h.call.getAccount({ accountId: userId })).account!.adoptedBy).toBe("");
    expect(ofUser.account!.kind).toBe(credits.AccountKind.ACCOUNT_KIND_USER);
    const unknown = newId();
    await h.call.createAccount({ email: email(), password, adoptGuestId: unknown });
    expect(await reasonOf(h.call.getAccount({ accountId: unknown }))).toBe("not_found");
    // The unknown id was not retired: it can still become a guest.
    expect((await h.call.ensureGuestAccount({ guestId: unknown })).created).toBe(true);
    const address = email();
    const malformed = await errorOf(h.call.createAccount({ email: address, password, adoptGuestId: "guest-1" }));
    expect(malformed).toMatchObject({ reason: "validation", details: { field: "adopt_guest_id" } });
    expect((await h.sql.query("SELECT 1 FROM accounts WHERE email = $1", [address])).rows).toHaveLength(0);
  });

  it("moves an account to another plan, idempotently, and refuses unknown plans and accounts", async () => {
    const accountId = await h.newAccount();
    const request = { requestId: newId(), accountId, plan: "pro" };
    const moved = await h.call.setPlan(request);
    expect(moved.account).toMatchObject({ id: accountId, plan: "pro" });
    expect(await h.call.setPlan(request)).toEqual(moved);
    expect(await reasonOf(h.call.setPlan({ ...request, plan: "free" }))).toBe("idempotency_key_reused");
    expect((await h.call.getAccount({ accountId })).account!.plan).toBe("pro");
    // The billing anchor and the balance are not touched by a plan change.
    const { account } = await h.call.getAccount({ accountId });
    expect(account!.currentPeriodStart).toEqual(account!.createdAt);
    expect((await h.call.getBalance({ accountId })).balance!.availableCredits).toBe(10n);
    const unknownPlan = await errorOf(h.call.setPlan({ accountId, plan: "gold" }));
    expect(unknownPlan).toMatchObject({ reason: "validation", details: { field: "plan", known_plans: ["free", "guest", "pro"] } });
    expect(await reasonOf(h.call.setPlan({ accountId: newId(), plan: "pro" }))).toBe("not_found");
    expect(await reasonOf(h.call.setPlan({ accountId: "not-a-uuid", plan: "pro" }))).toBe("not_found");
    expect(await reasonOf(h.call.setPlan({ accountId, plan: "pro", requestId: "" }))).toBe("validation");
  });

  it("re-anchors a user's billing period, idempotently, and refuses future or missing anchors, guests and unknown accounts", async () => {
    const accountId = await h.newAccount();
    const before = (await h.call.getAccount({ accountId })).account!;
    const anchor = new Date("2026-01-31T00:00:00.000Z");
    const request = { requestId: newId(), accountId: accountId.toUpperCase(), anchor };
    const moved = await h.call.setBillingAnchor(request);
    expect(moved.account).toMatchObject({ ...before, currentPeriodStart: anchor });
    expect((await h.call.getAccount({ accountId })).account!.currentPeriodStart).toEqual(anchor);
    // A retry answers the first answer and moves nothing; the same key with another anchor is refused.
    await h.sql.query("UPDATE accounts SET current_period_start = '2026-02-01T00:00:00Z' WHERE id = $1", [accountId]);
    expect(await h.call.setBillingAnchor(request)).toEqual(moved);
    expect((await h.call.getAccount({ accountId })).account!.currentPeriodStart).toEqual(new Date("2026-02-01T00:00:00.000Z"));
    expect(await reasonOf(h.call.setBillingAnchor({ ...request, anchor: new Date("2026-03-01T00:00:00.000Z") }))).toBe("idempotency_key_reused");
    // Nothing else of the account moves: plan, balance.
    expect((await h.call.getBalance({ accountId })).balance!.availableCredits).toBe(10n);

    const future = await errorOf(h.call.setBillingAnchor({ accountId, anchor: new Date(Date.now() + 60_000) }));
    expect(future).toMatchObject({ reason: "validation", details: { field: "anchor" } });
    expect(future.message).toContain("future");
    expect(await errorOf(h.call.setBillingAnchor({ accountId }))).toMatchObject({ reason: "validation", details: { field: "anchor" } });
    const ancient = await errorOf(h.call.setBillingAnchor({ accountId, anchor: new Date("1969-12-31T23:59:59.999Z") }));
    expect(ancient).toMatchObject({ reason: "validation", details: { field: "anchor" } });
    // Up to now is accepted: the clock's present instant is no future.
    const now = new Date();
    expect((await h.call.setBillingAnchor({ accountId, anchor: now })).account!.currentPeriodStart).toEqual(now);

    const guestId = newId();
    await h.call.ensureGuestAccount({ guestId });
    const guest = await errorOf(h.call.setBillingAnchor({ accountId: guestId, anchor }));
    expect(guest).toMatchObject({ reason: "validation", details: { field: "account_id" } });
    expect((await h.call.getAccount({ accountId: guestId })).account!.currentPeriodStart).not.toEqual(anchor);
    expect(await reasonOf(h.call.setBillingAnchor({ accountId: newId(), anchor }))).toBe("not_found");
    expect(await reasonOf(h.call.setBillingAnchor({ accountId: "not-a-uuid", anchor }))).toBe("not_found");
    expect(await reasonOf(h.call.setBillingAnchor({ accountId, anchor, requestId: "" }))).toBe("validation");
    // None of the refusals moved the anchor.
    expect((await h.call.getAccount({ accountId })).account!.currentPeriodStart).toEqual(now);
  });

  it("creates accounts on a named plan and refuses an unknown one listing the known plans", async () => {
    const pro = await h.call.createAccount({ email: email(), password, plan: "pro" });
    expect(pro.account!.plan).toBe("pro");
    const unknown = await errorOf(h.call.createAccount({ email: email(), password, plan: "gold" }));
    expect(unknown).toMatchObject({ reason: "validation", details: { field: "plan", known_plans: ["free", "guest", "pro"] } });
  });

  it("sets a role by email, idempotently, and refuses unknown emails and unnamed roles", async () => {
    const address = email();
    const { account } = await h.call.createAccount({ email: address, password });
    expect(account!.role).toBe(credits.Role.ROLE_USER);
    const request = { requestId: newId(), email: ` ${address.toUpperCase()} `, role: credits.Role.ROLE_ADMIN };
    const promoted = await h.call.setRole(request);
    expect(promoted.account).toMatchObject({ id: account!.id, role: credits.Role.ROLE_ADMIN });
    expect(await h.call.setRole(request)).toEqual(promoted);
    expect(await reasonOf(h.call.setRole({ ...request, role: credits.Role.ROLE_USER }))).toBe("idempotency_key_reused");
    expect((await h.call.getAccount({ accountId: account!.id })).account!.role).toBe(credits.Role.ROLE_ADMIN);
    expect(await reasonOf(h.call.setRole({ email: email(), role: credits.Role.ROLE_ADMIN }))).toBe("not_found");
    expect(await reasonOf(h.call.setRole({ email: "not-an-email", role: credits.Role.ROLE_ADMIN }))).toBe("validation");
    expect(await reasonOf(h.call.setRole({ email: address, role: credits.Role.ROLE_UNSPECIFIED }))).toBe("validation");
    const demoted = await h.call.setRole({ email: address, role: credits.Role.ROLE_USER });
    expect(demoted.account!.role).toBe(credits.Role.ROLE_USER);
  });

  it("makes accounts registered with a TALLY_ADMIN_EMAILS email admins, whatever their case", async () => {
    const root = await h.call.createAccount({ email: "ROOT@example.com", password });
    expect(root.account).toMatchObject({ email: "root@example.com", role: credits.Role.ROLE_ADMIN });
    const ops = await h.call.createAccount({ email: "ops@example.com", password });
    expect(ops.account!.role).toBe(credits.Role.ROLE_ADMIN);
    const other = await h.call.createAccount({ email: email(), password });
    expect(other.account!.role).toBe(credits.Role.ROLE_USER);
  });

  it("holds guests and users to their credentials in the schema", async () => {
    const insert = (kind: string, mail: string | null, hash: string | null) =>
      h.sql.query("INSERT INTO accounts (id, kind, email, password_hash, plan, role, current_period_start) VALUES ($1, $2, $3, $4, 'free', 'user', now())", [
        newId(),
        kind,
        mail,
        hash,
      ]);
    await expect(insert("guest", email(), null)).rejects.toThrow(/accounts_credentials_by_kind/);
    await expect(insert("user", email(), null)).rejects.toThrow(/accounts_credentials_by_kind/);
    await expect(insert("user", null, null)).rejects.toThrow(/accounts_credentials_by_kind/);
    await expect(insert("robot", null, null)).rejects.toThrow(/check constraint/);
  });
});
