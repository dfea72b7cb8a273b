/**
 * Grant expiry on real PostgreSQL through gRPC, with an injected clock (nothing sleeps past a
 * real deadline): a grant past its `expires_at` is written off with one EXPIRY entry, exactly
 * once, lazily at the next balance read or hold and by the sweeper; credits held from it stay
 * capturable; what a release gives back to it is written off at once; INV-2 holds throughout.
 */
import { credits } from "@tally/contracts";
import { startHarness, type Harness } from "./harness";

const { GRANT_KIND_PURCHASED: PURCHASED, GRANT_KIND_PROMOTIONAL: PROMOTIONAL } = credits.GrantKind;
const DAY_MS = 86_400_000;

describe("credits grant expiry (real PostgreSQL, injected clock)", () => {
  let h: Harness;
  let nowMs = Date.now();
  const advanceDays = (days: number) => (nowMs += days * DAY_MS);
  const inDays = (days: number) => new Date(nowMs + days * DAY_MS);

  beforeAll(async () => {
    // The sweeper is kept quiet (an hour between passes) so each test decides when it runs.
    h = await startHarness("credits_expiry", { HOLD_EXPIRY_SWEEP_INTERVAL_MS: "3600000" }, { now: () => new Date(nowMs) });
  });
  afterAll(async () => {
    await h?.close();
  });
  afterEach(async () => {
    await h.checkInvariants();
  });

  const expiryEntries = async (grantId: string) =>
    (await h.sql.query("SELECT amount::int, expired_change::int, reason FROM ledger_entries WHERE grant_id = $1 AND kind = 'expiry'", [grantId])).rows;
  const expiredCredits = async (accountId: string) => Number((await h.sql.query("SELECT expired_credits FROM accounts WHERE id = $1", [accountId])).rows[0].expired_credits);

  it("writes an expired grant off at the next balance read, once", async () => {
    const accountId = await h.newAccount();
    const { grant } = await h.call.createGrant({ accountId, kind: PURCHASED, amount: 5n, expiresAt: inDays(30) });
    expect((await h.call.getBalance({ accountId })).balance!.tokenCredits).toBe(5n);
    advanceDays(31);
    expect((await h.call.getBalance({ accountId })).balance).toMatchObject({ tokenCredits: 0n, trialCredits: 10n, availableCredits: 10n });
    await h.call.getBalance({ accountId });
    expect(await expiryEntries(grant!.id)).toEqual([{ amount: -5, expired_change: 5, reason: "grant_expired" }]);
    expect(await expiredCredits(accountId)).toBe(5);
  });

  it("never lets a hold take expired credits", async () => {
    const accountId = await h.newAccount();
    // A promotional grant consumed before the trial credits (priority 0), expiring tomorrow.
    const { grant } = await h.call.createGrant({ accountId, kind: PROMOTIONAL, amount: 3n, priority: 0, expiresAt: inDays(1) });
    advanceDays(2);
    const { hold } = await h.call.createHold({ accountId, amount: 2n });
    expect(hold!.trialAmount).toBe(2n);
    expect(await expiryEntries(grant!.id)).toHaveLength(1);
  });

  it("lets a hold capture credits of a grant that expired while held, and writes off what a release gives back", async () => {
    const accountId = await h.newAccount();
    const { grant } = await h.call.createGrant({ accountId, kind: PROMOTIONAL, amount: 4n, priority: 0, expiresAt: inDays(1) });
    const captured = (await h.call.createHold({ accountId, amount: 2n })).hold!;
    const released = (await h.call.createHold({ accountId, amount: 2n })).hold!;
    advanceDays(2);
    const capture = await h.call.captureHold({ holdId: captured.id });
    expect(capture.hold!.capturedAmount).toBe(2n);
    const release = await h.call.releaseHold({ holdId: released.id, reason: "job failed" });
    // The two credits went back to the expired grant and were written off at once.
    expect(release.balance).toMatchObject({ availableCredits: 10n, tokenCredits: 0n, heldCredits: 0n });
    expect(await expiryEntries(grant!.id)).toEqual([{ amount: -2, expired_change: 2, reason: "grant_expired" }]);
    expect(await expiredCredits(accountId)).toBe(2);
  });

  it("writes expired grants off in the background sweeper, once per grant", async () => {
    const accounts = [await h.newAccount(), await h.newAccount(), await h.newAccount()];
    const grants = [];
    for (const accountId of accounts) grants.push((await h.call.createGrant({ accountId, kind: PURCHASED, amount: 7n, expiresAt: inDays(10) })).grant!);
    const keeps = (await h.call.createGrant({ accountId: accounts[0], kind: PURCHASED, amount: 1n, expiresAt: inDays(100) })).grant!;
    advanceDays(11);
    await h.running.sweepExpiredHolds();
    await h.running.sweepExpiredHolds();
    for (const grant of grants) expect(await expiryEntries(grant.id)).toEqual([{ amount: -7, expired_change: 7, reason: "grant_expired" }]);
    expect(await expiryEntries(keeps.id)).toEqual([]);
    const rows = await h.sql.query("SELECT remaining_amount::int FROM grants WHERE id = ANY($1::uuid[])", [grants.map((g) => g.id)]);
    expect(rows.rows.map((r) => r.remaining_amount)).toEqual([0, 0, 0]);
  });
});
