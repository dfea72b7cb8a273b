/**
 * Benchmark: from a generation's completion to the usage stats that count it.
 *
 * Starts the real credits, usage and generations services (fast jobs: 16 px images) and runs
 * `BENCH_USERS` (40) users for `BENCH_SECONDS` (20 s), each with one job in flight at a time,
 * paced to `BENCH_RATE` (200) completions per second in all. For each job it takes:
 *   - t0: the commit of its completion, heard on the generations database's
 *     `LISTEN generation_events` (sent by the status trigger, delivered at commit);
 *   - t1: the first sight of the user's `total_generations` counting it, polling usage's
 *     `user_stats` (moved in the transaction that records the event, INV-6: what GetUserStats
 *     answers) every `BENCH_POLL_MS` (2) ms for the users with a job in flight;
 *   - for every tenth job, also t1 through usage's GetUserStats RPC, polled every 5 ms.
 * Prints the rate reached, t1 − t0 p50 / p99 / max (database and RPC), a check that every
 * user's GetUserStats counts all its completions, and the resident memory (RSS) of each
 * service process at the end. Goal: p99 ≤ 50 ms.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { Client } from "pg";
import { credits, generations, usage } from "@tally/contracts";
import { callUnary, createGrpcClient, newId } from "@tally/platform";
import { cpuMs, fundedAccount, percentile, rssMiB, startStack, TIMEOUT_MS, UNLIMITED_PLANS } from "./lib/generation-stack";

const USERS = Number(process.env.BENCH_USERS ?? 40);
const SECONDS = Number(process.env.BENCH_SECONDS ?? 20);
const RATE = Number(process.env.BENCH_RATE ?? 200);
const POLL_MS = Number(process.env.BENCH_POLL_MS ?? 2);
const RPC_SAMPLE_EVERY = 10;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Commit times of completions (generation id → ms), heard on LISTEN generation_events. */
async function listenCompletions(databaseUrl: string): Promise<{ completedAt: Map<string, number>; close(): Promise<void> }> {
  const completedAt = new Map<string, number>();
  const listener = new Client({ connectionString: databaseUrl });
  await listener.connect();
  listener.on("notification", (message) => {
    const notice = JSON.parse(message.payload ?? "{}") as { id?: string; status?: string };
    if (notice.status === "completed" && notice.id && !completedAt.has(notice.id)) completedAt.set(notice.id, performance.now());
  });
  await listener.query("LISTEN generation_events");
  return { completedAt, close: () => listener.end() };
}

/** Watches usage's user_stats for the users in `waiting` (user id → count to reach, and who to tell) every POLL_MS. */
function watchStats(databaseUrl: string, waiting: Map<string, { count: number; seen(at: number): void }>): { stop(): Promise<void> } {
  const db = new Client({ connectionString: databaseUrl });
  let stopped = false;
  const loop = (async () => {
    await db.connect();
    while (!stopped) {
      const ids = [...waiting.keys()];
      if (ids.length > 0) {
        const { rows } = await db.query("SELECT user_id, total_generations FROM user_stats WHERE user_id = ANY($1::uuid[])", [ids]);
        const at = performance.now();
        for (const row of rows as { user_id: string; total_generations: string }[]) {
          const wait = waiting.get(row.user_id);
          if (wait && Number(row.total_generations) >= wait.count) {
            waiting.delete(row.user_id);
            wait.seen(at);
          }
        }
      }
      await sleep(POLL_MS);
    }
    await db.end();
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
    },
  };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "tally-bench-completion-"));
  const plansFile = path.join(dir, "plans.yaml");
  writeFileSync(plansFile, UNLIMITED_PLANS);
  const stack = await startStack(plansFile);
  const gen = await stack.startGenerations({
    PROVIDER_IMAGE_SIZE_PX: "16",
    PROVIDER_FRACTAL_ITERATIONS_MAX: "16",
    WORKER_CONCURRENCY: String(USERS),
    WORKER_POLL_INTERVAL_MS: "20",
  });
  const creditsClient = createGrpcClient(credits.CreditsServiceClient, stack.credits.address);
  const generationsClient = createGrpcClient(generations.GenerationsServiceClient, gen.address);
  const usageClient = createGrpcClient(usage.UsageServiceClient, stack.usage.address);
  const completions = await listenCompletions(gen.databaseUrl);
  const waiting = new Map<string, { count: number; seen(at: number): void }>();
  const stats = watchStats(stack.usage.databaseUrl, waiting);
  const options = { timeoutMs: TIMEOUT_MS };
  const dbLatencies: number[] = [];
  const rpcLatencies: number[] = [];
  const counts = new Map<string, number>();
  let jobs = 0;
  try {
    const users = await Promise.all(Array.from({ length: USERS }, () => fundedAccount(creditsClient, 100_000)));
    const statsOf = async (userId: string) => Number((await callUnary(usageClient.getUserStats.bind(usageClient), { userId }, options)).stats?.totalGenerations ?? 0n);
    /** One job of `userId`: create, then wait until usage's stats count it. */
    const oneJob = async (userId: string, measure: boolean) => {
      const expected = (counts.get(userId) ?? 0) + 1;
      const created = await callUnary(generationsClient.createGeneration.bind(generationsClient), {
        requestId: newId(), userId, inputType: generations.InputType.INPUT_TYPE_TEXT, prompt: `job ${expected} of ${userId}`, photoUrl: "", address: "", style: "",
      }, options);
      const id = created.generation!.id;
      const sampleRpc = measure && ++jobs % RPC_SAMPLE_EVERY === 0;
      const rpcSeen = sampleRpc
        ? (async () => {
            while ((await statsOf(userId)) < expected) await sleep(5);
            return performance.now();
          })()
        : undefined;
      const seenAt = await new Promise<number>((resolve) => waiting.set(userId, { count: expected, seen: resolve }));
      counts.set(userId, expected);
      const completedAt = completions.completedAt.get(id);
      if (!measure || completedAt === undefined) return;
      dbLatencies.push(seenAt - completedAt);
      if (rpcSeen) rpcLatencies.push((await rpcSeen) - completedAt);
      completions.completedAt.delete(id);
    };
    // Warm-up: two jobs per user, not measured.
    await Promise.all(users.map(async (userId) => {
      await oneJob(userId, false);
      await oneJob(userId, false);
    }));
    const cycleMs = (USERS / RATE) * 1000;
    const pid = gen.process.child.pid!;
    const cpuBefore = cpuMs(pid);
    const startedAt = performance.now();
    const deadline = startedAt + SECONDS * 1000;
    await Promise.all(users.map(async (userId, index) => {
      await sleep((index * cycleMs) / USERS);
      while (performance.now() < deadline) {
        const cycleStart = performance.now();
        await oneJob(userId, true);
        await sleep(Math.max(0, cycleMs - (performance.now() - cycleStart)));
      }
    }));
    const elapsedS = (performance.now() - startedAt) / 1000;
    const measured = dbLatencies.length;
    const mismatched = (await Promise.all(users.map(async (userId) => ((await statsOf(userId)) === counts.get(userId) ? 0 : 1)))).reduce((a: number, b: number) => a + b, 0);
    const f = (samples: number[]) => `p50 ${percentile(samples, 50).toFixed(1)} ms, p99 ${percentile(samples, 99).toFixed(1)} ms, max ${Math.max(...samples).toFixed(1)} ms (${samples.length} jobs)`;
    console.log(`completion-latency benchmark (${USERS} users, one job in flight each, paced to ${RATE}/s, ${SECONDS} s, ${os.availableParallelism()} cores)`);
    console.log(`  completions measured: ${measured} in ${elapsedS.toFixed(1)} s = ${(measured / elapsedS).toFixed(0)}/s; generations CPU ${((cpuMs(pid) - cpuBefore) / Math.max(1, measured)).toFixed(1)} ms per job`);
    console.log(`  completion commit → usage stats (user_stats, polled every ${POLL_MS} ms): ${f(dbLatencies)}`);
    console.log(`  completion commit → GetUserStats RPC (every ${RPC_SAMPLE_EVERY}th job, polled every 5 ms): ${f(rpcLatencies)}`);
    console.log(`  GetUserStats counts every user's completions: ${mismatched === 0 ? "yes" : `no (${mismatched} users differ)`}`);
    const outbox = new Client({ connectionString: gen.databaseUrl });
    await outbox.connect();
    const { rows } = await outbox.query(
      `SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS p50, percentile_cont(0.99) WITHIN GROUP (ORDER BY ms) AS p99
       FROM (SELECT extract(epoch FROM published_at - created_at) * 1000 AS ms FROM outbox WHERE published_at IS NOT NULL) t`,
    );
    await outbox.end();
    console.log(`  outbox row written → marked published (generations, from the transaction's start): p50 ${Number(rows[0].p50).toFixed(1)} ms, p99 ${Number(rows[0].p99).toFixed(1)} ms`);
    const rss = [["credits", stack.credits], ["usage", stack.usage], ["generations", gen]] as const;
    console.log(`  resident memory at the end: ${rss.map(([name, s]) => `${name} ${rssMiB(s.process.child.pid!).toFixed(0)} MiB`).join(", ")}`);
  } finally {
    await stats.stop();
    await completions.close();
    creditsClient.close();
    generationsClient.close();
    usageClient.close();
    await stack.stop();
  }
}

void main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
