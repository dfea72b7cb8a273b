/**
 * Reconcile against real PostgreSQL: INV-2 checked over every account and grant, a batch of
 * accounts per statement. A clean ledger (holds captured in part, active, released and expired; an account
 * deleted with a write-off) has no difference; a difference planted by hand in SQL (a bumped
 * balance, a grant's remaining credits, a captured hold's amount) is reported exactly, with
 * the check's name, the account, the grant and both figures, and the metrics gauge counts it.
 */
import { credits } from "@tally/contracts";
import { getFreePort } from "@tally/platform";
import { startHarness, type Harness } from "./harness";

describe("credits Reconcile (real PostgreSQL, gRPC)", () => {
  let h: Harness;
  let metricsPort: number;

  beforeAll(async () => {
    metricsPort = await getFreePort();
    h = await startHarness("credits_reconcile", { METRICS_PORT: String(metricsPort), METRICS_HOST: "127.0.0.1" });
  }, 60_000);
  afterAll(async () => {
    await h?.close();
  });
  afterEach(async () => {
    await h.checkInvariants();
  });

  /** An account with trial 10 + purchased 20: a hold of 12 (trial 10, purchased 2) captured for 11, a hold of 3 active, a hold of 4 released. */
  const busyAccount = async () => {
    const accountId = await h.newAccount();
    const purchased = await h.grant(accountId, credits.GrantKind.GRANT_KIND_PURCHASED, 20n);
    const { hold: captured } = await h.call.createHold({ accountId, amount: 12n });
    await h.call.captureHold({ holdId: captured!.id, amount: 11n });
    const { hold: active } = await h.call.createHold({ accountId, amount: 3n });
    const { hold: released } = await h.call.createHold({ accountId, amount: 4n });
    await h.call.releaseHold({ holdId: released!.id });
    const { rows } = await h.sql.query<{ id: string }>("SELECT id FROM grants WHERE account_id = $1 AND kind = 'trial'", [accountId]);
    return { accountId, trial: rows[0]!.id, purchased, capturedHold: captured!.id, activeHold: active!.id };
  };

  const scrapeGauge = async (): Promise<number> => {
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const line = text.split("\n").find((l) => /^credits_reconciliation_differences[ {]/.test(l));
    return Number(line?.split(" ").at(-1));
  };

  it("finds no difference in a clean ledger (holds captured in part, active, released, expired; an account deleted)", async () => {
    await busyAccount();
    const deleted = await h.newAccount();
    await h.grant(deleted, credits.GrantKind.GRANT_KIND_PROMOTIONAL, 5n);
    await h.call.deleteAccount({ accountId: deleted });
    // A hold that expires: its credits go back to the grants they came from.
    const expiring = await h.newAccount();
    const { hold } = await h.call.createHold({ accountId: expiring, amount: 4n, ttlMs: 100n });
    await new Promise((resolve) => setTimeout(resolve, 150));
    await h.running.sweepExpiredHolds();
    expect((await h.sql.query("SELECT status FROM holds WHERE id = $1", [hold!.id])).rows[0]).toEqual({ status: "expired" });
    expect(await h.call.reconcile()).toEqual({ differencesTotal: 0n, differences: [] });
  });

  it("reports exactly a bumped available balance, and the gauge counts it", async () => {
    const { accountId } = await busyAccount();
    // available = 30 - 11 captured - 3 held = 16.
    await h.sql.query("UPDATE accounts SET available_credits = available_credits + 5 WHERE id = $1", [accountId]);
    try {
      const answer = await h.call.reconcile();
      const at = (check: string, expected: bigint, actual: bigint) => ({ check, accountId, grantId: "", expected, actual });
      expect(answer.differences).toEqual([
        at("granted_total", 30n, 35n),
        at("grants_remaining", 16n, 21n),
        at("last_entry_available", 16n, 21n),
        at("ledger_available", 16n, 21n),
      ]);
      expect(answer.differencesTotal).toBe(4n);
      expect(await scrapeGauge()).toBe(4);
    } finally {
      await h.sql.query("UPDATE accounts SET available_credits = available_credits - 5 WHERE id = $1", [accountId]);
    }
    expect((await h.call.reconcile()).differencesTotal).toBe(0n);
  });

  it("reports exactly a grant's remaining credits bumped, and a captured hold's amount changed", async () => {
    const { accountId, trial, purchased, capturedHold } = await busyAccount();
    await h.sql.query("UPDATE grants SET remaining_amount = remaining_amount + 2 WHERE id = $1", [purchased]);
    // The capture charged trial 10 then purchased 1; claiming 12 charges purchased 2.
    await h.sql.query("UPDATE holds SET captured_amount = 12 WHERE id = $1", [capturedHold]);
    try {
      const answer = await h.call.reconcile();
      const [first, second] = [trial, purchased].sort();
      const grantRow = { check: "grant_parts", accountId, grantId: purchased, expected: 20n, actual: 23n };
      expect(answer.differences).toEqual([
        { check: "captured_holds", accountId, grantId: "", expected: 12n, actual: 11n },
        { check: "grants_remaining", accountId, grantId: "", expected: 18n, actual: 16n },
        ...(first === purchased ? [grantRow] : []),
        ...(second === purchased ? [grantRow] : []),
      ]);
      expect(answer.differencesTotal).toBe(3n);
    } finally {
      await h.sql.query("UPDATE grants SET remaining_amount = remaining_amount - 2 WHERE id = $1", [purchased]);
      await h.sql.query("UPDATE holds SET captured_amount = 11 WHERE id = $1", [capturedHold]);
    }
    expect((await h.call.reconcile()).differencesTotal).toBe(0n);
  });

  it("counts every difference but lists at most 100", async () => {
    const accountId = await h.newAccount();
    const extra: string[] = [];
    for (let i = 0; i < 120; i += 1) extra.push(await h.grant(accountId, credits.GrantKind.GRANT_KIND_PROMOTIONAL, 1n));
    // 120 grants emptied by hand: 120 grant_parts, plus grants_remaining for the account.
    await h.sql.query("UPDATE grants SET remaining_amount = 0 WHERE id = ANY($1::uuid[])", [extra]);
    try {
      const answer = await h.call.reconcile();
      expect(answer.differencesTotal).toBe(121n);
      expect(answer.differences).toHaveLength(100);
      expect(answer.differences[0]).toEqual({ check: "grants_remaining", accountId, grantId: "", expected: 10n, actual: 130n });
      expect(new Set(answer.differences.slice(1).map((d) => d.check))).toEqual(new Set(["grant_parts"]));
    } finally {
      await h.sql.query("UPDATE grants SET remaining_amount = 1 WHERE id = ANY($1::uuid[])", [extra]);
    }
    expect((await h.call.reconcile()).differencesTotal).toBe(0n);
  });
});

describe("credits Reconcile in batches of accounts", () => {
  let h: Harness;

  beforeAll(async () => {
    // Two accounts per statement: seven accounts take four batches.
    h = await startHarness("credits_reconcile_batches", { RECONCILE_BATCH_ACCOUNTS: "2" });
  }, 60_000);
  afterAll(async () => {
    await h?.close();
  });

  it("walks every batch: differences planted in the first, a middle and the last account are all found, in account order, and counted once", async () => {
    const accounts: string[] = [];
    for (let i = 0; i < 7; i += 1) accounts.push(await h.newAccount());
    const { rows } = await h.sql.query<{ id: string }>("SELECT id FROM accounts ORDER BY id");
    const ids = rows.map((r) => r.id);
    expect(ids).toHaveLength(7);
    const planted = [ids[0]!, ids[3]!, ids[6]!];
    await h.sql.query("UPDATE accounts SET held_credits = held_credits + 1 WHERE id = ANY($1::uuid[])", [planted]);
    try {
      const answer = await h.call.reconcile();
      // Per account: ledger_held, last_entry_held, active_holds and granted_total each fail once.
      expect(answer.differencesTotal).toBe(12n);
      expect(answer.differences.map((d) => d.accountId)).toEqual(planted.flatMap((id) => [id, id, id, id]));
      expect(new Set(answer.differences.map((d) => d.check))).toEqual(new Set(["active_holds", "granted_total", "last_entry_held", "ledger_held"]));
    } finally {
      await h.sql.query("UPDATE accounts SET held_credits = held_credits - 1 WHERE id = ANY($1::uuid[])", [planted]);
    }
    expect(await h.call.reconcile()).toEqual({ differencesTotal: 0n, differences: [] });
  });
});
