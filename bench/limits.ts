/**
 * Benchmark: what plan limits cost a generation.
 *
 * Starts the real credits, usage and generations services (child processes, as ops would run
 * them; the generations worker off, so jobs stay pending and only the create path is timed) on
 * throw-away databases and a throw-away JetStream stream, with a plans file of two plans:
 * `bench_limited` (every period, day and concurrency limit set, far above what the run uses)
 * and `bench_unlimited` (no limits). Prints, from the same run:
 *   - the latency of the check + reservation that keeps limits exact under concurrency (p50 /
 *     p99): in this process (usage's QuotaService on the service's database, no RPC), and
 *     through usage's CheckAndReserve RPC, beside an empty RPC's (the gRPC health check of
 *     the same service, alternating call by call: the floor of any call on this machine);
 *   - CreateGeneration's latency for an account on each plan, alternating (p50 / p99), and
 *     the ratio limited / unlimited.
 * Goal: CheckAndReserve p99 <= 5 ms and the ratio <= 1.3. Environment: BENCH_CALLS (300).
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { credits, generations, usage } from "@tally/contracts";
import { callUnary, createGrpcClient, createLogger, getFreePort, loadPlanCatalog, newId, openDatabase, spawnService, waitForGrpcServing, type ServiceProcess } from "@tally/platform";
import { usageMigrations } from "../services/usage/src/adapter/migrations";
import { buildUsageServices } from "../services/usage/src/app";
import { parseCheckAndReserveInput } from "../services/usage/src/domain/inputs";
import { createTestDatabase, testNatsUrl, uniqueSuffix } from "@tally/platform/src/testing";
import { checkHealth, closeHealthClients } from "./lib/generation-stack";
import { percentile } from "./lib/stats";

const CALLS = Number(process.env.BENCH_CALLS ?? 300);
const TIMEOUT_MS = 10_000;
const LIMIT_FAR_ABOVE = 1_000_000_000;

const PLANS = `
default_plan: bench_unlimited
guest_plan: bench_unlimited
plans:
  bench_unlimited: { trial_credits: 0 }
  bench_limited:
    trial_credits: 0
    limits:
      generations_per_period: ${LIMIT_FAR_ABOVE}
      credits_per_period: ${LIMIT_FAR_ABOVE}
      processing_seconds_per_period: ${LIMIT_FAR_ABOVE}
      generations_per_day: ${LIMIT_FAR_ABOVE}
      concurrent_generations: ${LIMIT_FAR_ABOVE}
`;

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const started = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - started) / 1e6;
}

interface Stack {
  processes: ServiceProcess[];
  addresses: { credits: string; usage: string; generations: string };
  /** The usage service's database. */
  usageDatabaseUrl: string;
  drop(): Promise<void>;
}

/** Starts credits, usage and generations on fresh databases and one fresh stream. */
async function startStack(plansFile: string): Promise<Stack> {
  const databases = await Promise.all(["credits", "usage", "generations"].map((name) => createTestDatabase(`bench_limits_${name}`)));
  const ports = { credits: await getFreePort(), usage: await getFreePort(), generations: await getFreePort() };
  const addresses = { credits: `127.0.0.1:${ports.credits}`, usage: `127.0.0.1:${ports.usage}`, generations: `127.0.0.1:${ports.generations}` };
  const nats = { NATS_URL: testNatsUrl(), NATS_STREAM: `BENCH_LIMITS_${uniqueSuffix().toUpperCase()}`, NATS_SUBJECT_PREFIX: `bench${uniqueSuffix()}` };
  const common = { PLANS_FILE: plansFile, LOG_LEVEL: "warn", DATABASE_POOL_MAX: "20" };
  const processes = [
    spawnService("credits", "services/credits/main.ts", { ...common, DATABASE_URL: databases[0]!.url, GRPC_PORT: String(ports.credits) }),
    spawnService("usage", "services/usage/main.ts", { ...common, ...nats, DATABASE_URL: databases[1]!.url, GRPC_PORT: String(ports.usage) }),
  ];
  await Promise.all([waitForGrpcServing(addresses.credits, 60_000), waitForGrpcServing(addresses.usage, 60_000)]);
  processes.push(
    spawnService("generations", "services/generations/main.ts", {
      ...common,
      ...nats,
      DATABASE_URL: databases[2]!.url,
      GRPC_PORT: String(ports.generations),
      CREDITS_GRPC_ADDRESS: addresses.credits,
      USAGE_GRPC_ADDRESS: addresses.usage,
      WORKER_ENABLED: "false",
    }),
  );
  await waitForGrpcServing(addresses.generations, 60_000);
  return {
    processes,
    addresses,
    usageDatabaseUrl: databases[1]!.url,
    async drop() {
      for (const service of processes.reverse()) await service.stop();
      await Promise.all(databases.map((database) => database.drop()));
    },
  };
}

/**
 * The check itself: usage's QuotaService in this process on the usage service's database (no
 * RPC), `CALLS` sequential reservations for `account` on bench_limited, in milliseconds.
 */
async function timeCheckInProcess(databaseUrl: string, plansFile: string, account: credits.Account): Promise<number[]> {
  const orm = await openDatabase({ url: databaseUrl, entities: [], migrations: usageMigrations, logger: createLogger("bench", "warn"), migrate: false });
  try {
    const catalog = loadPlanCatalog(plansFile);
    const quota = buildUsageServices(orm, { plans: catalog }).quota;
    const subject = { id: account.id, kind: "user" as const, plan: "bench_limited", periodAnchor: account.currentPeriodStart! };
    const reserve = () => quota.checkAndReserve(parseCheckAndReserveInput({ subject, generationId: newId(), credits: 1n }, catalog));
    for (let i = 0; i < 20; i++) await reserve(); // warm-up
    const samples: number[] = [];
    for (let i = 0; i < CALLS; i++) samples.push(await timed(reserve));
    return samples;
  } finally {
    await orm.close();
  }
}

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "tally-bench-limits-"));
  const plansFile = path.join(dir, "plans.yaml");
  writeFileSync(plansFile, PLANS);
  const stack = await startStack(plansFile);
  const creditsClient = createGrpcClient(credits.CreditsServiceClient, stack.addresses.credits);
  const usageClient = createGrpcClient(usage.UsageServiceClient, stack.addresses.usage);
  const generationsClient = createGrpcClient(generations.GenerationsServiceClient, stack.addresses.generations);
  const options = { timeoutMs: TIMEOUT_MS };
  try {
    const accountOn = async (plan: string) => {
      const { account } = await callUnary(creditsClient.createAccount.bind(creditsClient), {
        requestId: newId(), email: `bench-${newId()}@example.com`, password: "benchmark password", plan, role: credits.Role.ROLE_USER, adoptGuestId: "",
      }, options);
      await callUnary(creditsClient.createGrant.bind(creditsClient), {
        requestId: newId(), accountId: account!.id, kind: credits.GrantKind.GRANT_KIND_PURCHASED, amount: BigInt(CALLS * 100), reference: "",
      }, options);
      return account!;
    };
    const limited = await accountOn("bench_limited");
    const unlimited = await accountOn("bench_unlimited");

    // CheckAndReserve alone, for the limited account (every limit checked), sequentially.
    const subject = { id: limited.id, kind: usage.SubjectKind.SUBJECT_KIND_USER, plan: "bench_limited", periodAnchor: limited.currentPeriodStart };
    const reserve = () => callUnary(usageClient.checkAndReserve.bind(usageClient), { subject, generationId: newId(), credits: 1n }, options);
    for (let i = 0; i < 20; i++) await reserve(); // warm-up
    const reserveMs: number[] = [];
    const healthMs: number[] = [];
    // Alternating with the gRPC health check of the same service: the floor any RPC here pays.
    for (let i = 0; i < CALLS; i++) {
      reserveMs.push(await timed(reserve));
      healthMs.push(await timed(() => checkHealth(stack.addresses.usage)));
    }

    const inProcessMs = await timeCheckInProcess(stack.usageDatabaseUrl, plansFile, limited);

    // CreateGeneration, alternating the two accounts so both see the same machine.
    const create = (userId: string) => () =>
      callUnary(generationsClient.createGeneration.bind(generationsClient), {
        requestId: newId(), userId, inputType: generations.InputType.INPUT_TYPE_TEXT, prompt: "a lighthouse at dusk", photoUrl: "", address: "", style: "",
      }, options);
    for (let i = 0; i < 10; i++) {
      await create(limited.id)();
      await create(unlimited.id)();
    }
    const limitedMs: number[] = [];
    const unlimitedMs: number[] = [];
    for (let i = 0; i < CALLS; i++) {
      limitedMs.push(await timed(create(limited.id)));
      unlimitedMs.push(await timed(create(unlimited.id)));
    }

    const p = (samples: number[]) => `p50 ${percentile(samples, 50).toFixed(2)} ms, p95 ${percentile(samples, 95).toFixed(2)} ms, p99 ${percentile(samples, 99).toFixed(2)} ms`;
    console.log(`limits benchmark (${CALLS} sequential calls each)`);
    console.log(`  check + reserve itself (in process):   ${p(inProcessMs)}`);
    console.log(`  CheckAndReserve alone:                 ${p(reserveMs)}`);
    console.log(`  health check (an empty RPC), same run: ${p(healthMs)}`);
    console.log(`  CreateGeneration, plan with limits:    ${p(limitedMs)}`);
    console.log(`  CreateGeneration, plan without limits: ${p(unlimitedMs)}`);
    console.log(`  ratio with / without limits: p50 ${(percentile(limitedMs, 50) / percentile(unlimitedMs, 50)).toFixed(2)}, p99 ${(percentile(limitedMs, 99) / percentile(unlimitedMs, 99)).toFixed(2)}`);
  } finally {
    creditsClient.close();
    usageClient.close();
    closeHealthClients();
    generationsClient.close();
    await stack.drop();
  }
}

void main().catch((error) => {
  console.error(error);
  process.exit(1);
});
