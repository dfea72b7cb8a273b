/**
 * Benchmark: the front door under load. The whole stack (credits, usage, generations with its
 * worker off, so only the create path runs, and the gateway), each a child process, on
 * throw-away databases and stream; BENCH_USERS (50) users signed up through the gateway, then
 * autocannon, in this process, with every request's bearer token rotated over the users:
 *
 * - `POST /v1/generations` at concurrency 16 and 64 (reserve quota at usage, hold credits,
 *   store the job; goal at 64: ≥ 1,000 req/s with p99 ≤ 50 ms);
 * - `GET /v1/credits/balance` at concurrency 64 (goal ≥ 5,000 req/s).
 *
 * Prints per phase req/s, p50/p99 latency, 2xx, non-2xx (with their statuses) and
 * connection errors/timeouts; each process's CPU time per request of the phase (from /proc,
 * the least noisy figure on a shared machine); the hold RPCs credits answered per create
 * (CreateHold + BatchCreateHolds per CreateGeneration, from the services' `/metrics`: below 1
 * when generations batches its holds); and each process's resident memory at the end.
 *
 * With BENCH_BASELINE_DIR (another checkout of Tally with `npm ci` run in it) a second stack
 * runs from that checkout and gets the same phases, interleaved phase by phase (the order
 * alternating), so this / baseline ratios come from one run. With BENCH_CPU_PROF_DIR, this
 * checkout's gateway, generations and usage run under `--cpu-prof` and write their profiles
 * there (one folder per service) when the stack stops (summarise with `node --import tsx bench/lib/cpu-profile.ts <file>`).
 * Environment: BENCH_SECONDS (10) per phase, BENCH_ROUNDS (1), BENCH_USERS (50),
 * BENCH_PHASES (create16,create64,balance64), BENCH_LOG_LEVEL (info, every process),
 * BENCH_RSS_EVERY_S (0: off; else every process's RSS printed that often during each phase,
 * for a long run that shows whether memory grows, e.g. BENCH_PHASES=create16 BENCH_SECONDS=600
 * BENCH_RSS_EVERY_S=60).
 */
import path from "node:path";
import autocannon from "autocannon";
import { REPOSITORY_ROOT } from "@tally/platform";
import { uniqueSuffix } from "@tally/platform/src/testing";
import { startBenchStack, STACK_SERVICES, type BenchStack, type StackService } from "./lib/stack";
import { cpuMs, fixed, loadAverage, median, rssBytes } from "./lib/stats";

const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 1);
const USERS = Number(process.env.BENCH_USERS ?? 50);
const WARM_UP_SECONDS = 3;
const IDLE_SECONDS = 3;
/** The order processes are printed in (the request's way in). */
const REPORT_ORDER: StackService[] = ["gateway", "generations", "credits", "usage"];
const BASELINE_DIR = process.env.BENCH_BASELINE_DIR;
const CPU_PROF_DIR = process.env.BENCH_CPU_PROF_DIR;
const RSS_EVERY_S = Number(process.env.BENCH_RSS_EVERY_S ?? 0);

/** Every user can start far more generations than a run makes; nothing but requests_per_minute limits them. */
const PLANS = `
default_plan: bench
guest_plan: bench
plans:
  bench: { trial_credits: 10000000, limits: { requests_per_minute: 100000000 } }
`;

interface Phase {
  name: string;
  method: "GET" | "POST";
  path: string;
  body?: string;
  connections: number;
  /** The goal, printed beside the figures. */
  goal: string;
}

const ALL_PHASES: Phase[] = [
  { name: "create16", method: "POST", path: "/v1/generations", body: JSON.stringify({ input_type: "text", prompt: "a lighthouse at dusk" }), connections: 16, goal: "" },
  { name: "create64", method: "POST", path: "/v1/generations", body: JSON.stringify({ input_type: "text", prompt: "a lighthouse at dusk" }), connections: 64, goal: "≥ 1,000 req/s, p99 ≤ 50 ms" },
  { name: "balance64", method: "GET", path: "/v1/credits/balance", connections: 64, goal: "≥ 5,000 req/s" },
];
const PHASES = (process.env.BENCH_PHASES ?? ALL_PHASES.map((p) => p.name).join(",")).split(",").map((name) => {
  const phase = ALL_PHASES.find((p) => p.name === name.trim());
  if (!phase) throw new Error(`BENCH_PHASES: unknown phase ${name} (known: ${ALL_PHASES.map((p) => p.name).join(", ")})`);
  return phase;
});

/** What one phase measured on one stack. */
interface PhaseResult {
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  ok: number;
  non2xx: number;
  /** Status → count of the non-2xx answers. */
  statuses: Record<string, number>;
  errors: number;
  timeouts: number;
  /** CPU time per answered request, in milliseconds, per process. */
  cpuMsPerRequest: Record<StackService, number>;
  /** CreateHold + BatchCreateHolds RPCs credits answered per CreateGeneration generations answered. */
  holdRpcsPerCreate: number;
}

interface Side {
  stack: BenchStack;
  tokens: string[];
  results: Map<string, PhaseResult[]>;
  /** CPU time each process used per second while no request ran, in milliseconds (background loops). */
  idleCpuMsPerSecond?: Record<StackService, number>;
}

/** CPU milliseconds per second each process of `stack` uses over `seconds` with no load. */
async function idleCpu(stack: BenchStack, seconds: number): Promise<Record<StackService, number>> {
  const before = Object.fromEntries(STACK_SERVICES.map((name) => [name, cpuMs(stack.pids[name])]));
  await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
  return Object.fromEntries(STACK_SERVICES.map((name) => [name, (cpuMs(stack.pids[name]) - before[name]!) / seconds])) as Record<StackService, number>;
}

/** RPCs answered so far (`grpc_server_handled_total`, every code) by `service` of the stack, summed over `methods`. */
async function rpcsAnswered(stack: BenchStack, service: "credits" | "generations", methods: string[]): Promise<number> {
  const text = await (await fetch(stack.metricsUrls[service])).text();
  let total = 0;
  for (const m of text.matchAll(/grpc_server_handled_total\{[^}]*method="(\w+)"[^}]*\} (\d+)/g)) {
    if (methods.includes(m[1]!.toLowerCase())) total += Number(m[2]);
  }
  return total;
}

/** Hold RPCs credits answered (CreateHold + BatchCreateHolds) and CreateGeneration RPCs generations answered, so far. */
async function holdAndCreateRpcs(stack: BenchStack): Promise<{ holds: number; creates: number }> {
  const [holds, creates] = await Promise.all([rpcsAnswered(stack, "credits", ["createhold", "batchcreateholds"]), rpcsAnswered(stack, "generations", ["creategeneration"])]);
  return { holds, creates };
}

/** Signs up `USERS` users through the gateway; their access tokens. */
async function signUp(base: string): Promise<string[]> {
  const tokens: string[] = [];
  const suffix = uniqueSuffix();
  for (let u = 0; u < USERS; u += 10) {
    tokens.push(...(await Promise.all(Array.from({ length: Math.min(10, USERS - u) }, async (_, k) => {
      const response = await fetch(`${base}/v1/auth/register`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ email: `bench-${suffix}-${u + k}@example.com`, password: "correct horse battery" }),
      });
      if (response.status !== 201) throw new Error(`register: ${response.status} ${await response.text()}`);
      return ((await response.json()) as { access_token: string }).access_token;
    }))));
  }
  return tokens;
}

/** Runs `phase` on `side` for `seconds` with autocannon, each request with the next user's token. */
async function runPhase(side: Side, phase: Phase, seconds: number): Promise<PhaseResult> {
  let next = 0;
  const headers: Record<string, string> = phase.body ? { "content-type": "application/json" } : {};
  const cpuBefore = Object.fromEntries(STACK_SERVICES.map((name) => [name, cpuMs(side.stack.pids[name])]));
  const rpcsBefore = await holdAndCreateRpcs(side.stack);
  const sampler = RSS_EVERY_S > 0 ? sampleRss(side, phase, RSS_EVERY_S) : undefined;
  const result = await Promise.resolve(autocannon({
    url: side.stack.base,
    connections: phase.connections,
    duration: seconds,
    requests: [{
      method: phase.method,
      path: phase.path,
      body: phase.body,
      setupRequest: (request) => ({ ...request, headers: { ...headers, authorization: `Bearer ${side.tokens[next++ % side.tokens.length]}` } }),
    }],
  })).finally(() => clearInterval(sampler));
  const answered = Math.max(1, result.requests.total);
  const cpuMsPerRequest = Object.fromEntries(STACK_SERVICES.map((name) => [name, (cpuMs(side.stack.pids[name]) - cpuBefore[name]!) / answered])) as Record<StackService, number>;
  // Requests still in flight when autocannon stops finish in the services: wait for them, then count per CreateGeneration.
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  const rpcsAfter = await holdAndCreateRpcs(side.stack);
  const holdRpcsPerCreate = (rpcsAfter.holds - rpcsBefore.holds) / Math.max(1, rpcsAfter.creates - rpcsBefore.creates);
  const statuses: Record<string, number> = {};
  for (const [status, stat] of Object.entries(result.statusCodeStats ?? {})) if (!status.startsWith("2")) statuses[status] = stat.count ?? 0;
  return {
    requestsPerSecond: result.requests.total / result.duration,
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
    ok: result["2xx"],
    non2xx: result.non2xx,
    statuses,
    errors: result.errors,
    timeouts: result.timeouts,
    cpuMsPerRequest,
    holdRpcsPerCreate,
  };
}

/** Prints every process's RSS of `side` each `everyS` seconds while `phase` runs (clear the returned timer to stop). */
function sampleRss(side: Side, phase: Phase, everyS: number): NodeJS.Timeout {
  const started = Date.now();
  return setInterval(() => {
    const rss = REPORT_ORDER.map((name) => `${name} ${fixed(rssBytes(side.stack.pids[name]) / 1024 / 1024, 1)} MB`).join(" / ");
    console.log(`  ${side.stack.label} ${phase.name} t=${Math.round((Date.now() - started) / 1000)} s: RSS ${rss}`);
  }, everyS * 1000);
}

/** Starts one side: its stack (under --cpu-prof when asked, this checkout only) and its users. */
async function startSide(label: string, root: string): Promise<Side> {
  // One folder per service: every thread (tsx's loader has one) writes a profile of its own; the main thread's is the largest.
  const profile = (name: StackService) => ["--cpu-prof", `--cpu-prof-dir=${path.resolve(CPU_PROF_DIR!, name)}`];
  const stack = await startBenchStack({
    label, root, plans: PLANS,
    // The create path alone: no worker picks the jobs up.
    env: { generations: { WORKER_ENABLED: "false" } },
    nodeArgs: CPU_PROF_DIR && label === "this" ? { gateway: profile("gateway"), generations: profile("generations"), usage: profile("usage") } : undefined,
  });
  try {
    return { stack, tokens: await signUp(stack.base), results: new Map() };
  } catch (error) {
    await stack.stop();
    throw error;
  }
}

/** Prints the phases' figures (medians over the rounds), the ratios to the baseline, and every process's RSS. */
function report(sides: Side[]): void {
  const med = (results: PhaseResult[], pick: (r: PhaseResult) => number) => median(results.map(pick));
  console.log(`\ngateway: ${USERS} users, ${ROUNDS} round(s) of ${SECONDS} s per phase, medians over rounds; load average now ${loadAverage()}\n`);
  console.log("| stack | phase | connections | req/s | p50 ms | p99 ms | 2xx | non-2xx (statuses) | errors / timeouts | CPU ms per request: gateway / generations / credits / usage | hold RPCs per create | goal |");
  console.log("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
  for (const phase of PHASES) {
    for (const side of sides) {
      const results = side.results.get(phase.name) ?? [];
      const sum = (pick: (r: PhaseResult) => number) => results.reduce((total, r) => total + pick(r), 0);
      const statuses = new Map<string, number>();
      for (const r of results) for (const [status, count] of Object.entries(r.statuses)) statuses.set(status, (statuses.get(status) ?? 0) + count);
      const statusText = statuses.size ? ` (${[...statuses].map(([s, c]) => `${s}: ${c}`).join(", ")})` : "";
      const cpu = REPORT_ORDER.map((name) => fixed(med(results, (r) => r.cpuMsPerRequest[name]), 2)).join(" / ");
      console.log(
        `| ${side.stack.label} | ${phase.method} ${phase.path} | ${phase.connections} | ${fixed(med(results, (r) => r.requestsPerSecond))} | ${fixed(med(results, (r) => r.p50Ms), 1)} | ${fixed(med(results, (r) => r.p99Ms), 1)} | ${sum((r) => r.ok)} | ${sum((r) => r.non2xx)}${statusText} | ${sum((r) => r.errors)} / ${sum((r) => r.timeouts)} | ${cpu} | ${fixed(med(results, (r) => r.holdRpcsPerCreate), 2)} | ${phase.goal} |`,
      );
    }
  }
  if (sides.length === 2) {
    const [current, baseline] = sides as [Side, Side];
    console.log("\n| phase | req/s this / baseline | p99 this / baseline | gateway CPU per request this / baseline |\n| --- | --- | --- | --- |");
    for (const phase of PHASES) {
      const [a, b] = [current.results.get(phase.name) ?? [], baseline.results.get(phase.name) ?? []];
      const ratio = (pick: (r: PhaseResult) => number) => fixed(median(a.map(pick)) / median(b.map(pick)), 2);
      console.log(`| ${phase.name} | ${ratio((r) => r.requestsPerSecond)} | ${ratio((r) => r.p99Ms)} | ${ratio((r) => r.cpuMsPerRequest.gateway)} |`);
    }
  }
  console.log("\n| stack | RSS at the end: gateway / generations / credits / usage | CPU ms per second with no load (before the phases) |\n| --- | --- | --- |");
  for (const side of sides) {
    const rss = (name: StackService) => `${fixed(rssBytes(side.stack.pids[name]) / 1024 / 1024, 1)} MB`;
    const idle = REPORT_ORDER.map((name) => fixed(side.idleCpuMsPerSecond?.[name] ?? Number.NaN, 0)).join(" / ");
    console.log(`| ${side.stack.label} | ${rss("gateway")} / ${rss("generations")} / ${rss("credits")} / ${rss("usage")} | ${idle} |`);
  }
}

async function main(): Promise<void> {
  const sides: Side[] = [];
  try {
    sides.push(await startSide("this", REPOSITORY_ROOT));
    if (BASELINE_DIR) sides.push(await startSide("baseline", path.resolve(BASELINE_DIR)));
    for (const side of sides) await runPhase(side, PHASES[0]!, WARM_UP_SECONDS);
    for (const side of sides) side.idleCpuMsPerSecond = await idleCpu(side.stack, IDLE_SECONDS);
    for (let round = 0; round < ROUNDS; round++) {
      for (const [index, phase] of PHASES.entries()) {
        // Alternate which side goes first, so neither always runs right after the other.
        const order = (round + index) % 2 === 0 ? sides : [...sides].reverse();
        for (const side of order) {
          const results = side.results.get(phase.name) ?? [];
          results.push(await runPhase(side, phase, SECONDS));
          side.results.set(phase.name, results);
        }
      }
    }
    report(sides);
  } finally {
    for (const side of sides) await side.stack.stop();
  }
}

void main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
