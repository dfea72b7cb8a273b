/**
 * CreateGeneration under plan limits, against real PostgreSQL, real NATS, the real credits
 * service (spawned) and the real usage service (in-process): a refusal by a limit holds
 * nothing; a failed or cancelled job gives back its quota and its credits; a crash between
 * any two steps of a create leaves nothing reserved or held once the reservation and the hold
 * have expired. A tiny plans file (shared by credits and usage) makes the limits bite early.
 */
import { usage } from "@tally/contracts";
import { callUnary, DomainError, loadPlanCatalog, newId, openDatabase, type Orm } from "@tally/platform";
import { createTestDatabase, eventually } from "@tally/platform/src/testing";
import { GrpcCreditsClient } from "../src/adapter/credits-client";
import { ProtoEventEncoder } from "../src/adapter/event-encoding";
import { GENERATIONS_MIGRATIONS } from "../src/adapter/migrations";
import { createGenerationsUnitOfWork } from "../src/adapter/unit-of-work";
import { GrpcUsageClient } from "../src/adapter/usage-client";
import { startGenerationsService, type RunningGenerationsService } from "../src/app";
import type { GenerationsConfig } from "../src/config";
import type { CreditsPort, GenerationsUnitOfWork, UsagePort } from "../src/domain/ports";
import type { GenerationJob } from "../src/domain/types";
import { PROVIDER_ERROR_FAULT_MARKER } from "../src/providers/fault-injection-provider";
import { LocalFractalRenderer } from "../src/providers/local-fractal-renderer";
import type { GenerationProvider, ProviderOutput, ProviderRunContext } from "../src/providers/provider";
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

const TRIAL_CREDITS = 10;
const PERIOD_LIMIT = 3;
const PLANS = {
  default_plan: "free",
  guest_plan: "guest",
  plans: {
    guest: { trial_credits: 3, limits: { generations_per_day: 3, concurrent_generations: 2 } },
    free: { trial_credits: TRIAL_CREDITS, limits: { generations_per_period: PERIOD_LIMIT, concurrent_generations: 10 } },
  },
};
/** Short lifetimes so that what a crash leaves behind expires within the test. */
const RESERVATION_TTL_MS = 1_500;
const HOLD_TTL_MS = 1_500;
const EXPIRY_WAIT_MS = 15_000;
/** A job whose prompt carries this marker runs until it is cancelled. */
const BLOCK_MARKER = "[block]";

/** Renders for real, except that a job marked BLOCK_MARKER waits until the worker aborts it (a cancel). */
class BlockingProvider implements GenerationProvider {
  readonly name = "local-fractal";
  private readonly renderer = new LocalFractalRenderer({ imageSizePx: 32, iterationsMax: 32, rowsPerChunk: 8, costMicrosPerCpuSecond: 20_000, renderThreads: 2 });

  async generate(job: GenerationJob, context: ProviderRunContext): Promise<ProviderOutput> {
    if (!job.prompt.includes(BLOCK_MARKER)) return this.renderer.generate(job, context);
    await new Promise((resolve) => context.signal.addEventListener("abort", resolve, { once: true }));
    throw new Error("aborted");
  }

  close(): Promise<void> {
    return this.renderer.close();
  }
}

/** Stands for the process dying at a step: nothing after it runs, no best-effort give-back either. */
class Crash extends Error {}

describe("generations under plan limits", () => {
  let plansFile: ReturnType<typeof writePlansFile>;
  let creditsService: CreditsUnderTest;
  let usageService: UsageUnderTest;
  let database: { url: string; drop(): Promise<void> };
  let config: GenerationsConfig;
  let service: RunningGenerationsService;
  let api: ReturnType<typeof generationsClient>;
  let orm: Orm;

  beforeAll(async () => {
    plansFile = writePlansFile(PLANS);
    creditsService = await startCredits(TRIAL_CREDITS, { PLANS_FILE: plansFile.path, HOLD_EXPIRY_SWEEP_INTERVAL_MS: "100" });
    usageService = await startUsage({ PLANS_FILE: plansFile.path, RESERVATION_TTL_MS: String(RESERVATION_TTL_MS), RESERVATION_EXPIRY_INTERVAL_MS: "100" });
    database = await createTestDatabase("generations_limits");
    config = testConfig(database.url, creditsService.address, usageService, { FAULT_INJECTION_ENABLED: "true" });
    service = await startGenerationsService(config, silentLogger(), { provider: new BlockingProvider() });
    api = generationsClient(service.grpcPort);
    orm = await openDatabase({ url: database.url, entities: [], migrations: GENERATIONS_MIGRATIONS, logger: silentLogger() });
  }, 90_000);

  afterAll(async () => {
    api?.close();
    await orm?.close();
    await service?.stop();
    await usageService?.stop();
    if (config) await deleteStream(config);
    await database?.drop();
    await creditsService?.stop();
    plansFile?.remove();
  }, 30_000);

  /** The user's subject of limits, as generations sends it (plan and anchor from credits). */
  const subjectOf = async (userId: string): Promise<usage.Subject> => {
    const { account } = await callUnary(creditsService.client.getAccount.bind(creditsService.client), { accountId: userId }, { timeoutMs: CALL_TIMEOUT_MS });
    return { id: userId, kind: usage.SubjectKind.SUBJECT_KIND_USER, plan: account!.plan, periodAnchor: account!.currentPeriodStart };
  };
  /** used and reserved of generations_per_period. */
  const periodUsage = async (userId: string) => {
    const limit = (await usageService.limits(await subjectOf(userId))).limits.find((l) => l.name === "generations_per_period");
    return { used: Number(limit!.used), reserved: Number(limit!.reserved) };
  };
  const untilPeriodUsage = (userId: string, expected: { used: number; reserved: number }, timeoutMs = 10_000) =>
    eventually(async () => {
      const current = await periodUsage(userId);
      return current.used === expected.used && current.reserved === expected.reserved ? current : undefined;
    }, timeoutMs);
  const untilBalance = (userId: string, held: bigint, available: bigint, timeoutMs = 10_000) =>
    eventually(async () => {
      const balance = await creditsService.balance(userId);
      return balance.heldCredits === held && balance.availableCredits === available ? balance : undefined;
    }, timeoutMs);
  const untilStatus = (userId: string, id: string, statuses: number[]) =>
    eventually(async () => {
      const generation = await api.get(userId, id);
      return statuses.includes(generation.status) ? generation : undefined;
    }, 20_000);

  it("reserves quota for a job and counts it as used once it completes", async () => {
    const userId = await creditsService.createAccount();
    const created = await api.create({ userId, inputType: InputType.INPUT_TYPE_TEXT, prompt: "a lighthouse" });
    await untilStatus(userId, created.id, [GenerationStatus.GENERATION_STATUS_COMPLETED]);
    await untilPeriodUsage(userId, { used: 1, reserved: 0 });
    await untilBalance(userId, 0n, BigInt(TRIAL_CREDITS - 1));
  });

  it("gives back the quota and the credits of a job that fails", async () => {
    const userId = await creditsService.createAccount();
    const created = await api.create({ userId, inputType: InputType.INPUT_TYPE_TEXT, prompt: `a cat ${PROVIDER_ERROR_FAULT_MARKER}` });
    await untilStatus(userId, created.id, [GenerationStatus.GENERATION_STATUS_FAILED]);
    await untilPeriodUsage(userId, { used: 0, reserved: 0 });
    await untilBalance(userId, 0n, BigInt(TRIAL_CREDITS));
  });

  it("gives back the quota and the credits of a job that is cancelled", async () => {
    const userId = await creditsService.createAccount();
    const created = await api.create({ userId, inputType: InputType.INPUT_TYPE_TEXT, prompt: `a dog ${BLOCK_MARKER}` });
    expect(await periodUsage(userId)).toEqual({ used: 0, reserved: 1 });
    await untilStatus(userId, created.id, [GenerationStatus.GENERATION_STATUS_PROCESSING]);
    expect((await api.cancel(userId, created.id)).status).toBe(GenerationStatus.GENERATION_STATUS_CANCELLED);
    await untilPeriodUsage(userId, { used: 0, reserved: 0 });
    await untilBalance(userId, 0n, BigInt(TRIAL_CREDITS));
  });

  it("refuses a user over a limit with plan_limit_exceeded and its details, holding nothing for it", async () => {
    const userId = await creditsService.createAccount();
    const running = [];
    for (let i = 0; i < PERIOD_LIMIT; i++) running.push(await api.create({ userId, inputType: InputType.INPUT_TYPE_TEXT, prompt: `job ${i} ${BLOCK_MARKER}` }));
    expect(await creditsService.balance(userId)).toMatchObject({ heldCredits: BigInt(PERIOD_LIMIT) });

    const error = await api.create({ userId, inputType: InputType.INPUT_TYPE_TEXT, prompt: "one too many" }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DomainError);
    const { reason, details } = error as DomainError;
    expect(reason).toBe("plan_limit_exceeded");
    expect({ ...details, used: String(details.used), reserved: String(details.reserved), limit: String(details.limit) }).toMatchObject({
      limit_name: "generations_per_period",
      plan: "free",
      used: "0",
      reserved: String(PERIOD_LIMIT),
      limit: String(PERIOD_LIMIT),
      period_start: expect.any(String),
      resets_at: expect.any(String),
    });
    // Nothing held and nothing stored for the refused request.
    expect(await creditsService.balance(userId)).toMatchObject({ heldCredits: BigInt(PERIOD_LIMIT), availableCredits: BigInt(TRIAL_CREDITS - PERIOD_LIMIT) });
    expect((await api.list(userId)).totalSize).toBe(PERIOD_LIMIT);

    // A cancel gives the quota back: the next request is allowed.
    await api.cancel(userId, running[0]!.id);
    await untilPeriodUsage(userId, { used: 0, reserved: PERIOD_LIMIT - 1 });
    running.push(await api.create({ userId, inputType: InputType.INPUT_TYPE_TEXT, prompt: `after a cancel ${BLOCK_MARKER}` }));
    for (const job of running.slice(1)) await api.cancel(userId, job.id);
    await untilPeriodUsage(userId, { used: 0, reserved: 0 });
  });

  /** A service over the real adapters whose steps `crash` (or fail) as told. */
  const serviceWith = (steps: { credits?: Partial<CreditsPort>; usage?: Partial<UsagePort>; uow?: Partial<GenerationsUnitOfWork> }) => {
    const realCredits = new GrpcCreditsClient(creditsService.address, CALL_TIMEOUT_MS);
    const realUsage = new GrpcUsageClient(usageService.address, CALL_TIMEOUT_MS);
    const creditsPort: CreditsPort = {
      getAccount: (id) => realCredits.getAccount(id),
      createHold: (request) => realCredits.createHold(request),
      captureHold: (request) => realCredits.captureHold(request),
      releaseHold: (request) => realCredits.releaseHold(request),
      extendHold: (request) => realCredits.extendHold(request),
      ...steps.credits,
    };
    const usagePort: UsagePort = {
      checkAndReserve: (subject, generationId, amount) => realUsage.checkAndReserve(subject, generationId, amount),
      releaseReservation: (generationId, reason) => realUsage.releaseReservation(generationId, reason),
      ...steps.usage,
    };
    const realUow = createGenerationsUnitOfWork(orm);
    const uow: GenerationsUnitOfWork = { inTransaction: (work) => realUow.inTransaction(work), withoutTransaction: (work) => realUow.withoutTransaction(work), ...steps.uow };
    const encoder = new ProtoEventEncoder(config.NATS_SUBJECT_PREFIX);
    const options = {
      pricing: config.PRICING_CREDITS,
      inputLimits: { promptLengthMax: 100, photoUrlLengthMax: 100, addressLengthMax: 100, styleLengthMax: 100 },
      holdTtlMs: HOLD_TTL_MS,
      leaseMs: 60_000,
      plans: loadPlanCatalog(undefined),
    };
    const logger = silentLogger();
    const created = new GenerationsService(uow, { credits: creditsPort, usage: usagePort }, new HoldSettlement(uow, creditsPort, encoder, logger, options.plans), options, logger, encoder);
    return { service: created, close: () => (realCredits.close(), realUsage.close()) };
  };
  const createWith = (target: GenerationsService, userId: string) =>
    target.create({ requestId: `req-${newId()}`, userId, inputType: "text", prompt: "a crash", photoUrl: "", address: "", style: "" });
  const dead = async () => {
    throw new Crash("the process is gone");
  };

  it("gives back the hold and the reservation at once when the job cannot be stored", async () => {
    const userId = await creditsService.createAccount();
    const failing = serviceWith({ uow: { inTransaction: async () => Promise.reject(new Error("database refused the insert")) } });
    try {
      await expect(createWith(failing.service, userId)).rejects.toThrow(/refused the insert/);
      expect(await periodUsage(userId)).toEqual({ used: 0, reserved: 0 });
      expect(await creditsService.balance(userId)).toMatchObject({ heldCredits: 0n, availableCredits: BigInt(TRIAL_CREDITS) });
    } finally {
      failing.close();
    }
  });

  it("leaves nothing reserved after the reservation's expiry when the process dies between reservation and hold", async () => {
    const userId = await creditsService.createAccount();
    const crashing = serviceWith({ credits: { createHold: dead, releaseHold: dead }, usage: { releaseReservation: dead } });
    try {
      await expect(createWith(crashing.service, userId)).rejects.toBeInstanceOf(Crash);
      expect(await periodUsage(userId)).toEqual({ used: 0, reserved: 1 });
      expect(await creditsService.balance(userId)).toMatchObject({ heldCredits: 0n });
      await untilPeriodUsage(userId, { used: 0, reserved: 0 }, EXPIRY_WAIT_MS);
    } finally {
      crashing.close();
    }
  });

  it("leaves nothing reserved or held after their expiry when the process dies between hold and insert", async () => {
    const userId = await creditsService.createAccount();
    const crashing = serviceWith({ credits: { releaseHold: dead }, usage: { releaseReservation: dead }, uow: { inTransaction: dead } });
    try {
      await expect(createWith(crashing.service, userId)).rejects.toBeInstanceOf(Crash);
      expect(await periodUsage(userId)).toEqual({ used: 0, reserved: 1 });
      expect(await creditsService.balance(userId)).toMatchObject({ heldCredits: 1n });
      await untilPeriodUsage(userId, { used: 0, reserved: 0 }, EXPIRY_WAIT_MS);
      await untilBalance(userId, 0n, BigInt(TRIAL_CREDITS), EXPIRY_WAIT_MS);
    } finally {
      crashing.close();
    }
  });

  it("adopts a guest's generations over gRPC, once, and refuses malformed ids", async () => {
    const guestId = await creditsService.createAccount();
    const userId = await creditsService.createAccount();
    const created = await api.create({ userId: guestId, inputType: InputType.INPUT_TYPE_TEXT, prompt: "a guest's cat" });
    expect(await api.adopt(guestId, userId)).toBe(1);
    expect(await api.adopt(guestId, userId)).toBe(0);
    expect((await api.get(userId, created.id)).userId).toBe(userId);
    await expect(api.adopt("not-a-uuid", userId)).rejects.toMatchObject({ reason: "validation" });
    await expect(api.adopt(guestId, "")).rejects.toMatchObject({ reason: "validation" });
  });
});
