import { credits, PROTO_FILES, PROTO_ROOT } from "@tally/contracts";
import { openDatabase, startGrpcServer, type Logger } from "@tally/platform";
import { creditsMigrations } from "./adapter/migrations";
import type { CreditsConfig } from "./config";
import { bindCreditsService, CREDITS_SERVICE_NAME } from "./grpc/handlers";
import { CreditsService } from "./service/credits-service";
import { HoldExpirySweeper } from "./service/hold-expiry-sweeper";
import { PasswordHasher } from "./service/passwords";

export interface RunningCreditsService {
  /** The bound gRPC port (useful when GRPC_PORT is 0). */
  grpcPort: number;
  /** The service's rules, for in-process tests and tools. */
  service: CreditsService;
  /** Runs one expiry sweep now (tests, ops); the background sweeper keeps running. */
  sweepExpiredHolds(): Promise<number>;
  /** Stops taking calls, drains running ones, stops the sweeper and closes the database. */
  stop(): Promise<void>;
}

/**
 * Starts the credits service: migrates its database, serves `tally.credits.v1.CreditsService`
 * over gRPC (with health and reflection) and runs the hold expiry sweeper. Reports SERVING only
 * once all of that is up.
 */
export async function startCreditsService(config: CreditsConfig, logger: Logger): Promise<RunningCreditsService> {
  const orm = await openDatabase({
    url: config.DATABASE_URL,
    entities: [],
    migrations: creditsMigrations,
    logger,
    limits: { poolMax: config.DATABASE_POOL_MAX, statementTimeoutMs: config.DATABASE_STATEMENT_TIMEOUT_MS },
  });
  const service = new CreditsService(
    orm,
    {
      defaultPlan: config.DEFAULT_PLAN,
      defaultPlanTrialCredits: config.TRIAL_CREDITS,
      planTrialCredits: config.PLAN_TRIAL_CREDITS,
      holdTtlMs: config.HOLD_TTL_MS,
      holdTtlMsMax: config.HOLD_TTL_MS_MAX,
      creditAmountMax: BigInt(config.CREDIT_AMOUNT_MAX),
    },
    new PasswordHasher({ memoryKib: config.PASSWORD_HASH_MEMORY_KIB, timeCost: config.PASSWORD_HASH_TIME_COST }),
    logger,
  );
  let grpc;
  try {
    grpc = await startGrpcServer({
      host: config.GRPC_HOST,
      port: config.GRPC_PORT,
      services: [{ name: CREDITS_SERVICE_NAME, definition: credits.CreditsServiceService, implementation: bindCreditsService(service, logger) }],
      protoRoot: PROTO_ROOT,
      protoFiles: [PROTO_FILES.credits],
      logger,
    });
  } catch (error) {
    await orm.close();
    throw error;
  }
  const sweeper = new HoldExpirySweeper(
    service,
    { intervalMs: config.HOLD_EXPIRY_SWEEP_INTERVAL_MS, batchSize: config.HOLD_EXPIRY_BATCH_SIZE },
    logger,
  );
  sweeper.start();
  grpc.setServing(true);
  logger.info({ port: grpc.port }, "credits service serving");

  let stopping: Promise<void> | undefined;
  return {
    grpcPort: grpc.port,
    service,
    sweepExpiredHolds: () => sweeper.sweep(),
    stop() {
      stopping ??= (async () => {
        await grpc.shutdown(config.GRPC_SHUTDOWN_TIMEOUT_MS);
        await sweeper.stop();
        await orm.close();
        logger.info("credits service stopped");
      })();
      return stopping;
    },
  };
}
