/**
 * Entry point of the credits service: configuration from the environment only (see
 * README.md), graceful stop on SIGINT/SIGTERM.
 */
import { createLogger, handleShutdown } from "@tally/platform";
import { startCreditsService } from "./src/app";
import { loadCreditsConfig } from "./src/config";

async function main(): Promise<void> {
  const config = loadCreditsConfig();
  const logger = createLogger("credits", config.LOG_LEVEL);
  const running = await startCreditsService(config, logger);
  handleShutdown(logger, [{ name: "credits", close: () => running.stop() }]);
}

main().catch((error: unknown) => {
  // Start-up failed (bad config, database unreachable): say why and exit non-zero.
  createLogger("credits").fatal({ err: error }, "credits service failed to start");
  process.exit(1);
});
