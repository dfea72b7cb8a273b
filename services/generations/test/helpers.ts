import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { credits, generations, usage } from "@tally/contracts";
import {
  defaultAccountStream,
  callUnary,
  connectNats,
  createGrpcClient,
  createLogger,
  getFreePort,
  spawnService,
  waitForGrpcServing,
  type ServiceProcess,
} from "@tally/platform";
import { createTestDatabase, testNatsUrl, uniqueSuffix } from "@tally/platform/src/testing";
import { startUsageService } from "../../usage/src/app";
import { loadUsageConfig } from "../../usage/src/config";
import { loadGenerationsConfig, type GenerationsConfig } from "../src/config";

/** Deadline of the tests' own gRPC calls, in milliseconds. */
export const CALL_TIMEOUT_MS = 10_000;
/** How long the spawned credits service may take to start, in milliseconds. */
export const CREDITS_START_TIMEOUT_MS = 30_000;

export const silentLogger = () => createLogger("generations-test", process.env.TALLY_TEST_VERBOSE ? "info" : "silent");

/** The real credits service as a child process on its own test database, and a client for it. */
export interface CreditsUnderTest {
  address: string;
  client: credits.CreditsServiceClient;
  /** Creates an account and returns its id (the user id generations works for). */
  createAccount(): Promise<string>;
  balance(accountId: string): Promise<credits.Balance>;
  stop(): Promise<void>;
}

/** The real credits service; `env` adds to its environment (e.g. PLANS_FILE, HOLD_EXPIRY_SWEEP_INTERVAL_MS). */
export async function startCredits(trialCredits: number, env: Record<string, string> = {}): Promise<CreditsUnderTest> {
  const database = await createTestDatabase("gen_credits");
  const port = await getFreePort();
  const address = `127.0.0.1:${port}`;
  let process: ServiceProcess | undefined;
  try {
    process = spawnService("credits", "services/credits/main.ts", {
      DATABASE_URL: database.url,
      GRPC_PORT: String(port),
      GRPC_HOST: "127.0.0.1",
      TRIAL_CREDITS: String(trialCredits),
      // Cheap password hashing: the tests create accounts, they do not test hashing.
      PASSWORD_HASH_MEMORY_KIB: "64",
      PASSWORD_HASH_TIME_COST: "1",
      ...env,
    });
    await waitForGrpcServing(address, CREDITS_START_TIMEOUT_MS);
  } catch (error) {
    await process?.kill();
    await database.drop();
    throw error;
  }
  const client = createGrpcClient(credits.CreditsServiceClient, address);
  const started = process;
  return {
    address,
    client,
    async createAccount() {
      const response = await callUnary(
        client.createAccount.bind(client),
        { requestId: `account-${uniqueSuffix()}`, email: `user-${uniqueSuffix()}@example.com`, password: "correct horse battery", plan: "", role: 0, adoptGuestId: "" },
        { timeoutMs: CALL_TIMEOUT_MS },
      );
      return response.account!.id;
    },
    async balance(accountId) {
      return (await callUnary(client.getBalance.bind(client), { accountId }, { timeoutMs: CALL_TIMEOUT_MS })).balance!;
    },
    async stop() {
      client.close();
      await started.stop();
      await database.drop();
    },
  };
}

/** How long the in-process usage service may take to start, in milliseconds. */
export const USAGE_START_TIMEOUT_MS = 30_000;

/**
 * The real usage service in-process on its own test database, consuming its own stream and
 * subject prefix (a generations config from `testConfig` publishes there), and a client.
 */
export interface UsageUnderTest {
  address: string;
  client: usage.UsageServiceClient;
  natsStream: string;
  natsSubjectPrefix: string;
  /** ListLimits for the subject (the reserved and used counters the tests check). */
  limits(subject: usage.Subject): Promise<usage.ListLimitsResponse>;
  stop(): Promise<void>;
}

/** Starts usage in-process; `env` adds to its environment (e.g. PLANS_FILE, RESERVATION_TTL_MS). */
export async function startUsage(env: Record<string, string> = {}): Promise<UsageUnderTest> {
  const database = await createTestDatabase("gen_usage");
  const suffix = uniqueSuffix();
  const config = loadUsageConfig({
    DATABASE_URL: database.url,
    GRPC_HOST: "127.0.0.1",
    GRPC_PORT: "0",
    NATS_URL: testNatsUrl(),
    NATS_STREAM: `TEST_GENERATIONS_${suffix}`.toUpperCase(),
    NATS_SUBJECT_PREFIX: `test_${suffix}`,
    NATS_STREAM_MAX_AGE_MS: String(10 * 60 * 1000),
    LOG_LEVEL: "silent",
    ...env,
  });
  let running: Awaited<ReturnType<typeof startUsageService>>;
  try {
    running = await startUsageService(config, silentLogger());
  } catch (error) {
    await database.drop();
    throw error;
  }
  const address = `127.0.0.1:${running.grpcPort}`;
  await waitForGrpcServing(address, USAGE_START_TIMEOUT_MS);
  const client = createGrpcClient(usage.UsageServiceClient, address);
  return {
    address,
    client,
    natsStream: config.NATS_STREAM,
    natsSubjectPrefix: config.NATS_SUBJECT_PREFIX,
    limits: (subject) => callUnary(client.listLimits.bind(client), { subject }, { timeoutMs: CALL_TIMEOUT_MS }),
    async stop() {
      client.close();
      await running.stop();
      await database.drop();
    },
  };
}

/** Writes a plans file (PLANS_FILE) for credits and usage to share; `remove` deletes it. */
export function writePlansFile(document: unknown): { path: string; remove(): void } {
  const directory = mkdtempSync(path.join(os.tmpdir(), "tally-plans-"));
  const file = path.join(directory, "plans.json");
  writeFileSync(file, JSON.stringify(document));
  return { path: file, remove: () => rmSync(directory, { recursive: true, force: true }) };
}

/**
 * A generations config for tests: a free port, the usage service's stream and subject prefix
 * (so usage consumes what this service publishes), fast polling.
 */
export function testConfig(
  databaseUrl: string,
  creditsAddress: string,
  usageService: UsageUnderTest,
  overrides: Record<string, string> = {},
): GenerationsConfig {
  return loadGenerationsConfig({
    DATABASE_URL: databaseUrl,
    GRPC_HOST: "127.0.0.1",
    GRPC_PORT: "0",
    CREDITS_GRPC_ADDRESS: creditsAddress,
    USAGE_GRPC_ADDRESS: usageService.address,
    NATS_URL: testNatsUrl(),
    NATS_STREAM: usageService.natsStream,
    NATS_SUBJECT_PREFIX: usageService.natsSubjectPrefix,
    NATS_STREAM_MAX_AGE_MS: String(10 * 60 * 1000),
    WORKER_POLL_INTERVAL_MS: "50",
    OUTBOX_POLL_INTERVAL_MS: "50",
    WORKER_SHUTDOWN_TIMEOUT_MS: "2000",
    GRPC_SHUTDOWN_TIMEOUT_MS: "1000",
    PROVIDER_IMAGE_SIZE_PX: "96",
    LOG_LEVEL: "silent",
    ...overrides,
  });
}

/** A gRPC client for an in-process generations service, with promise-returning calls. */
export function generationsClient(port: number) {
  const client = createGrpcClient(generations.GenerationsServiceClient, `127.0.0.1:${port}`);
  const options = { timeoutMs: CALL_TIMEOUT_MS };
  return {
    client,
    create: (request: Partial<generations.CreateGenerationRequest>) =>
      callUnary(
        client.createGeneration.bind(client),
        generations.CreateGenerationRequest.fromPartial({ requestId: `req-${uniqueSuffix()}`, ...request }),
        options,
      ).then((r) => r.generation!),
    get: (userId: string, generationId: string) =>
      callUnary(client.getGeneration.bind(client), { userId, generationId }, options).then((r) => r.generation!),
    list: (userId: string, limit = 0, offset = 0) => callUnary(client.listGenerations.bind(client), { userId, limit, offset }, options),
    cancel: (userId: string, generationId: string, requestId = `cancel-${uniqueSuffix()}`) =>
      callUnary(client.cancelGeneration.bind(client), { requestId, userId, generationId }, options).then((r) => r.generation!),
    output: (userId: string, generationId: string) =>
      callUnary(client.getGenerationOutput.bind(client), { userId, generationId }, options),
    retry: (userId: string, generationId: string, requestId = `retry-${uniqueSuffix()}`) =>
      callUnary(client.retryGeneration.bind(client), { requestId, userId, generationId }, options).then((r) => r.generation!),
    recordDownload: (userId: string, generationId: string, requestId = `download-${uniqueSuffix()}`) =>
      callUnary(client.recordDownload.bind(client), { requestId, userId, generationId }, options),
    adopt: (guestId: string, userId: string) =>
      callUnary(client.adoptGuestGenerations.bind(client), { guestId, userId }, options).then((r) => r.moved),
    close: () => client.close(),
  };
}

export const { InputType, GenerationStatus } = generations;

/** Deletes the test's JetStream stream (tests leave nothing behind on the shared NATS). */
export async function deleteStream(config: GenerationsConfig): Promise<void> {
  const nc = await connectNats(config.NATS_URL, "generations-test-cleanup", silentLogger());
  try {
    await (await jetstreamManager(nc)).streams.delete(config.NATS_STREAM).catch(() => undefined);
    await (await jetstreamManager(nc)).streams.delete(defaultAccountStream(config.NATS_SUBJECT_PREFIX)).catch(() => undefined);
  } finally {
    await nc.close();
  }
}
