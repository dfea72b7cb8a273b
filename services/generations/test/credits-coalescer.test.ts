/**
 * The generations service's credits client with settlement coalescing on
 * (CREDITS_SETTLE_COALESCE_WINDOW_MS): concurrent captures and releases go to the real credits
 * service as batch calls, and each caller still gets its own hold or its own error.
 */
import { DomainError, getFreePort, newId } from "@tally/platform";
import { GrpcCreditsClient } from "../src/adapter/credits-client";
import { startCredits, type CreditsUnderTest } from "./helpers";

describe("generations credits client, settlements coalesced (real credits service)", () => {
  let credits: CreditsUnderTest;
  let client: GrpcCreditsClient;
  let metricsPort: number;
  beforeAll(async () => {
    metricsPort = await getFreePort();
    credits = await startCredits(100, { METRICS_PORT: String(metricsPort), METRICS_HOST: "127.0.0.1" });
    client = new GrpcCreditsClient(credits.address, 15_000, 20);
  });
  afterAll(async () => {
    client.close();
    await credits.stop();
  });

  it("answers each coalesced capture and release with its own hold or error", async () => {
    const accountId = await credits.createAccount();
    const holds = await Promise.all(
      Array.from({ length: 10 }, () => client.createHold({ requestId: newId(), accountId, generationId: newId(), amount: 5n, ttlMs: 60_000 })),
    );
    const captureIds = holds.slice(0, 5).map(() => newId());
    const settled = await Promise.allSettled([
      ...holds.slice(0, 5).map((hold, i) => client.captureHold({ requestId: captureIds[i]!, holdId: hold.id, amount: BigInt(i + 1) })),
      ...holds.slice(5).map((hold) => client.releaseHold({ requestId: newId(), holdId: hold.id, reason: "generation_failed" })),
    ]);
    const answers = settled.map((s) => (s.status === "fulfilled" ? s.value : null));
    expect(answers.map((a) => a?.capturedAmount)).toEqual([1n, 2n, 3n, 4n, 5n, 0n, 0n, 0n, 0n, 0n]);
    expect(answers.map((a) => a?.id)).toEqual(holds.map((h) => h.id));
    // The two late settlements of ended holds fail alone, with the reasons a unary call gives.
    const late = await Promise.allSettled([
      client.releaseHold({ requestId: newId(), holdId: holds[0]!.id, reason: "late" }),
      client.captureHold({ requestId: newId(), holdId: holds[6]!.id, amount: 9n }),
      client.releaseHold({ requestId: newId(), holdId: newId(), reason: "" }),
    ]);
    const errors = late.map((s) => (s.status === "rejected" && s.reason instanceof DomainError ? s.reason.reason : "answered"));
    expect(errors).toEqual(["hold_not_active", "hold_not_active", "not_found"]);
    // A retried capture (its own request id) answers the first answer.
    expect((await client.captureHold({ requestId: captureIds[2]!, holdId: holds[2]!.id, amount: 3n })).capturedAmount).toBe(3n);
    // They went as batch calls, not one call each.
    const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const calls = (method: string) =>
      [...metrics.matchAll(new RegExp(`grpc_server_handled_total\\{[^}]*method="${method}"[^}]*\\} (\\d+)`, "gi"))].reduce((sum, m) => sum + Number(m[1]), 0);
    expect({ capture: calls("CaptureHold"), release: calls("ReleaseHold") }).toEqual({ capture: 0, release: 0 });
    expect(calls("BatchCaptureHolds")).toBeGreaterThanOrEqual(1);
    expect(calls("BatchReleaseHolds")).toBeGreaterThanOrEqual(1);
    const balance = await credits.balance(accountId);
    expect(balance.availableCredits).toBe(100n - 15n);
    expect(balance.heldCredits).toBe(0n);
  });
});
