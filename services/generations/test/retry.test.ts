/**
 * RetryGeneration against real PostgreSQL, real NATS, the real credits service (a process) and
 * the real usage service: a retry of a failed job is free up to the plan's free_retries per
 * original job, then charged; a new run of a completed job is charged; concurrent retries
 * never share the last free one; pending, processing and cancelled parents are refused and
 * another user's generation is not found; a replay answers the first retry.
 * Two generations services: one with the worker (fault injection fails the jobs whose prompt
 * carries the marker) and one without (its jobs stay pending).
 */
import { Client } from "pg";
import { events } from "@tally/contracts";
import { DomainError, loadPlanCatalog, newId, openDatabase, type Orm } from "@tally/platform";
import { createTestDatabase, eventually } from "@tally/platform/src/testing";
import { GrpcCreditsClient } from "../src/adapter/credits-client";
import { ProtoEventEncoder } from "../src/adapter/event-encoding";
import { GENERATIONS_MIGRATIONS } from "../src/adapter/migrations";
import { createGenerationsUnitOfWork } from "../src/adapter/unit-of-work";
import { GrpcUsageClient } from "../src/adapter/usage-client";
import { startGenerationsService, type RunningGenerationsService } from "../src/app";
import type { GenerationsConfig } from "../src/config";
import { PROVIDER_ERROR_FAULT_MARKER } from "../src/providers/fault-injection-provider";
import { GenerationsService } from "../src/service/generations";
import { HoldSettlement } from "../src/service/settlement";
import {
  CALL_TIMEOUT_MS,
  deleteStream,
  GenerationStatus,
  generationsClient,
  InputType,
  silentLogger,
  startCredits,
  startUsage,
  testConfig,
  writePlansFile,
  type CreditsUnderTest,
  type UsageUnderTest,
} from "./helpers";

const TRIAL_CREDITS = 50;
const FREE_RETRIES = 2;
const ENDED = [GenerationStatus.GENERATION_STATUS_COMPLETED, GenerationStatus.GENERATION_STATUS_FAILED];
const PLANS = {
  default_plan: "free",
  guest_plan: "guest",
  plans: {
    guest: { trial_credits: 3, limits: { concurrent_generations: 50 } },
    free: { trial_credits: TRIAL_CREDITS, free_retries: FREE_RETRIES, limits: { generations_per_period: 1000, concurrent_generations: 50 } },
  },
};

describe("RetryGeneration", () => {
  let plans: ReturnType<typeof writePlansFile>;
  let creditsService: CreditsUnderTest;
  let usageService: UsageUnderTest;
  const databases: { drop(): Promise<void> }[] = [];
  let config: GenerationsConfig;
  let service: RunningGenerationsService;
  let idleService: RunningGenerationsService;
  let api: ReturnType<typeof generationsClient>;
  let idle: ReturnType<typeof generationsClient>;
  let orm: Orm;
  let workingUrl: string;
  let idleUrl: string;

  beforeAll(async () => {
    plans = writePlansFile(PLANS);
    creditsService = await startCredits(TRIAL_CREDITS, { PLANS_FILE: plans.path });
    usageService = await startUsage({ PLANS_FILE: plans.path });
    const working = await createTestDatabase("generations_retry");
    const idleDatabase = await createTestDatabase("generations_retry_idle");
    databases.push(working, idleDatabase);
    workingUrl = working.url;
    idleUrl = idleDatabase.url;
    config = testConfig(working.url, creditsService.address, usageService, { FAULT_INJECTION_ENABLED: "true", PLANS_FILE: plans.path });
    service = await startGenerationsService(config, silentLogger());
    api = generationsClient(service.grpcPort);
    const idleConfig = testConfig(idleDatabase.url, creditsService.address, usageService, {
      WORKER_ENABLED: "false",
      ACCOUNT_EVENTS_ENABLED: "false",
      PLANS_FILE: plans.path,
    });
    idleService = await startGenerationsService(idleConfig, silentLogger());
    idle = generationsClient(idleService.grpcPort);
    orm = await openDatabase({ url: workingUrl, entities: [], migrations: GENERATIONS_MIGRATIONS, logger: silentLogger() });
  }, 60_000);

  afterAll(async () => {
    api?.close();
    idle?.close();
    await orm?.close();
    await service?.stop();
    await idleService?.stop();
    await usageService?.stop();
    if (config) await deleteStream(config);
    for (const database of databases) await database.drop();
    await creditsService?.stop();
    plans?.remove();
  }, 30_000);

  const waitUntilEnded = (userId: string, id: string) =>
    eventually(async () => {
      const generation = await api.get(userId, id);
      return ENDED.includes(generation.status) ? generation : undefined;
    }, 20_000);

  const reasonOf = async (promise: Promise<unknown>) => {
    try {
      await promise;
    } catch (error) {
      expect(error).toBeInstanceOf(DomainError);
      return (error as DomainError).reason;
    }
    throw new Error("expected the call to fail");
  };

  /** A failed original (the fault marker fails it, and every retry of it, with provider_error). */
  async function failedOriginal(userId: string) {
    const created = await api.create({ userId, inputType: InputType.INPUT_TYPE_TEXT, prompt: `a storm ${PROVIDER_ERROR_FAULT_MARKER}`, style: "ink" });
    const ended = await waitUntilEnded(userId, created.id);
    expect(ended.status).toBe(GenerationStatus.GENERATION_STATUS_FAILED);
    return ended;
  }

  it("makes a retry of a failed job a free retry with its input and parent, holding and charging nothing", async () => {
    const userId = await creditsService.createAccount();
    const original = await failedOriginal(userId);
    expect(original.billingClassification).toBe("original");
    const before = await creditsService.balance(userId);

    const retry = await api.retry(userId, original.id);
    expect(retry).toMatchObject({
      userId,
      status: GenerationStatus.GENERATION_STATUS_PENDING,
      prompt: original.prompt,
      style: "ink",
      inputType: InputType.INPUT_TYPE_TEXT,
      parentGenerationId: original.id,
      billingClassification: "free_retry",
      billingReason: `free retry 1 of ${FREE_RETRIES}`,
      creditCost: 0n,
      holdId: "",
    });
    expect(retry.id).not.toBe(original.id);
    expect((await creditsService.balance(userId)).heldCredits).toBe(0n);
    const ended = await waitUntilEnded(userId, retry.id);
    expect(ended).toMatchObject({ status: GenerationStatus.GENERATION_STATUS_FAILED, billingClassification: "free_retry", parentGenerationId: original.id });
    expect(await creditsService.balance(userId)).toEqual(before);
  }, 60_000);

  it("completes a free retry without charging anything, and its completed event says credits 0", async () => {
    const userId = await creditsService.createAccount();
    // A failed original whose input renders fine (a provider outage failed it), stored as the worker leaves one.
    const originalId = newId();
    const db = new Client({ connectionString: workingUrl });
    await db.connect();
    try {
      await db.query(
        `INSERT INTO generations (id, user_id, status, input_type, prompt, credit_cost, credit_type, hold_id, settlement, settlement_outcome, settlement_rule, credits_released, settled_at, completed_at, error_code)
         VALUES ($1, $2, 'failed', 'text', 'a calm sea', 1, 'trial', 'hold-of-the-original', 'release', 'failed', 'release', 1, now(), now(), 'provider_error')`,
        [originalId, userId],
      );
      const retry = await api.retry(userId, originalId);
      const ended = await waitUntilEnded(userId, retry.id);
      expect(ended).toMatchObject({ status: GenerationStatus.GENERATION_STATUS_COMPLETED, billingClassification: "free_retry", creditCost: 0n, outputContentType: "image/png" });
      expect(await creditsService.balance(userId)).toMatchObject({ heldCredits: 0n, availableCredits: BigInt(TRIAL_CREDITS) });
      const outbox = await db.query<{ payload: Buffer }>("SELECT payload FROM outbox WHERE subject LIKE '%.generation.completed'");
      const event = outbox.rows.map((row) => events.GenerationCompleted.decode(row.payload)).find((candidate) => candidate.generationId === retry.id);
      expect(event).toMatchObject({ credits: 0n, creditType: "", billingClassification: "free_retry", billingReason: `free retry 1 of ${FREE_RETRIES}`, parentGenerationId: originalId });
    } finally {
      await db.end();
    }
  }, 60_000);

  it("counts free retries per original job (a retry of a retry too), then charges, saying why", async () => {
    const userId = await creditsService.createAccount();
    const original = await failedOriginal(userId);
    const first = await api.retry(userId, original.id);
    const second = await api.retry(userId, (await waitUntilEnded(userId, first.id)).id);
    expect(second).toMatchObject({ billingClassification: "free_retry", billingReason: `free retry 2 of ${FREE_RETRIES}`, parentGenerationId: first.id });
    await waitUntilEnded(userId, second.id);
    const before = await creditsService.balance(userId);

    const third = await api.retry(userId, second.id);
    expect(third).toMatchObject({
      billingClassification: "paid_regeneration",
      billingReason: `retry of a failed generation; the ${FREE_RETRIES} free retries of this job are used up`,
      parentGenerationId: second.id,
      creditCost: 1n,
      creditType: 1, // CREDIT_TYPE_TRIAL
    });
    expect(third.holdId).not.toBe("");
    // Charged as usual: a hold was taken (and, as the job fails, released).
    const ended = await waitUntilEnded(userId, third.id);
    expect(ended.status).toBe(GenerationStatus.GENERATION_STATUS_FAILED);
    expect(await creditsService.balance(userId)).toEqual(before);
    // Another failed original has its own free retries.
    const other = await failedOriginal(userId);
    expect((await api.retry(userId, other.id)).billingClassification).toBe("free_retry");
  }, 90_000);

  it("charges a new run of a completed job as a paid regeneration", async () => {
    const userId = await creditsService.createAccount();
    const created = await api.create({ userId, inputType: InputType.INPUT_TYPE_TEXT, prompt: "a lighthouse" });
    const completed = await waitUntilEnded(userId, created.id);
    expect(completed.status).toBe(GenerationStatus.GENERATION_STATUS_COMPLETED);
    const before = await creditsService.balance(userId);

    const regeneration = await api.retry(userId, completed.id);
    expect(regeneration).toMatchObject({
      billingClassification: "paid_regeneration",
      billingReason: "regeneration of a completed generation",
      parentGenerationId: completed.id,
      prompt: "a lighthouse",
      creditCost: 1n,
    });
    const ended = await waitUntilEnded(userId, regeneration.id);
    expect(ended.status).toBe(GenerationStatus.GENERATION_STATUS_COMPLETED);
    const after = await creditsService.balance(userId);
    expect(after.availableCredits).toBe(before.availableCredits - 1n);
    expect(after.heldCredits).toBe(0n);
  }, 60_000);

  it("gives the last free retry to exactly one of many concurrent retries; the others are charged", async () => {
    const userId = await creditsService.createAccount();
    const original = await failedOriginal(userId);
    await api.retry(userId, original.id); // free retry 1 of 2: one left
    const retries = await Promise.all(Array.from({ length: 6 }, () => api.retry(userId, original.id)));
    const free = retries.filter((retry) => retry.billingClassification === "free_retry");
    expect(free).toHaveLength(1);
    expect(free[0]).toMatchObject({ billingReason: `free retry 2 of ${FREE_RETRIES}`, creditCost: 0n, holdId: "" });
    for (const paid of retries.filter((retry) => retry.billingClassification !== "free_retry")) {
      expect(paid).toMatchObject({ billingClassification: "paid_regeneration", creditCost: 1n });
      expect(paid.holdId).not.toBe("");
    }
    for (const retry of retries) await waitUntilEnded(userId, retry.id);
    // Every hold of the failed paid retries was released: nothing stays held.
    expect((await creditsService.balance(userId)).heldCredits).toBe(0n);
  }, 90_000);

  it("never gives the last free retry twice when concurrent retries reach the storing transaction together", async () => {
    const userId = await creditsService.createAccount();
    const original = await failedOriginal(userId);
    await api.retry(userId, original.id); // free retry 1 of 2: one left
    // Every retry decides "free" before any of them stores (the quota reservation waits for all
    // of them), so only the count under the original's row lock can keep the last one single.
    const concurrent = 5;
    let arrived = 0;
    let releaseAll!: () => void;
    const allArrived = new Promise<void>((resolve) => (releaseAll = resolve));
    const realCredits = new GrpcCreditsClient(creditsService.address, CALL_TIMEOUT_MS);
    const realUsage = new GrpcUsageClient(usageService.address, CALL_TIMEOUT_MS);
    try {
      const usagePort = {
        checkAndReserve: async (...args: Parameters<typeof realUsage.checkAndReserve>) => {
          const reservation = await realUsage.checkAndReserve(...args);
          if (++arrived === concurrent) releaseAll();
          await allArrived;
          return reservation;
        },
        releaseReservation: (generationId: string, reason: string) => realUsage.releaseReservation(generationId, reason),
      };
      const uow = createGenerationsUnitOfWork(orm);
      const encoder = new ProtoEventEncoder(config.NATS_SUBJECT_PREFIX);
      const options = {
        pricing: config.PRICING_CREDITS,
        inputLimits: { promptLengthMax: 100, photoUrlLengthMax: 100, addressLengthMax: 100, styleLengthMax: 100 },
        holdTtlMs: 0,
        leaseMs: 60_000,
        plans: loadPlanCatalog(plans.path),
      };
      const logger = silentLogger();
      const retrying = new GenerationsService(uow, { credits: realCredits, usage: usagePort }, new HoldSettlement(uow, realCredits, encoder, logger, options.plans), options, logger, encoder);
      const retries = await Promise.all(
        Array.from({ length: concurrent }, (_, i) => retrying.retry({ requestId: `together-${i}`, userId, generationId: original.id })),
      );
      expect(retries.filter((retry) => retry.billingClassification === "free_retry")).toHaveLength(1);
      const paid = retries.filter((retry) => retry.billingClassification === "paid_regeneration");
      expect(paid).toHaveLength(concurrent - 1);
      for (const retry of paid) expect(retry).toMatchObject({ creditCost: 1n, creditType: "trial" });
      for (const retry of retries) await waitUntilEnded(userId, retry.id);
      expect((await creditsService.balance(userId)).heldCredits).toBe(0n);
    } finally {
      realCredits.close();
      realUsage.close();
    }
  }, 90_000);

  it("refuses a pending or cancelled parent with generation_not_retryable, and another user's as not_found", async () => {
    const userId = await creditsService.createAccount();
    const pending = await idle.create({ userId, inputType: InputType.INPUT_TYPE_TEXT, prompt: "a pending job" });
    expect(await reasonOf(idle.retry(userId, pending.id))).toBe("generation_not_retryable");
    const cancelled = await idle.cancel(userId, (await idle.create({ userId, inputType: InputType.INPUT_TYPE_TEXT, prompt: "to cancel" })).id);
    expect(cancelled.status).toBe(GenerationStatus.GENERATION_STATUS_CANCELLED);
    expect(await reasonOf(idle.retry(userId, cancelled.id))).toBe("generation_not_retryable");
    expect((await idle.list(userId)).totalSize).toBe(2);

    const stranger = await creditsService.createAccount();
    const original = await failedOriginal(userId);
    expect(await reasonOf(api.retry(stranger, original.id))).toBe("not_found");
    expect(await reasonOf(api.retry(userId, "not-a-uuid"))).toBe("not_found");
    expect(await reasonOf(api.retry(userId, original.id, ""))).toBe("validation");
  }, 60_000);

  it("cancels a free retry without calling credits: it is settled at once and nothing was ever held", async () => {
    const userId = await creditsService.createAccount();
    // A failed original stored as the worker leaves one, in the idle database (no worker: the retry stays pending).
    const originalId = newId();
    const db = new Client({ connectionString: idleUrl });
    await db.connect();
    const idleOrm = await openDatabase({ url: idleUrl, entities: [], migrations: GENERATIONS_MIGRATIONS, logger: silentLogger() });
    const realCredits = new GrpcCreditsClient(creditsService.address, CALL_TIMEOUT_MS);
    const realUsage = new GrpcUsageClient(usageService.address, CALL_TIMEOUT_MS);
    const holdCalls: string[] = [];
    try {
      await db.query(
        `INSERT INTO generations (id, user_id, status, input_type, prompt, credit_cost, credit_type, hold_id, settlement, settlement_outcome, settlement_rule, credits_released, settled_at, completed_at)
         VALUES ($1, $2, 'failed', 'text', 'a failed storm', 1, 'trial', 'hold-of-the-original', 'release', 'failed', 'release', 1, now(), now())`,
        [originalId, userId],
      );
      const creditsPort = {
        getAccount: (id: string) => realCredits.getAccount(id),
        createHold: (request: Parameters<typeof realCredits.createHold>[0]) => (holdCalls.push("createHold"), realCredits.createHold(request)),
        captureHold: (request: Parameters<typeof realCredits.captureHold>[0]) => (holdCalls.push("captureHold"), realCredits.captureHold(request)),
        releaseHold: (request: Parameters<typeof realCredits.releaseHold>[0]) => (holdCalls.push("releaseHold"), realCredits.releaseHold(request)),
        extendHold: (request: Parameters<typeof realCredits.extendHold>[0]) => (holdCalls.push("extendHold"), realCredits.extendHold(request)),
      };
      const uow = createGenerationsUnitOfWork(idleOrm);
      const encoder = new ProtoEventEncoder(config.NATS_SUBJECT_PREFIX);
      const options = {
        pricing: config.PRICING_CREDITS,
        inputLimits: { promptLengthMax: 100, photoUrlLengthMax: 100, addressLengthMax: 100, styleLengthMax: 100 },
        holdTtlMs: 0,
        leaseMs: 60_000,
        plans: loadPlanCatalog(plans.path),
      };
      const logger = silentLogger();
      const spied = new GenerationsService(uow, { credits: creditsPort, usage: realUsage }, new HoldSettlement(uow, creditsPort, encoder, logger, options.plans), options, logger, encoder);
      const retry = await spied.retry({ requestId: `free-${originalId}`, userId, generationId: originalId });
      expect(retry).toMatchObject({ billingClassification: "free_retry", holdId: "", creditCost: 0n, status: "pending" });
      const cancelled = await spied.cancel({ requestId: `cancel-${originalId}`, userId, generationId: retry.id });
      expect(cancelled.status).toBe("cancelled");
      expect(holdCalls).toEqual([]);
      const row = await db.query("SELECT settled_at IS NOT NULL AS settled, root_generation_id FROM generations WHERE id = $1", [retry.id]);
      expect(row.rows[0]).toEqual({ settled: true, root_generation_id: originalId });
      expect(await creditsService.balance(userId)).toMatchObject({ heldCredits: 0n, availableCredits: BigInt(TRIAL_CREDITS) });
    } finally {
      await db.end();
      await idleOrm.close();
      realCredits.close();
      realUsage.close();
    }
  }, 60_000);

  it("answers a replay with the first retry, taking nothing again; the same key for another parent is refused", async () => {
    const userId = await creditsService.createAccount();
    const original = await failedOriginal(userId);
    const first = await api.retry(userId, original.id, "retry-key-1");
    expect(first.billingClassification).toBe("free_retry");
    await api.retry(userId, original.id); // takes the last free retry
    const replay = await api.retry(userId, original.id, "retry-key-1");
    expect(replay).toEqual(first);
    const balance = await creditsService.balance(userId);
    expect(balance.heldCredits).toBe(0n);
    expect((await api.list(userId)).totalSize).toBe(3);
    const otherOriginal = await failedOriginal(userId);
    expect(await reasonOf(api.retry(userId, otherOriginal.id, "retry-key-1"))).toBe("idempotency_key_reused");
  }, 60_000);
});
