import { generations, PROTO_FILES, PROTO_ROOT } from "@tally/contracts";
import {
  bindService,
  connectNats,
  ensureStream,
  generationSubjects,
  openDatabase,
  startGrpcServer,
  type Logger,
  type NatsConnection,
  type Orm,
} from "@tally/platform";
import type { GenerationsConfig } from "./config";
import { GrpcCreditsClient } from "./adapter/credits-client";
import { GENERATIONS_MIGRATIONS } from "./adapter/migrations";
import { generationsHandlers, type GenerationsServer } from "./grpc/generations-handlers";
import { OutboxRelay } from "./outbox/outbox-relay";
import { FaultInjectionProvider } from "./providers/fault-injection-provider";
import { LocalFractalRenderer } from "./providers/local-fractal-renderer";
import type { GenerationProvider } from "./providers/provider";
import { GenerationsService } from "./service/generations-service";
import { GenerationWorker } from "./worker/generation-worker";

const SERVICE_NAME = "tally.generations.v1.GenerationsService";

export interface StartOptions {
  /** Replaces the built-in provider (tests count invocations with it). Fault injection still wraps it when enabled. */
  provider?: GenerationProvider;
}

export interface RunningGenerationsService {
  grpcPort: number;
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
    });
  return config.FAULT_INJECTION_ENABLED ? new FaultInjectionProvider(base) : base;
}

/**
 * Starts the generations service: database (migrated), NATS stream, gRPC server, worker and
 * outbox relay. Marks itself SERVING once everything is up.
 */
export async function startGenerationsService(config: GenerationsConfig, logger: Logger, options: StartOptions = {}): Promise<RunningGenerationsService> {
  const orm: Orm = await openDatabase({
    url: config.DATABASE_URL,
    entities: [],
    migrations: GENERATIONS_MIGRATIONS,
    logger,
    limits: { poolMax: config.DATABASE_POOL_MAX, statementTimeoutMs: config.DATABASE_STATEMENT_TIMEOUT_MS },
  });
  let nc: NatsConnection | undefined;
  const credits = new GrpcCreditsClient(config.CREDITS_GRPC_ADDRESS, config.DOWNSTREAM_TIMEOUT_MS);
  try {
    nc = await connectNats(config.NATS_URL, "tally-generations", logger);
    await ensureStream(nc, {
      name: config.NATS_STREAM,
      subjects: [generationSubjects(config.NATS_SUBJECT_PREFIX).all],
      duplicateWindowMs: config.NATS_DUPLICATE_WINDOW_MS,
      maxAgeMs: config.NATS_STREAM_MAX_AGE_MS,
    });

    const service = new GenerationsService(
      orm,
      credits,
      {
        pricing: config.PRICING_CREDITS,
        inputLimits: {
          promptLengthMax: config.PROMPT_LENGTH_MAX,
          photoUrlLengthMax: config.PHOTO_URL_LENGTH_MAX,
          addressLengthMax: config.ADDRESS_LENGTH_MAX,
          styleLengthMax: config.STYLE_LENGTH_MAX,
        },
        holdTtlMs: config.HOLD_TTL_MS,
        leaseMs: config.WORKER_LEASE_MS,
      },
      logger,
    );
    const server = await startGrpcServer({
      port: config.GRPC_PORT,
      host: config.GRPC_HOST,
      services: [
        {
          name: SERVICE_NAME,
          definition: generations.GenerationsServiceService,
          implementation: bindService<GenerationsServer>(SERVICE_NAME, generationsHandlers(service), logger),
        },
      ],
      protoRoot: PROTO_ROOT,
      protoFiles: [PROTO_FILES.generations],
      logger,
    });

    const worker = config.WORKER_ENABLED
      ? new GenerationWorker(
          orm,
          credits,
          createProvider(config, options.provider),
          {
            concurrency: config.WORKER_CONCURRENCY,
            pollIntervalMs: config.WORKER_POLL_INTERVAL_MS,
            leaseMs: config.WORKER_LEASE_MS,
            shutdownTimeoutMs: config.WORKER_SHUTDOWN_TIMEOUT_MS,
            settlementAttempts: config.WORKER_SETTLEMENT_ATTEMPTS,
            progressStepPercent: config.WORKER_PROGRESS_STEP_PERCENT,
            providerTimeoutMs: config.PROVIDER_TIMEOUT_MS,
            subjectPrefix: config.NATS_SUBJECT_PREFIX,
          },
          logger,
        )
      : undefined;
    const relay = new OutboxRelay(
      orm,
      nc,
      {
        pollIntervalMs: config.OUTBOX_POLL_INTERVAL_MS,
        batchSize: config.OUTBOX_BATCH_SIZE,
        retentionMs: config.OUTBOX_RETENTION_MS,
        pruneIntervalMs: config.OUTBOX_PRUNE_INTERVAL_MS,
        backoffMaxMs: config.OUTBOX_BACKOFF_MAX_MS,
        publishTimeoutMs: config.NATS_PUBLISH_TIMEOUT_MS,
      },
      logger,
    );
    worker?.start();
    relay.start();
    server.setServing(true);
    logger.info({ port: server.port, worker: Boolean(worker) }, "generations service ready");

    const natsConnection = nc;
    let stopped: Promise<void> | undefined;
    return {
      grpcPort: server.port,
      relay,
      worker,
      stop() {
        stopped ??= (async () => {
          await server.shutdown(config.GRPC_SHUTDOWN_TIMEOUT_MS);
          await worker?.stop();
          await relay.stop();
          await natsConnection.drain().catch(() => natsConnection.close());
          credits.close();
          await orm.close();
          logger.info("generations service stopped");
        })();
        return stopped;
      },
    };
  } catch (error) {
    credits.close();
    await nc?.close().catch(() => undefined);
    await orm.close();
    throw error;
  }
}
