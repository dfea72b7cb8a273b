/**
 * Refund rules by outcome (docs/plans.md, "Refund rules") against real PostgreSQL and the real
 * credits and usage services: each outcome's settlement is decided under the job's plan, stored
 * on the generation, carried by its event and applied at credits (what the ledger captured and
 * released). Jobs are driven through the service's own steps (claim, lease renewal with the
 * provider's spend, outcome, settlement), so each rule is reached deterministically.
 */
import { Client } from "pg";
import { events } from "@tally/contracts";
import { loadPlanCatalog, newId, openDatabase, parsePlanCatalog, type Orm, type PlanCatalog } from "@tally/platform";
import { createTestDatabase } from "@tally/platform/src/testing";
import { GrpcCreditsClient } from "../src/adapter/credits-client";
import { ProtoEventEncoder } from "../src/adapter/event-encoding";
import { GENERATIONS_MIGRATIONS } from "../src/adapter/migrations";
import { createGenerationsUnitOfWork } from "../src/adapter/unit-of-work";
import { GrpcUsageClient } from "../src/adapter/usage-client";
import type { GenerationsUnitOfWork } from "../src/domain/ports";
import type { JobOutcome } from "../src/domain/types";
import { GenerationsService } from "../src/service/generations";
import { JobLeases } from "../src/service/job-leases";
import { HoldSettlement } from "../src/service/settlement";
import { CALL_TIMEOUT_MS, silentLogger, startCredits, startUsage, type CreditsUnderTest, type UsageUnderTest } from "./helpers";

const TRIAL_CREDITS = 40;
/** A photo job holds 4 credits: room for partial captures. */
const PRICING = { text: 1n, photo: 4n, address: 2n };
const RETRY = { attempts: 3, delayMs: 10, stopping: () => false };
const PROVIDER = "test-provider";

/** The built-in catalogue with the free plan's rules replaced (the accounts here are on `free`). */
function catalogWith(free: Record<string, unknown>): PlanCatalog {
  const builtIn = loadPlanCatalog(undefined);
  return parsePlanCatalog({
    default_plan: "free",
    guest_plan: "guest",
    plans: { free: { trial_credits: 10, ...free }, guest: { trial_credits: builtIn.plans.guest!.trialCredits } },
  });
}

describe("refund rules by outcome", () => {
  let database: { url: string; drop(): Promise<void> };
  let orm: Orm;
  let db: Client;
  let uow: GenerationsUnitOfWork;
  let creditsService: CreditsUnderTest;
  let usageService: UsageUnderTest;
  let credits: GrpcCreditsClient;
  let usage: GrpcUsageClient;
  const encoder = new ProtoEventEncoder("test_refunds");
  const logger = silentLogger();

  beforeAll(async () => {
    database = await createTestDatabase("generations_refunds");
    orm = await openDatabase({ url: database.url, entities: [], migrations: GENERATIONS_MIGRATIONS, logger });
    db = new Client({ connectionString: database.url });
    await db.connect();
    uow = createGenerationsUnitOfWork(orm);
    creditsService = await startCredits(TRIAL_CREDITS);
    usageService = await startUsage();
    credits = new GrpcCreditsClient(creditsService.address, CALL_TIMEOUT_MS);
    usage = new GrpcUsageClient(usageService.address, CALL_TIMEOUT_MS);
  }, 60_000);

  afterAll(async () => {
    credits?.close();
    usage?.close();
    await creditsService?.stop();
    await usageService?.stop();
    await db?.end();
    await orm?.close();
    await database?.drop();
  }, 30_000);

  /** A service, its settlement and its leases under `plans`. */
  function build(plans: PlanCatalog) {
    const settlement = new HoldSettlement(uow, credits, encoder, logger, plans);
    const options = {
      pricing: PRICING,
      inputLimits: { promptLengthMax: 200, photoUrlLengthMax: 200, addressLengthMax: 200, styleLengthMax: 200 },
      holdTtlMs: 0,
      leaseMs: 60_000,
      plans,
    };
    const service = new GenerationsService(uow, { credits, usage }, settlement, options, logger, encoder);
    return { service, settlement, leases: new JobLeases(uow, 60_000) };
  }

  /** A new account's photo job (4 credits held), as CreateGeneration makes it. */
  async function newJob(service: GenerationsService) {
    const userId = await creditsService.createAccount();
    const created = await service.create({ requestId: `req-${newId()}`, userId, inputType: "photo", prompt: "", photoUrl: "https://example.com/p.png", address: "", style: "" });
    return { userId, generationId: created.id };
  }

  /** Claims the one pending job (it becomes processing) and reports `spentMicros` through a lease renewal, as a running worker does. */
  async function start(leases: JobLeases, generationId: string, spentMicros = 0n) {
    const claimed = (await leases.claim(100, PROVIDER)).find((job) => job.generation.id === generationId);
    expect(claimed).toBeDefined();
    if (spentMicros > 0n) expect(await leases.renew(claimed!, 30, spentMicros)).toBe(true);
    return claimed!;
  }

  /** Ends a claimed job with `outcome` through the worker's two steps; returns the stored generation. */
  async function end(parts: ReturnType<typeof build>, claimed: Awaited<ReturnType<typeof start>>, outcome: JobOutcome) {
    const settlement = await parts.settlement.recordOutcome(claimed, outcome);
    expect(settlement).not.toBeNull();
    // Redone as a worker taking over a crashed settlement would: charged once.
    await parts.settlement.settle(claimed.generation, settlement!, null, RETRY);
    await parts.settlement.settle(claimed.generation, settlement!, null, RETRY);
    return row(claimed.generation.id);
  }

  const row = async (id: string) =>
    (
      await db.query(
        `SELECT status, settlement, settlement_outcome, settlement_rule, credits_captured::int AS captured, credits_released::int AS released,
                partial_output, plan, credit_price_micros::int AS price, spent_micros::int AS spent, settled_at IS NOT NULL AS settled
           FROM generations WHERE id = $1`,
        [id],
      )
    ).rows[0];

  /** The last event the job appended to the outbox, decoded. */
  async function eventOf(id: string) {
    const { rows } = await db.query("SELECT subject, payload FROM outbox ORDER BY id DESC");
    for (const r of rows) {
      const decode = r.subject.endsWith("completed") ? events.GenerationCompleted : r.subject.endsWith("failed") ? events.GenerationFailed : events.GenerationCancelled;
      const event = decode.decode(r.payload);
      if (event.generationId === id) return event;
    }
    throw new Error(`no event for ${id}`);
  }

  const balance = (userId: string) => creditsService.balance(userId);
  const completed = (partial: boolean, costMicros = 1_000n): JobOutcome => ({
    kind: "completed",
    content: new Uint8Array([1, 2, 3]),
    contentType: "image/png",
    costMicros,
    processingTimeMs: 10n,
    partial,
  });
  const failed = (costMicros = 0n): JobOutcome => ({ kind: "failed", errorMessage: "provider said no", errorCode: "provider_error", costMicros, processingTimeMs: 10n });

  it("snapshots the plan and its price per credit on the job", async () => {
    const parts = build(loadPlanCatalog(undefined));
    const { generationId } = await newJob(parts.service);
    expect(await row(generationId)).toMatchObject({ plan: "free", price: 10_000, settlement: null, settlement_outcome: null });
  });

  it("cancelled before start: the whole hold is released", async () => {
    const parts = build(loadPlanCatalog(undefined));
    const { userId, generationId } = await newJob(parts.service);
    const cancelled = await parts.service.cancel({ requestId: newId(), userId, generationId });
    expect(cancelled.settlement).toEqual({ outcome: "cancelled_before_start", rule: "release", creditsCaptured: 0n, creditsReleased: 4n });
    expect(await row(generationId)).toMatchObject({ status: "cancelled", settlement: "release", captured: 0, released: 4, settled: true });
    expect(await balance(userId)).toMatchObject({ availableCredits: 40n, heldCredits: 0n });
    const event = (await eventOf(generationId)) as events.GenerationCancelled;
    expect(event.settlement).toMatchObject({ outcome: "cancelled_before_start", rule: "release", creditsCaptured: 0n, creditsReleased: 4n, revenueMicros: 0n });
  });

  it("cancelled while processing: the measured spend at the plan's rate is captured (rounded up, capped at the hold), the rest released", async () => {
    const parts = build(loadPlanCatalog(undefined));
    const { userId, generationId } = await newJob(parts.service);
    await start(parts.leases, generationId, 15_000n); // 1.5 credits at 10,000 micros a credit
    const cancelled = await parts.service.cancel({ requestId: newId(), userId, generationId });
    expect(cancelled.settlement).toEqual({ outcome: "cancelled_while_processing", rule: "capture_spent", creditsCaptured: 2n, creditsReleased: 2n });
    expect(await row(generationId)).toMatchObject({ status: "cancelled", settlement: "capture", captured: 2, released: 2, spent: 15_000, settled: true });
    expect(await balance(userId)).toMatchObject({ availableCredits: 38n, heldCredits: 0n });
    const event = (await eventOf(generationId)) as events.GenerationCancelled;
    expect(event).toMatchObject({ credits: 4n, costMicros: 15_000n, provider: PROVIDER });
    expect(event.settlement).toMatchObject({ creditsCaptured: 2n, creditsReleased: 2n, plan: "free", creditPriceMicros: 10_000n, revenueMicros: 20_000n });

    // A spend beyond the hold's worth captures the hold, no more.
    const big = await newJob(parts.service);
    await start(parts.leases, big.generationId, 1_000_000n);
    expect((await parts.service.cancel({ requestId: newId(), userId: big.userId, generationId: big.generationId })).settlement).toMatchObject({ creditsCaptured: 4n, creditsReleased: 0n });
    expect(await balance(big.userId)).toMatchObject({ availableCredits: 36n });
  });

  it("a completed job captures the whole hold; a partial output captures the plan's fraction (rounded down)", async () => {
    const parts = build(loadPlanCatalog(undefined));
    const whole = await newJob(parts.service);
    expect(await end(parts, await start(parts.leases, whole.generationId), completed(false))).toMatchObject({ status: "completed", settlement_rule: "capture", captured: 4, released: 0 });
    expect(await balance(whole.userId)).toMatchObject({ availableCredits: 36n, heldCredits: 0n });

    const partial = await newJob(parts.service);
    expect(await end(parts, await start(parts.leases, partial.generationId), completed(true))).toMatchObject({
      status: "completed",
      partial_output: true,
      settlement_outcome: "partial_output",
      settlement_rule: "capture_fraction",
      captured: 2,
      released: 2,
    });
    expect(await balance(partial.userId)).toMatchObject({ availableCredits: 38n, heldCredits: 0n });
    const event = (await eventOf(partial.generationId)) as events.GenerationCompleted;
    expect(event).toMatchObject({ credits: 2n, partialOutput: true });
    expect(event.settlement).toMatchObject({ outcome: "partial_output", rule: "capture_fraction", creditsCaptured: 2n, creditsReleased: 2n, revenueMicros: 20_000n });

    const thirds = build(catalogWith({ credit_price_micros: 10_000, refund_rules: { partial_output: { capture_fraction: 0.3 } } }));
    const third = await newJob(thirds.service);
    expect(await end(thirds, await start(thirds.leases, third.generationId), completed(true))).toMatchObject({ captured: 1, released: 3 }); // ⌊0.3 × 4⌋
  });

  it("a provider failure releases everything by default; a plan may capture the spend instead", async () => {
    const parts = build(loadPlanCatalog(undefined));
    const plain = await newJob(parts.service);
    expect(await end(parts, await start(parts.leases, plain.generationId, 5_000n), failed())).toMatchObject({
      status: "failed",
      settlement: "release",
      settlement_outcome: "failed",
      settlement_rule: "release",
      captured: 0,
      released: 4,
    });
    expect(await balance(plain.userId)).toMatchObject({ availableCredits: 40n, heldCredits: 0n });

    const strict = build(catalogWith({ credit_price_micros: 10_000, refund_rules: { failed: "capture_spent" } }));
    const charged = await newJob(strict.service);
    // The outcome's own cost (the spend reported before failing) counts when it is the larger.
    expect(await end(strict, await start(strict.leases, charged.generationId, 5_000n), failed(12_000n))).toMatchObject({
      status: "failed",
      settlement: "capture",
      settlement_rule: "capture_spent",
      captured: 2,
      released: 2,
    });
    expect(await balance(charged.userId)).toMatchObject({ availableCredits: 38n, heldCredits: 0n });
    const event = (await eventOf(charged.generationId)) as events.GenerationFailed;
    expect(event.settlement).toMatchObject({ outcome: "failed", rule: "capture_spent", creditsCaptured: 2n, creditsReleased: 2n });
  });

  it("capture_spent captures nothing on a plan with no price; the job keeps the price it was sold at", async () => {
    const unpriced = build(catalogWith({ refund_rules: { cancelled_while_processing: "capture_spent" } }));
    const job = await newJob(unpriced.service);
    await start(unpriced.leases, job.generationId, 50_000n);
    expect((await unpriced.service.cancel({ requestId: newId(), userId: job.userId, generationId: job.generationId })).settlement).toMatchObject({
      rule: "capture_spent",
      creditsCaptured: 0n,
      creditsReleased: 4n,
    });
    expect(await balance(job.userId)).toMatchObject({ availableCredits: 40n });

    // Created at 10,000 a credit; the plan's price changes to 1,000 before the cancel: 15,000 spent is still 2 credits.
    const sold = build(loadPlanCatalog(undefined));
    const later = await newJob(sold.service);
    const repriced = build(catalogWith({ credit_price_micros: 1_000 }));
    await start(repriced.leases, later.generationId, 15_000n);
    expect((await repriced.service.cancel({ requestId: newId(), userId: later.userId, generationId: later.generationId })).settlement).toMatchObject({ creditsCaptured: 2n });
  });
});
