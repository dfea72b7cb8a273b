/**
 * DeleteAccount against real PostgreSQL and real NATS (a stream and subject prefix of this
 * file's own): remaining credits are written off with ledger entries (INV-2 still holds), the
 * email and password hash are erased, sign-in stops at once, the `account.deleted` event is
 * published exactly once, repeats are idempotent, and an account with active holds is refused.
 */
import { jetstream, jetstreamManager, type JsMsg } from "@nats-io/jetstream";
import { credits, events } from "@tally/contracts";
import { connectNats, createLogger, newId, type NatsConnection } from "@tally/platform";
import { eventually, testNatsUrl, uniqueSuffix } from "@tally/platform/src/testing";
import { reasonOf, startHarness, type Harness } from "./harness";

describe("credits DeleteAccount (real PostgreSQL, gRPC, NATS)", () => {
  const suffix = uniqueSuffix();
  const stream = `TEST_ACCOUNTS_${suffix}`.toUpperCase();
  const prefix = `test_accounts_${suffix}`;
  const password = "correct horse battery";
  let h: Harness;
  let nc: NatsConnection;

  beforeAll(async () => {
    h = await startHarness("credits_delete", { NATS_ACCOUNT_STREAM: stream, NATS_SUBJECT_PREFIX: prefix, OUTBOX_POLL_INTERVAL_MS: "20", NATS_URL: testNatsUrl() });
    nc = await connectNats(testNatsUrl(), "credits-delete-test", createLogger("credits-delete-test", "silent"));
  }, 60_000);
  afterAll(async () => {
    await h?.close();
    if (nc) {
      await (await jetstreamManager(nc)).streams.delete(stream).catch(() => undefined);
      await nc.close();
    }
  });
  afterEach(async () => {
    await h.checkInvariants();
  });

  /** Every `account.deleted` event in the stream (a fresh ordered consumer each time). */
  const deletedEvents = async (): Promise<events.AccountDeleted[]> => {
    const consumer = await jetstream(nc).consumers.get(stream);
    const messages: JsMsg[] = [];
    for (;;) {
      const message = await consumer.next({ expires: 1_000 });
      if (!message) break;
      messages.push(message);
    }
    return messages.filter((m) => m.subject === `${prefix}.account.deleted`).map((m) => events.AccountDeleted.decode(m.data));
  };

  const signUp = async () => {
    const email = `user-${newId()}@example.com`;
    const { account } = await h.call.createAccount({ email, password });
    return { email, accountId: account!.id };
  };

  it("writes off the remaining credits, erases the credentials, stops sign-in and publishes account.deleted once", async () => {
    const { email, accountId } = await signUp();
    await h.grant(accountId, credits.GrantKind.GRANT_KIND_PURCHASED, 25n);
    // Spend some: 4 captured of a hold of 6 (2 released back).
    const { hold } = await h.call.createHold({ accountId, amount: 6n });
    await h.call.captureHold({ holdId: hold!.id, amount: 4n });
    const before = (await h.call.getBalance({ accountId })).balance!;
    expect(before.availableCredits).toBe(10n + 25n - 4n);

    const requestId = newId();
    const first = await h.call.deleteAccount({ requestId, accountId });
    expect(first.deleted).toBe(true);
    expect(first.writtenOffCredits).toBe(31n);

    // Balances are zero; the ledger shows one WRITE_OFF per grant with credits left, summing to 31.
    const after = (await h.call.getBalance({ accountId })).balance!;
    expect({ available: after.availableCredits, held: after.heldCredits }).toEqual({ available: 0n, held: 0n });
    const { entries } = await h.call.listLedgerEntries({ accountId, pageSize: 100 });
    const writeOffs = entries.filter((e) => e.kind === credits.LedgerEntryKind.LEDGER_ENTRY_KIND_WRITE_OFF);
    expect(writeOffs.reduce((sum, e) => sum - e.amount, 0n)).toBe(31n);
    expect(writeOffs).toHaveLength(2);
    const { rows: stored } = await h.sql.query("SELECT email, password_hash, deleted_at, written_off_credits FROM accounts WHERE id = $1", [accountId]);
    expect(stored[0]).toMatchObject({ email: null, password_hash: null, written_off_credits: "31" });
    expect(stored[0].deleted_at).not.toBeNull();
    const { rows: grants } = await h.sql.query("SELECT coalesce(sum(remaining_amount), 0) AS remaining FROM grants WHERE account_id = $1", [accountId]);
    expect(grants[0].remaining).toBe("0");

    // Sign-in fails as for unknown credentials; GetAccount answers not_found; no movement is possible.
    expect(await reasonOf(h.call.authenticate({ email, password }))).toBe("unauthenticated");
    expect(await reasonOf(h.call.getAccount({ accountId }))).toBe("not_found");
    expect(await reasonOf(h.call.createGrant({ accountId, kind: credits.GrantKind.GRANT_KIND_PROMOTIONAL, amount: 5n }))).toBe("not_found");
    expect(await reasonOf(h.call.createHold({ accountId, amount: 1n }))).toBe("not_found");
    expect(await reasonOf(h.call.setPlan({ accountId, plan: "free" }))).toBe("not_found");

    // A retry answers the first answer; a new request answers "already deleted"; nothing moves.
    expect(await h.call.deleteAccount({ requestId, accountId })).toEqual(first);
    const again = await h.call.deleteAccount({ accountId });
    expect(again).toMatchObject({ deleted: false, writtenOffCredits: 0n, deletedAt: first.deletedAt });
    expect((await h.call.listLedgerEntries({ accountId, pageSize: 100 })).entries).toHaveLength(entries.length);

    // The email is free again: a new account, a new id.
    const { account: reborn } = await h.call.createAccount({ email, password });
    expect(reborn!.id).not.toBe(accountId);

    // Exactly one account.deleted event for the account, after the relay ran.
    await eventually(async () => {
      const { rows } = await h.sql.query("SELECT count(*) FILTER (WHERE published_at IS NULL) AS unpublished FROM outbox");
      return rows[0].unpublished === "0" ? true : undefined;
    });
    const published = (await deletedEvents()).filter((e) => e.accountId === accountId);
    expect(published).toHaveLength(1);
    expect(published[0]!.occurredAt?.getTime()).toBe(first.deletedAt!.getTime());
  });

  it("refuses an account with active holds (conflict) and deletes it once they ended", async () => {
    const { accountId } = await signUp();
    const { hold } = await h.call.createHold({ accountId, amount: 3n });
    expect(await reasonOf(h.call.deleteAccount({ accountId }))).toBe("conflict");
    expect((await h.call.getAccount({ accountId })).account!.id).toBe(accountId);
    await h.call.releaseHold({ holdId: hold!.id });
    expect(await h.call.deleteAccount({ accountId })).toMatchObject({ deleted: true, writtenOffCredits: 10n });
  });

  it("answers not_found for an unknown id, a malformed one and a guest's account", async () => {
    expect(await reasonOf(h.call.deleteAccount({ accountId: newId() }))).toBe("not_found");
    expect(await reasonOf(h.call.deleteAccount({ accountId: "nope" }))).toBe("not_found");
    const guestId = newId();
    await h.call.ensureGuestAccount({ guestId });
    expect(await reasonOf(h.call.deleteAccount({ accountId: guestId }))).toBe("not_found");
  });

  it("deletes an account with nothing left to write off", async () => {
    const { accountId } = await signUp();
    const { hold } = await h.call.createHold({ accountId, amount: 10n });
    await h.call.captureHold({ holdId: hold!.id });
    expect(await h.call.deleteAccount({ accountId })).toMatchObject({ deleted: true, writtenOffCredits: 0n });
    const { rows } = await h.sql.query("SELECT count(*) AS n FROM ledger_entries WHERE account_id = $1 AND kind = 'write_off'", [accountId]);
    expect(rows[0].n).toBe("0");
  });
});
