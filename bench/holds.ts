/**
 * Benchmark: credit holds on one hot account vs the same load spread over many accounts.
 *
 * Starts the real credits service (as ops would, a child process) on a throw-away database and
 * drives it over gRPC with `CONCURRENCY` callers doing hold → capture. Prints operations per
 * second for both shapes and their ratio (hot / spread) from the same run: one commit per
 * operation serialises a hot account on its row lock; group commit (several operations per
 * transaction, CREDITS_GROUP_COMMIT_WINDOW_MS) is what raises the hot figure, which the ratio
 * shows. Also prints the cost of an idempotent retry relative to a fresh hold. Environment:
 * BENCH_OPERATIONS (2000), BENCH_CONCURRENCY (32), BENCH_GROUP_COMMIT_WINDOW_MS (unset: the
 * service's default; 0 turns group commit off).
 */
import { credits } from "@tally/contracts";
import { callUnary, createGrpcClient, getFreePort, newId, spawnService, waitForGrpcServing } from "@tally/platform";
import { createTestDatabase } from "@tally/platform/src/testing";

const OPERATIONS = Number(process.env.BENCH_OPERATIONS ?? 2_000);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 32);
const SPREAD_ACCOUNTS = 32;
const TIMEOUT_MS = 10_000;

async function main(): Promise<void> {
  const database = await createTestDatabase("bench_holds");
  const port = await getFreePort();
  const service = spawnService("credits", "services/credits/main.ts", {
    DATABASE_URL: database.url,
    GRPC_PORT: String(port),
    LOG_LEVEL: "warn",
    DATABASE_POOL_MAX: "20",
    ...(process.env.BENCH_GROUP_COMMIT_WINDOW_MS === undefined ? {} : { CREDITS_GROUP_COMMIT_WINDOW_MS: process.env.BENCH_GROUP_COMMIT_WINDOW_MS }),
  });
  const client = createGrpcClient(credits.CreditsServiceClient, `127.0.0.1:${port}`);
  try {
    await waitForGrpcServing(`127.0.0.1:${port}`, 60_000);
    const createAccount = async () => {
      const { account } = await callUnary(client.createAccount.bind(client), {
        requestId: newId(), email: `bench-${newId()}@example.com`, password: "benchmark password", plan: "", role: credits.Role.ROLE_USER, adoptGuestId: "",
      }, { timeoutMs: TIMEOUT_MS });
      await callUnary(client.createGrant.bind(client), {
        requestId: newId(), accountId: account!.id, kind: credits.GrantKind.GRANT_KIND_PURCHASED, amount: BigInt(OPERATIONS * 10), reference: "",
      }, { timeoutMs: TIMEOUT_MS });
      return account!.id;
    };
    const hot = await createAccount();
    const spread = await Promise.all(Array.from({ length: SPREAD_ACCOUNTS }, createAccount));

    const holdAndCapture = async (accountId: string) => {
      const { hold } = await callUnary(client.createHold.bind(client), {
        requestId: newId(), accountId, generationId: newId(), amount: 1n, ttlMs: 0n,
      }, { timeoutMs: TIMEOUT_MS });
      await callUnary(client.captureHold.bind(client), { requestId: newId(), holdId: hold!.id }, { timeoutMs: TIMEOUT_MS });
    };
    const run = async (pick: (i: number) => string) => {
      let next = 0;
      const started = process.hrtime.bigint();
      await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
        for (let i = next++; i < OPERATIONS; i = next++) await holdAndCapture(pick(i));
      }));
      return OPERATIONS / (Number(process.hrtime.bigint() - started) / 1e9);
    };

    await run((i) => spread[i % SPREAD_ACCOUNTS]!); // warm-up
    const spreadRate = await run((i) => spread[i % SPREAD_ACCOUNTS]!);
    const hotRate = await run(() => hot);

    // An idempotent retry answers from the stored response and moves nothing.
    const retryRequest = { requestId: newId(), accountId: spread[0]!, generationId: newId(), amount: 1n, ttlMs: 0n };
    await callUnary(client.createHold.bind(client), retryRequest, { timeoutMs: TIMEOUT_MS });
    const time = async (fn: () => Promise<unknown>) => {
      const started = process.hrtime.bigint();
      for (let i = 0; i < 200; i++) await fn();
      return Number(process.hrtime.bigint() - started) / 1e6 / 200;
    };
    const retryMs = await time(() => callUnary(client.createHold.bind(client), retryRequest, { timeoutMs: TIMEOUT_MS }));
    const freshMs = await time(() => callUnary(client.createHold.bind(client), { ...retryRequest, requestId: newId(), generationId: newId() }, { timeoutMs: TIMEOUT_MS }));

    const window = process.env.BENCH_GROUP_COMMIT_WINDOW_MS ?? "default";
    console.log(`holds benchmark (${OPERATIONS} hold+capture pairs, ${CONCURRENCY} concurrent callers, group commit window ${window} ms)`);
    console.log(`  spread over ${SPREAD_ACCOUNTS} accounts: ${spreadRate.toFixed(0)} pairs/s`);
    console.log(`  one hot account:            ${hotRate.toFixed(0)} pairs/s`);
    console.log(`  ratio hot / spread:         ${(hotRate / spreadRate).toFixed(2)}`);
    console.log(`  sequential CreateHold: fresh ${freshMs.toFixed(2)} ms, idempotent retry ${retryMs.toFixed(2)} ms (ratio ${(retryMs / freshMs).toFixed(2)})`);
  } finally {
    client.close();
    await service.stop();
    await database.drop();
  }
}

void main().catch((error) => {
  console.error(error);
  process.exit(1);
});
