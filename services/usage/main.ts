import { createLogger, handleShutdown } from "@tally/platform";
import { startUsageService } from "./src/app";
import { loadUsageConfig } from "./src/config";

/** Entry point: config from the environment only; SIGINT/SIGTERM stop it gracefully. */
async function main(): Promise<void> {
  const config = loadUsageConfig();
  const logger = createLogger("usage", config.LOG_LEVEL);
  try {
    const service = await startUsageService(config, logger);
    logger.info({ grpc_port: service.grpcPort }, "usage service started");
    handleShutdown(logger, [{ name: "usage service", close: () => service.stop() }]);
  } catch (error) {
    logger.fatal({ err: error }, "usage service failed to start");
    process.exit(1);
  }
}

void main();
