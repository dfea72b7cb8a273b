import { generations, PROTO_FILES, PROTO_ROOT } from "@tally/contracts";
import {
  bindService,
  connectNats,
  defaultAccountStream,
  ensureStream,
  generationSubjects,
  JetStreamEventPublisher,
  openDatabase,
  loadPlanCatalog,
  OutboxRelay,
  registerDatabasePoolGauges,
  registerOutboxGauges,
  registerSqlGauge,
  ServiceMetrics,
  startGrpcServer,
  type Logger,
  type NatsConnection,
  type Orm,
  type RunningGrpcServer,
} from "@tally/platform";
import { creditsBatchWindowMs, type GenerationsConfig } from "./config";
import { GrpcCreditsClient } from "./adapter/credits-client";
import { GrpcUsageClient } from "./adapter/usage-client";
import { ProtoEventEncoder } from "./adapter/event-encoding";
import { GENERATIONS_MIGRATIONS } from "./adapter/migrations";
import { createGenerationsUnitOfWork } from "./adapter/unit-of-work";
import { GenerationNotificationListener } from "./adapter/generation-notifications";
import { generationsHandlers } from "./grpc/handlers";
import { FaultInjectionProvider } from "./providers/fault-injection-provider";
import { LocalFractalRenderer } from "./providers/local-fractal-renderer";
import type { GenerationProvider } from "./providers/provider";
import { AccountEventConsumer } from "./runners/account-event-consumer";
import { GenerationWorker } from "./runners/generation-worker";
import { ErasureService } from "./service/erasure";
import { GenerationWatchHub } from "./service/generation-watch";
import { GenerationsService } from "./service/generations";
import { JobLeases } from "./service/job-leases";
import { HoldKeeper } from "./service/hold-keeper";
import { HoldSettlement } from "./service/settlement";
import type { CreditsPort } from "./domain/ports";

const SERVICE_NAME = "tally.generations.v1.GenerationsService";

export interface StartOptions {
  /** Replaces the built-in provider (tests count invocations with it). Fault injection still wraps it when enabled. */
  provider?: GenerationProvider;
}

export interface RunningGenerationsService {
  grpcPort: number;
  /** The `/metrics` port, when METRICS_PORT is set. */
  metricsPort?: number;
  /** The outbox relay (tests read its counters). */
  relay: OutboxRelay;
  /** The worker, when WORKER_ENABLED. */
  worker: GenerationWorker | undefined;
  /** Graceful stop: no new calls or claims, running jobs finish or go back to their lease, relay stops, connections close. */
  stop(): Promise<void>;
}

/** The configured provider: LocalFractalRenderer, wrapped by FaultInjectionProvider when enabled. */
export function createProvider(config: GenerationsConfig, override?: GenerationProvider): GenerationProvider {
  const base =
    override ??
    new LocalFractalRenderer({
      imageSizePx: config.PROVIDER_IMAGE_SIZE_PX,
      iterationsMax: config.PROVIDER_FRACTAL_ITERATIONS_MAX,
      rowsPerChunk: config.PROVIDER_ROWS_PER_CHUNK,
      costMicrosPerCpuSecond: config.PROVIDER_COST_MICROS_PER_CPU_SECOND,
      renderThreads: config.GENERATION_RENDER_THREADS,
    });
  return config.FAULT_INJECTION_ENABLED ? new FaultInjectionProvider(base) : base;
}

/** Connections the service holds; each is closed at stop (or when start-up fails). */
interface Connections {
  orm: Orm;
  credits: GrpcCreditsClient;
  usage: GrpcUsageClient;
  nc?: NatsConnection;
  /** The generation_events LISTEN connection (WatchGeneration). */
  listener?: GenerationNotificationListener;
}

/** Everything built and wired, not yet serving. */
interface BuiltService {
  connections: Required<Connections>;
  service: GenerationsService;
  worker: GenerationWorker | undefined;
  /** The worker's provider (its render pool is closed at stop). */
  provider: GenerationProvider | undefined;
  relay: OutboxRelay;
  metrics: ServiceMetrics;
  erasure: ErasureService;
  watchHub: GenerationWatchHub;
  /** Set once started (when ACCOUNT_EVENTS_ENABLED). */
  accountEvents?: AccountEventConsumer;
}

/**
 * Starts the generations service: database (migrated), NATS stream, gRPC server, worker,
 * outbox relay and the consumer of `account.deleted` (erasure). Marks itself SERVING once
 * everything is up.
 */
export async function startGenerationsService(config: GenerationsConfig, logger: Logger, options: StartOptions = {}): Promise<RunningGenerationsService> {
  const orm = await openDatabase({
    url: config.DATABASE_URL,
    entities: [],
    migrations: GENERATIONS_MIGRATIONS,
    logger,
    limits: { poolMax: config.DATABASE_POOL_MAX, statementTimeoutMs: config.DATABASE_STATEMENT_TIMEOUT_MS },
  });
  const connections: Connections = {
    orm,
    credits: new GrpcCreditsClient(config.CREDITS_GRPC_ADDRESS, config.DOWNSTREAM_TIMEOUT_MS, {
      maxOperations: config.CREDITS_BATCH_MAX_OPERATIONS,
      windowMs: creditsBatchWindowMs(config),
    }),
    usage: new GrpcUsageClient(config.USAGE_GRPC_ADDRESS, config.DOWNSTREAM_TIMEOUT_MS),
  };
  try {
    const built = await buildService(config, logger, options, connections);
    const server = await startService(config, logger, built);
    let stopped: Promise<void> | undefined;
    return {
      grpcPort: server.port,
      metricsPort: server.metricsPort,
      relay: built.relay,
      worker: built.worker,
      stop: () => (stopped ??= stopService(config, logger, built, server)),
    };
  } catch (error) {
    await closeConnections(connections, true);
    throw error;
  }
}

/** Connects NATS (ensuring the stream) and wires the unit of work, the service, the worker and the relay. */
async function buildService(config: GenerationsConfig, logger: Logger, options: StartOptions, connections: Connections): Promise<BuiltService> {
  const nc = await connectNats(config.NATS_URL, "tally-generations", logger);
  connections.nc = nc;
  await ensureStream(nc, {
    name: config.NATS_STREAM,
    subjects: [generationSubjects(config.NATS_SUBJECT_PREFIX).all],
    duplicateWindowMs: config.NATS_DUPLICATE_WINDOW_MS,
    maxAgeMs: config.NATS_STREAM_MAX_AGE_MS,
  });
  const { orm, credits, usage } = connections;
  const uow = createGenerationsUnitOfWork(orm);
  const encoder = new ProtoEventEncoder(config.NATS_SUBJECT_PREFIX);
  const plans = loadPlanCatalog(config.PLANS_FILE);
  const settlement = new HoldSettlement(uow, credits, encoder, logger, plans);
  const inputLimits = {
    promptLengthMax: config.PROMPT_LENGTH_MAX,
    photoUrlLengthMax: config.PHOTO_URL_LENGTH_MAX,
    addressLengthMax: config.ADDRESS_LENGTH_MAX,
    styleLengthMax: config.STYLE_LENGTH_MAX,
  };
  const serviceOptions = {
    pricing: config.PRICING_CREDITS,
    inputLimits,
    holdTtlMs: config.HOLD_TTL_MS,
    leaseMs: config.WORKER_LEASE_MS,
    plans,
  };
  const service = new GenerationsService(uow, { credits, usage }, settlement, serviceOptions, logger, encoder);
  const workerOptions = {
    concurrency: config.WORKER_CONCURRENCY,
    pollIntervalMs: config.WORKER_POLL_INTERVAL_MS,
    leaseMs: config.WORKER_LEASE_MS,
    shutdownTimeoutMs: config.WORKER_SHUTDOWN_TIMEOUT_MS,
    settlementAttempts: config.WORKER_SETTLEMENT_ATTEMPTS,
    progressStepPercent: config.WORKER_PROGRESS_STEP_PERCENT,
    providerTimeoutMs: config.PROVIDER_TIMEOUT_MS,
  };
  const leases = new JobLeases(uow, config.WORKER_LEASE_MS);
  const provider = config.WORKER_ENABLED ? createProvider(config, options.provider) : undefined;
  const worker = provider ? new GenerationWorker(leases, settlement, provider, workerOptions, logger, holdKeeperFor(config, credits, logger)) : undefined;
  const relayOptions = {
    pollIntervalMs: config.OUTBOX_POLL_INTERVAL_MS,
    batchSize: config.OUTBOX_BATCH_SIZE,
    retentionMs: config.OUTBOX_RETENTION_MS,
    pruneIntervalMs: config.OUTBOX_PRUNE_INTERVAL_MS,
    backoffMaxMs: config.OUTBOX_BACKOFF_MAX_MS,
    publishTimeoutMs: config.NATS_PUBLISH_TIMEOUT_MS,
    // Woken at the commit of every append (the outbox trigger's NOTIFY); the poll is the fallback.
    notifications: { url: config.DATABASE_URL },
  };
  const relay = new OutboxRelay(uow, new JetStreamEventPublisher(nc, config.NATS_PUBLISH_TIMEOUT_MS), relayOptions, logger);
  const watchHub = new GenerationWatchHub(uow, { maxStreams: config.WATCH_MAX_STREAMS }, logger);
  const listener = new GenerationNotificationListener(
    { url: config.DATABASE_URL, reconnectInitialMs: config.WATCH_RECONNECT_INITIAL_MS, reconnectMaxMs: config.WATCH_RECONNECT_MAX_MS },
    { onChange: (notice) => watchHub.notify(notice), onReconnected: () => watchHub.resync() },
    logger,
  );
  await listener.start();
  connections.listener = listener;
  const metrics = generationsMetrics(orm, logger, watchHub, connections.credits);
  return { connections: { ...connections, nc, listener }, service, worker, provider, relay, erasure: new ErasureService(uow), watchHub, metrics };
}

/**
 * The worker's hold heartbeat: each job's hold is extended by HOLD_TTL_MS (0: credits' default)
 * once its deadline is within two leases, so a reclaimed job's new worker extends it in time.
 */
function holdKeeperFor(config: GenerationsConfig, credits: CreditsPort, logger: Logger): HoldKeeper {
  return new HoldKeeper(credits, { holdTtlMs: config.HOLD_TTL_MS, extendWithinMs: 2 * config.WORKER_LEASE_MS }, logger);
}

/** RPC metrics (bindService records them), the database pool, jobs by status, the outbox, open watch streams and the calls to credits. */
function generationsMetrics(orm: Orm, logger: Logger, watchHub: GenerationWatchHub, credits: GrpcCreditsClient): ServiceMetrics {
  const metrics = new ServiceMetrics("generations");
  registerCreditsCallGauges(metrics, credits, logger);
  metrics.gauge({ name: "generations_watch_streams", help: "WatchGeneration streams open in this process", collect: async () => watchHub.openStreams, logger });
  registerDatabasePoolGauges(metrics, orm, logger);
  registerOutboxGauges(metrics, orm, logger);
  registerSqlGauge(metrics, orm, logger, {
    name: "generations_jobs",
    help: "Generations by status (pending, processing, completed, failed, cancelled)",
    labelNames: ["status"],
    sql: "SELECT status, count(*)::bigint AS value FROM generations GROUP BY status",
  });
  return metrics;
}

/**
 * How hold calls reach credits, counted since start (the values only grow): operations made by
 * kind (create_hold, capture_hold, release_hold), and the RPCs sent for them by form (unary,
 * batch); operations over RPCs is the batching's gain.
 */
function registerCreditsCallGauges(metrics: ServiceMetrics, credits: GrpcCreditsClient, logger: Logger): void {
  metrics.gauge({
    name: "generations_credits_hold_operations",
    help: "Hold calls made to credits since start, by kind (create_hold, capture_hold, release_hold)",
    labelNames: ["kind"] as const,
    logger,
    collect: async () => Object.entries(credits.counts).map(([kind, counts]) => ({ labels: { kind }, value: counts.operations })),
  });
  metrics.gauge({
    name: "generations_credits_hold_rpcs",
    help: "RPCs sent to credits for hold calls since start, by kind and form (unary, batch)",
    labelNames: ["kind", "form"] as const,
    logger,
    collect: async () =>
      Object.entries(credits.counts).flatMap(([kind, counts]) => [
        { labels: { kind, form: "unary" }, value: counts.unaryCalls },
        { labels: { kind, form: "batch" }, value: counts.batchCalls },
      ]),
  });
}

/** Starts the gRPC server, the worker, the relay and the account events consumer (erasure), then answers SERVING. */
async function startService(config: GenerationsConfig, logger: Logger, built: BuiltService): Promise<RunningGrpcServer> {
  const server = await startGrpcServer({
    port: config.GRPC_PORT,
    host: config.GRPC_HOST,
    services: [
      {
        name: SERVICE_NAME,
        definition: generations.GenerationsServiceService,
        implementation: bindService<generations.GenerationsServiceServer>(SERVICE_NAME, generationsHandlers(built.service, built.watchHub), logger, built.metrics),
      },
    ],
    protoRoot: PROTO_ROOT,
    protoFiles: [PROTO_FILES.generations],
    logger,
    metrics: { metrics: built.metrics, port: config.METRICS_PORT, host: config.METRICS_HOST },
  });
  built.worker?.start();
  built.relay.start();
  if (config.ACCOUNT_EVENTS_ENABLED) {
    built.accountEvents = await AccountEventConsumer.start(
      built.connections.nc,
      built.erasure,
      {
        stream: config.NATS_ACCOUNT_STREAM ?? defaultAccountStream(config.NATS_SUBJECT_PREFIX),
        subjectPrefix: config.NATS_SUBJECT_PREFIX,
        consumerName: config.NATS_ACCOUNT_CONSUMER,
        duplicateWindowMs: config.NATS_DUPLICATE_WINDOW_MS,
        streamMaxAgeMs: config.NATS_STREAM_MAX_AGE_MS,
      },
      logger,
    );
  }
  server.setServing(true);
  logger.info({ port: server.port, worker: Boolean(built.worker) }, "generations service ready");
  return server;
}

/** Stops in order: no new calls, no new claims (running jobs finish or go back to their lease), the render pool, the relay, the account events consumer, then the connections. */
async function stopService(config: GenerationsConfig, logger: Logger, built: BuiltService, server: RunningGrpcServer): Promise<void> {
  // Open watch streams would hold the graceful shutdown: they end now (`unavailable`), and their callers watch again elsewhere.
  built.watchHub.close();
  await server.shutdown(config.GRPC_SHUTDOWN_TIMEOUT_MS);
  await built.worker?.stop();
  // After the worker: no job renders any more; the render pool's threads end.
  await built.provider?.close?.();
  await built.relay.stop();
  await built.accountEvents?.stop();
  await closeConnections(built.connections, false);
  logger.info("generations service stopped");
}

/** Closes NATS (drained, unless start-up failed), the credits and usage clients and the database. */
async function closeConnections(connections: Connections, failed: boolean): Promise<void> {
  const { nc } = connections;
  if (nc) await (failed ? nc.close().catch(() => undefined) : nc.drain().catch(() => nc.close()));
  await connections.listener?.stop();
  connections.credits.close();
  connections.usage.close();
  await connections.orm.close();
}
