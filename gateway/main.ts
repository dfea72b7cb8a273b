import { createLogger, handleShutdown, loadConfig } from "@tally/platform/src/stateless";
import { buildGateway } from "./src/app";
import { closeGatewayClients, createGatewayClients } from "./src/clients";
import { gatewayConfigSchema } from "./src/config";

/** Entry point: configuration from the environment only (see README.md), graceful shutdown. */
async function main(): Promise<void> {
  const config = loadConfig(gatewayConfigSchema);
  const logger = createLogger("gateway", config.LOG_LEVEL);
  const clients = createGatewayClients({
    creditsAddress: config.CREDITS_GRPC_ADDRESS,
    generationsAddress: config.GENERATIONS_GRPC_ADDRESS,
    usageAddress: config.USAGE_GRPC_ADDRESS,
  });
  const app = await buildGateway(config, clients, logger);
  await app.listen({ port: config.PORT, host: config.HOST });
  // Stop taking requests and let running ones finish first, then close the channels they use.
  handleShutdown(logger, [
    { name: "http", close: () => app.close() },
    { name: "grpc clients", close: async () => closeGatewayClients(clients) },
  ]);
}

main().catch((error: unknown) => {
  // Logging may not be configured yet (bad config), so write to stderr directly.
  process.stderr.write(`gateway failed to start: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
