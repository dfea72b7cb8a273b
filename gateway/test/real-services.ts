/**
 * The real credits, usage and generations services, started in-process for the gateway's
 * tests: each on its own test database, sharing a private JetStream stream and subject prefix,
 * on real PostgreSQL and NATS. `stop()` stops what was started and drops the databases.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { credits } from "@tally/contracts";
import { connectNats, createGrpcClient, createLogger, defaultAccountStream, waitForGrpcServing } from "@tally/platform";
import { createTestDatabase, testNatsUrl, uniqueSuffix } from "@tally/platform/src/testing";
import { startCreditsService } from "../../services/credits/src/app";
import { loadCreditsConfig } from "../../services/credits/src/config";
import { startGenerationsService } from "../../services/generations/src/app";
import { loadGenerationsConfig } from "../../services/generations/src/config";
import { startUsageService } from "../../services/usage/src/app";
import { loadUsageConfig } from "../../services/usage/src/config";

const START_TIMEOUT_MS = 30_000;
const logger = createLogger("gateway-test-services", "silent");

/** Writes `yaml` to a fresh temporary plans file and returns its path. */
export function writePlansFile(yaml: string): string {
  const file = path.join(mkdtempSync(path.join(os.tmpdir(), "gw-plans-")), "plans.yaml");
  writeFileSync(file, yaml);
  return file;
}

/** A started service: its gRPC address, its `/metrics` port (when METRICS_PORT was given) and what stops it. */
export interface Serving {
  address: string;
  metricsPort?: number;
  stop(): Promise<void>;
}

/** Started services, their addresses, and what stops them (in reverse order of start). */
export class RealServices {
  readonly suffix = uniqueSuffix();
  readonly nats = { NATS_URL: testNatsUrl(), NATS_STREAM: `GW_TEST_${this.suffix}`.toUpperCase(), NATS_SUBJECT_PREFIX: `gw_test_${this.suffix}` };
  private readonly cleanups: (() => Promise<unknown>)[] = [];

  constructor(private readonly plansFile: string) {}

  /** A credits service on a new database; `env` adds or overrides configuration. */
  async startCredits(env: Record<string, string> = {}): Promise<Serving> {
    const database = await this.database("gw_credits");
    const config = loadCreditsConfig({ ...this.nats, DATABASE_URL: database.url, GRPC_HOST: "127.0.0.1", GRPC_PORT: "0", PLANS_FILE: this.plansFile, LOG_LEVEL: "silent", ...env });
    const running = await startCreditsService(config, logger);
    this.cleanups.push(() => running.stop());
    return this.serving(running.grpcPort, () => running.stop(), running.metricsPort);
  }

  /** A usage service on a new database, consuming the private stream; `env` adds or overrides configuration. */
  async startUsage(env: Record<string, string> = {}): Promise<Serving> {
    const database = await this.database("gw_usage");
    const config = loadUsageConfig({
      ...this.nats, DATABASE_URL: database.url, GRPC_HOST: "127.0.0.1", GRPC_PORT: "0", NATS_CONSUMER: `usage_gw_${this.suffix}`, PLANS_FILE: this.plansFile, LOG_LEVEL: "silent", ...env,
    });
    const running = await startUsageService(config, logger);
    this.cleanups.push(() => running.stop());
    return this.serving(running.grpcPort, () => running.stop(), running.metricsPort);
  }

  /** A generations service on a new database in front of `creditsAddress` and `usageAddress`. */
  async startGenerations(creditsAddress: string, usageAddress: string, env: Record<string, string> = {}): Promise<Serving> {
    const database = await this.database("gw_generations");
    const config = loadGenerationsConfig({
      ...this.nats, DATABASE_URL: database.url, GRPC_HOST: "127.0.0.1", GRPC_PORT: "0", CREDITS_GRPC_ADDRESS: creditsAddress, USAGE_GRPC_ADDRESS: usageAddress,
      PLANS_FILE: this.plansFile, PROVIDER_IMAGE_SIZE_PX: "64", WORKER_POLL_INTERVAL_MS: "50", LOG_LEVEL: "silent", ...env,
    });
    const running = await startGenerationsService(config, logger);
    this.cleanups.push(() => running.stop());
    return this.serving(running.grpcPort, () => running.stop(), running.metricsPort);
  }

  /** A credits gRPC client (closed by `stop()`), for setting accounts up and reading them back. */
  creditsClient(address: string): credits.CreditsServiceClient {
    const client = createGrpcClient(credits.CreditsServiceClient, address);
    this.cleanups.push(async () => client.close());
    return client;
  }

  /** Stops everything started, drops the databases and deletes the stream. */
  async stop(): Promise<void> {
    for (const cleanup of this.cleanups.reverse()) await cleanup().catch(() => undefined);
    const nc = await connectNats(this.nats.NATS_URL, "gateway-test-cleanup", logger);
    await (await jetstreamManager(nc)).streams.delete(this.nats.NATS_STREAM).catch(() => undefined);
    await (await jetstreamManager(nc)).streams.delete(defaultAccountStream(this.nats.NATS_SUBJECT_PREFIX)).catch(() => undefined);
    await nc.close();
  }

  private async database(prefix: string) {
    const database = await createTestDatabase(prefix);
    this.cleanups.push(() => database.drop());
    return database;
  }

  private async serving(port: number, stop: () => Promise<void>, metricsPort?: number): Promise<Serving> {
    const address = `127.0.0.1:${port}`;
    await waitForGrpcServing(address, START_TIMEOUT_MS);
    return { address, stop, metricsPort };
  }
}
