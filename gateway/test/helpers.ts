import { createLogger, getFreePort, loadConfig } from "@tally/platform";
import type { FastifyInstance } from "fastify";
import { buildGateway } from "../src/app";
import { closeGatewayClients, createGatewayClients, type GatewayClients } from "../src/clients";
import { gatewayConfigSchema, type GatewayConfig } from "../src/config";

export const TEST_JWT_SECRET = "test-secret-test-secret-test-secret-0123456789";

/** Gateway config for tests: environment-style strings through the real schema. */
export function testConfig(env: Record<string, string> = {}): GatewayConfig {
  return loadConfig(gatewayConfigSchema, { JWT_SECRET: TEST_JWT_SECRET, LOG_LEVEL: "silent", ...env });
}

export interface TestGateway {
  app: FastifyInstance;
  config: GatewayConfig;
  clients: GatewayClients;
  close(): Promise<void>;
}

/** Builds a gateway whose services are at the given addresses (or at free, closed ports: down). */
export async function startTestGateway(env: Record<string, string> = {}): Promise<TestGateway> {
  const closedAddress = async () => `127.0.0.1:${await getFreePort()}`;
  const config = testConfig({
    CREDITS_GRPC_ADDRESS: await closedAddress(),
    GENERATIONS_GRPC_ADDRESS: await closedAddress(),
    USAGE_GRPC_ADDRESS: await closedAddress(),
    ...env,
  });
  const clients = createGatewayClients({
    creditsAddress: config.CREDITS_GRPC_ADDRESS,
    generationsAddress: config.GENERATIONS_GRPC_ADDRESS,
    usageAddress: config.USAGE_GRPC_ADDRESS,
  });
  const app = await buildGateway(config, clients, createLogger("gateway-test", config.LOG_LEVEL));
  await app.ready();
  return {
    app,
    config,
    clients,
    async close() {
      await app.close();
      closeGatewayClients(clients);
    },
  };
}

/** `Authorization` header value for a token. */
export const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
