/**
 * CreateHold members of one account in one batch, applied as a group (`credits_create_hold_run`,
 * migration Migration20261207000001), on real PostgreSQL: the account row moves once, and each
 * member's outcome, hold, allocations and ledger entry are those it would have had applied one
 * after another.
 */
import { credits } from "@tally/contracts";
import { fingerprint, newId } from "@tally/platform";
import { createCreditsUnitOfWork } from "../src/adapter/unit-of-work";
import type { HoldOperation, HoldOutcome } from "../src/domain/ports";
import { CAPTURE_REST_REASON, GRANT_EXPIRED_REASON } from "../src/domain/rules";
import { startHarness, type Harness } from "./harness";

const { GRANT_KIND_PURCHASED } = credits.GrantKind;

describe("credits: holds on one hot account in one batch (real PostgreSQL)", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness("credits_hot", { CREDITS_GROUP_COMMIT_WINDOW_MS: "2" });
  });
  afterAll(async () => {
    await h.close();
  });

  const applyBatch = (operations: HoldOperation[]): Promise<HoldOutcome[]> =>
    createCreditsUnitOfWork(h.running.orm).withoutTransaction((stores) =>
      stores.holdOperations.apply(operations, { now: new Date(), captureRestReason: CAPTURE_REST_REASON, grantExpiredReason: GRANT_EXPIRED_REASON }),
    );
  const createHold = (accountId: string, amount: bigint, overrides: { requestId?: string; generationId?: string } = {}): HoldOperation => {
    const generationId = overrides.generationId ?? newId();
    const parameters = { accountId, generationId, amount, ttlMs: 0n };
    const requestId = overrides.requestId ?? newId();
    return { operation: "CreateHold", requestId, fingerprint: fingerprint({ operation: "CreateHold", parameters }), accountId, generationId, amount, ttlMs: 60_000 };
  };
  /** A capture (whole unless `amount`) or a release of `holdId`. */
  const holdOp = (operation: "CaptureHold" | "ReleaseHold", holdId: string, amount: bigint | null = null): HoldOperation => {
    const parameters = { holdId, amount };
    const base = { requestId: newId(), fingerprint: fingerprint({ operation, parameters }), holdId };
    return operation === "CaptureHold" ? { operation, ...base, amount } : { operation, ...base, reason: "" };
  };
  /** An account with the default plan's 10 trial credits and `credits - 10` purchased ones. */
  const accountWith = async (credits: bigint) => {
    const accountId = await h.newAccount();
    await h.grant(accountId, GRANT_KIND_PURCHASED, credits - 10n);
    return accountId;
  };
  const ok = (outcome: HoldOutcome) => {
    if (outcome.outcome !== "ok") throw new Error(`expected ok, got ${JSON.stringify(outcome)}`);
    return outcome.answer;
  };
  const balanceOf = async (accountId: string) => {
    const { balance } = await h.call.getBalance({ accountId });
    return { available: balance!.availableCredits, held: balance!.heldCredits };
  };
  /** INV-2 per account, each ledger entry's balance_after / held_after equal to the running sums before it, and Reconcile clean. */
  const checkBooks = async (accountIds: string[]) => {
    for (const accountId of accountIds) {
      await h.checkInvariants(accountId);
      const { rows } = await h.sql.query(
        `SELECT position, balance_after, held_after, running_available, running_held FROM (
           SELECT position, balance_after, held_after, sum(amount) OVER w AS running_available, sum(held_change) OVER w AS running_held
           FROM ledger_entries WHERE account_id = $1 WINDOW w AS (ORDER BY position)) e
         WHERE balance_after <> running_available OR held_after <> running_held`, [accountId]);
      expect(rows).toEqual([]);
    }
    expect((await h.call.reconcile()).differencesTotal).toBe(0n);
  };

  /** `credits_hold_operations` called straight, in ONE transaction: its outcomes and the rows it updated in `accounts`, `grants` and `holds`. */
  const callCounting = async (members: { operation: string; accountId?: string; holdId?: string; amount?: bigint }[]) => {
    const updates = async () =>
      Object.fromEntries((await h.sql.query<{ relname: string; n: string }>(
        "SELECT relname, n_tup_upd AS n FROM pg_stat_xact_user_tables WHERE relname IN ('accounts', 'grants', 'holds')")).rows.map((r) => [r.relname, Number(r.n)]));
    await h.sql.query("BEGIN");
    try {
      const before = await updates();
      const { rows } = await h.sql.query<{ outcome: string; hold_id: string }>(
        `SELECT outcome, hold_id FROM credits_hold_operations($1::text[], ARRAY(SELECT gen_random_uuid()::text FROM unnest($1::text[])),
           ARRAY(SELECT 'f' FROM unnest($1::text[])), $2::uuid[], $3::uuid[], ARRAY(SELECT gen_random_uuid()::text FROM unnest($1::text[])),
           $4::bigint[], ARRAY(SELECT 60000::bigint FROM unnest($1::text[])), ARRAY(SELECT NULL::text FROM unnest($1::text[])), now(), 'rest', 'expired')
         ORDER BY member`,
        [members.map((m) => m.operation), members.map((m) => m.accountId ?? null), members.map((m) => m.holdId ?? null), members.map((m) => m.amount ?? null)],
      );
      const after = await updates();
      await h.sql.query("COMMIT");
      return { outcomes: rows.map((r) => r.outcome), holdIds: rows.map((r) => r.hold_id), updated: { accounts: after.accounts! - before.accounts!, grants: after.grants! - before.grants!, holds: after.holds! - before.holds! } };
    } catch (error) {
      await h.sql.query("ROLLBACK");
      throw error;
    }
  };

  it("moves the account row ONCE for N CreateHolds on one account in one call, and once for creates and whole captures together", async () => {
    const accountId = await accountWith(100n);
    const N = 12;
    const created = await callCounting(Array.from({ length: N }, () => ({ operation: "CreateHold", accountId, amount: 2n })));
    expect(created.outcomes).toEqual(Array(N).fill("ok"));
    // One UPDATE of the account row; the trial grant (10 of 10) and the purchased one (14 of 90) once each.
    expect(created.updated).toEqual({ accounts: 1, grants: 2, holds: 0 });
    const mixed = await callCounting(created.holdIds.slice(0, 4).flatMap((holdId) => [
      { operation: "CaptureHold", holdId }, { operation: "CreateHold", accountId, amount: 3n },
    ]));
    expect(mixed.outcomes).toEqual(Array(8).fill("ok"));
    expect(mixed.updated).toEqual({ accounts: 1, grants: 1, holds: 4 });
    expect(await balanceOf(accountId)).toEqual({ available: 100n - 2n * BigInt(N) - 12n, held: 2n * BigInt(N) - 8n + 12n });
    await checkBooks([accountId]);
  });

  it("fails a member short of credits alone, with the running available, and lets later smaller members succeed", async () => {
    const accountId = await accountWith(100n);
    const outcomes = await applyBatch([createHold(accountId, 30n), createHold(accountId, 50n), createHold(accountId, 40n), createHold(accountId, 15n), createHold(accountId, 5n)]);
    expect(outcomes.map((o) => o.outcome)).toEqual(["ok", "ok", "insufficient_credits", "ok", "ok"]);
    expect(outcomes[2]).toEqual({ outcome: "insufficient_credits", requested: 40n, available: 20n });
    expect(outcomes.filter((o) => o.outcome === "ok").map((o) => ok(o).balance.availableCredits)).toEqual([70n, 20n, 5n, 0n]);
    expect(await balanceOf(accountId)).toEqual({ available: 0n, held: 100n });
    await checkBooks([accountId]);
  });

  it("answers the same request id twice in one batch with one hold, and refuses it with other parameters", async () => {
    const accountId = await accountWith(50n);
    const first = createHold(accountId, 5n);
    const outcomes = await applyBatch([first, createHold(accountId, 1n), first, createHold(accountId, 7n, { requestId: first.requestId })]);
    expect(outcomes.map((o) => o.outcome)).toEqual(["ok", "ok", "replayed", "idempotency_key_reused"]);
    if (outcomes[2]!.outcome !== "replayed") throw new Error("unreachable");
    expect(outcomes[2]!.answer).toEqual(ok(outcomes[0]!));
    expect(await balanceOf(accountId)).toEqual({ available: 44n, held: 6n });
    // A key stored by an earlier batch: refused with other parameters, replayed with its own, in one batch.
    const again = await applyBatch([createHold(accountId, 9n, { requestId: first.requestId }), first]);
    expect(again.map((o) => o.outcome)).toEqual(["idempotency_key_reused", "replayed"]);
    if (again[1]!.outcome !== "replayed") throw new Error("unreachable");
    expect(again[1]!.answer).toEqual(ok(outcomes[0]!));
    expect(await balanceOf(accountId)).toEqual({ available: 44n, held: 6n });
    await checkBooks([accountId]);
  });

  it("lets a request id whose first member failed in the batch be claimed again by a later member", async () => {
    const accountId = await accountWith(20n);
    const requestId = newId();
    const outcomes = await applyBatch([createHold(accountId, 15n), createHold(accountId, 10n, { requestId }), createHold(accountId, 3n, { requestId })]);
    expect(outcomes.map((o) => o.outcome)).toEqual(["ok", "insufficient_credits", "ok"]);
    // The key is the later member's now: its retry replays, the failed parameters are refused.
    const retried = await applyBatch([createHold(accountId, 3n, { requestId, generationId: ok(outcomes[2]!).hold.generationId })]);
    expect(retried.map((o) => o.outcome)).toEqual(["replayed"]);
    expect(await balanceOf(accountId)).toEqual({ available: 2n, held: 18n });
    await checkBooks([accountId]);
  });

  it("answers conflict to a second hold of one generation in the batch, and to one that already has a hold", async () => {
    const accountId = await accountWith(50n);
    const generationId = newId();
    const outcomes = await applyBatch([createHold(accountId, 4n, { generationId }), createHold(accountId, 2n), createHold(accountId, 6n, { generationId })]);
    expect(outcomes.map((o) => o.outcome)).toEqual(["ok", "ok", "conflict"]);
    const later = await applyBatch([createHold(accountId, 1n), createHold(accountId, 1n, { generationId })]);
    expect(later.map((o) => o.outcome)).toEqual(["ok", "conflict"]);
    expect(await balanceOf(accountId)).toEqual({ available: 43n, held: 7n });
    await checkBooks([accountId]);
  });

  /** What is compared of an outcome: everything but ids and times. */
  const view = (o: HoldOutcome) => {
    switch (o.outcome) {
      case "ok": {
        const { hold, balance } = o.answer;
        return { outcome: "ok", status: hold.status, amount: hold.amount, captured: hold.capturedAmount, trial: hold.trialAmount, token: hold.tokenAmount, balance };
      }
      case "insufficient_credits": return o;
      case "hold_not_active": return { outcome: o.outcome, status: o.status };
      default: return { outcome: o.outcome };
    }
  };
  type OutcomeRow = Record<string, string | null>;
  /** The same view of a row of the per-operation functions of migration Migration20261206000001 (one member, one statement). */
  const viewRow = (r: OutcomeRow) => {
    const n = (v: string | null) => BigInt(v!);
    switch (r.outcome) {
      case "ok": {
        const balance = { trialCredits: n(r.trial_credits!), tokenCredits: n(r.token_credits!), heldCredits: n(r.held_credits!), availableCredits: n(r.trial_credits!) + n(r.token_credits!) };
        return { outcome: "ok", status: r.status, amount: n(r.amount!), captured: n(r.captured_amount!), trial: n(r.trial_amount!), token: n(r.token_amount!), balance };
      }
      case "insufficient_credits": return { outcome: r.outcome, requested: n(r.error_requested!), available: n(r.error_available!) };
      case "hold_not_active": return { outcome: r.outcome, status: r.error_status };
      default: return { outcome: r.outcome };
    }
  };
  /** The reference: each operation alone, in order, through the per-operation function it had before runs existed. */
  const oldOneByOne = async (operations: HoldOperation[]): Promise<OutcomeRow[]> => {
    const rows: OutcomeRow[] = [];
    for (const op of operations) {
      const now = new Date();
      const { rows: [row] } = op.operation === "CreateHold"
        ? await h.sql.query<OutcomeRow>("SELECT * FROM credits_create_hold($1, $2, $3, $4, $5, $6, $7, $8)",
          [op.requestId, op.fingerprint, op.accountId, op.generationId, op.amount.toString(), op.ttlMs, now, GRANT_EXPIRED_REASON])
        : op.operation === "CaptureHold"
          ? await h.sql.query<OutcomeRow>("SELECT * FROM credits_capture_hold($1, $2, $3, $4, $5, $6, $7)",
            [op.requestId, op.fingerprint, op.holdId, op.amount?.toString() ?? null, CAPTURE_REST_REASON, now, GRANT_EXPIRED_REASON])
          : await h.sql.query<OutcomeRow>("SELECT * FROM credits_release_hold($1, $2, $3, $4, $5, $6)",
            [op.requestId, op.fingerprint, op.holdId, op.operation === "ReleaseHold" ? op.reason : "", now, GRANT_EXPIRED_REASON]);
      rows.push(row!);
    }
    return rows;
  };

  it("allocates trial then purchased credits across the members exactly as one at a time", async () => {
    const [grouped, sequential] = [await accountWith(100n), await accountWith(100n)];
    const amounts = [6n, 6n, 3n, 80n, 6n];
    const together = await applyBatch(amounts.map((amount) => createHold(grouped, amount)));
    const alone = await oldOneByOne(amounts.map((amount) => createHold(sequential, amount)));
    expect(together.map(view)).toEqual(alone.map(viewRow));
    expect(together.map(view)[1]).toMatchObject({ trial: 4n, token: 2n });
    const books = async (accountId: string) => ({
      ledger: (await h.sql.query(
        `SELECT kind, amount, held_change, grant_kind, balance_after, held_after FROM ledger_entries WHERE account_id = $1 ORDER BY position`, [accountId])).rows,
      allocations: (await h.sql.query(
        `SELECT h.amount, h.trial_amount, h.token_amount, a.sequence, g.kind, a.amount AS taken
         FROM holds h JOIN ledger_entries l ON l.hold_id = h.id AND l.kind = 'hold' JOIN hold_allocations a ON a.hold_id = h.id JOIN grants g ON g.id = a.grant_id
         WHERE h.account_id = $1 ORDER BY l.position, a.sequence`, [accountId])).rows,
      grants: (await h.sql.query(`SELECT kind, remaining_amount FROM grants WHERE account_id = $1 ORDER BY kind`, [accountId])).rows,
    });
    expect(await books(grouped)).toEqual(await books(sequential));
    await checkBooks([grouped, sequential]);
  });

  it("applies whole captures within the run exactly as one at a time; a partial capture ends the run", async () => {
    const [grouped, sequential] = [await accountWith(60n), await accountWith(60n)];
    const script = (accountId: string, a: string, b: string) => [createHold(accountId, 7n), holdOp("CaptureHold", a), holdOp("CaptureHold", a),
      createHold(accountId, 3n), holdOp("CaptureHold", b, 2n), createHold(accountId, 30n), holdOp("CaptureHold", b), createHold(accountId, 9n)];
    const [a, b] = (await applyBatch([createHold(grouped, 10n), createHold(grouped, 5n)])).map((o) => ok(o).hold.id);
    const together = await applyBatch(script(grouped, a!, b!));
    const [sa, sb] = (await oldOneByOne([createHold(sequential, 10n), createHold(sequential, 5n)])).map((r) => r.hold_id!);
    const alone = await oldOneByOne(script(sequential, sa!, sb!));
    expect(together.map((o) => o.outcome)).toEqual(["ok", "ok", "hold_not_active", "ok", "ok", "ok", "hold_not_active", "insufficient_credits"]);
    expect(together.map(view)).toEqual(alone.map(viewRow));
    expect(together.map(view)[4]).toMatchObject({ status: "captured", amount: 5n, captured: 2n });
    const ledger = async (accountId: string) => (await h.sql.query(
      `SELECT kind, amount, held_change, captured_change, grant_kind, balance_after, held_after FROM ledger_entries WHERE account_id = $1 ORDER BY position`, [accountId])).rows;
    expect(await ledger(grouped)).toEqual(await ledger(sequential));
    await checkBooks([grouped, sequential]);
  });

  it("keeps arrival order across a run of creates, a release and more creates on one account", async () => {
    const accountId = await accountWith(30n);
    const earlier = ok((await applyBatch([createHold(accountId, 10n)]))[0]!);
    const outcomes = await applyBatch([createHold(accountId, 15n), holdOp("ReleaseHold", earlier.hold.id), createHold(accountId, 12n), createHold(accountId, 4n)]);
    // The release comes before the 12 (20 - 15 + 10 = 15 left) and the 4 finds 3.
    expect(outcomes.map((o) => o.outcome)).toEqual(["ok", "ok", "ok", "insufficient_credits"]);
    expect(outcomes[3]).toEqual({ outcome: "insufficient_credits", requested: 4n, available: 3n });
    expect(await balanceOf(accountId)).toEqual({ available: 3n, held: 27n });
    await checkBooks([accountId]);
  });
});
