/**
 * Benchmark: 1,000 concurrent `GET /v1/generations/{id}/events` streams (issue 9, "1,000
 * concurrent streams hold with bounded memory").
 *
 * Starts the real credits, usage and generations services and the gateway (child processes,
 * as ops would run them) on throw-away databases and a throw-away JetStream stream. Creates
 * BENCH_JOBS slow jobs (`[fault:slow_ms=BENCH_SLOW_MS]`, fault injection on, the worker running
 * them all at once) for BENCH_USERS users, then opens BENCH_STREAMS event streams through the
 * gateway, spread evenly over the jobs, all at once. Prints the resident memory (VmRSS from
 * /proc/<pid>/status) of the gateway and of generations: before the streams (the jobs already
 * running), with all of them open, and after they closed (the jobs ended too); the bytes per open stream; how long opening took; and checks
 * that every stream got 200, its first `status` event, progress that never goes down, its
 * `completed` event and its close, and that generations counted every watch and none after
 * (exit code 1 otherwise).
 * Two rounds (BENCH_ROUNDS), each on new jobs: memory that grew round after round would be a leak.
 * Environment: BENCH_STREAMS (1000), BENCH_JOBS (250), BENCH_USERS (10), BENCH_SLOW_MS (90000),
 * BENCH_ROUNDS (2).
 */
import http from "node:http";
import { readFileSync, mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { connectNats, createLogger, getFreePort, spawnService, waitForGrpcServing, waitForHttpOk, type ServiceProcess } from "@tally/platform";
import { createTestDatabase, testNatsUrl, uniqueSuffix } from "@tally/platform/src/testing";

const STREAMS = Number(process.env.BENCH_STREAMS ?? 1000);
const JOBS = Number(process.env.BENCH_JOBS ?? 250);
const USERS = Number(process.env.BENCH_USERS ?? 10);
const SLOW_MS = Number(process.env.BENCH_SLOW_MS ?? 90_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);
const HEARTBEAT_MS = 5_000;
const SETTLE_MS = 3_000;
const CREATE_CONCURRENCY = 25;

const PLANS = `
default_plan: bench
guest_plan: bench
plans:
  bench: { trial_credits: 100000, limits: { requests_per_minute: 1000000 } }
`;

interface Stack {
  base: string;
  gateway: ServiceProcess;
  generations: ServiceProcess;
  generationsMetricsPort: number;
  stop(): Promise<void>;
}

/** Starts credits, usage, generations (fault injection, a worker that runs every job at once) and the gateway. */
async function startStack(): Promise<Stack> {
  const plansFile = path.join(mkdtempSync(path.join(os.tmpdir(), "bench-sse-")), "plans.yaml");
  writeFileSync(plansFile, PLANS);
  const databases = await Promise.all(["credits", "usage", "generations"].map((name) => createTestDatabase(`bench_sse_${name}`)));
  const ports = { credits: await getFreePort(), usage: await getFreePort(), generations: await getFreePort(), metrics: await getFreePort(), http: await getFreePort() };
  const address = (port: number) => `127.0.0.1:${port}`;
  const suffix = uniqueSuffix();
  const nats = { NATS_URL: testNatsUrl(), NATS_STREAM: `BENCH_SSE_${suffix.toUpperCase()}`, NATS_SUBJECT_PREFIX: `benchsse${suffix}` };
  const common = { PLANS_FILE: plansFile, LOG_LEVEL: "warn" };
  const processes = [
    spawnService("credits", "services/credits/main.ts", {
      ...common, ...nats, DATABASE_URL: databases[0]!.url, GRPC_PORT: String(ports.credits), PASSWORD_HASH_MEMORY_KIB: "64", PASSWORD_HASH_TIME_COST: "1",
    }),
    spawnService("usage", "services/usage/main.ts", { ...common, ...nats, DATABASE_URL: databases[1]!.url, GRPC_PORT: String(ports.usage) }),
  ];
  await Promise.all([waitForGrpcServing(address(ports.credits), 60_000), waitForGrpcServing(address(ports.usage), 60_000)]);
  const generations = spawnService("generations", "services/generations/main.ts", {
    ...common, ...nats, DATABASE_URL: databases[2]!.url, GRPC_PORT: String(ports.generations), METRICS_PORT: String(ports.metrics),
    CREDITS_GRPC_ADDRESS: address(ports.credits), USAGE_GRPC_ADDRESS: address(ports.usage),
    FAULT_INJECTION_ENABLED: "true", WORKER_CONCURRENCY: String(JOBS), PROVIDER_IMAGE_SIZE_PX: "32", DATABASE_POOL_MAX: "20",
  });
  processes.push(generations);
  await waitForGrpcServing(address(ports.generations), 60_000);
  const gateway = spawnService("gateway", "gateway/main.ts", {
    ...common, PORT: String(ports.http), HOST: "127.0.0.1", JWT_SECRET: `bench-${suffix}-secret-secret-secret-secret`,
    CREDITS_GRPC_ADDRESS: address(ports.credits), GENERATIONS_GRPC_ADDRESS: address(ports.generations), USAGE_GRPC_ADDRESS: address(ports.usage),
    SSE_HEARTBEAT_MS: String(HEARTBEAT_MS), RATE_LIMIT_ANONYMOUS_PER_MINUTE: "1000000", RATE_LIMIT_AUTH_PER_MINUTE: "1000000",
  });
  processes.push(gateway);
  const base = `http://127.0.0.1:${ports.http}`;
  await waitForHttpOk(`${base}/readyz`, 60_000);
  return {
    base, gateway, generations, generationsMetricsPort: ports.metrics,
    async stop() {
      for (const service of processes.reverse()) await service.stop();
      await Promise.all(databases.map((database) => database.drop()));
      const nc = await connectNats(nats.NATS_URL, "bench-sse-cleanup", createLogger("bench", "silent"));
      await (await jetstreamManager(nc)).streams.delete(nats.NATS_STREAM).catch(() => undefined);
      await nc.close();
    },
  };
}

/** Resident memory of a process, in bytes (VmRSS). */
function rssBytes(process: ServiceProcess): number {
  const status = readFileSync(`/proc/${process.child.pid}/status`, "utf8");
  return Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1]) * 1024;
}

async function postJson(url: string, body: object, headers: Record<string, string> = {}): Promise<Record<string, unknown>> {
  const response = await fetch(url, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) });
  if (response.status >= 300) throw new Error(`${url}: ${response.status} ${await response.text()}`);
  return (await response.json()) as Record<string, unknown>;
}

/** What one stream received. */
interface StreamOutcome {
  status: number;
  events: { event: string; status: string; progress: number }[];
  heartbeats: number;
  bytes: number;
}

/** Opens one event stream; `opened` resolves with the answer's head, `closed` with everything received. */
function openStream(base: string, generationId: string, token: string): { opened: Promise<number>; closed: Promise<StreamOutcome> } {
  let markOpened: (status: number) => void = () => undefined;
  const opened = new Promise<number>((resolve) => (markOpened = resolve));
  const closed = new Promise<StreamOutcome>((resolve, reject) => {
    const request = http.get(`${base}/v1/generations/${generationId}/events`, { headers: { authorization: `Bearer ${token}`, accept: "text/event-stream" } }, (response) => {
      const outcome: StreamOutcome = { status: response.statusCode ?? 0, events: [], heartbeats: 0, bytes: 0 };
      markOpened(outcome.status);
      let buffer = "";
      response.setEncoding("utf8");
      response.on("data", (chunk: string) => {
        outcome.bytes += Buffer.byteLength(chunk);
        buffer += chunk;
        let end: number;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          if (block === ": heartbeat") outcome.heartbeats += 1;
          const event = /^event: (.*)$/m.exec(block)?.[1];
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (event && data) {
            const json = JSON.parse(data) as { status: string; progress: number };
            outcome.events.push({ event, status: json.status, progress: json.progress });
          }
        }
      });
      response.on("end", () => resolve(outcome));
      response.on("error", reject);
    });
    request.on("error", reject);
  });
  return { opened, closed };
}

async function watchStreamsOpen(metricsPort: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  return Number(/^generations_watch_streams\{[^}]*\} (\d+)/m.exec(text)?.[1] ?? Number.NaN);
}

/** Whether a stream got what a slow job's watcher must get: its state first, progress never going down, `completed` last, then the close. */
function complete(outcome: StreamOutcome): boolean {
  const progress = outcome.events.map((e) => e.progress);
  return (
    outcome.status === 200 &&
    outcome.events[0]?.event === "status" &&
    outcome.events.at(-1)?.event === "status" &&
    outcome.events.at(-1)?.status === "completed" &&
    progress.every((value, i) => i === 0 || value >= progress[i - 1]!)
  );
}

const MB = 1024 * 1024;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Resident memory of the gateway and of generations, in bytes. */
const memory = (stack: Stack) => ({ gateway: rssBytes(stack.gateway), generations: rssBytes(stack.generations) });
type Memory = ReturnType<typeof memory>;

/** What one round measured. */
interface Round {
  before: Memory;
  open: Memory;
  after: Memory;
  openMs: number;
  closedMs: number;
  answered200: number;
  watching: number;
  watchingAfter: number;
  /** Whether the "all open" figures were taken while every job still ran. */
  measuredInTime: boolean;
  outcomes: StreamOutcome[];
}

/** Creates BENCH_JOBS slow jobs for the users (round robin); each job with the token of its owner. */
async function createJobs(base: string, tokens: string[], round: number): Promise<{ id: string; token: string }[]> {
  const create = async (j: number) => {
    const token = tokens[j % tokens.length]!;
    const created = await postJson(`${base}/v1/generations`, { input_type: "text", prompt: `a lighthouse ${round}.${j} [fault:slow_ms=${SLOW_MS}]` }, { authorization: `Bearer ${token}` });
    return { id: created.id as string, token };
  };
  const jobs: { id: string; token: string }[] = [];
  // A few at a time: created one by one on a loaded machine, the first jobs could end before the last stream opens.
  for (let j = 0; j < JOBS; j += CREATE_CONCURRENCY) {
    jobs.push(...(await Promise.all(Array.from({ length: Math.min(CREATE_CONCURRENCY, JOBS - j) }, (_, k) => create(j + k)))));
  }
  return jobs;
}

/** One round: BENCH_JOBS new slow jobs, BENCH_STREAMS streams on them opened at once, memory before, with all open and after. */
async function runRound(stack: Stack, tokens: string[], round: number): Promise<Round> {
  const created = Date.now();
  const jobs = await createJobs(stack.base, tokens, round);
  // "Before" has the jobs running already: the difference to "all open" is the streams alone.
  await sleep(SETTLE_MS);
  const before = memory(stack);
  const started = Date.now();
  const streams = Array.from({ length: STREAMS }, (_, s) => openStream(stack.base, jobs[s % JOBS]!.id, jobs[s % JOBS]!.token));
  const statuses = await Promise.all(streams.map((s) => s.opened));
  const openMs = Date.now() - started;
  await sleep(SETTLE_MS);
  const watching = await watchStreamsOpen(stack.generationsMetricsPort);
  const open = memory(stack);
  // No job can have ended before SLOW_MS from the first one's creation.
  const measuredInTime = Date.now() - created < SLOW_MS;
  const outcomes = await Promise.all(streams.map((s) => s.closed));
  const closedMs = Date.now() - started;
  await sleep(SETTLE_MS);
  const after = memory(stack);
  const watchingAfter = await watchStreamsOpen(stack.generationsMetricsPort);
  return { before, open, after, openMs, closedMs, answered200: statuses.filter((s) => s === 200).length, watching, watchingAfter, measuredInTime, outcomes };
}

/** Prints one round's tables; answers whether it passed (every stream complete, every watch counted and gone). */
function report(round: Round, index: number): boolean {
  const { before, open, after, outcomes } = round;
  const good = outcomes.filter(complete).length;
  const sum = (f: (o: StreamOutcome) => number) => outcomes.reduce((total, o) => total + f(o), 0);
  const row = (name: keyof Memory) =>
    `| ${name} | ${(before[name] / MB).toFixed(1)} MB | ${(open[name] / MB).toFixed(1)} MB | ${(after[name] / MB).toFixed(1)} MB | ${((open[name] - before[name]) / STREAMS / 1024).toFixed(1)} KiB |`;
  console.log(`\nsse-streams round ${index + 1}: ${STREAMS} streams over ${JOBS} jobs of ${SLOW_MS} ms (${USERS} users)\n`);
  console.log("| process | RSS before | RSS with all open | RSS after close | per open stream |");
  console.log("| --- | --- | --- | --- | --- |");
  console.log(row("gateway"));
  console.log(row("generations"));
  console.log("\n| figure | value |\n| --- | --- |");
  console.log(`| streams answered 200 | ${round.answered200} / ${STREAMS} |`);
  console.log(`| all opened in | ${round.openMs} ms |`);
  console.log(`| watches open at generations with all open | ${round.watching}${round.measuredInTime ? "" : " (LATE: measured after jobs could end)"} |`);
  console.log(`| streams complete (state first, progress never down, completed last, closed) | ${good} / ${STREAMS} |`);
  console.log(`| streams with progress events | ${outcomes.filter((o) => o.events.some((e) => e.event === "progress")).length} / ${STREAMS} |`);
  console.log(`| events / heartbeats / bytes received | ${sum((o) => o.events.length)} / ${sum((o) => o.heartbeats)} / ${sum((o) => o.bytes)} |`);
  console.log(`| last stream closed after | ${round.closedMs} ms |`);
  console.log(`| watches open at generations after close | ${round.watchingAfter} |`);
  return good === STREAMS && round.answered200 === STREAMS && round.watching === STREAMS && round.watchingAfter === 0 && round.measuredInTime;
}

async function main(): Promise<void> {
  http.globalAgent.maxSockets = Infinity;
  const stack = await startStack();
  let passed = true;
  try {
    const tokens: string[] = [];
    for (let u = 0; u < USERS; u += 1) {
      const answer = await postJson(`${stack.base}/v1/auth/register`, { email: `bench-${uniqueSuffix()}-${u}@example.com`, password: "correct horse battery" });
      tokens.push(answer.access_token as string);
    }
    // The second round shows whether memory stays bounded: a leak would grow it round by round.
    for (let round = 0; round < ROUNDS; round += 1) passed = report(await runRound(stack, tokens, round), round) && passed;
  } finally {
    await stack.stop();
  }
  process.exit(passed ? 0 : 1);
}

void main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
