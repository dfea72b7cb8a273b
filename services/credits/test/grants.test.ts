/**
 * Top-ups and voids on real PostgreSQL through gRPC: a reference grants once per account
 * whatever the request id (also when 40 requests race), other terms for a known reference
 * conflict, an explicit priority changes the consumption order, an unused grant voids whole
 * with a VOID ledger entry and a used one refuses, and every balance keeps INV-2.
 */
import { credits } from "@tally/contracts";
import { newId } from "@tally/platform";
import { reasonOf, startHarness, type Harness } from "./harness";

const { GRANT_KIND_PURCHASED: PURCHASED, GRANT_KIND_PROMOTIONAL: PROMOTIONAL } = credits.GrantKind;

describe("credits grants: top-ups and voids (real PostgreSQL, gRPC)", () => {
  let h: Harness;

  beforeAll(async () => {
    h = await startHarness("credits_grants");
  });
  afterAll(async () => {
    await h?.close();
  });
  afterEach(async () => {
    await h.checkInvariants();
  });

  const grantsOf = async (accountId: string, reference: string) =>
    (await h.sql.query("SELECT id, amount::int FROM grants WHERE account_id = $1 AND reference = $2", [accountId, reference])).rows;

  it("grants once per reference, even when 40 requests with 2 idempotency keys race", async () => {
    const accountId = await h.newAccount();
    const keys = [newId(), newId()];
    const answers = await Promise.all(
      Array.from({ length: 40 }, (_, i) => h.call.createGrant({ requestId: keys[i % 2], accountId, kind: PURCHASED, amount: 25n, reference: "pi_race" })),
    );
    expect(await grantsOf(accountId, "pi_race")).toHaveLength(1);
    expect(new Set(answers.map((a) => a.grant!.id)).size).toBe(1);
    expect(answers.filter((a) => a.created).length).toBeGreaterThanOrEqual(1);
    const balance = (await h.call.getBalance({ accountId })).balance!;
    expect(balance.tokenCredits).toBe(25n);
    expect(balance.trialCredits).toBe(10n);
    const ledger = await h.sql.query("SELECT kind, amount::int, reason FROM ledger_entries WHERE account_id = $1 AND grant_id = $2", [accountId, answers[0].grant!.id]);
    expect(ledger.rows).toEqual([{ kind: "grant", amount: 25, reason: "pi_race" }]);
  });

  it("answers a known reference with its grant, and refuses other terms with conflict", async () => {
    const accountId = await h.newAccount();
    const first = await h.call.createGrant({ accountId, kind: PURCHASED, amount: 10n, reference: "pi_1" });
    expect(first).toMatchObject({ created: true, grant: { amount: 10n, reference: "pi_1", priority: 2 } });
    const again = await h.call.createGrant({ accountId, kind: PURCHASED, amount: 10n, reference: "pi_1" });
    expect(again).toMatchObject({ created: false, grant: { id: first.grant!.id } });
    expect(await reasonOf(h.call.createGrant({ accountId, kind: PURCHASED, amount: 11n, reference: "pi_1" }))).toBe("conflict");
    expect(await reasonOf(h.call.createGrant({ accountId, kind: PROMOTIONAL, amount: 10n, reference: "pi_1" }))).toBe("conflict");
    // The same reference on another account is another payment.
    const other = await h.newAccount();
    expect((await h.call.createGrant({ accountId: other, kind: PURCHASED, amount: 10n, reference: "pi_1" })).created).toBe(true);
    expect((await h.call.getBalance({ accountId })).balance!.tokenCredits).toBe(10n);
  });

  it("refuses bad terms with validation", async () => {
    const accountId = await h.newAccount();
    for (const bad of [{ priority: 1001 }, { priority: -1 }, { reference: "x".repeat(201) }, { reference: "a\u0000b" }, { amount: 0n }]) {
      expect(await reasonOf(h.call.createGrant({ accountId, kind: PURCHASED, amount: 5n, ...bad }))).toBe("validation");
    }
    expect(await reasonOf(h.call.createGrant({ accountId: newId(), kind: PURCHASED, amount: 5n }))).toBe("not_found");
  });

  it("consumes a grant given a lower priority before the trial credits", async () => {
    const accountId = await h.newAccount();
    const { grant } = await h.call.createGrant({ accountId, kind: PROMOTIONAL, amount: 3n, priority: 0 });
    const { hold, balance } = await h.call.createHold({ accountId, amount: 2n });
    expect(hold!.tokenAmount).toBe(2n);
    expect(balance!.trialCredits).toBe(10n);
    const allocation = await h.sql.query("SELECT grant_id FROM hold_allocations WHERE hold_id = $1", [hold!.id]);
    expect(allocation.rows).toEqual([{ grant_id: grant!.id }]);
  });

  it("voids an unused grant whole with a VOID ledger entry, once, and refuses a used one", async () => {
    const accountId = await h.newAccount();
    const { grant } = await h.call.createGrant({ accountId, kind: PURCHASED, amount: 7n, reference: "pi_void" });
    const voided = await h.call.voidGrant({ accountId, grantId: grant!.id, reason: "payment refunded" });
    expect(voided.grant).toMatchObject({ id: grant!.id, remainingAmount: 0n });
    expect(voided.grant!.voidedAt).toBeInstanceOf(Date);
    expect(voided.balance).toMatchObject({ tokenCredits: 0n, trialCredits: 10n });
    const again = await h.call.voidGrant({ accountId, grantId: grant!.id });
    expect(again.grant!.voidedAt).toEqual(voided.grant!.voidedAt);
    const entries = await h.sql.query("SELECT kind, amount::int, written_off_change::int, reason FROM ledger_entries WHERE grant_id = $1 ORDER BY position", [grant!.id]);
    expect(entries.rows).toEqual([
      { kind: "grant", amount: 7, written_off_change: 0, reason: "pi_void" },
      { kind: "void", amount: -7, written_off_change: 7, reason: "payment refunded" },
    ]);
    const [account] = (await h.sql.query("SELECT written_off_credits::int FROM accounts WHERE id = $1", [accountId])).rows;
    expect(account.written_off_credits).toBe(7);

    // A grant of which something is held cannot be voided; nor can another account's grant.
    const { grant: used } = await h.call.createGrant({ accountId, kind: PURCHASED, amount: 5n, priority: 0 });
    await h.call.createHold({ accountId, amount: 1n });
    expect(await reasonOf(h.call.voidGrant({ accountId, grantId: used!.id }))).toBe("conflict");
    expect(await reasonOf(h.call.voidGrant({ accountId: await h.newAccount(), grantId: used!.id }))).toBe("not_found");
    expect(await reasonOf(h.call.voidGrant({ accountId, grantId: "not-a-uuid" }))).toBe("not_found");
  });

  it("lists every movement in the ledger with its grant and reason", async () => {
    const accountId = await h.newAccount();
    const { grant } = await h.call.createGrant({ accountId, kind: PURCHASED, amount: 4n, reference: "pi_ledger" });
    await h.call.voidGrant({ accountId, grantId: grant!.id, reason: "chargeback" });
    const { entries } = await h.call.listLedgerEntries({ accountId });
    expect(entries.map((e) => [e.kind, e.amount, e.grantId === grant!.id, e.reason])).toEqual([
      [credits.LedgerEntryKind.LEDGER_ENTRY_KIND_VOID, -4n, true, "chargeback"],
      [credits.LedgerEntryKind.LEDGER_ENTRY_KIND_GRANT, 4n, true, "pi_ledger"],
      [credits.LedgerEntryKind.LEDGER_ENTRY_KIND_GRANT, 10n, false, ""],
    ]);
  });
});
