import {
  connectNats,
  ensureStream,
  JetStreamEventPublisher,
  OutboxRelay,
  loadPlanCatalog,
  openDatabase,
  registerDatabasePoolGauges,
  registerOutboxGauges,
  registerSqlGauge,
  ServiceMetrics,
  startGrpcServer,
  type Logger,
  type NatsConnection,
  type Orm,
  type PlanCatalog,
  type RunningGrpcServer,
} from "@tally/platform";
import { usageMigrations } from "./adapter/migrations";
import { createUsageUnitOfWork } from "./adapter/unit-of-work";
import { RESERVATION_TTL_MS_DEFAULT, type UsageConfig } from "./config";
import { UsageSummaryService } from "./service/usage-summary";
import { usageGrpcService } from "./grpc/handlers";
import type { Clock } from "./domain/types";
import { GenerationEventConsumer, type GenerationEventConsumerConfig } from "./runners/generation-event-consumer";
import { ReservationExpiryRunner } from "./runners/reservation-expiry";
import { UsageLogPartitionRunner } from "./runners/usage-log-partitions";
import { UsageLogPartitionService } from "./service/usage-log-partitions";
import { AdoptionService } from "./service/adoption";
import { DeadLetterService } from "./service/dead-letters";
import { QuotaService } from "./service/quota";
import { StatsService } from "./service/stats";
import { UsageLogService } from "./service/usage-log";

/** A running usage service. */
export interface UsageService {
  /** The bound gRPC port (useful when configured as 0). */
  grpcPort: number;
  /** The `/metrics` port, when METRICS_PORT is set. */
  metricsPort?: number;
  /** The service's database (for tests and operations, e.g. reconciling stats with `buildUsageServices(orm).stats`). */
  orm: Orm;
  /** The service classes the running service uses (tests reconcile through them). */
  services: UsageServices;
  /** Runs a reservation-expiry sweep now (tests, after moving their clock). */
  sweepReservations(): void;
  /**
   * Graceful shutdown: stop pulling events and finish (commit + ack) the one in hand, close
   * the consumer, then the gRPC server (running calls may finish), NATS and the database.
   */
  stop(): Promise<void>;
}

/** The service classes, over one unit of work on `orm`. */
export interface UsageServices {
  usageLog: UsageLogService;
  stats: StatsService;
  deadLetters: DeadLetterService;
  quota: QuotaService;
  adoption: AdoptionService;
  /** The usage log's monthly partitions (the partition runner's work). */
  partitions: UsageLogPartitionService;
  /** GetUsageSummary: everything GET /v1/usage/summary shows, in one statement. */
  summary: UsageSummaryService;
  plans: PlanCatalog;
}

/** What the service takes besides its config: the plan catalogue (default: PLANS_FILE's) and the clock (default: the system's). */
export interface UsageOptions {
  plans?: PlanCatalog;
  clock?: Clock;
  /** Default RESERVATION_TTL_MS_DEFAULT. */
  reservationTtlMs?: number;
  /** NATS_SUBJECT_PREFIX (default "tally"): threshold events go on `<prefix>.usage.threshold_crossed`. */
  subjectPrefix?: string;
}

/** Builds the service classes over `orm` (no I/O; the built-in plans when no catalogue is given). */
export function buildUsageServices(orm: Orm, options: UsageOptions = {}): UsageServices {
  const uow = createUsageUnitOfWork(orm, { subjectPrefix: options.subjectPrefix });
  const clock = options.clock ?? (() => new Date());
  const plans = options.plans ?? loadPlanCatalog(undefined);
  const quota = new QuotaService(uow, { plans, clock, reservationTtlMs: options.reservationTtlMs ?? RESERVATION_TTL_MS_DEFAULT });
  return {
    usageLog: new UsageLogService(uow, clock, plans),
    stats: new StatsService(uow, clock, plans),
    deadLetters: new DeadLetterService(uow),
    quota,
    adoption: new AdoptionService(uow, clock),
    partitions: new UsageLogPartitionService(uow, clock),
    summary: new UsageSummaryService(uow, quota, clock),
    plans,
  };
}

/** What `startUsageService` started, in the order `stopUsage` closes it. */
interface Running {
  services: UsageServices;
  consumer: GenerationEventConsumer;
  expiry: ReservationExpiryRunner;
  partitions: UsageLogPartitionRunner;
  relay: OutboxRelay;
  grpcServer: RunningGrpcServer;
  nc: NatsConnection;
  orm: Orm;
}

/**
 * Starts the usage service: migrates its database, serves `tally.usage.v1.UsageService` over
 * gRPC (with health and reflection) and consumes generation events from JetStream. Reports
 * SERVING once both are up, and runs the reservation-expiry sweeps and the usage-log partition
 * runner. Used by `main.ts` and by in-process tests. The plans file is validated first: an invalid one throws PlansConfigError
 * naming the bad key before anything is opened. On a failure to start, closes whatever it had
 * opened and rethrows.
 */
export async function startUsageService(config: UsageConfig, logger: Logger, options: UsageOptions = {}): Promise<UsageService> {
  const plans = options.plans ?? loadPlanCatalog(config.PLANS_FILE);
  const orm = await openDatabase({
    url: config.DATABASE_URL,
    entities: [],
    migrations: usageMigrations,
    logger,
    limits: { poolMax: config.DATABASE_POOL_MAX, statementTimeoutMs: config.DATABASE_STATEMENT_TIMEOUT_MS },
  });
  const services = buildUsageServices(orm, { ...options, plans, reservationTtlMs: config.RESERVATION_TTL_MS, subjectPrefix: config.NATS_SUBJECT_PREFIX });
  const running = await startRunning(config, logger, orm, services);
  let stopped: Promise<void> | undefined;
  return {
    grpcPort: running.grpcServer.port,
    metricsPort: running.grpcServer.metricsPort,
    orm,
    services,
    sweepReservations: () => running.expiry.wakeUp(),
    stop() {
      stopped ??= stopUsage(running, config, logger);
      return stopped;
    },
  };
}

/** RPC metrics (bindService records them), the database pool, the outbox, dead letters and active reservations. */
function usageMetrics(orm: Orm, logger: Logger): ServiceMetrics {
  const metrics = new ServiceMetrics("usage");
  registerDatabasePoolGauges(metrics, orm, logger);
  registerOutboxGauges(metrics, orm, logger);
  registerSqlGauge(metrics, orm, logger, {
    name: "usage_dead_letters",
    help: "Events set aside as dead letters (never recorded; see ListDeadLetters)",
    sql: "SELECT count(*)::bigint AS value FROM dead_letters",
  });
  registerSqlGauge(metrics, orm, logger, {
    name: "usage_active_reservations",
    help: "Quota reservations now active (generations reserved for and not yet ended)",
    sql: "SELECT count(*)::bigint AS value FROM quota_reservations WHERE status = 'active'",
  });
  return metrics;
}

/** How long a computed reconciliation count is reused by later scrapes, in milliseconds (it reads the whole usage log). */
const RECONCILIATION_METRIC_MAX_AGE_MS = 60_000;

/**
 * The consumer's backlog (`usage_consumer_messages{state="pending"|"ack_pending"|"redelivered"}`)
 * and `usage_reconciliation_differences`: how many stats, limit counters, monthly analytics
 * and platform rollup rows differ from what the usage log says (INV-6; 0 when all agree), recomputed at most once a minute.
 */
function registerConsumerGauges(metrics: ServiceMetrics, consumer: GenerationEventConsumer, services: UsageServices, logger: Logger): void {
  metrics.gauge({
    name: "usage_consumer_messages",
    help: "Generation events of the durable consumer, by state: pending (not yet delivered), ack_pending (delivered, not yet acknowledged), redelivered",
    labelNames: ["state"] as const,
    logger,
    collect: async () => {
      const backlog = await consumer.backlog();
      return [
        { labels: { state: "pending" }, value: backlog.pending },
        { labels: { state: "ack_pending" }, value: backlog.ackPending },
        { labels: { state: "redelivered" }, value: backlog.redelivered },
      ];
    },
  });
  let last: { at: number; value: number } | undefined;
  metrics.gauge({
    name: "usage_reconciliation_differences",
    help: "Stats, limit counters, monthly analytics and platform rollup rows that differ from the usage log (0 when all agree; recomputed at most once a minute)",
    logger,
    collect: async () => {
      if (!last || Date.now() - last.at > RECONCILIATION_METRIC_MAX_AGE_MS) {
        const { stats } = services;
        const [users, counters, analytics, rollups] = await Promise.all([stats.reconcile(), stats.reconcileCounters(), stats.reconcileAnalytics(), stats.reconcileRollups()]);
        last = { at: Date.now(), value: users.length + counters.length + analytics.length + rollups.length };
      }
      return last.value;
    },
  });
}

/** Connects NATS, starts the gRPC server and the consumer over `orm`; undoes what it did when a step fails. */
async function startRunning(config: UsageConfig, logger: Logger, orm: Orm, services: UsageServices): Promise<Running> {
  const cleanup: (() => Promise<unknown>)[] = [() => orm.close()];
  try {
    const nc = await connectNats(config.NATS_URL, "tally-usage", logger);
    cleanup.unshift(() => nc.drain());
    const metrics = usageMetrics(orm, logger);
    const grpc = usageGrpcService(services, logger, metrics);
    const grpcServer = await startGrpcServer({
      port: config.GRPC_PORT,
      host: config.GRPC_HOST,
      services: [grpc.service],
      protoRoot: grpc.protoRoot,
      protoFiles: grpc.protoFiles,
      logger,
      metrics: { metrics, port: config.METRICS_PORT, host: config.METRICS_HOST },
    });
    cleanup.unshift(() => grpcServer.shutdown(0));
    const consumer = await GenerationEventConsumer.start({ nc, usageLog: services.usageLog, deadLetters: services.deadLetters, config: consumerConfig(config), logger });
    cleanup.unshift(() => consumer.stop());
    registerConsumerGauges(metrics, consumer, services, logger);
    const expiry = new ReservationExpiryRunner(services.quota, { intervalMs: config.RESERVATION_SWEEP_INTERVAL_MS, batchSize: config.RESERVATION_SWEEP_BATCH_SIZE }, logger);
    expiry.start();
    cleanup.unshift(() => expiry.stop());
    const partitions = new UsageLogPartitionRunner(
      services.partitions,
      { intervalMs: config.USAGE_LOG_PARTITION_CHECK_INTERVAL_MS, aheadMonths: config.USAGE_LOG_PARTITIONS_AHEAD_MONTHS },
      logger,
    );
    partitions.start();
    cleanup.unshift(() => partitions.stop());
    const relay = await startOutboxRelay(config, nc, orm, logger);
    grpcServer.setServing(true);
    return { services, consumer, expiry, partitions, relay, grpcServer, nc, orm };
  } catch (error) {
    for (const close of cleanup) await close().catch(() => undefined);
    throw error;
  }
}

/** Stops in order: not serving, consumer (chunk in hand finishes), expiry sweeps, partition runner, gRPC calls, NATS (drain flushes the last acks), database. */
async function stopUsage(running: Running, config: UsageConfig, logger: Logger): Promise<void> {
  running.grpcServer.setServing(false);
  await running.consumer.stop();
  await running.expiry.stop();
  await running.partitions.stop();
  await running.relay.stop();
  await running.grpcServer.shutdown(config.GRPC_SHUTDOWN_TIMEOUT_MS);
  await running.nc.drain();
  await running.orm.close();
  logger.info("usage service stopped");
}

/** Ensures the usage stream and starts the relay that publishes usage's outbox (threshold events) to it. */
async function startOutboxRelay(config: UsageConfig, nc: NatsConnection, orm: Orm, logger: Logger): Promise<OutboxRelay> {
  await ensureStream(nc, {
    name: config.NATS_USAGE_STREAM,
    subjects: [`${config.NATS_SUBJECT_PREFIX}.usage.>`],
    duplicateWindowMs: config.NATS_DUPLICATE_WINDOW_MS,
    maxAgeMs: config.NATS_STREAM_MAX_AGE_MS,
  });
  const uow = createUsageUnitOfWork(orm, { subjectPrefix: config.NATS_SUBJECT_PREFIX });
  const publisher = new JetStreamEventPublisher(nc, config.OUTBOX_PUBLISH_TIMEOUT_MS);
  const relay = new OutboxRelay(
    uow,
    publisher,
    {
      name: "usage outbox relay",
      pollIntervalMs: config.OUTBOX_POLL_INTERVAL_MS,
      batchSize: config.OUTBOX_BATCH_SIZE,
      retentionMs: config.OUTBOX_RETENTION_MS,
      pruneIntervalMs: OUTBOX_PRUNE_INTERVAL_MS,
      backoffMaxMs: OUTBOX_BACKOFF_MAX_MS,
      publishTimeoutMs: config.OUTBOX_PUBLISH_TIMEOUT_MS,
      // Woken at the commit of every append (the outbox trigger's NOTIFY); the poll is the fallback.
      notifications: { url: config.DATABASE_URL },
    },
    logger,
  );
  relay.start();
  return relay;
}

/** How often the relay deletes published rows past retention, and its longest back-off while NATS fails, in milliseconds. */
const OUTBOX_PRUNE_INTERVAL_MS = 60_000;
const OUTBOX_BACKOFF_MAX_MS = 5_000;

function consumerConfig(config: UsageConfig): GenerationEventConsumerConfig {
  return {
    stream: config.NATS_STREAM,
    subjectPrefix: config.NATS_SUBJECT_PREFIX,
    consumerName: config.NATS_CONSUMER,
    duplicateWindowMs: config.NATS_DUPLICATE_WINDOW_MS,
    streamMaxAgeMs: config.NATS_STREAM_MAX_AGE_MS,
    batchSize: config.CONSUMER_BATCH_SIZE,
    chunksInFlight: config.CONSUMER_CHUNKS_IN_FLIGHT,
    fetchExpiresMs: config.CONSUMER_FETCH_EXPIRES_MS,
    ackWaitMs: config.CONSUMER_ACK_WAIT_MS,
    nakDelayMs: config.CONSUMER_NAK_DELAY_MS,
    maxDeliver: config.CONSUMER_MAX_DELIVER,
    maxAckPending: config.CONSUMER_MAX_ACK_PENDING,
  };
}
