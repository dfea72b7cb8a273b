/**
 * Group commit of hold operations on real PostgreSQL: the set form (`credits_hold_operations`,
 * many members in one statement and one transaction) and the service's batcher over gRPC,
 * including a credits process killed in the middle of batches.
 */
import { Client } from "pg";
import { credits } from "@tally/contracts";
import { callUnary, createGrpcClient, fingerprint, getFreePort, newId, spawnService, waitForGrpcServing, type ServiceProcess } from "@tally/platform";
import { createTestDatabase } from "@tally/platform/src/testing";
import { createCreditsUnitOfWork } from "../src/adapter/unit-of-work";
import type { HoldOperation, HoldOutcome } from "../src/domain/ports";
import { CAPTURE_REST_REASON, GRANT_EXPIRED_REASON } from "../src/domain/rules";
import { reasonOf, startHarness, type Harness } from "./harness";

const { GRANT_KIND_PURCHASED } = credits.GrantKind;

describe("credits group commit (real PostgreSQL)", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness("credits_group", { CREDITS_GROUP_COMMIT_WINDOW_MS: "2", CREDITS_GROUP_COMMIT_MAX_OPERATIONS: "64" });
  });
  afterAll(async () => {
    await h.close();
  });

  /** The set form straight on the database: `operations` in ONE statement (one transaction). */
  const applyBatch = (operations: HoldOperation[]): Promise<HoldOutcome[]> =>
    createCreditsUnitOfWork(h.running.orm).withoutTransaction((stores) =>
      stores.holdOperations.apply(operations, { now: new Date(), captureRestReason: CAPTURE_REST_REASON, grantExpiredReason: GRANT_EXPIRED_REASON }),
    );
  const createHold = (accountId: string, amount: bigint, requestId = newId()): HoldOperation => {
    const generationId = newId();
    const parameters = { accountId, generationId, amount, ttlMs: 0n };
    return { operation: "CreateHold", requestId, fingerprint: fingerprint({ operation: "CreateHold", parameters }), accountId, generationId, amount, ttlMs: 60_000 };
  };
  const accountWith = async (credits: bigint) => {
    const accountId = await h.newAccount(); // the default plan's 10 trial credits
    await h.grant(accountId, GRANT_KIND_PURCHASED, credits - 10n);
    return accountId;
  };

  it("lets exactly N of 1,000 concurrent holds of 1 credit on one account of N succeed; the ledger replays to the balance", async () => {
    const accountId = await accountWith(300n);
    const results = await Promise.allSettled(Array.from({ length: 1_000 }, () => h.call.createHold({ accountId, amount: 1n })));
    const succeeded = results.filter((r) => r.status === "fulfilled").length;
    const reasons = await Promise.all(results.filter((r) => r.status === "rejected").map((r) => reasonOf(Promise.reject(r.reason))));
    expect(succeeded).toBe(300);
    expect(new Set(reasons)).toEqual(new Set(["insufficient_credits"]));
    const { balance } = await h.call.getBalance({ accountId });
    expect({ available: balance!.availableCredits, held: balance!.heldCredits }).toEqual({ available: 0n, held: 300n });
    await h.checkInvariants(accountId);
    expect((await h.call.reconcile()).differencesTotal).toBe(0n);
  });

  it("commits the other members of a batch when one is short of credits, each with its own outcome", async () => {
    const [rich, poor] = [await accountWith(100n), await accountWith(20n)];
    const operations = [createHold(rich, 30n), createHold(poor, 50n), createHold(rich, 40n), createHold(poor, 20n), createHold(rich, 31n)];
    const outcomes = await applyBatch(operations);
    expect(outcomes.map((o) => o.outcome)).toEqual(["ok", "insufficient_credits", "ok", "ok", "insufficient_credits"]);
    expect(outcomes[1]).toEqual({ outcome: "insufficient_credits", requested: 50n, available: 20n });
    // Members on one account are decided in arrival order within the one transaction: 30 + 40 leave 30 of 100.
    expect(outcomes[4]).toEqual({ outcome: "insufficient_credits", requested: 31n, available: 30n });
    const held = await h.sql.query<{ request_id: string }>(
      "SELECT request_id FROM idempotency_keys WHERE request_id = ANY($1::text[]) ORDER BY request_id",
      [operations.map((o) => o.requestId)],
    );
    // The failed members left no key behind (a retry re-evaluates); the others stored their answer.
    expect(held.rows.map((r) => r.request_id)).toEqual([operations[0]!, operations[2]!, operations[3]!].map((o) => o.requestId).sort());
    for (const accountId of [rich, poor]) await h.checkInvariants(accountId);
  });

  it("answers an idempotent retry that lands in a different batch with the first answer, moving nothing", async () => {
    const accountId = await accountWith(50n);
    const first = createHold(accountId, 5n);
    const [firstOutcome] = await applyBatch([createHold(accountId, 1n), first]).then((o) => [o[1]!]);
    expect(firstOutcome!.outcome).toBe("ok");
    const entriesBefore = await h.sql.query("SELECT id FROM ledger_entries WHERE account_id = $1", [accountId]);
    const retried = await applyBatch([createHold(accountId, 2n), first, createHold(accountId, 3n)]);
    expect(retried[1]!.outcome).toBe("replayed");
    if (firstOutcome!.outcome !== "ok" || retried[1]!.outcome !== "replayed") throw new Error("unreachable");
    expect(retried[1]!.answer).toEqual(firstOutcome!.answer);
    const entriesAfter = await h.sql.query("SELECT id FROM ledger_entries WHERE account_id = $1", [accountId]);
    expect(entriesAfter.rowCount).toBe(entriesBefore.rowCount! + 2);
    // The same key with other parameters in yet another batch is refused.
    const reused = await applyBatch([{ ...createHold(accountId, 6n), requestId: first.requestId }]);
    expect(reused[0]!.outcome).toBe("idempotency_key_reused");
    // And over gRPC, concurrent retries grouped with fresh holds return the first hold.
    const requestId = newId();
    const generationId = newId();
    const answers = await Promise.all(Array.from({ length: 8 }, (_, i) =>
      i % 2 === 0 ? h.call.createHold({ requestId, accountId, generationId, amount: 2n }) : h.call.createHold({ accountId, amount: 1n }),
    ));
    const retriedIds = new Set(answers.filter((_, i) => i % 2 === 0).map((a) => a.hold!.id));
    expect(retriedIds.size).toBe(1);
    await h.checkInvariants(accountId);
  });

  it("answers BatchCreateHolds, BatchCaptureHolds and BatchReleaseHolds member by member", async () => {
    const accountId = await accountWith(20n);
    const options = { timeoutMs: 15_000 };
    const hold = (amount: bigint, overrides: Partial<credits.CreateHoldRequest> = {}) => ({ requestId: newId(), accountId, generationId: newId(), amount, ttlMs: 0n, ...overrides });
    const retried = hold(3n);
    const created = await callUnary(h.client.batchCreateHolds.bind(h.client), {
      requests: [hold(8n), hold(30n), retried, hold(0n), hold(4n, { accountId: newId() }), retried, hold(9n)],
    }, options);
    const outcome = (r: credits.HoldResult) => r.error?.reason ?? "ok";
    expect(created.results.map(outcome)).toEqual(["ok", "insufficient_credits", "ok", "validation", "not_found", "ok", "ok"]);
    expect(JSON.parse(created.results[1]!.error!.detailsJson)).toEqual({ requested: "30", available: "12" }); // arrival order: the 8 went first
    expect(created.results[5]!.ok!.hold!.id).toBe(created.results[2]!.ok!.hold!.id); // the same request id twice: one hold
    expect(created.results[6]!.ok!.balance!.availableCredits).toBe(0n);
    const [first, , second, , , , third] = created.results.map((r) => r.ok?.hold?.id ?? "");
    const captured = await callUnary(h.client.batchCaptureHolds.bind(h.client), {
      requests: [{ requestId: newId(), holdId: first!, amount: 5n }, { requestId: newId(), holdId: second!, amount: 4n }, { requestId: newId(), holdId: newId() }],
    }, options);
    expect(captured.results.map(outcome)).toEqual(["ok", "validation", "not_found"]);
    expect(captured.results[0]!.ok!.hold!.capturedAmount).toBe(5n);
    const released = await callUnary(h.client.batchReleaseHolds.bind(h.client), {
      requests: [{ requestId: newId(), holdId: first!, reason: "" }, { requestId: newId(), holdId: second!, reason: "done" }, { requestId: newId(), holdId: third!, reason: "" }],
    }, options);
    expect(released.results.map(outcome)).toEqual(["hold_not_active", "ok", "ok"]);
    expect(released.results[2]!.ok!.balance!.availableCredits).toBe(20n - 5n);
    expect(await reasonOf(callUnary(h.client.batchReleaseHolds.bind(h.client), { requests: [] }, options))).toBe("validation");
    await h.checkInvariants(accountId);
  });
});

describe("credits group commit across a crash (SIGKILL of the credits process)", () => {
  const CALL_TIMEOUT_MS = 20_000;

  it("leaves every member fully applied or not at all, and answers each request id correctly after a restart", async () => {
    const database = await createTestDatabase("credits_group_crash");
    const sql = new Client({ connectionString: database.url });
    const env = { DATABASE_URL: database.url, CREDITS_GROUP_COMMIT_WINDOW_MS: "5", CREDITS_GROUP_COMMIT_MAX_OPERATIONS: "32", LOG_LEVEL: "silent" };
    const start = async (): Promise<{ service: ServiceProcess; client: credits.CreditsServiceClient }> => {
      const port = await getFreePort();
      const service = spawnService("credits", "services/credits/main.ts", { ...env, GRPC_PORT: String(port) });
      await waitForGrpcServing(`127.0.0.1:${port}`, 60_000);
      return { service, client: createGrpcClient(credits.CreditsServiceClient, `127.0.0.1:${port}`) };
    };
    let { service, client } = await start();
    try {
      await sql.connect();
      const options = { timeoutMs: CALL_TIMEOUT_MS };
      const { account } = await callUnary(client.createAccount.bind(client), {
        requestId: newId(), email: `crash-${newId()}@example.com`, password: "a long enough password", plan: "", role: 0, adoptGuestId: "",
      }, options);
      const accountId = account!.id;
      await callUnary(client.createGrant.bind(client), { requestId: newId(), accountId, kind: GRANT_KIND_PURCHASED, amount: 10_000n, reference: "" }, options);
      const holdRequests = Array.from({ length: 600 }, () => ({ requestId: newId(), accountId, generationId: newId(), amount: 1n, ttlMs: 0n }));
      const firstHolds = await Promise.all(holdRequests.slice(0, 100).map((r) => callUnary(client.createHold.bind(client), r, options)));
      const captureRequests = firstHolds.map((a) => ({ requestId: newId(), holdId: a.hold!.id }));

      // Captures of the first 100 and 500 new holds in flight; the process dies in the middle of them.
      const answered = new Map<string, string>();
      const inFlight = [
        ...holdRequests.slice(100).map((r) => callUnary(client.createHold.bind(client), r, options).then((a) => answered.set(r.requestId, a.hold!.id))),
        ...captureRequests.map((r) => callUnary(client.captureHold.bind(client), r, options).then((a) => answered.set(r.requestId, a.hold!.id))),
      ];
      while (answered.size < 50) await new Promise((resolve) => setTimeout(resolve, 2));
      service.child.kill("SIGKILL");
      await Promise.allSettled(inFlight);
      client.close();
      await service.stop().catch(() => undefined);
      expect(answered.size).toBeLessThan(inFlight.length); // the kill did land in the middle

      ({ service, client } = await start());
      const stored = async (requestId: string) =>
        (await sql.query<{ hold_id: string }>("SELECT answer_hold_id AS hold_id FROM idempotency_keys WHERE request_id = $1", [requestId])).rows[0]?.hold_id;
      for (const request of [...holdRequests.slice(100), ...captureRequests]) {
        const committed = await stored(request.requestId);
        const again = "generationId" in request
          ? await callUnary(client.createHold.bind(client), request, options)
          : await callUnary(client.captureHold.bind(client), request, options);
        // Committed before the kill: the first answer; not committed: applied now, once.
        if (committed) expect(again.hold!.id).toBe(committed);
        if (answered.has(request.requestId)) expect(again.hold!.id).toBe(answered.get(request.requestId));
        expect(await stored(request.requestId)).toBe(again.hold!.id);
      }

      const counts = await sql.query<{ holds: string; active: string; captured: string; without_entry: string; without_capture: string }>(`
        SELECT count(*) AS holds, count(*) FILTER (WHERE status = 'active') AS active, count(*) FILTER (WHERE status = 'captured') AS captured,
               count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM ledger_entries l WHERE l.hold_id = h.id AND l.kind = 'hold')) AS without_entry,
               count(*) FILTER (WHERE status = 'captured' AND NOT EXISTS (SELECT 1 FROM ledger_entries l WHERE l.hold_id = h.id AND l.kind = 'capture')) AS without_capture
        FROM holds h`);
      expect(counts.rows[0]).toEqual({ holds: "600", active: "500", captured: "100", without_entry: "0", without_capture: "0" });
      const reconciled = await callUnary(client.reconcile.bind(client), {}, options);
      expect(reconciled.differencesTotal).toBe(0n);
      const { balance } = await callUnary(client.getBalance.bind(client), { accountId }, options);
      expect({ available: balance!.availableCredits, held: balance!.heldCredits }).toEqual({ available: 10_000n + 10n - 600n, held: 500n });
    } finally {
      client.close();
      await service.stop().catch(() => undefined);
      await sql.end().catch(() => undefined);
      await database.drop();
    }
  }, 240_000);
});
