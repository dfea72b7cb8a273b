/**
 * What the generation benchmarks share: the real credits, usage and generations services as
 * child processes (as ops run them) on throw-away databases and one throw-away JetStream stream,
 * a funded account and the gRPC health check (CPU time, memory and percentiles: stats.ts).
 */
import * as grpc from "@grpc/grpc-js";
import { service as healthService } from "grpc-health-check";
import { credits } from "@tally/contracts";
import { callUnary, getFreePort, newId, spawnService, waitForGrpcServing, type ServiceProcess } from "@tally/platform";
import { createTestDatabase, testNatsUrl, uniqueSuffix } from "@tally/platform/src/testing";

export const TIMEOUT_MS = 10_000;

/** A plan with no limits and no trial credits (the benchmark grants what it spends). */
export const UNLIMITED_PLANS = `
default_plan: bench_unlimited
guest_plan: bench_unlimited
plans:
  bench_unlimited: { trial_credits: 0 }
`;

export interface RunningService {
  process: ServiceProcess;
  address: string;
  databaseUrl: string;
}

export interface Stack {
  credits: RunningService;
  usage: RunningService;
  /** Environment every generations process of this stack needs (NATS stream, addresses). */
  generationsEnv: Record<string, string>;
  startGenerations(env: Record<string, string>): Promise<RunningService>;
  stop(): Promise<void>;
}

async function startService(name: string, entry: string, env: Record<string, string>): Promise<RunningService> {
  const database = await createTestDatabase(`bench_${name}`);
  const port = await getFreePort();
  const address = `127.0.0.1:${port}`;
  const process = spawnService(name, entry, { ...env, DATABASE_URL: database.url, GRPC_PORT: String(port), GRPC_HOST: "127.0.0.1" });
  await waitForGrpcServing(address, 60_000);
  dropLater.push(() => database.drop());
  return { process, address, databaseUrl: database.url };
}

const dropLater: (() => Promise<void>)[] = [];

/** Starts credits and usage (usage consuming the stack's generation events); generations start per run with `startGenerations`. */
export async function startStack(plansFile: string): Promise<Stack> {
  const nats = { NATS_URL: testNatsUrl(), NATS_STREAM: `BENCH_GEN_${uniqueSuffix().toUpperCase()}`, NATS_SUBJECT_PREFIX: `bench${uniqueSuffix()}` };
  const common = { PLANS_FILE: plansFile, LOG_LEVEL: "warn", DATABASE_POOL_MAX: "6" };
  const [creditsService, usageService] = await Promise.all([
    startService("credits", "services/credits/main.ts", common),
    startService("usage", "services/usage/main.ts", { ...common, ...nats }),
  ]);
  const generationsEnv = { ...common, ...nats, CREDITS_GRPC_ADDRESS: creditsService.address, USAGE_GRPC_ADDRESS: usageService.address };
  const started: RunningService[] = [];
  return {
    credits: creditsService,
    usage: usageService,
    generationsEnv,
    async startGenerations(env) {
      const service = await startService("generations", "services/generations/main.ts", { ...generationsEnv, ...env });
      started.push(service);
      return service;
    },
    async stop() {
      for (const service of [...started.reverse(), usageService, creditsService]) await service.process.stop();
      await Promise.all(dropLater.splice(0).map((drop) => drop()));
    },
  };
}

/** A new account on the default plan with `amount` purchased credits; returns its id. */
export async function fundedAccount(client: credits.CreditsServiceClient, amount: number): Promise<string> {
  const options = { timeoutMs: TIMEOUT_MS };
  const { account } = await callUnary(client.createAccount.bind(client), {
    requestId: newId(), email: `bench-${newId()}@example.com`, password: "benchmark password", plan: "", role: credits.Role.ROLE_USER, adoptGuestId: "",
  }, options);
  await callUnary(client.createGrant.bind(client), {
    requestId: newId(), accountId: account!.id, kind: credits.GrantKind.GRANT_KIND_PURCHASED, amount: BigInt(amount), reference: "",
  }, options);
  return account!.id;
}

export async function timedMs(fn: () => Promise<unknown>): Promise<number> {
  const started = performance.now();
  await fn();
  return performance.now() - started;
}

const healthClients = new Map<string, grpc.Client>();

/** One call of the standard gRPC health check of the service at `address`. */
export function checkHealth(address: string): Promise<void> {
  let client = healthClients.get(address);
  if (!client) {
    client = new (grpc.makeClientConstructor(healthService as grpc.ServiceDefinition, "Health"))(address, grpc.credentials.createInsecure());
    healthClients.set(address, client);
  }
  const check = (client as unknown as { check: (req: object, opts: object, cb: (error: unknown) => void) => void }).check.bind(client);
  return new Promise((resolve, reject) => check({ service: "" }, { deadline: Date.now() + TIMEOUT_MS }, (error) => (error ? reject(error) : resolve())));
}

export function closeHealthClients(): void {
  for (const client of healthClients.values()) client.close();
  healthClients.clear();
}
