/**
 * Benchmark: this checkout's credits service against a baseline checkout's, in one run.
 *
 * Set BENCH_BASELINE_DIR to another checkout of Tally (for instance a `git worktree` of an
 * earlier commit, with `npm ci` run in it); without it this benchmark says so and skips.
 * Starts both credits services side by side (child processes, each on a throw-away database)
 * and drives them with the same load in interleaved rounds, so both see the same machine:
 * hold → capture pairs from `BENCH_CONCURRENCY` (32) callers spread over 32 accounts, the same
 * on one hot account, and a sequential fresh CreateHold. Prints each side's median over
 * `BENCH_ROUNDS` (5) rounds of `BENCH_OPERATIONS` (600) pairs and the ratio this / baseline
 * (above 1 means this checkout is faster; for the latency and the credits process's CPU time
 * per pair, read from /proc, below 1).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { credits } from "@tally/contracts";
import { callUnary, createGrpcClient, getFreePort, newId, REPOSITORY_ROOT, waitForGrpcServing } from "@tally/platform";
import { createTestDatabase } from "@tally/platform/src/testing";

const BASELINE_DIR = process.env.BENCH_BASELINE_DIR;
const OPERATIONS = Number(process.env.BENCH_OPERATIONS ?? 600);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 32);
const SEQUENTIAL_CALLS = 100;
const SPREAD_ACCOUNTS = 32;
const TIMEOUT_MS = 10_000;

interface Side {
  label: string;
  child: ChildProcess;
  client: credits.CreditsServiceClient;
  drop(): Promise<void>;
  hot: string;
  spread: string[];
  spreadRates: number[];
  hotRates: number[];
  sequentialMs: number[];
  /** The credits process's CPU time per spread pair, in milliseconds. */
  cpuMsPerPair: number[];
}

/** Starts the credits service of the checkout at `root` on its own database and funds its accounts. */
async function startSide(label: string, root: string): Promise<Side> {
  const database = await createTestDatabase(`bench_baseline_${label}`);
  const port = await getFreePort();
  // `--import tsx` resolves tsx from the working directory: each side runs on its own dependencies.
  const child = spawn(process.execPath, ["--import", "tsx", path.join(root, "services/credits/main.ts")], {
    cwd: root,
    env: { ...process.env, DATABASE_URL: database.url, GRPC_PORT: String(port), LOG_LEVEL: "warn", DATABASE_POOL_MAX: "20" },
    stdio: ["ignore", "ignore", "inherit"],
  });
  await waitForGrpcServing(`127.0.0.1:${port}`, 60_000);
  const client = createGrpcClient(credits.CreditsServiceClient, `127.0.0.1:${port}`);
  const account = async () => {
    const { account } = await callUnary(client.createAccount.bind(client), {
      requestId: newId(), email: `bench-${newId()}@example.com`, password: "benchmark password", plan: "", role: credits.Role.ROLE_USER, adoptGuestId: "",
    }, { timeoutMs: TIMEOUT_MS });
    await callUnary(client.createGrant.bind(client), {
      requestId: newId(), accountId: account!.id, kind: credits.GrantKind.GRANT_KIND_PURCHASED, amount: BigInt(OPERATIONS * ROUNDS * 10), reference: "",
    }, { timeoutMs: TIMEOUT_MS });
    return account!.id;
  };
  const hot = await account();
  const spread: string[] = [];
  for (let i = 0; i < SPREAD_ACCOUNTS; i++) spread.push(await account());
  return {
    label, child, client, hot, spread, spreadRates: [], hotRates: [], sequentialMs: [], cpuMsPerPair: [],
    async drop() {
      client.close();
      child.kill("SIGINT");
      await new Promise((resolve) => child.once("exit", resolve));
      await database.drop();
    },
  };
}

/** Pairs per second of `OPERATIONS` hold → capture pairs on `side`, `CONCURRENCY` at a time, on the account `pick(i)` names. */
async function pairsPerSecond(side: Side, pick: (i: number) => string): Promise<number> {
  let next = 0;
  const started = process.hrtime.bigint();
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    for (let i = next++; i < OPERATIONS; i = next++) {
      const { hold } = await callUnary(side.client.createHold.bind(side.client), {
        requestId: newId(), accountId: pick(i), generationId: newId(), amount: 1n, ttlMs: 0n,
      }, { timeoutMs: TIMEOUT_MS });
      await callUnary(side.client.captureHold.bind(side.client), { requestId: newId(), holdId: hold!.id }, { timeoutMs: TIMEOUT_MS });
    }
  }));
  return OPERATIONS / (Number(process.hrtime.bigint() - started) / 1e9);
}

/** Mean milliseconds of a sequential fresh CreateHold on `side`. */
async function sequentialHoldMs(side: Side): Promise<number> {
  const started = process.hrtime.bigint();
  for (let i = 0; i < SEQUENTIAL_CALLS; i++) {
    await callUnary(side.client.createHold.bind(side.client), {
      requestId: newId(), accountId: side.spread[0]!, generationId: newId(), amount: 1n, ttlMs: 0n,
    }, { timeoutMs: TIMEOUT_MS });
  }
  return Number(process.hrtime.bigint() - started) / 1e6 / SEQUENTIAL_CALLS;
}

/** CPU time (user + system) the process `pid` has used so far, in milliseconds (Linux /proc). */
function cpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  // After "pid (comm) ": state is field 0, utime field 11, stime field 12, in clock ticks (100 per second).
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

async function main(): Promise<void> {
  if (!BASELINE_DIR) {
    console.log("holds-baseline: skipped (set BENCH_BASELINE_DIR to a checkout of the commit to compare against, with `npm ci` run in it)");
    return;
  }
  const sides = [await startSide("this", REPOSITORY_ROOT), await startSide("baseline", path.resolve(BASELINE_DIR))];
  try {
    for (const side of sides) await pairsPerSecond(side, (i) => side.spread[i % SPREAD_ACCOUNTS]!); // warm-up
    for (let round = 0; round < ROUNDS; round++) {
      // Alternate which side goes first, so neither always runs right after the other.
      const order = round % 2 === 0 ? sides : [...sides].reverse();
      for (const side of order) {
        const cpuBefore = cpuMs(side.child.pid!);
        side.spreadRates.push(await pairsPerSecond(side, (i) => side.spread[i % SPREAD_ACCOUNTS]!));
        side.cpuMsPerPair.push((cpuMs(side.child.pid!) - cpuBefore) / OPERATIONS);
      }
      for (const side of order) side.hotRates.push(await pairsPerSecond(side, () => side.hot));
      for (const side of order) side.sequentialMs.push(await sequentialHoldMs(side));
    }
    const [current, baseline] = sides as [Side, Side];
    console.log(`holds against baseline ${BASELINE_DIR} (${ROUNDS} interleaved rounds of ${OPERATIONS} pairs, ${CONCURRENCY} callers; medians)`);
    const row = (name: string, a: number[], b: number[], unit: string) => {
      const digits = unit === "ms" ? 2 : 0;
      const rounds = (values: number[]) => values.map((v) => v.toFixed(digits)).join(" ");
      console.log(`  ${name.padEnd(28)} this ${median(a).toFixed(digits)} ${unit}, baseline ${median(b).toFixed(digits)} ${unit}, ratio ${(median(a) / median(b)).toFixed(2)}`);
      console.log(`  ${"".padEnd(28)} (rounds: this ${rounds(a)}; baseline ${rounds(b)})`);
    };
    row("spread over 32 accounts", current.spreadRates, baseline.spreadRates, "pairs/s");
    row("one hot account", current.hotRates, baseline.hotRates, "pairs/s");
    row("sequential fresh CreateHold", current.sequentialMs, baseline.sequentialMs, "ms");
    row("credits CPU per spread pair", current.cpuMsPerPair, baseline.cpuMsPerPair, "ms");
  } finally {
    for (const side of sides) await side.drop();
  }
}

void main().catch((error) => {
  console.error(error);
  process.exit(1);
});
