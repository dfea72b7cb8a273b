import { createLogger, handleShutdown } from "@tally/platform";
import { startGenerationsService } from "./src/app";
import { loadGenerationsConfig } from "./src/config";

/** Entry point: configuration from the environment only; SIGINT/SIGTERM stop it gracefully. */
async function main(): Promise<void> {
  const config = loadGenerationsConfig();
  const logger = createLogger("generations", config.LOG_LEVEL);
  const service = await startGenerationsService(config, logger);
  handleShutdown(logger, [{ name: "generations", close: () => service.stop() }], config.GRPC_SHUTDOWN_TIMEOUT_MS + config.WORKER_SHUTDOWN_TIMEOUT_MS * 2 + 5_000);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
