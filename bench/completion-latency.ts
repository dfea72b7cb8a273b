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
 * Two phases on the same stack: the relay woken at commit (LISTEN outbox_appended), then the
 * outbox trigger dropped so the relay only polls (OUTBOX_POLL_INTERVAL_MS, as before the
 * wake-up). Prints per phase the rate reached and t1 − t0 p50 / p99 / max (database and RPC),
 * with the first hop (commit → the event on NATS, heard by a plain subscription), the ratio, a check that every user's GetUserStats counts all its completions, and the
 * resident memory (RSS) of each service process at the end. Goal: p99 ≤ 50 ms woken.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { Client } from "pg";
import { credits, events, generations, usage } from "@tally/contracts";
import { callUnary, connectNats, createGrpcClient, createLogger, newId, type NatsConnection } from "@tally/platform";
import { cpuMs, percentile, rssBytes } from "./lib/stats";
import { fundedAccount, startStack, TIMEOUT_MS, UNLIMITED_PLANS, type RunningService, type Stack } from "./lib/generation-stack";

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

/** When each GenerationCompleted reaches NATS (generation id → ms): a plain subscription hears the relay's JetStream publish. */
async function listenPublished(env: Record<string, string>): Promise<{ nc: NatsConnection; publishedAt: Map<string, number> }> {
  const nc = await connectNats(env.NATS_URL!, "bench-completion-latency", createLogger("bench", "warn"));
  const publishedAt = new Map<string, number>();
  nc.subscribe(`${env.NATS_SUBJECT_PREFIX}.generation.completed`, {
    callback: (_error, message) => void publishedAt.set(events.GenerationCompleted.decode(message.data).generationId, performance.now()),
  });
  return { nc, publishedAt };
}

interface PhaseFigures {
  db: number[];
  rpc: number[];
  published: number[];
  perSecond: number;
  cpuMsPerJob: number;
}

const f = (samples: number[]) => `p50 ${percentile(samples, 50).toFixed(1)} ms, p99 ${percentile(samples, 99).toFixed(1)} ms, max ${Math.max(...samples).toFixed(1)} ms (${samples.length} jobs)`;

/** Prints both phases, their ratio and the consistency check. */
function report(woken: PhaseFigures, polled: PhaseFigures, mismatched: number): void {
  console.log(`completion-latency benchmark (${USERS} users, one job in flight each, paced to ${RATE}/s, ${SECONDS} s per phase, ${os.availableParallelism()} cores)`);
  for (const [label, r] of [["relay woken at commit (LISTEN)", woken], ["relay polling only (trigger dropped)", polled]] as const) {
    console.log(`  ${label}: ${r.perSecond.toFixed(0)} completions/s, generations CPU ${r.cpuMsPerJob.toFixed(1)} ms per job`);
    console.log(`    completion commit → event on NATS: ${f(r.published)}`);
    console.log(`    completion commit → usage stats (user_stats, polled every ${POLL_MS} ms): ${f(r.db)}`);
    console.log(`    completion commit → GetUserStats RPC (every ${RPC_SAMPLE_EVERY}th job, polled every 5 ms): ${f(r.rpc)}`);
  }
  console.log(`  ratio woken / polling: p50 ${(percentile(woken.db, 50) / percentile(polled.db, 50)).toFixed(2)}, p99 ${(percentile(woken.db, 99) / percentile(polled.db, 99)).toFixed(2)}`);
  console.log(`  GetUserStats counts every user's completions: ${mismatched === 0 ? "yes" : `no (${mismatched} users differ)`}`);
}

/** Runs `oneJob` per user, paced to RATE in all, for SECONDS; `latencies` are cleared first and copied out. */
async function runPhase(users: string[], oneJob: (userId: string) => Promise<void>, pid: number, latencies: { db: number[]; rpc: number[]; published: number[] }): Promise<PhaseFigures> {
  for (const list of Object.values(latencies)) list.length = 0;
  const cycleMs = (USERS / RATE) * 1000;
  const cpuBefore = cpuMs(pid);
  const startedAt = performance.now();
  const deadline = startedAt + SECONDS * 1000;
  await Promise.all(users.map(async (userId, index) => {
    await sleep((index * cycleMs) / USERS);
    while (performance.now() < deadline) {
      const cycleStart = performance.now();
      await oneJob(userId);
      await sleep(Math.max(0, cycleMs - (performance.now() - cycleStart)));
    }
  }));
  const elapsedS = (performance.now() - startedAt) / 1000;
  const measured = latencies.db.length;
  return { db: [...latencies.db], rpc: [...latencies.rpc], published: [...latencies.published], perSecond: measured / elapsedS, cpuMsPerJob: (cpuMs(pid) - cpuBefore) / Math.max(1, measured) };
}

/** Credits, usage and a generations service with fast jobs (16 px) and a slot per user. */
async function startBenchStack(): Promise<{ stack: Stack; gen: RunningService }> {
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
  return { stack, gen };
}

async function main(): Promise<void> {
  const { stack, gen } = await startBenchStack();
  const creditsClient = createGrpcClient(credits.CreditsServiceClient, stack.credits.address);
  const generationsClient = createGrpcClient(generations.GenerationsServiceClient, gen.address);
  const usageClient = createGrpcClient(usage.UsageServiceClient, stack.usage.address);
  const completions = await listenCompletions(gen.databaseUrl);
  const { nc, publishedAt } = await listenPublished(stack.generationsEnv);
  const waiting = new Map<string, { count: number; seen(at: number): void }>();
  const stats = watchStats(stack.usage.databaseUrl, waiting);
  const options = { timeoutMs: TIMEOUT_MS };
  const dbLatencies: number[] = [];
  const publishLatencies: number[] = [];
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
      const published = publishedAt.get(id);
      if (published !== undefined) publishLatencies.push(published - completedAt);
      if (rpcSeen) rpcLatencies.push((await rpcSeen) - completedAt);
      completions.completedAt.delete(id);
    };
    // Warm-up: two jobs per user, not measured.
    await Promise.all(users.map((userId) => oneJob(userId, false).then(() => oneJob(userId, false))));
    const pid = gen.process.child.pid!;
    const latencies = { db: dbLatencies, rpc: rpcLatencies, published: publishLatencies };
    const woken = await runPhase(users, (userId) => oneJob(userId, true), pid, latencies);
    // The same stack with the outbox trigger dropped: the relay only polls (OUTBOX_POLL_INTERVAL_MS, 200 ms), as before the wake-up.
    const genDb = new Client({ connectionString: gen.databaseUrl });
    await genDb.connect();
    await genDb.query("DROP TRIGGER outbox_appended ON outbox");
    await genDb.end();
    const polled = await runPhase(users, (userId) => oneJob(userId, true), pid, latencies);
    const mismatched = (await Promise.all(users.map(async (userId) => ((await statsOf(userId)) === counts.get(userId) ? 0 : 1)))).reduce((a: number, b: number) => a + b, 0);
    report(woken, polled, mismatched);
    const rss = [["credits", stack.credits], ["usage", stack.usage], ["generations", gen]] as const;
    console.log(`  resident memory at the end: ${rss.map(([name, s]) => `${name} ${(rssBytes(s.process.child.pid!) / 1024 / 1024).toFixed(0)} MiB`).join(", ")}`);
  } finally {
    await Promise.all([stats.stop(), completions.close(), nc.close()]);
    for (const client of [creditsClient, generationsClient, usageClient]) client.close();
    await stack.stop();
  }
}

void main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
