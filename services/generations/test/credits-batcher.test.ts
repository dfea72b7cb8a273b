/**
 * The generations service's credits client batches by default (CREDITS_BATCH_MAX_OPERATIONS):
 * against the real credits service, concurrent creates and settlements go as fewer RPCs than
 * operations (counted by credits' own gRPC metrics), each caller still gets its own hold or
 * its own error, and a lone call goes at once.
 */
import { DomainError, getFreePort, newId } from "@tally/platform";
import { GrpcCreditsClient } from "../src/adapter/credits-client";
import { startCredits, type CreditsUnderTest } from "./helpers";

const CALL_TIMEOUT_MS = 15_000;

/** A rejected call's DomainError as plain data (reason, message, details), or "answered". */
const errorOf = (s: PromiseSettledResult<unknown>) =>
  s.status === "rejected" && s.reason instanceof DomainError ? { reason: s.reason.reason, message: s.reason.message, details: s.reason.details } : "answered";

describe("generations credits client, batched by default (real credits service)", () => {
  let credits: CreditsUnderTest;
  let client: GrpcCreditsClient;
  let unaryOnly: GrpcCreditsClient;
  let metricsPort: number;
  beforeAll(async () => {
    metricsPort = await getFreePort();
    credits = await startCredits(100, { METRICS_PORT: String(metricsPort), METRICS_HOST: "127.0.0.1" });
    client = new GrpcCreditsClient(credits.address, CALL_TIMEOUT_MS);
    unaryOnly = new GrpcCreditsClient(credits.address, CALL_TIMEOUT_MS, { maxOperations: 1, windowMs: 0 });
  });
  afterAll(async () => {
    client.close();
    unaryOnly.close();
    await credits.stop();
  });

  /** RPCs credits answered, by method in lower case (its `grpc_server_handled_total`, every code). */
  async function rpcs(): Promise<Record<string, number>> {
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const counts: Record<string, number> = {};
    for (const m of text.matchAll(/grpc_server_handled_total\{[^}]*method="(\w+)"[^}]*\} (\d+)/g)) {
      const method = m[1]!.toLowerCase();
      counts[method] = (counts[method] ?? 0) + Number(m[2]);
    }
    return counts;
  }
  const delta = (before: Record<string, number>, after: Record<string, number>, method: string) => (after[method.toLowerCase()] ?? 0) - (before[method.toLowerCase()] ?? 0);

  it("sends concurrent creates as fewer RPCs, and the one short of credits fails alone with the unary call's error", async () => {
    const accountId = await credits.createAccount();
    const before = await rpcs();
    // 10 × 10 credits asked at once, and one of 95 in the middle: 50 are held when its turn comes.
    const amounts = [10n, 10n, 10n, 10n, 10n, 95n, 10n, 10n, 10n, 10n, 10n];
    const settled = await Promise.allSettled(
      amounts.map((amount) => client.createHold({ requestId: newId(), accountId, generationId: newId(), amount, ttlMs: 60_000 })),
    );
    const after = await rpcs();
    expect(settled.map((s) => (s.status === "fulfilled" ? s.value.amount : "failed"))).toEqual([10n, 10n, 10n, 10n, 10n, "failed", 10n, 10n, 10n, 10n, 10n]);
    // The same request made unary on an account in the same state (50 of 100 held) fails with the same error.
    const twin = await credits.createAccount();
    for (let i = 0; i < 5; i++) await unaryOnly.createHold({ requestId: newId(), accountId: twin, generationId: newId(), amount: 10n, ttlMs: 60_000 });
    const [unary] = await Promise.allSettled([unaryOnly.createHold({ requestId: newId(), accountId: twin, generationId: newId(), amount: 95n, ttlMs: 60_000 })]);
    expect(errorOf(settled[5]!)).toEqual(errorOf(unary!));
    expect(errorOf(settled[5]!)).toMatchObject({ reason: "insufficient_credits", details: { requested: "95", available: "50" } });
    // 11 operations: the first went at once (CreateHold), the 10 made meanwhile as one batch.
    expect({ unary: delta(before, after, "CreateHold"), batch: delta(before, after, "BatchCreateHolds") }).toEqual({ unary: 1, batch: 1 });
    expect((await credits.balance(accountId)).heldCredits).toBe(100n);
  });

  it("answers each concurrent capture and release with its own hold or error, in fewer RPCs than operations", async () => {
    const accountId = await credits.createAccount();
    const holds = await Promise.all(
      Array.from({ length: 10 }, () => client.createHold({ requestId: newId(), accountId, generationId: newId(), amount: 5n, ttlMs: 60_000 })),
    );
    const before = await rpcs();
    const captureIds = holds.slice(0, 5).map(() => newId());
    const settled = await Promise.allSettled([
      ...holds.slice(0, 5).map((hold, i) => client.captureHold({ requestId: captureIds[i]!, holdId: hold.id, amount: BigInt(i + 1) })),
      ...holds.slice(5).map((hold) => client.releaseHold({ requestId: newId(), holdId: hold.id, reason: "generation_failed" })),
    ]);
    const answers = settled.map((s) => (s.status === "fulfilled" ? s.value : null));
    expect(answers.map((a) => a?.capturedAmount)).toEqual([1n, 2n, 3n, 4n, 5n, 0n, 0n, 0n, 0n, 0n]);
    expect(answers.map((a) => a?.id)).toEqual(holds.map((h) => h.id));
    const after = await rpcs();
    const sent = ["CaptureHold", "BatchCaptureHolds", "ReleaseHold", "BatchReleaseHolds"].map((m) => delta(before, after, m));
    expect(sent).toEqual([1, 1, 1, 1]); // 10 settlements, 4 RPCs
    // Late settlements of ended holds (and of no hold) fail alone, with the reasons a unary call gives.
    const late = await Promise.allSettled([
      client.releaseHold({ requestId: newId(), holdId: holds[0]!.id, reason: "late" }),
      client.releaseHold({ requestId: newId(), holdId: newId(), reason: "" }),
      client.releaseHold({ requestId: newId(), holdId: holds[1]!.id, reason: "late" }),
      client.captureHold({ requestId: newId(), holdId: holds[6]!.id, amount: 9n }),
    ]);
    expect(late.map((s) => (s.status === "rejected" && s.reason instanceof DomainError ? s.reason.reason : "answered"))).toEqual([
      "hold_not_active",
      "not_found",
      "hold_not_active",
      "hold_not_active",
    ]);
    // A retried capture (its own request id) answers the first answer.
    expect((await client.captureHold({ requestId: captureIds[2]!, holdId: holds[2]!.id, amount: 3n })).capturedAmount).toBe(3n);
    const balance = await credits.balance(accountId);
    expect(balance.availableCredits).toBe(100n - 15n);
    expect(balance.heldCredits).toBe(0n);
  });

  it("sends a lone call at once, unary, with no timer", async () => {
    const accountId = await credits.createAccount();
    const before = await rpcs();
    const counted = client.counts.create_hold.unaryCalls;
    const pending = client.createHold({ requestId: newId(), accountId, generationId: newId(), amount: 3n, ttlMs: 60_000 });
    // Sent in the same tick as the call was made: nothing waited for a window or another caller.
    expect(client.counts.create_hold.unaryCalls).toBe(counted + 1);
    expect((await pending).amount).toBe(3n);
    const after = await rpcs();
    expect({ unary: delta(before, after, "CreateHold"), batch: delta(before, after, "BatchCreateHolds") }).toEqual({ unary: 1, batch: 0 });
  });

  it("rejects every member with the whole call's error when credits is unreachable", async () => {
    const down = new GrpcCreditsClient(`127.0.0.1:${await getFreePort()}`, CALL_TIMEOUT_MS);
    try {
      const settled = await Promise.allSettled(
        Array.from({ length: 4 }, () => down.captureHold({ requestId: newId(), holdId: newId(), amount: 1n })),
      );
      expect(settled.map((s) => (s.status === "rejected" && s.reason instanceof DomainError ? s.reason.reason : "answered"))).toEqual(Array(4).fill("unavailable"));
      expect(down.counts.capture_hold).toEqual({ operations: 4, unaryCalls: 1, batchCalls: 1, batchMembers: 3 });
    } finally {
      down.close();
    }
  });
});
