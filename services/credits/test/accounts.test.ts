import { credits } from "@tally/contracts";
import { newId } from "@tally/platform";
import { reasonOf, startHarness, writePlansFile, type Harness } from "./harness";

describe("credits accounts, sign-in and ledger (real PostgreSQL, gRPC)", () => {
  let h: Harness;

  beforeAll(async () => {
    const plans = { default_plan: "free", guest_plan: "guest", plans: { guest: { trial_credits: 3 }, free: { trial_credits: 10 }, pro: { trial_credits: 0 }, team: { trial_credits: 50 } } };
    // The background loops (outbox relay, hold expiry sweeper) kept quiet: a test below checks
    // that a call makes no database call, which their passes would blur.
    h = await startHarness("credits_accounts", { PLANS_FILE: writePlansFile(plans), OUTBOX_POLL_INTERVAL_MS: "600000", HOLD_EXPIRY_SWEEP_INTERVAL_MS: "600000" });
  });
  afterAll(async () => {
    await h?.close();
  });
  afterEach(async () => {
    await h.checkInvariants();
  });

  const email = () => `User-${newId()}@Example.com`;
  const password = "correct horse battery";

  it("registers an account with its trial grant, then authenticates and records the sign-in", async () => {
    const address = email();
    const created = await h.call.createAccount({ email: `  ${address} `, password });
    const account = created.account!;
    expect(account).toMatchObject({ email: address.toLowerCase(), plan: "free", role: credits.Role.ROLE_USER });
    expect(account.lastLoginAt).toBeUndefined();
    expect(account.currentPeriodStart).toEqual(account.createdAt);
    expect(created.balance).toEqual({ trialCredits: 10n, tokenCredits: 0n, heldCredits: 0n, availableCredits: 10n });
    const { entries } = await h.call.listLedgerEntries({ accountId: account.id });
    expect(entries).toHaveLength(1);
    expect(entries[0]).toMatchObject({ kind: credits.LedgerEntryKind.LEDGER_ENTRY_KIND_GRANT, amount: 10n, grantKind: credits.GrantKind.GRANT_KIND_TRIAL, balanceAfter: 10n });

    const signedIn = await h.call.authenticate({ email: address.toUpperCase(), password });
    expect(signedIn.account!.id).toBe(account.id);
    expect(signedIn.account!.lastLoginAt).toBeInstanceOf(Date);
    const { account: read } = await h.call.getAccount({ accountId: account.id });
    expect(read!.lastLoginAt).toEqual(signedIn.account!.lastLoginAt);
    // The stored credential is an argon2id hash, never the password.
    const { rows } = await h.sql.query<{ password_hash: string }>("SELECT password_hash FROM accounts WHERE id = $1", [account.id]);
    expect(rows[0]!.password_hash).toMatch(/^\$argon2id\$/);
    expect(rows[0]!.password_hash).not.toContain(password);
  });

  it("answers unauthenticated alike for a wrong password and an unknown email", async () => {
    const address = email();
    await h.call.createAccount({ email: address, password });
    const wrongPassword = h.call.authenticate({ email: address, password: "not the password" });
    const unknownEmail = h.call.authenticate({ email: `nobody-${newId()}@example.com`, password });
    const [a, b] = await Promise.allSettled([wrongPassword, unknownEmail]);
    expect(a.status).toBe("rejected");
    expect(b.status).toBe("rejected");
    const [x, y] = [(a as PromiseRejectedResult).reason, (b as PromiseRejectedResult).reason];
    expect(x).toMatchObject({ reason: "unauthenticated" });
    expect({ reason: y.reason, message: y.message }).toEqual({ reason: x.reason, message: x.message });
    expect(await reasonOf(h.call.authenticate({ email: "", password }))).toBe("validation");
    expect(await reasonOf(h.call.authenticate({ email: address, password: "x".repeat(100_000) }))).toBe("unauthenticated");
  });

  it("checks the password on every Authenticate, also when a request_id is replayed", async () => {
    const address = email();
    await h.call.createAccount({ email: address, password });
    const request = { requestId: newId(), email: address, password };
    const first = await h.call.authenticate(request);
    expect(await h.call.authenticate(request)).toEqual(first);
    expect(await reasonOf(h.call.authenticate({ ...request, password: "not the password" }))).toBe("unauthenticated");
  });

  it("refuses a taken email (whatever its case), also when two registrations race", async () => {
    const address = email();
    await h.call.createAccount({ email: address, password });
    expect(await reasonOf(h.call.createAccount({ email: address.toUpperCase(), password }))).toBe("conflict");
    const racing = email();
    const results = await Promise.allSettled(Array.from({ length: 5 }, () => h.call.createAccount({ email: racing, password })));
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
    for (const r of results) if (r.status === "rejected") expect(r.reason).toMatchObject({ reason: "conflict" });
  });

  it.each([
    ["a malformed email", { email: "not-an-email", password }],
    ["an empty email", { email: "  ", password }],
    ["a short password", { email: `short-${newId()}@example.com`, password: "1234567" }],
    ["a long password", { email: `long-${newId()}@example.com`, password: "x".repeat(257) }],
    ["an unknown plan", { email: `plan-${newId()}@example.com`, password, plan: "gold" }],
    ["an unknown role", { email: `role-${newId()}@example.com`, password, role: 7 as credits.Role }],
    ["no request_id", { email: `rid-${newId()}@example.com`, password, requestId: "" }],
  ])("refuses %s with validation", async (_name, request) => {
    expect(await reasonOf(h.call.createAccount(request))).toBe("validation");
  });

  it("gives each plan its trial credits and creates admins", async () => {
    const pro = await h.call.createAccount({ email: email(), password, plan: "pro", role: credits.Role.ROLE_ADMIN });
    expect(pro.account).toMatchObject({ plan: "pro", role: credits.Role.ROLE_ADMIN });
    expect(pro.balance!.availableCredits).toBe(0n);
    const team = await h.call.createAccount({ email: email(), password, plan: "team" });
    expect(team.balance!.trialCredits).toBe(50n);
  });

  it("answers a CreateAccount retry with the first account", async () => {
    const request = { requestId: newId(), email: email(), password };
    const first = await h.call.createAccount(request);
    expect(await h.call.createAccount(request)).toEqual(first);
    expect(await reasonOf(h.call.createAccount({ ...request, email: email() }))).toBe("idempotency_key_reused");
  });

  it("never hands out the account of a replayed CreateAccount to another password", async () => {
    const request = { requestId: newId(), email: email(), password };
    const first = await h.call.createAccount(request);
    expect(await reasonOf(h.call.createAccount({ ...request, password: "an attacker's password" }))).toBe("idempotency_key_reused");
    expect(await reasonOf(h.call.createAccount({ ...request, email: request.email.toUpperCase(), password: "an attacker's password" }))).toBe(
      "idempotency_key_reused",
    );
    // The rightful retry still gets the first answer, and the password is in no stored fingerprint.
    expect(await h.call.createAccount(request)).toEqual(first);
    const { rows } = await h.sql.query<{ request_fingerprint: string; response: Buffer }>(
      "SELECT request_fingerprint, response FROM idempotency_keys WHERE request_id = $1",
      [request.requestId],
    );
    expect(rows[0]!.request_fingerprint).not.toContain(password);
    expect(rows[0]!.response.toString("utf8")).not.toContain(password);
  });

  it("verifies the password of a sign-in with no transaction open", async () => {
    const address = email();
    await h.call.createAccount({ email: address, password });
    const passwords = (h.running.service.accounts as unknown as { passwords: { verify(hash: string, password: string): Promise<boolean> } }).passwords;
    const openTransactions: number[] = [];
    const realVerify = passwords.verify.bind(passwords);
    const verify = jest.spyOn(passwords, "verify").mockImplementation(async (passwordHash, candidate) => {
      const { rows } = await h.sql.query<{ n: string }>(
        `SELECT count(*) AS n FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid() AND xact_start IS NOT NULL
           AND query LIKE '%password_hash%'`,
      );
      openTransactions.push(Number(rows[0]!.n));
      return realVerify(passwordHash, candidate);
    });
    try {
      expect((await h.call.authenticate({ email: address, password })).account!.email).toBe(address.toLowerCase());
      expect(await reasonOf(h.call.authenticate({ email: address, password: "not the password" }))).toBe("unauthenticated");
    } finally {
      verify.mockRestore();
    }
    expect(openTransactions).toEqual([0, 0]);
  });

  it.each([
    ["a NUL in the email", { email: "nul\u0000@example.com", password }],
    ["a control character in the email", { email: "bell\u0007@example.com", password }],
    ["a NUL in the password", { password: "correct\u0000horse battery" }],
  ])("refuses %s on CreateAccount with validation", async (_name, request) => {
    expect(await reasonOf(h.call.createAccount({ email: `ctl-${newId()}@example.com`, ...request }))).toBe("validation");
  });

  it("answers a NUL in the sign-in email or password with unauthenticated, without a database call", async () => {
    const address = email();
    await h.call.createAccount({ email: address, password });
    const em = h.running.orm.em;
    const fork = jest.spyOn(em, "fork");
    try {
      expect(await reasonOf(h.call.authenticate({ email: `${address}\u0000`, password }))).toBe("unauthenticated");
      expect(await reasonOf(h.call.authenticate({ email: address, password: `${password}\u0000` }))).toBe("unauthenticated");
      expect(await reasonOf(h.call.authenticate({ email: `nul\u0000${newId()}@example.com`, password }))).toBe("unauthenticated");
      expect(fork).not.toHaveBeenCalled();
    } finally {
      fork.mockRestore();
    }
  });

  it("answers not_found for unknown or malformed ids", async () => {
    for (const accountId of [newId(), "not-a-uuid", "", "'; DROP TABLE accounts; --"]) {
      expect(await reasonOf(h.call.getAccount({ accountId }))).toBe("not_found");
      expect(await reasonOf(h.call.getBalance({ accountId }))).toBe("not_found");
      expect(await reasonOf(h.call.listLedgerEntries({ accountId }))).toBe("not_found");
      expect(await reasonOf(h.call.createGrant({ accountId, kind: credits.GrantKind.GRANT_KIND_PURCHASED, amount: 1n }))).toBe("not_found");
    }
  });

  it("adds grants and refuses bad ones", async () => {
    const accountId = await h.newAccount();
    const expiresAt = new Date(Date.now() + 86_400_000);
    const { grant, balance } = await h.call.createGrant({ accountId, kind: credits.GrantKind.GRANT_KIND_PROMOTIONAL, amount: 7n, expiresAt });
    expect(grant).toMatchObject({ accountId, kind: credits.GrantKind.GRANT_KIND_PROMOTIONAL, amount: 7n, remainingAmount: 7n, expiresAt });
    expect(balance).toEqual({ trialCredits: 10n, tokenCredits: 7n, heldCredits: 0n, availableCredits: 17n });
    const bad = { accountId, kind: credits.GrantKind.GRANT_KIND_PURCHASED, amount: 1n };
    expect(await reasonOf(h.call.createGrant({ ...bad, kind: credits.GrantKind.GRANT_KIND_UNSPECIFIED }))).toBe("validation");
    expect(await reasonOf(h.call.createGrant({ ...bad, amount: 0n }))).toBe("validation");
    expect(await reasonOf(h.call.createGrant({ ...bad, amount: -5n }))).toBe("validation");
    expect(await reasonOf(h.call.createGrant({ ...bad, amount: 2n ** 62n }))).toBe("validation");
    expect(await reasonOf(h.call.createGrant({ ...bad, expiresAt: new Date(Date.now() - 1_000) }))).toBe("validation");
  });

  it("pages through the ledger newest first with opaque tokens", async () => {
    const accountId = await h.newAccount();
    const holds = [];
    for (let i = 0; i < 6; i++) holds.push((await h.call.createHold({ accountId, amount: 1n })).hold!.id);
    // 1 grant + 6 holds = 7 entries; pages of 3, 3 and 1.
    const pages: credits.LedgerEntry[][] = [];
    let pageToken = "";
    do {
      const page = await h.call.listLedgerEntries({ accountId, pageSize: 3, pageToken });
      pages.push(page.entries);
      pageToken = page.nextPageToken;
    } while (pageToken && pages.length < 10);
    expect(pages.map((p) => p.length)).toEqual([3, 3, 1]);
    const all = pages.flat();
    expect(new Set(all.map((e) => e.id)).size).toBe(7);
    expect(all.map((e) => e.holdId)).toEqual([...holds.reverse(), ""]);
    expect(all.map((e) => e.balanceAfter)).toEqual([4n, 5n, 6n, 7n, 8n, 9n, 10n]);
    for (let i = 1; i < all.length; i++) expect(all[i]!.createdAt!.getTime()).toBeLessThanOrEqual(all[i - 1]!.createdAt!.getTime());
    // Default page size, and a page that holds everything has no next token.
    expect((await h.call.listLedgerEntries({ accountId })).nextPageToken).toBe("");
  });

  it("refuses bad page sizes and tokens, including another account's token", async () => {
    const accountId = await h.newAccount();
    const other = await h.newAccount();
    await h.call.createHold({ accountId: other, amount: 1n });
    const otherToken = (await h.call.listLedgerEntries({ accountId: other, pageSize: 1 })).nextPageToken;
    expect(otherToken).not.toBe("");
    expect(await reasonOf(h.call.listLedgerEntries({ accountId, pageToken: otherToken }))).toBe("validation");
    expect(await reasonOf(h.call.listLedgerEntries({ accountId, pageToken: "garbage!" }))).toBe("validation");
    expect(await reasonOf(h.call.listLedgerEntries({ accountId, pageSize: 101 }))).toBe("validation");
    expect(await reasonOf(h.call.listLedgerEntries({ accountId, pageSize: -1 }))).toBe("validation");
  });
});
