import { credits } from "@tally/contracts";
import { eventually } from "@tally/platform/src/testing";
import { newId } from "@tally/platform";
import { reasonOf, startHarness, type Harness } from "./harness";

const { GRANT_KIND_PURCHASED: PURCHASED, GRANT_KIND_PROMOTIONAL: PROMOTIONAL, GRANT_KIND_TRIAL: TRIAL } = credits.GrantKind;
const { HOLD_STATUS_ACTIVE, HOLD_STATUS_CAPTURED, HOLD_STATUS_RELEASED } = credits.HoldStatus;

describe("credits holds (real PostgreSQL, gRPC)", () => {
  let h: Harness;

  beforeAll(async () => {
    // A fast sweeper so the expiry test does not wait; other holds live an hour by default.
    h = await startHarness("credits_holds", { HOLD_EXPIRY_SWEEP_INTERVAL_MS: "100" });
  });
  afterAll(async () => {
    await h?.close();
  });
  afterEach(async () => {
    await h.checkInvariants();
  });

  const remainingOf = async (grantId: string) =>
    BigInt((await h.sql.query<{ remaining_amount: string }>("SELECT remaining_amount FROM grants WHERE id = $1", [grantId])).rows[0]!.remaining_amount);
  const trialGrantOf = async (accountId: string) =>
    (await h.sql.query<{ id: string }>("SELECT id FROM grants WHERE account_id = $1 AND kind = 'trial'", [accountId])).rows[0]!.id;
  const ledgerCount = async (accountId: string) =>
    Number((await h.sql.query<{ n: string }>("SELECT count(*) AS n FROM ledger_entries WHERE account_id = $1", [accountId])).rows[0]!.n);

  it("never lets 50 concurrent holds of 1 credit overdraw an account of 10", async () => {
    const accountId = await h.newAccount();
    const results = await Promise.allSettled(Array.from({ length: 50 }, () => h.call.createHold({ accountId, amount: 1n })));
    const succeeded = results.filter((r) => r.status === "fulfilled");
    const reasons = results.flatMap((r) => (r.status === "rejected" ? [(r.reason as { reason: string }).reason] : []));
    expect(succeeded).toHaveLength(10);
    expect(reasons).toEqual(Array(40).fill("insufficient_credits"));
    const { balance } = await h.call.getBalance({ accountId });
    expect(balance).toEqual({ trialCredits: 0n, tokenCredits: 0n, heldCredits: 10n, availableCredits: 0n });
    // The ledger replays to the stored balances (also checked for every account after each test).
    const { rows } = await h.sql.query<{ available: string; held: string }>(
      "SELECT sum(amount) AS available, sum(held_change) AS held FROM ledger_entries WHERE account_id = $1",
      [accountId],
    );
    expect(rows[0]).toEqual({ available: "0", held: "10" });
  });

  it("answers insufficient_credits with what was asked and what is available, and not_found for no account", async () => {
    const accountId = await h.newAccount();
    const refused = h.call.createHold({ accountId, amount: 11n });
    await expect(refused).rejects.toMatchObject({ reason: "insufficient_credits", details: { requested: "11", available: "10" } });
    expect(await reasonOf(h.call.createHold({ accountId: newId(), amount: 1n }))).toBe("not_found");
    expect(await reasonOf(h.call.createHold({ accountId: "not-a-uuid", amount: 1n }))).toBe("not_found");
    expect(await reasonOf(h.call.createHold({ accountId, amount: 0n }))).toBe("validation");
    expect(await reasonOf(h.call.createHold({ accountId, amount: 1n, generationId: "" }))).toBe("validation");
    expect(await reasonOf(h.call.createHold({ accountId, amount: 1n, generationId: `gen\u0000${newId()}` }))).toBe("validation");
    expect(await reasonOf(h.call.createHold({ accountId, amount: 1n, ttlMs: -1n }))).toBe("validation");
  });

  it("takes trial credits before purchased ones", async () => {
    const accountId = await h.newAccount();
    const purchased = await h.grant(accountId, PURCHASED, 20n);
    const first = await h.call.createHold({ accountId, amount: 4n });
    expect(first.hold).toMatchObject({ trialAmount: 4n, tokenAmount: 0n, status: HOLD_STATUS_ACTIVE });
    // Larger than the trial remainder (6): the trial goes first, the rest comes from purchased.
    const second = await h.call.createHold({ accountId, amount: 9n });
    expect(second.hold).toMatchObject({ amount: 9n, trialAmount: 6n, tokenAmount: 3n });
    expect(second.balance).toEqual({ trialCredits: 0n, tokenCredits: 17n, heldCredits: 13n, availableCredits: 17n });
    expect(await remainingOf(purchased)).toBe(17n);
  });

  it("takes earlier-expiring purchased credits first and promotional ones last", async () => {
    const accountId = await h.newAccount();
    await h.call.createHold({ accountId, amount: 10n }); // the trial grant is spent
    const promotional = await h.grant(accountId, PROMOTIONAL, 5n, new Date(Date.now() + 3_600_000));
    const later = await h.grant(accountId, PURCHASED, 5n, new Date(Date.now() + 7_200_000));
    const sooner = await h.grant(accountId, PURCHASED, 5n, new Date(Date.now() + 3_600_000));
    await h.call.createHold({ accountId, amount: 7n });
    expect([await remainingOf(sooner), await remainingOf(later), await remainingOf(promotional)]).toEqual([0n, 3n, 5n]);
  });

  it("captures for less than held and gives the rest back to the grants taken last", async () => {
    const accountId = await h.newAccount();
    const trial = await trialGrantOf(accountId);
    const purchased = await h.grant(accountId, PURCHASED, 10n);
    const { hold } = await h.call.createHold({ accountId, amount: 14n }); // 10 trial + 4 purchased
    const captured = await h.call.captureHold({ holdId: hold!.id, amount: 11n });
    expect(captured.hold).toMatchObject({ status: HOLD_STATUS_CAPTURED, capturedAmount: 11n, amount: 14n });
    expect(captured.hold!.endedAt).toBeInstanceOf(Date);
    // Charged: 10 trial + 1 purchased; the 3 uncaptured purchased credits come back.
    expect(captured.balance).toEqual({ trialCredits: 0n, tokenCredits: 9n, heldCredits: 0n, availableCredits: 9n });
    expect([await remainingOf(trial), await remainingOf(purchased)]).toEqual([0n, 9n]);
    const { entries } = await h.call.listLedgerEntries({ accountId, pageSize: 2 });
    expect(entries.map((e) => [e.kind, e.amount, e.balanceAfter, e.heldAfter])).toEqual([
      [credits.LedgerEntryKind.LEDGER_ENTRY_KIND_RELEASE, 3n, 9n, 0n],
      [credits.LedgerEntryKind.LEDGER_ENTRY_KIND_CAPTURE, 0n, 6n, 3n],
    ]);
    expect(await reasonOf(h.call.captureHold({ holdId: hold!.id }))).toBe("hold_not_active");
    expect(await reasonOf(h.call.releaseHold({ holdId: hold!.id }))).toBe("hold_not_active");
  });

  it("captures the whole hold when no amount is given, and refuses more than held", async () => {
    const accountId = await h.newAccount();
    const { hold } = await h.call.createHold({ accountId, amount: 3n });
    expect(await reasonOf(h.call.captureHold({ holdId: hold!.id, amount: 4n }))).toBe("validation");
    expect(await reasonOf(h.call.captureHold({ holdId: hold!.id, amount: 0n }))).toBe("validation");
    const captured = await h.call.captureHold({ holdId: hold!.id });
    expect(captured.hold).toMatchObject({ status: HOLD_STATUS_CAPTURED, capturedAmount: 3n });
    expect(captured.balance).toMatchObject({ availableCredits: 7n, heldCredits: 0n });
  });

  it("releases credits back to the grants they came from", async () => {
    const accountId = await h.newAccount();
    const trial = await trialGrantOf(accountId);
    const purchased = await h.grant(accountId, PURCHASED, 5n);
    const { hold } = await h.call.createHold({ accountId, amount: 12n });
    expect([await remainingOf(trial), await remainingOf(purchased)]).toEqual([0n, 3n]);
    // A NUL cannot be stored in PostgreSQL text: bad input, not an internal error.
    expect(await reasonOf(h.call.releaseHold({ holdId: hold!.id, reason: "generation\u0000failed" }))).toBe("validation");
    const released = await h.call.releaseHold({ holdId: hold!.id, reason: "generation_failed" });
    expect(released.hold).toMatchObject({ status: HOLD_STATUS_RELEASED, capturedAmount: 0n });
    expect([await remainingOf(trial), await remainingOf(purchased)]).toEqual([10n, 5n]);
    expect(released.balance).toEqual({ trialCredits: 10n, tokenCredits: 5n, heldCredits: 0n, availableCredits: 15n });
    expect(await reasonOf(h.call.captureHold({ holdId: hold!.id }))).toBe("hold_not_active");
    expect(await reasonOf(h.call.captureHold({ holdId: newId() }))).toBe("not_found");
    expect(await reasonOf(h.call.releaseHold({ holdId: "nope" }))).toBe("not_found");
  });

  it("lets exactly one of a concurrent capture and release end a hold", async () => {
    const accountId = await h.newAccount();
    for (let round = 0; round < 5; round++) {
      const { hold } = await h.call.createHold({ accountId, amount: 1n });
      const results = await Promise.allSettled([h.call.captureHold({ holdId: hold!.id }), h.call.releaseHold({ holdId: hold!.id })]);
      expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
      const failure = results.find((r) => r.status === "rejected") as PromiseRejectedResult;
      expect(failure.reason).toMatchObject({ reason: "hold_not_active" });
    }
  });

  it("keeps one hold per generation", async () => {
    const accountId = await h.newAccount();
    const generationId = newId();
    await h.call.createHold({ accountId, generationId, amount: 1n });
    expect(await reasonOf(h.call.createHold({ accountId, generationId, amount: 1n }))).toBe("conflict");
    expect((await h.call.getBalance({ accountId })).balance).toMatchObject({ availableCredits: 9n, heldCredits: 1n });
  });

  it("answers a retry of CreateHold, CaptureHold and ReleaseHold with the first answer and moves nothing", async () => {
    const accountId = await h.newAccount();
    const holdRequest = { requestId: newId(), accountId, generationId: newId(), amount: 2n, ttlMs: 0n };
    const first = await h.call.createHold(holdRequest);
    const entries = await ledgerCount(accountId);
    const retried = await h.call.createHold(holdRequest);
    expect(retried).toEqual(first);
    // Concurrent retries too.
    const concurrent = await Promise.all(Array.from({ length: 5 }, () => h.call.createHold(holdRequest)));
    for (const answer of concurrent) expect(answer).toEqual(first);
    expect(await ledgerCount(accountId)).toBe(entries);
    expect((await h.call.getBalance({ accountId })).balance).toMatchObject({ availableCredits: 8n, heldCredits: 2n });

    const captureRequest = { requestId: newId(), holdId: first.hold!.id, amount: 1n };
    const captured = await h.call.captureHold(captureRequest);
    expect(await h.call.captureHold(captureRequest)).toEqual(captured);

    const second = await h.call.createHold({ accountId, amount: 3n });
    const releaseRequest = { requestId: newId(), holdId: second.hold!.id, reason: "generation_failed" };
    const released = await h.call.releaseHold(releaseRequest);
    const afterRelease = await ledgerCount(accountId);
    expect(await h.call.releaseHold(releaseRequest)).toEqual(released);
    expect(await ledgerCount(accountId)).toBe(afterRelease);
    expect((await h.call.getBalance({ accountId })).balance).toMatchObject({ availableCredits: 9n, heldCredits: 0n });
  });

  it("refuses a request_id reused with other parameters", async () => {
    const accountId = await h.newAccount();
    const requestId = newId();
    const { hold } = await h.call.createHold({ requestId, accountId, amount: 1n });
    expect(await reasonOf(h.call.createHold({ requestId, accountId, amount: 2n }))).toBe("idempotency_key_reused");
    expect(await reasonOf(h.call.captureHold({ requestId, holdId: hold!.id }))).toBe("idempotency_key_reused");
    const captureId = newId();
    await h.call.captureHold({ requestId: captureId, holdId: hold!.id });
    expect(await reasonOf(h.call.captureHold({ requestId: captureId, holdId: hold!.id, amount: 1n }))).toBe("idempotency_key_reused");
    expect(await reasonOf(h.call.createHold({ requestId: "", accountId, amount: 1n }))).toBe("validation");
  });

  it("conserves credits through a random mix of concurrent operations", async () => {
    // A seeded generator, so a failure can be replayed.
    let seed = 20261121;
    const random = () => ((seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31);
    const pick = <T>(items: readonly T[]) => items[Math.floor(random() * items.length)]!;
    const accounts = await Promise.all(Array.from({ length: 3 }, () => h.newAccount()));
    const active = new Map<string, string[]>(accounts.map((a) => [a, []]));
    const done = { grant: 0, hold: 0, capture: 0, partialCapture: 0, release: 0 };
    const operation = async (accountId: string) => {
      const holds = active.get(accountId)!;
      const choice = random();
      if (choice < 0.15) {
        await h.call.createGrant({ accountId, kind: pick([PURCHASED, PROMOTIONAL, TRIAL]), amount: BigInt(1 + Math.floor(random() * 5)) });
        done.grant++;
      } else if (choice < 0.55 || holds.length === 0) {
        const { hold } = await h.call.createHold({ accountId, amount: BigInt(1 + Math.floor(random() * 6)) });
        holds.push(hold!.id);
        done.hold++;
      } else {
        const holdId = holds.splice(Math.floor(random() * holds.length), 1)[0]!;
        const end = random();
        if (end < 0.4) await h.call.captureHold({ holdId }).then(() => done.capture++);
        else if (end < 0.7) await h.call.captureHold({ holdId, amount: 1n }).then(() => done.partialCapture++);
        else await h.call.releaseHold({ holdId, reason: "random" }).then(() => done.release++);
      }
    };
    let failures = 0;
    for (let round = 0; round < 25; round++) {
      const results = await Promise.allSettled(accounts.flatMap((a) => [operation(a), operation(a)]));
      for (const result of results) {
        if (result.status === "rejected") {
          // Only expected refusals: short of credits, or a hold another op in this round ended.
          expect(["insufficient_credits", "hold_not_active"]).toContain((result.reason as { reason: string }).reason);
          failures++;
        }
      }
      await h.checkInvariants();
    }
    // The mix really exercised every movement, not just refusals.
    for (const count of Object.values(done)) expect(count).toBeGreaterThan(3);
    expect(failures).toBeLessThan(75);
    for (const accountId of accounts) {
      const { balance } = await h.call.getBalance({ accountId });
      expect(balance!.availableCredits).toBe(balance!.trialCredits + balance!.tokenCredits);
    }
  });

  it("expires a hold past its deadline and gives its credits back", async () => {
    const accountId = await h.newAccount();
    const { hold } = await h.call.createHold({ accountId, amount: 4n, ttlMs: 300n });
    const { hold: lasting } = await h.call.createHold({ accountId, amount: 1n });
    expect(hold!.expiresAt!.getTime() - hold!.createdAt!.getTime()).toBe(300);
    const status = async (holdId: string) =>
      (await h.sql.query<{ status: string }>("SELECT status FROM holds WHERE id = $1", [holdId])).rows[0]!.status;
    await eventually(async () => ((await status(hold!.id)) === "expired" ? true : undefined), 10_000);
    expect(await status(lasting!.id)).toBe("active");
    const { balance } = await h.call.getBalance({ accountId });
    expect(balance).toEqual({ trialCredits: 9n, tokenCredits: 0n, heldCredits: 1n, availableCredits: 9n });
    expect(await reasonOf(h.call.captureHold({ holdId: hold!.id }))).toBe("hold_not_active");
    const { entries } = await h.call.listLedgerEntries({ accountId, pageSize: 1 });
    expect(entries[0]).toMatchObject({ kind: credits.LedgerEntryKind.LEDGER_ENTRY_KIND_EXPIRY, amount: 4n, holdId: hold!.id });
  });

  it("keeps an extended hold alive past its first deadline, records each extension, and expires one no longer extended", async () => {
    const accountId = await h.newAccount();
    const { hold } = await h.call.createHold({ accountId, amount: 2n, ttlMs: 600n });
    const { hold: abandoned } = await h.call.createHold({ accountId, amount: 1n, ttlMs: 600n });
    // A heartbeat every 200 ms for three of the first time to live: the hold outlives it.
    for (let beat = 0; beat < 9; beat++) {
      const answer = await h.call.extendHold({ holdId: hold!.id, ttlMs: 600n });
      expect(answer.extended).toBe(true);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    const status = async (holdId: string) => (await h.sql.query<{ status: string }>("SELECT status FROM holds WHERE id = $1", [holdId])).rows[0]!.status;
    expect(await status(hold!.id)).toBe("active");
    expect(await status(abandoned!.id)).toBe("expired");
    // An earlier deadline than the one it has changes nothing and writes nothing.
    const shorter = await h.call.extendHold({ holdId: hold!.id, ttlMs: 1n });
    expect(shorter.extended).toBe(false);
    const captured = await h.call.captureHold({ holdId: hold!.id });
    expect(captured.hold!.capturedAmount).toBe(2n);
    expect(await reasonOf(h.call.extendHold({ holdId: hold!.id }))).toBe("hold_not_active");
    expect(await reasonOf(h.call.extendHold({ holdId: newId() }))).toBe("not_found");
    expect(await reasonOf(h.call.extendHold({ holdId: hold!.id, ttlMs: -1n }))).toBe("validation");
    const entries = await h.sql.query("SELECT kind, amount::int, hold_deadline FROM ledger_entries WHERE hold_id = $1 ORDER BY position", [hold!.id]);
    expect(entries.rows.map((e) => e.kind)).toEqual(["hold", ...Array(9).fill("extension"), "capture"]);
    expect(entries.rows.filter((e) => e.kind === "extension").every((e) => e.amount === 0 && e.hold_deadline instanceof Date)).toBe(true);
    const deadlines = entries.rows.filter((e) => e.hold_deadline).map((e) => e.hold_deadline.getTime());
    expect([...deadlines].sort((a, b) => a - b)).toEqual(deadlines);
  });

  it("caps a hold's time to live at HOLD_TTL_MS_MAX and defaults it to HOLD_TTL_MS", async () => {
    const accountId = await h.newAccount();
    const capped = (await h.call.createHold({ accountId, amount: 1n, ttlMs: 10n ** 12n })).hold!;
    expect(capped.expiresAt!.getTime() - capped.createdAt!.getTime()).toBe(86_400_000);
    const defaulted = (await h.call.createHold({ accountId, amount: 1n })).hold!;
    expect(defaulted.expiresAt!.getTime() - defaulted.createdAt!.getTime()).toBe(3_600_000);
  });

  it("keeps the ledger immutable", async () => {
    await expect(h.sql.query("UPDATE ledger_entries SET amount = amount + 1")).rejects.toThrow(/immutable/);
    await expect(h.sql.query("DELETE FROM ledger_entries")).rejects.toThrow(/immutable/);
  });
});
