import { headers as natsHeaders } from "@nats-io/transport-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { events, usage } from "@tally/contracts";
import {
  callUnary,
  connectNats,
  createGrpcClient,
  createLogger,
  generationSubjects,
  newId,
  type NatsConnection,
  type Orm,
} from "@tally/platform";
import { createTestDatabase, testNatsUrl, uniqueSuffix } from "@tally/platform/src/testing";
import { buildUsageServices, startUsageService, type UsageOptions, type UsageService } from "../src/app";
import { usageConfigSchema, type UsageConfig } from "../src/config";
import { parseGetUserStatsInput } from "../src/domain/inputs";
import type { UsageLogEntryDraft } from "../src/domain/types";

/**
 * One test file's world: its own database, stream, subject prefix and durable consumer name,
 * a NATS connection for publishing as the generations service would, and a way to start and
 * stop the usage service in-process.
 */
export interface UsageTestBed {
  config: UsageConfig;
  publisher: NatsConnection;
  subjects: ReturnType<typeof generationSubjects>;
  start(overrides?: Partial<UsageConfig>, options?: UsageOptions): Promise<UsageService>;
  /** Publishes an event exactly as the producer does (`Nats-Msg-Id` = event id unless given, `traceparent`). */
  publishCompleted(event: events.GenerationCompleted, msgId?: string): Promise<void>;
  publishFailed(event: events.GenerationFailed, msgId?: string): Promise<void>;
  publishCancelled(event: events.GenerationCancelled, msgId?: string): Promise<void>;
  publishDownloaded(event: events.GenerationDownloaded, msgId?: string): Promise<void>;
  /** Publishes raw bytes; `headers` replace the generated `traceparent` when given. */
  publishRaw(subject: string, payload: Uint8Array, msgId?: string, headers?: Record<string, string>): Promise<void>;
  /** Stops the services still running, deletes the stream, closes NATS and drops the database. */
  close(): Promise<void>;
}

export async function createUsageTestBed(name: string, overrides: Partial<UsageConfig> = {}): Promise<UsageTestBed> {
  const database = await createTestDatabase(`usage_${name}`);
  const suffix = uniqueSuffix();
  const config = usageConfigSchema.parse({
    DATABASE_URL: database.url,
    GRPC_HOST: "127.0.0.1",
    GRPC_PORT: "0",
    NATS_URL: testNatsUrl(),
    NATS_STREAM: `TEST_USAGE_${suffix}`.toUpperCase(),
    NATS_USAGE_STREAM: `TEST_USAGE_OUT_${suffix}`.toUpperCase(),
    OUTBOX_POLL_INTERVAL_MS: "50",
    NATS_SUBJECT_PREFIX: `test_${suffix}`,
    NATS_CONSUMER: `usage-${suffix}`,
    DATABASE_POOL_MAX: "5",
    LOG_LEVEL: process.env.TALLY_TEST_VERBOSE ? "debug" : "silent",
  });
  Object.assign(config, overrides);
  const logger = createLogger("usage-test", config.LOG_LEVEL);
  const publisher = await connectNats(config.NATS_URL, "usage-test-publisher", logger);
  const js = jetstream(publisher);
  const subjects = generationSubjects(config.NATS_SUBJECT_PREFIX);
  const running = new Set<UsageService>();

  const publishRaw = async (subject: string, payload: Uint8Array, msgId?: string, extraHeaders?: Record<string, string>) => {
    const h = natsHeaders();
    // A W3C traceparent as the producer's outbox relay would send it.
    h.set("traceparent", `00-${newId().replace(/-/g, "")}-${newId().replace(/-/g, "").slice(0, 16)}-01`);
    for (const [key, value] of Object.entries(extraHeaders ?? {})) h.set(key, value);
    await js.publish(subject, payload, { msgID: msgId ?? newId(), headers: h });
  };

  return {
    config,
    publisher,
    subjects,
    async start(extra = {}, options = {}) {
      const service = await startUsageService({ ...config, ...extra }, logger, options);
      running.add(service);
      const stop = service.stop.bind(service);
      service.stop = async () => {
        running.delete(service);
        await stop();
      };
      return service;
    },
    publishCompleted: (event, msgId) => publishRaw(subjects.completed, events.GenerationCompleted.encode(event).finish(), msgId ?? event.eventId),
    publishFailed: (event, msgId) => publishRaw(subjects.failed, events.GenerationFailed.encode(event).finish(), msgId ?? event.eventId),
    publishCancelled: (event, msgId) =>
      publishRaw(generationSubjects(config.NATS_SUBJECT_PREFIX).cancelled, events.GenerationCancelled.encode(event).finish(), msgId ?? event.eventId),
    publishDownloaded: (event, msgId) =>
      publishRaw(subjects.downloaded, events.GenerationDownloaded.encode(event).finish(), msgId ?? event.eventId),
    publishRaw,
    async close() {
      for (const service of [...running]) await service.stop();
      const jsm = await jetstreamManager(publisher);
      await jsm.streams.delete(config.NATS_STREAM).catch(() => undefined);
      await jsm.streams.delete(config.NATS_USAGE_STREAM).catch(() => undefined);
      await publisher.drain();
      await database.drop();
    },
  };
}

/** A GenerationCompleted event for `userId` with defaults. */
export const completedEvent = (userId: string, overrides: Partial<events.GenerationCompleted> = {}): events.GenerationCompleted => ({
  eventId: newId(),
  occurredAt: new Date(),
  userId,
  generationId: newId(),
  inputType: "photo",
  provider: "builtin-renderer",
  credits: 5n,
  costMicros: 125_000n,
  processingTimeMs: 3_000n,
  creditType: "trial",
  outputBytes: 2_048n,
  partialOutput: false,
  billingClassification: "",
  billingReason: "",
  parentGenerationId: "",
  ...overrides,
});

/** A GenerationFailed event for `userId` with defaults. */
export const failedEvent = (userId: string, overrides: Partial<events.GenerationFailed> = {}): events.GenerationFailed => ({
  eventId: newId(),
  occurredAt: new Date(),
  userId,
  generationId: newId(),
  inputType: "text",
  provider: "builtin-renderer",
  credits: 4n,
  costMicros: 9_000n,
  processingTimeMs: 800n,
  errorMessage: "provider returned 500",
  errorCode: "provider_error",
  billingClassification: "",
  billingReason: "",
  parentGenerationId: "",
  ...overrides,
});

/** A gRPC client for the usage service on `port`, with deadlines on every call. */
export function usageClient(port: number) {
  const client = createGrpcClient(usage.UsageServiceClient, `127.0.0.1:${port}`);
  return {
    getUserStats: (userId: string) => callUnary(client.getUserStats.bind(client), { userId }, { timeoutMs: 5_000 }),
    listUsageLogEntries: (request: Partial<usage.ListUsageLogEntriesRequest>) =>
      callUnary(client.listUsageLogEntries.bind(client), { userId: "", pageSize: 0, pageToken: "", ...request }, { timeoutMs: 5_000 }),
    checkAndReserve: (request: usage.CheckAndReserveRequest) => callUnary(client.checkAndReserve.bind(client), request, { timeoutMs: 10_000 }),
    releaseReservation: (generationId: string) => callUnary(client.releaseReservation.bind(client), { generationId, reason: "test" }, { timeoutMs: 5_000 }),
    listLimits: (subject: usage.Subject) => callUnary(client.listLimits.bind(client), { subject }, { timeoutMs: 5_000 }),
    adoptGuest: (guestId: string, user: usage.Subject) => callUnary(client.adoptGuest.bind(client), { guestId, user }, { timeoutMs: 5_000 }),
    reconcile: () => callUnary(client.reconcile.bind(client), {}, { timeoutMs: 30_000 }),
    getUsageTotals: (request: usage.GetUsageTotalsRequest) => callUnary(client.getUsageTotals.bind(client), request, { timeoutMs: 5_000 }),
    getUsageSummary: (subject: usage.Subject, recentCount = 0) => callUnary(client.getUsageSummary.bind(client), { subject, recentCount }, { timeoutMs: 5_000 }),
    close: () => client.close(),
  };
}

/** A user's stats as GetUserStats computes them, read through the service classes over `orm`. */
export const getUserStats = (orm: Orm, userId: string) => buildUsageServices(orm).stats.get(parseGetUserStatsInput({ userId }));

/** The users whose stored stats differ from the usage log (INV-6), for every user or `userId`. */
export const reconcileUserStats = (orm: Orm, userId?: string) => buildUsageServices(orm).stats.reconcile(userId);

/** Records one event exactly as the consumer does (inbox + usage log + stats in one transaction). */
export const recordUsage = (orm: Orm, subject: string, draft: UsageLogEntryDraft) => buildUsageServices(orm).usageLog.record(subject, draft);
