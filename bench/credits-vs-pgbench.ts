/**
 * Benchmark: the credits service's holds and captures against pgbench's minimal credit
 * transaction on the same PostgreSQL, in one run, in one table.
 *
 * pgbench (skipped, with a message, when no binary is on PATH or under /usr/lib/postgresql):
 * a scratch database of its own (dropped at the end) with BENCH_PGBENCH_ACCOUNTS (10,000)
 * funded accounts and a ledger; each transaction debits one credit (never below zero) and
 * appends one ledger row, committed (fsync as the server is configured).
 * The credits service: the real service as a child process on a throw-away database, driven
 * over its public gRPC API only (CreateAccount, CreateGrant, CreateHold, CaptureHold), so it
 * measures whatever credits code is checked out. One operation is one CreateHold or one
 * CaptureHold (each one movement of credits and one transaction at credits, as one pgbench
 * transaction is); every caller loops hold → capture.
 * Both on random accounts (pgbench: of 10,000; the service: of BENCH_ACCOUNTS, 1,000, funded)
 * and on one hot account, at concurrency 1, 16 and 64 (BENCH_CONCURRENCIES), each run
 * BENCH_SECONDS (4) long, BENCH_ROUNDS (2) rounds; pgbench and the service alternate run by
 * run (which goes first alternates too) so both see the same machine. Prints, per shape and
 * concurrency, the medians over the rounds: pgbench TPS and p50/p99, the service's ops/s and
 * p50/p99, the ratio service ops/s ÷ pgbench TPS, and the credits process's CPU time per op.
 */
import { credits } from "@tally/contracts";
import { createTestDatabase } from "@tally/platform/src/testing";
import { CallTally, FUNDED_GRANT_CREDITS, fundAccount, fundAccounts, holdThenCapture, startBenchCredits } from "./lib/credits-service";
import { findPgbench, preparePgbenchDatabase, runPgbench, type PgbenchResult, type Shape } from "./lib/pgbench";
import { cpuMs, fixed, loadAverage, median, percentile } from "./lib/stats";

const SECONDS = Number(process.env.BENCH_SECONDS ?? 4);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);
const ACCOUNTS = Number(process.env.BENCH_ACCOUNTS ?? 1_000);
const PGBENCH_ACCOUNTS = Number(process.env.BENCH_PGBENCH_ACCOUNTS ?? 10_000);
const CONCURRENCIES = (process.env.BENCH_CONCURRENCIES ?? "1,16,64").split(",").map(Number);
const SHAPES: Shape[] = ["random", "hot"];
/** Credits granted to each account: enough for every operation of the run. */
const GRANT_CREDITS = FUNDED_GRANT_CREDITS;

/** What one service run measured. */
interface ServiceResult {
  opsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  cpuMsPerOp: number;
  errors: number;
}

/** The rounds of one (shape, concurrency) cell. */
interface Cell {
  pgbench: PgbenchResult[];
  service: ServiceResult[];
  pgbenchError?: string;
}

interface CreditsUnderTest {
  client: credits.CreditsServiceClient;
  pid: number;
  accounts: string[];
  hot: string;
  stop(): Promise<void>;
}

/** Starts credits on its own database and funds ACCOUNTS accounts + one hot account. */
async function startCredits(): Promise<CreditsUnderTest> {
  const service = await startBenchCredits("bench_vs_pgbench");
  try {
    const accounts = await fundAccounts(service.client, ACCOUNTS);
    return { client: service.client, pid: service.pid, accounts, hot: await fundAccount(service.client), stop: service.stop };
  } catch (error) {
    await service.stop();
    throw error;
  }
}

/** `concurrency` callers looping hold → capture for SECONDS on the accounts `shape` picks; every RPC timed. */
async function runService(target: CreditsUnderTest, shape: Shape, concurrency: number): Promise<ServiceResult> {
  const { client } = target;
  const pick = () => (shape === "hot" ? target.hot : target.accounts[Math.floor(Math.random() * target.accounts.length)]!);
  const tally = new CallTally();
  const cpuBefore = cpuMs(target.pid);
  const started = performance.now();
  const endAt = started + SECONDS * 1000;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (performance.now() < endAt) await holdThenCapture(client, pick(), tally);
  }));
  const { latenciesMs, errors } = tally.take();
  const elapsedS = (performance.now() - started) / 1000;
  const ops = latenciesMs.length;
  return { opsPerSecond: ops / elapsedS, p50Ms: percentile(latenciesMs, 50), p99Ms: percentile(latenciesMs, 99), cpuMsPerOp: (cpuMs(target.pid) - cpuBefore) / ops, errors };
}

/** Runs every cell ROUNDS times, pgbench and the service alternating (and which goes first alternating round by round). */
async function measure(target: CreditsUnderTest, pgbench: { binary: string; url: string } | undefined): Promise<Map<string, Cell>> {
  const cells = new Map<string, Cell>();
  for (const shape of SHAPES) for (const c of CONCURRENCIES) cells.set(`${shape}/${c}`, { pgbench: [], service: [] });
  // Warm-up: the service's JIT, pools and channels.
  await runService(target, "random", 16);
  for (let round = 0; round < ROUNDS; round++) {
    let serviceFirst = round % 2 === 1;
    for (const shape of SHAPES) {
      for (const concurrency of CONCURRENCIES) {
        const cell = cells.get(`${shape}/${concurrency}`)!;
        const runPg = async () => {
          if (!pgbench || cell.pgbenchError) return;
          try {
            cell.pgbench.push(await runPgbench(pgbench.binary, pgbench.url, shape, PGBENCH_ACCOUNTS, concurrency, SECONDS));
          } catch (error) {
            cell.pgbenchError = (error as Error).message.split("\n").slice(0, 3).join(" ");
          }
        };
        const runSvc = async () => void cell.service.push(await runService(target, shape, concurrency));
        for (const step of serviceFirst ? [runSvc, runPg] : [runPg, runSvc]) await step();
        serviceFirst = !serviceFirst;
      }
    }
  }
  return cells;
}

/** Prints the one table: per shape and concurrency, the medians over the rounds. */
function report(cells: Map<string, Cell>, pgbenchNote: string): void {
  console.log(`\ncredits vs pgbench: ${ROUNDS} round(s) of ${SECONDS} s per run, medians over rounds; load average now ${loadAverage()}`);
  console.log(`(service: ${ACCOUNTS} funded accounts, one op = one CreateHold or CaptureHold over gRPC; pgbench: ${PGBENCH_ACCOUNTS} accounts, one op = one debit + ledger row transaction)${pgbenchNote}\n`);
  console.log("| shape | concurrency | pgbench TPS | pgbench p50 / p99 ms | service ops/s | service p50 / p99 ms | ratio service / pgbench | credits CPU ms/op | service errors |");
  console.log("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
  for (const [key, cell] of cells) {
    const [shape, concurrency] = key.split("/");
    const pg = { tps: median(cell.pgbench.map((r) => r.tps)), p50: median(cell.pgbench.map((r) => r.p50Ms)), p99: median(cell.pgbench.map((r) => r.p99Ms)) };
    const svc = { ops: median(cell.service.map((r) => r.opsPerSecond)), p50: median(cell.service.map((r) => r.p50Ms)), p99: median(cell.service.map((r) => r.p99Ms)) };
    const cpu = median(cell.service.map((r) => r.cpuMsPerOp));
    const errors = cell.service.reduce((total, r) => total + r.errors, 0);
    const pgTps = cell.pgbenchError ? "failed" : fixed(pg.tps);
    console.log(`| ${shape} | ${concurrency} | ${pgTps} | ${fixed(pg.p50, 2)} / ${fixed(pg.p99, 2)} | ${fixed(svc.ops)} | ${fixed(svc.p50, 2)} / ${fixed(svc.p99, 2)} | ${fixed(svc.ops / pg.tps, 3)} | ${fixed(cpu, 2)} | ${errors} |`);
  }
  for (const [key, cell] of cells) if (cell.pgbenchError) console.log(`pgbench ${key} failed: ${cell.pgbenchError}`);
}

async function main(): Promise<void> {
  const binary = findPgbench();
  const pgDatabase = binary ? await createTestDatabase("bench_pgbench") : undefined;
  let target: CreditsUnderTest | undefined;
  try {
    if (pgDatabase) await preparePgbenchDatabase(pgDatabase.url, PGBENCH_ACCOUNTS, GRANT_CREDITS * 1000n);
    else console.log("credits-vs-pgbench: pgbench not found on PATH nor under /usr/lib/postgresql/*/bin: its columns are skipped (apt-get install postgresql-client)");
    target = await startCredits();
    const cells = await measure(target, binary && pgDatabase ? { binary, url: pgDatabase.url } : undefined);
    report(cells, binary ? "" : "; pgbench not found: skipped");
  } finally {
    await target?.stop();
    await pgDatabase?.drop();
  }
}

void main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
