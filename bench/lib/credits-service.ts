/**
 * The credits service as the credits benchmarks drive it: a child process on a throw-away
 * database (cheap password hashing: accounts are set-up, not measured), and accounts funded
 * through its public gRPC API with one purchased grant each.
 */
import { credits } from "@tally/contracts";
import { callUnary, createGrpcClient, getFreePort, newId, spawnService, waitForGrpcServing } from "@tally/platform";
import { createTestDatabase } from "@tally/platform/src/testing";

/** Deadline of every set-up and measured call, in milliseconds. */
export const CREDITS_CALL_TIMEOUT_MS = 30_000;
/** Credits of each funded account's purchased grant: no run spends them all. */
export const FUNDED_GRANT_CREDITS = 100_000_000n;

export interface BenchCredits {
  client: credits.CreditsServiceClient;
  /** The service process's id (for its CPU time from /proc). */
  pid: number;
  /** Its database's URL. */
  databaseUrl: string;
  /** Closes the client, stops the service, drops the database. */
  stop(): Promise<void>;
}

/** Starts credits on a new database named after `label`, with `env` added, and waits until it serves. */
export async function startBenchCredits(label: string, env: Record<string, string> = {}): Promise<BenchCredits> {
  const database = await createTestDatabase(label);
  const port = await getFreePort();
  const service = spawnService("credits", "services/credits/main.ts", {
    DATABASE_URL: database.url, GRPC_PORT: String(port), LOG_LEVEL: "warn", PASSWORD_HASH_MEMORY_KIB: "64", PASSWORD_HASH_TIME_COST: "1", ...env,
  });
  const client = createGrpcClient(credits.CreditsServiceClient, `127.0.0.1:${port}`);
  const stop = async () => {
    client.close();
    await service.stop();
    await database.drop();
  };
  try {
    await waitForGrpcServing(`127.0.0.1:${port}`, 60_000);
  } catch (error) {
    await stop();
    throw error;
  }
  return { client, pid: service.child.pid!, databaseUrl: database.url, stop };
}

/** Creates one account with a purchased grant of FUNDED_GRANT_CREDITS; answers its id. */
export async function fundAccount(client: credits.CreditsServiceClient): Promise<string> {
  const { account } = await callUnary(client.createAccount.bind(client), {
    requestId: newId(), email: `bench-${newId()}@example.com`, password: "benchmark password", plan: "", role: credits.Role.ROLE_USER, adoptGuestId: "",
  }, { timeoutMs: CREDITS_CALL_TIMEOUT_MS });
  await callUnary(client.createGrant.bind(client), {
    requestId: newId(), accountId: account!.id, kind: credits.GrantKind.GRANT_KIND_PURCHASED, amount: FUNDED_GRANT_CREDITS, reference: "",
  }, { timeoutMs: CREDITS_CALL_TIMEOUT_MS });
  return account!.id;
}

/** Funds `count` accounts, 16 at a time; answers their ids. */
export async function fundAccounts(client: credits.CreditsServiceClient, count: number): Promise<string[]> {
  const accounts: string[] = [];
  for (let i = 0; i < count; i += 16) accounts.push(...(await Promise.all(Array.from({ length: Math.min(16, count - i) }, () => fundAccount(client)))));
  return accounts;
}

/** The latencies (ms) of the calls the callers made and how many failed, since the last `take()`. */
export class CallTally {
  latenciesMs: number[] = [];
  errors = 0;

  /** Runs `call`, recording its latency, or an error when it fails (answers undefined then). */
  async timed<T>(call: () => Promise<T>): Promise<T | undefined> {
    const started = performance.now();
    try {
      const result = await call();
      this.latenciesMs.push(performance.now() - started);
      return result;
    } catch {
      this.errors += 1;
      return undefined;
    }
  }

  /** Hands over what was recorded and starts afresh. */
  take(): { latenciesMs: number[]; errors: number } {
    const taken = { latenciesMs: this.latenciesMs, errors: this.errors };
    [this.latenciesMs, this.errors] = [[], 0];
    return taken;
  }
}

/** One CreateHold of 1 credit on `accountId`, then its CaptureHold (skipped when the hold failed), each timed into `tally`. */
export async function holdThenCapture(client: credits.CreditsServiceClient, accountId: string, tally: CallTally): Promise<void> {
  const options = { timeoutMs: CREDITS_CALL_TIMEOUT_MS };
  const created = await tally.timed(() => callUnary(client.createHold.bind(client), { requestId: newId(), accountId, generationId: newId(), amount: 1n, ttlMs: 0n }, options));
  const holdId = created?.hold?.id;
  if (holdId) await tally.timed(() => callUnary(client.captureHold.bind(client), { requestId: newId(), holdId }, options));
}
