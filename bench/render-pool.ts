/**
 * Benchmark: the generations service saturated with local rendering jobs, by render-pool size.
 *
 * Starts the real credits and usage services, then for each round (GENERATION_RENDER_THREADS
 * 1, 2, 2, 1: ABBA, so both sizes see the same shared machine on average) a fresh generations service (its own database) with `BENCH_CONCURRENCY` (4) jobs
 * run at once, and hands it `BENCH_JOBS` (40) jobs per round of `BENCH_IMAGE_PX` (512) px ×
 * `BENCH_ITERATIONS` (1000) iterations, created together. While jobs wait or run, one caller
 * times the service's gRPC answers back to back (GetGeneration of a finished job, alternating
 * with the gRPC health check). Prints per pool size: jobs/s (all created → all completed), the
 * generations process's CPU time per job (from /proc: every thread, the main loop's included),
 * and the GetGeneration / health p50 / p99 while saturated, with the same idle beforehand.
 * Goal: gRPC p99 ≤ 20 ms while saturated; jobs/s grows from pool 1 to 2.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { Client } from "pg";
import { credits, generations } from "@tally/contracts";
import { callUnary, createGrpcClient, newId } from "@tally/platform";
import { cpuMs, percentile } from "./lib/stats";
import { checkHealth, closeHealthClients, fundedAccount, startStack, timedMs, TIMEOUT_MS, UNLIMITED_PLANS, type Stack } from "./lib/generation-stack";

const JOBS = Number(process.env.BENCH_JOBS ?? 40);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 4);
const IMAGE_PX = Number(process.env.BENCH_IMAGE_PX ?? 512);
const ITERATIONS = Number(process.env.BENCH_ITERATIONS ?? 1000);
/** Rounds in ABBA order, so both pool sizes see the same (shared, noisy) machine on average. */
const ROUND_ORDER = [1, 2, 2, 1];

interface RunFigures {
  threads: number;
  elapsedS: number;
  cpuMs: number;
  idle: { get: number[]; health: number[] };
  saturated: { get: number[]; health: number[] };
}

async function run(stack: Stack, creditsClient: credits.CreditsServiceClient, threads: number): Promise<RunFigures> {
  const service = await stack.startGenerations({
    GENERATION_RENDER_THREADS: String(threads),
    WORKER_CONCURRENCY: String(CONCURRENCY),
    WORKER_POLL_INTERVAL_MS: "50",
    PROVIDER_IMAGE_SIZE_PX: String(IMAGE_PX),
    PROVIDER_FRACTAL_ITERATIONS_MAX: String(ITERATIONS),
  });
  const client = createGrpcClient(generations.GenerationsServiceClient, service.address);
  const db = new Client({ connectionString: service.databaseUrl });
  await db.connect();
  const options = { timeoutMs: TIMEOUT_MS };
  try {
    const userId = await fundedAccount(creditsClient, JOBS * 10 + 100);
    const create = (prompt: string) =>
      callUnary(client.createGeneration.bind(client), { requestId: newId(), userId, inputType: generations.InputType.INPUT_TYPE_TEXT, prompt, photoUrl: "", address: "", style: "" }, options);
    const completed = async () => Number((await db.query("SELECT count(*) AS n FROM generations WHERE status = 'completed'")).rows[0].n);
    // One job to warm up (the pool's threads, the JIT) and to read back during the run.
    const probe = (await create("warm-up")).generation!.id;
    while ((await completed()) < 1) await sleep(20);
    const get = () => callUnary(client.getGeneration.bind(client), { userId, generationId: probe }, options);
    const idle = await sample(get, service.address, () => true, 200);

    const pid = service.process.child.pid!;
    const cpuBefore = cpuMs(pid);
    const startedAt = performance.now();
    // Four callers creating (the database is shared: a modest pool and few connections at once).
    let next = 0;
    await Promise.all(Array.from({ length: 4 }, async () => {
      while (next < JOBS) await create(`saturation job ${next++} of ${threads}`);
    }));
    let done = false;
    const watcher = (async () => {
      while ((await completed()) < JOBS + 1) await sleep(20);
      done = true;
    })();
    const saturated = await sample(get, service.address, () => !done, Number.POSITIVE_INFINITY);
    await watcher;
    const elapsedS = (performance.now() - startedAt) / 1000;
    return { threads, elapsedS, cpuMs: cpuMs(pid) - cpuBefore, idle, saturated };
  } finally {
    client.close();
    await db.end();
    await service.process.stop();
  }
}

/** Times GetGeneration and the health check alternately, back to back, while `more()` and up to `rounds` rounds. */
async function sample(get: () => Promise<unknown>, address: string, more: () => boolean, rounds: number): Promise<{ get: number[]; health: number[] }> {
  const figures = { get: [] as number[], health: [] as number[] };
  for (let round = 0; round < rounds && more(); round++) {
    figures.get.push(await timedMs(get));
    figures.health.push(await timedMs(() => checkHealth(address)));
    await sleep(5);
  }
  return figures;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const p = (samples: number[]) => `p50 ${percentile(samples, 50).toFixed(2)} ms, p99 ${percentile(samples, 99).toFixed(2)} ms (${samples.length} calls)`;

async function main(): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "tally-bench-render-"));
  const plansFile = path.join(dir, "plans.yaml");
  writeFileSync(plansFile, UNLIMITED_PLANS);
  const stack = await startStack(plansFile);
  const creditsClient = createGrpcClient(credits.CreditsServiceClient, stack.credits.address);
  try {
    const rounds: RunFigures[] = [];
    for (const threads of ROUND_ORDER) rounds.push(await run(stack, creditsClient, threads));
    console.log(`render-pool benchmark (${JOBS} jobs of ${IMAGE_PX} px × ${ITERATIONS} iterations per round, rounds ${ROUND_ORDER.join(", ")}, WORKER_CONCURRENCY ${CONCURRENCY}, ${os.availableParallelism()} cores)`);
    const jobsPerSecond = new Map<number, number>();
    for (const threads of [...new Set(ROUND_ORDER)]) {
      const mine = rounds.filter((r) => r.threads === threads);
      const all = (pick: (r: RunFigures) => number[]) => mine.flatMap(pick);
      const rate = (JOBS * mine.length) / mine.reduce((sum, r) => sum + r.elapsedS, 0);
      jobsPerSecond.set(threads, rate);
      const perRound = mine.map((r) => (JOBS / r.elapsedS).toFixed(2)).join(", ");
      console.log(`  pool ${threads}: ${rate.toFixed(2)} jobs/s (rounds: ${perRound}), CPU ${(mine.reduce((sum, r) => sum + r.cpuMs, 0) / (JOBS * mine.length)).toFixed(0)} ms per job (generations process, all threads)`);
      console.log(`    GetGeneration idle:      ${p(all((r) => r.idle.get))}`);
      console.log(`    GetGeneration saturated: ${p(all((r) => r.saturated.get))}`);
      console.log(`    health check saturated:  ${p(all((r) => r.saturated.health))}`);
    }
    console.log(`  jobs/s pool 2 / pool 1: ${((jobsPerSecond.get(2) ?? NaN) / (jobsPerSecond.get(1) ?? NaN)).toFixed(2)}`);
  } finally {
    creditsClient.close();
    closeHealthClients();
    await stack.stop();
  }
}

void main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
