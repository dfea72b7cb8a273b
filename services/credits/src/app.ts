import { credits, PROTO_FILES, PROTO_ROOT } from "@tally/contracts";
import {
  accountSubjects,
  connectNats,
  defaultAccountStream,
  ensureStream,
  JetStreamEventPublisher,
  loadPlanCatalog,
  openDatabase,
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
import { creditsMigrations } from "./adapter/migrations";
import { createCreditsOutboxUnitOfWork, createCreditsUnitOfWork } from "./adapter/unit-of-work";
import type { CreditsConfig } from "./config";
import type { CreditsRules } from "./domain/rules";
import { bindCreditsService, CREDITS_SERVICE_NAME } from "./grpc/handlers";
import { HoldExpirySweeper } from "./runners/hold-expiry-sweeper";
import { CreditsService } from "./service/credits-service";
import { PasswordHasher } from "./service/passwords";

export interface RunningCreditsService {
  /** The bound gRPC port (useful when GRPC_PORT is 0). */
  grpcPort: number;
  /** The `/metrics` port, when METRICS_PORT is set. */
  metricsPort?: number;
  /** The service's rules, for in-process tests and tools. */
  service: CreditsService;
  /** The database handle, for in-process tests (e.g. to watch that a call opens no connection). */
  orm: Orm;
  /** The relay publishing credits' outbox (account events) to NATS; tests read its counters. */
  relay: OutboxRelay;
  /**
   * Runs an expiry sweep now (tests, ops): due holds back to their grants, due grants written
   * off; the background sweeper keeps running. Returns the larger of the holds expired and the
   * accounts whose grants were visited, per batch, summed.
   */
  sweepExpiredHolds(): Promise<number>;
  /** Stops taking calls, drains running ones, stops the sweeper and the relay, closes NATS and the database. */
  stop(): Promise<void>;
}

/** What tests may inject into the credits service. */
export interface CreditsServiceOptions {
  /** The clock grant expiry is decided by (default: the system clock). */
  now?: () => Date;
}

/** The wired service before anything listens or runs. */
interface CreditsApp {
  orm: Orm;
  nc: NatsConnection;
  service: CreditsService;
  sweeper: HoldExpirySweeper;
  metrics: ServiceMetrics;
  relay: OutboxRelay;
}

/** How often the relay deletes published rows past retention, and its longest back-off while NATS fails, in milliseconds. */
const OUTBOX_PRUNE_INTERVAL_MS = 60_000;
const OUTBOX_BACKOFF_MAX_MS = 5_000;

/**
 * The configured rules, from the configuration's named values. Reads and validates the plans
 * file: a bad one throws PlansConfigError naming the file and the bad key, which stops start-up.
 */
const rulesFrom = (config: CreditsConfig): CreditsRules => ({
  plans: loadPlanCatalog(config.PLANS_FILE, config.TRIAL_CREDITS),
  adminEmails: config.TALLY_ADMIN_EMAILS,
  holdTtlMs: config.HOLD_TTL_MS,
  groupCommit: { windowMs: config.CREDITS_GROUP_COMMIT_WINDOW_MS, maxOperations: config.CREDITS_GROUP_COMMIT_MAX_OPERATIONS },
  holdTtlMsMax: config.HOLD_TTL_MS_MAX,
  creditAmountMax: BigInt(config.CREDIT_AMOUNT_MAX),
  reconcileBatchAccounts: config.RECONCILE_BATCH_ACCOUNTS,
});

/**
 * Opens (and migrates) the database, connects NATS (ensuring the account events stream) and
 * wires the service, its sweeper and its outbox relay; starts nothing.
 */
async function buildCreditsApp(config: CreditsConfig, logger: Logger, options: CreditsServiceOptions): Promise<CreditsApp> {
  // The plans file first: a bad one stops start-up before anything is opened.
  const rules = rulesFrom(config);
  const orm = await openDatabase({
    url: config.DATABASE_URL,
    entities: [],
    migrations: creditsMigrations,
    logger,
    limits: { poolMax: config.DATABASE_POOL_MAX, statementTimeoutMs: config.DATABASE_STATEMENT_TIMEOUT_MS },
  });
  const passwords = new PasswordHasher(
    { memoryKib: config.PASSWORD_HASH_MEMORY_KIB, timeCost: config.PASSWORD_HASH_TIME_COST },
    { concurrency: config.PASSWORD_HASH_CONCURRENCY, queueMax: config.PASSWORD_HASH_QUEUE_MAX },
  );
  let nc: NatsConnection | undefined;
  try {
    nc = await connectNats(config.NATS_URL, "tally-credits", logger);
    await ensureStream(nc, {
      name: config.NATS_ACCOUNT_STREAM ?? defaultAccountStream(config.NATS_SUBJECT_PREFIX),
      subjects: [accountSubjects(config.NATS_SUBJECT_PREFIX).all],
      duplicateWindowMs: config.NATS_DUPLICATE_WINDOW_MS,
      maxAgeMs: config.NATS_STREAM_MAX_AGE_MS,
    });
    const relay = new OutboxRelay(
      createCreditsOutboxUnitOfWork(orm),
      new JetStreamEventPublisher(nc, config.OUTBOX_PUBLISH_TIMEOUT_MS),
      {
        name: "credits outbox relay",
        pollIntervalMs: config.OUTBOX_POLL_INTERVAL_MS,
        batchSize: config.OUTBOX_BATCH_SIZE,
        retentionMs: config.OUTBOX_RETENTION_MS,
        pruneIntervalMs: OUTBOX_PRUNE_INTERVAL_MS,
        // Never below the poll interval: the back-off starts from it.
        backoffMaxMs: Math.max(config.OUTBOX_POLL_INTERVAL_MS, OUTBOX_BACKOFF_MAX_MS),
        publishTimeoutMs: config.OUTBOX_PUBLISH_TIMEOUT_MS,
        // Woken at the commit of every append (the outbox trigger's NOTIFY); the poll is the fallback.
        notifications: { url: config.DATABASE_URL },
      },
      logger,
    );
    const service = new CreditsService(createCreditsUnitOfWork(orm, { subjectPrefix: config.NATS_SUBJECT_PREFIX }), rules, passwords, options.now);
    // One sweeper for both deadlines: due holds go back to their grants, then due grants are
    // written off; the larger batch tells the loop whether more may be due.
    const expiry = {
      expireDueHolds: async (batchSize: number) => Math.max(await service.holds.expireDueHolds(batchSize), await service.grants.expireDueGrants(batchSize)),
    };
    const sweeper = new HoldExpirySweeper(
      expiry,
      { intervalMs: config.HOLD_EXPIRY_SWEEP_INTERVAL_MS, batchSize: config.HOLD_EXPIRY_BATCH_SIZE },
      logger,
    );
    return { orm, nc, service, sweeper, relay, metrics: creditsMetrics(orm, logger, service) };
  } catch (error) {
    // Whatever was opened is closed again: a failed start leaves no connection behind.
    await nc?.close().catch(() => undefined);
    await orm.close();
    throw error;
  }
}

/** How long a computed reconciliation count is reused by later scrapes, in milliseconds (it reads the whole ledger). */
const RECONCILIATION_METRIC_MAX_AGE_MS = 60_000;

/**
 * RPC metrics (bindService records them), the database pool, active holds, the outbox (account
 * events) and `credits_reconciliation_differences`: how many INV-2 equalities fail over every
 * account and grant (Reconcile; 0 when the books balance), recomputed at most once a minute.
 */
function creditsMetrics(orm: Orm, logger: Logger, service: CreditsService): ServiceMetrics {
  const metrics = new ServiceMetrics("credits");
  registerDatabasePoolGauges(metrics, orm, logger);
  registerOutboxGauges(metrics, orm, logger);
  registerSqlGauge(metrics, orm, logger, {
    name: "credits_active_holds",
    help: "Holds now active (credits held for running generations)",
    sql: "SELECT count(*)::bigint AS value FROM holds WHERE status = 'active'",
  });
  let last: { at: number; value: number } | undefined;
  metrics.gauge({
    name: "credits_reconciliation_differences",
    help: "INV-2 equalities (ledger replay, grants, holds) that fail over every account and grant (0 when all agree; recomputed at most once a minute)",
    logger,
    collect: async () => {
      if (!last || Date.now() - last.at > RECONCILIATION_METRIC_MAX_AGE_MS) last = { at: Date.now(), value: (await service.reconcile()).differencesTotal };
      return last.value;
    },
  });
  return metrics;
}

/** Serves gRPC (health and reflection included) and starts the sweeper; SERVING once both run. */
async function startCreditsApp(app: CreditsApp, config: CreditsConfig, logger: Logger): Promise<RunningGrpcServer> {
  const grpc = await startGrpcServer({
    host: config.GRPC_HOST,
    port: config.GRPC_PORT,
    services: [{ name: CREDITS_SERVICE_NAME, definition: credits.CreditsServiceService, implementation: bindCreditsService(app.service, logger, app.metrics) }],
    protoRoot: PROTO_ROOT,
    protoFiles: [PROTO_FILES.credits],
    logger,
    metrics: { metrics: app.metrics, port: config.METRICS_PORT, host: config.METRICS_HOST },
  });
  app.sweeper.start();
  app.relay.start();
  grpc.setServing(true);
  logger.info({ port: grpc.port }, "credits service serving");
  return grpc;
}

/** Stops in order: take no more calls and drain (up to GRPC_SHUTDOWN_TIMEOUT_MS), stop the sweeper and the relay, close NATS and the pool. */
async function stopCreditsApp(app: CreditsApp, grpc: RunningGrpcServer | undefined, config: CreditsConfig, logger: Logger): Promise<void> {
  if (grpc) await grpc.shutdown(config.GRPC_SHUTDOWN_TIMEOUT_MS);
  // Calls cut off by the shutdown may still have members waiting in a group commit.
  await app.service.holds.drain();
  await app.sweeper.stop();
  await app.relay.stop();
  await app.nc.drain().catch(() => app.nc.close());
  await app.orm.close();
  logger.info("credits service stopped");
}

/**
 * Starts the credits service: migrates its database, serves `tally.credits.v1.CreditsService`
 * over gRPC (with health and reflection), runs the hold expiry sweeper and the outbox relay
 * that publishes account events (`account.deleted`) to NATS. Reports SERVING only
 * once all of that is up; a failed start closes what it opened and rethrows.
 */
export async function startCreditsService(config: CreditsConfig, logger: Logger, options: CreditsServiceOptions = {}): Promise<RunningCreditsService> {
  const app = await buildCreditsApp(config, logger, options);
  let grpc: RunningGrpcServer;
  try {
    grpc = await startCreditsApp(app, config, logger);
  } catch (error) {
    await stopCreditsApp(app, undefined, config, logger);
    throw error;
  }
  let stopping: Promise<void> | undefined;
  return {
    grpcPort: grpc.port,
    metricsPort: grpc.metricsPort,
    service: app.service,
    orm: app.orm,
    relay: app.relay,
    sweepExpiredHolds: () => app.sweeper.sweep(),
    stop() {
      stopping ??= stopCreditsApp(app, grpc, config, logger);
      return stopping;
    },
  };
}
