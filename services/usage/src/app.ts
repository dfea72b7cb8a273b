import { usage, PROTO_FILES, PROTO_ROOT } from "@tally/contracts";
import { connectNats, openDatabase, startGrpcServer, type Logger, type Orm } from "@tally/platform";
import { usageMigrations } from "./adapter/migrations";
import type { UsageConfig } from "./config";
import { startGenerationEventConsumer } from "./consumers/generation-events";
import { USAGE_SERVICE_NAME, usageHandlers } from "./grpc/usage-handlers";

/** A running usage service. */
export interface UsageService {
  /** The bound gRPC port (useful when configured as 0). */
  grpcPort: number;
  /** The service's database (for tests and operations, e.g. `reconcileUserStats`). */
  orm: Orm;
  /**
   * Graceful shutdown: stop pulling events and finish (commit + ack) the one in hand, close
   * the consumer, then the gRPC server (running calls may finish), NATS and the database.
   */
  stop(): Promise<void>;
}

/**
 * Starts the usage service: migrates its database, serves `tally.usage.v1.UsageService` over
 * gRPC (with health and reflection) and consumes generation events from JetStream. Reports
 * SERVING once both are up. Used by `main.ts` and by in-process tests.
 */
export async function startUsageService(config: UsageConfig, logger: Logger): Promise<UsageService> {
  const orm = await openDatabase({
    url: config.DATABASE_URL,
    entities: [],
    migrations: usageMigrations,
    logger,
    limits: { poolMax: config.DATABASE_POOL_MAX, statementTimeoutMs: config.DATABASE_STATEMENT_TIMEOUT_MS },
  });
  const cleanup: (() => Promise<unknown>)[] = [() => orm.close()];
  try {
    const nc = await connectNats(config.NATS_URL, "tally-usage", logger);
    cleanup.unshift(() => nc.drain());
    const grpcServer = await startGrpcServer({
      port: config.GRPC_PORT,
      host: config.GRPC_HOST,
      services: [{ name: USAGE_SERVICE_NAME, definition: usage.UsageServiceService, implementation: usageHandlers(orm, logger) }],
      protoRoot: PROTO_ROOT,
      protoFiles: [PROTO_FILES.usage],
      logger,
    });
    cleanup.unshift(() => grpcServer.shutdown(0));
    const consumer = await startGenerationEventConsumer({
      nc,
      orm,
      logger,
      config: {
        stream: config.NATS_STREAM,
        subjectPrefix: config.NATS_SUBJECT_PREFIX,
        consumerName: config.NATS_CONSUMER,
        duplicateWindowMs: config.NATS_DUPLICATE_WINDOW_MS,
        streamMaxAgeMs: config.NATS_STREAM_MAX_AGE_MS,
        batchSize: config.CONSUMER_BATCH_SIZE,
        fetchExpiresMs: config.CONSUMER_FETCH_EXPIRES_MS,
        ackWaitMs: config.CONSUMER_ACK_WAIT_MS,
        nakDelayMs: config.CONSUMER_NAK_DELAY_MS,
        maxDeliver: config.CONSUMER_MAX_DELIVER,
        maxAckPending: config.CONSUMER_MAX_ACK_PENDING,
      },
    });
    grpcServer.setServing(true);

    let stopped: Promise<void> | undefined;
    return {
      grpcPort: grpcServer.port,
      orm,
      stop() {
        stopped ??= (async () => {
          grpcServer.setServing(false);
          await consumer.stop();
          await grpcServer.shutdown(config.GRPC_SHUTDOWN_TIMEOUT_MS);
          // drain flushes the acks of the last messages before closing.
          await nc.drain();
          await orm.close();
          logger.info("usage service stopped");
        })();
        return stopped;
      },
    };
  } catch (error) {
    for (const close of cleanup) await close().catch(() => undefined);
    throw error;
  }
}
