/**
 * Benchmark: the credits service's holds and captures while its tables outgrow shared_buffers.
 *
 * The real credits service runs as a child process on a throw-away database and is driven over
 * its public gRPC API only: BENCH_CONCURRENCY (16) callers loop CreateHold → CaptureHold (1
 * credit, fresh random request and generation ids, as callers send them) on random accounts of
 * BENCH_ACCOUNTS (1,000) funded ones, until the tables a pair writes to (holds,
 * hold_allocations, ledger_entries, idempotency_keys, with their indexes and TOAST:
 * pg_total_relation_size) reach BENCH_GROWTH_TARGET_MB (default twice the server's
 * shared_buffers) or BENCH_GROWTH_MAX_S (1,800) have passed. Every BENCH_GROWTH_WINDOW_S (20)
 * it prints: elapsed time, the tables' size in MB, ops/s (one op = one CreateHold or one
 * CaptureHold), p50 / p99 of the RPCs, and the share of those tables' block accesses not found
 * in shared_buffers. At the end: the last window's ops/s ÷ the first's, the relations with the
 * most reads in the first and the last window, and pgbench's minimal credit transaction (as
 * bench/credits-vs-pgbench.ts runs it) before the drive on an empty ledger and after it with its
 * ledger grown to the same size, so the comparison is one run on one machine.
 *
 * BENCH_GROWTH_SEED_MB (0: none) pre-grows the tables with rows made by SQL (generate_series,
 * the service's own credits_uuid_v7(), the shapes a captured hold leaves) before the drive,
 * to reach many times shared_buffers quickly; the output says which part was seeded and which
 * driven. Flags override the variables: --target-mb, --seed-mb, --max-s, --window-s,
 * --concurrency.
 */
import { parseArgs } from "node:util";
import { Client } from "pg";
import { credits } from "@tally/contracts";
import { createTestDatabase } from "@tally/platform/src/testing";
import { CallTally, FUNDED_GRANT_CREDITS, fundAccounts, holdThenCapture, startBenchCredits } from "./lib/credits-service";
import { blockCounts, blockDelta, explainHoldPair, growPgbenchLedger, tableActivity, seedCredits, sharedBuffersBytes, totalSizeBytes, GROWING_TABLES, type BlockCounts } from "./lib/credits-growth-sql";
import { findPgbench, preparePgbenchDatabase, runPgbench, type PgbenchResult } from "./lib/pgbench";
import { cpuMs, fixed, loadAverage, percentile } from "./lib/stats";

const { values: flags } = parseArgs({
  options: { "target-mb": { type: "string" }, "seed-mb": { type: "string" }, "max-s": { type: "string" }, "window-s": { type: "string" }, concurrency: { type: "string" } },
  strict: false,
});
const flag = (name: string, variable: string): string | undefined => (flags[name] as string | undefined) ?? process.env[variable];
const TARGET_MB = flag("target-mb", "BENCH_GROWTH_TARGET_MB");
const SEED_MB = Number(flag("seed-mb", "BENCH_GROWTH_SEED_MB") ?? 0);
const MAX_S = Number(flag("max-s", "BENCH_GROWTH_MAX_S") ?? 1_800);
const WINDOW_S = Number(flag("window-s", "BENCH_GROWTH_WINDOW_S") ?? 20);
const CONCURRENCY = Number(flag("concurrency", "BENCH_CONCURRENCY") ?? 16);
const ACCOUNTS = Number(process.env.BENCH_ACCOUNTS ?? 1_000);
const PGBENCH_ACCOUNTS = Number(process.env.BENCH_PGBENCH_ACCOUNTS ?? 10_000);
const PGBENCH_SECONDS = Number(process.env.BENCH_PGBENCH_SECONDS ?? 10);
const SEED_CHUNK_PAIRS = Number(process.env.BENCH_GROWTH_SEED_CHUNK ?? 50_000);
const GRANT_CREDITS = FUNDED_GRANT_CREDITS;
const MB = 1024 * 1024;

interface CreditsUnderTest {
  client: credits.CreditsServiceClient;
  pid: number;
  accounts: string[];
  sql: Client;
  stop(): Promise<void>;
}

/** One printed window. */
interface Window {
  endS: number;
  sizeMb: number;
  opsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
  cpuMsPerOp: number;
  blocks: BlockCounts[];
}

/** Starts credits on its own database (no trial credits: each account has its one purchased grant) and funds ACCOUNTS accounts. */
async function startCredits(): Promise<CreditsUnderTest> {
  const service = await startBenchCredits("bench_growth", { TRIAL_CREDITS: "0" });
  const sql = new Client({ connectionString: service.databaseUrl });
  const stop = async () => {
    await sql.end().catch(() => undefined);
    await service.stop();
  };
  try {
    await sql.connect();
    const accounts = await fundAccounts(service.client, ACCOUNTS);
    return { client: service.client, pid: service.pid, accounts, sql, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

/** Share of block accesses that missed shared_buffers, over every relation of `blocks`. */
function missShare(blocks: BlockCounts[]): number {
  const read = blocks.reduce((total, b) => total + b.read, 0);
  const hit = blocks.reduce((total, b) => total + b.hit, 0);
  return read / Math.max(1, read + hit);
}

/** Drives hold → capture loops until the tables reach `targetBytes` or MAX_S pass; prints and returns every window. */
async function drive(target: CreditsUnderTest, targetBytes: number): Promise<Window[]> {
  const { client } = target;
  const pick = () => target.accounts[Math.floor(Math.random() * target.accounts.length)]!;
  const tally = new CallTally();
  const started = performance.now();
  let done = false;
  const callers = Array.from({ length: CONCURRENCY }, async () => {
    while (!done) await holdThenCapture(client, pick(), tally);
  });
  const windows: Window[] = [];
  let windowStart = performance.now();
  let cpuBefore = cpuMs(target.pid);
  let blocksBefore = await blockCounts(target.sql, GROWING_TABLES);
  console.log("| elapsed s | tables MB | ops/s | p50 ms | p99 ms | errors | credits CPU ms/op | shared_buffers misses % | load |");
  console.log("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
  while (!done) {
    await new Promise((resolve) => setTimeout(resolve, WINDOW_S * 1000));
    const { latenciesMs: samples, errors } = tally.take();
    const now = performance.now();
    const [sizeBytes, blocks] = [await totalSizeBytes(target.sql, GROWING_TABLES), await blockCounts(target.sql, GROWING_TABLES)];
    const cpuNow = cpuMs(target.pid);
    const window: Window = {
      endS: (now - started) / 1000, sizeMb: sizeBytes / MB, opsPerSecond: samples.length / ((now - windowStart) / 1000),
      p50Ms: percentile(samples, 50), p99Ms: percentile(samples, 99), errors, cpuMsPerOp: (cpuNow - cpuBefore) / Math.max(1, samples.length),
      blocks: blockDelta(blocksBefore, blocks),
    };
    windows.push(window);
    console.log(`| ${fixed(window.endS)} | ${fixed(window.sizeMb)} | ${fixed(window.opsPerSecond)} | ${fixed(window.p50Ms, 2)} | ${fixed(window.p99Ms, 2)} | ${errors} | ${fixed(window.cpuMsPerOp, 2)} | ${fixed(missShare(window.blocks) * 100, 2)} | ${loadAverage()} |`);
    [windowStart, cpuBefore, blocksBefore] = [now, cpuNow, blocks];
    done = sizeBytes >= targetBytes || window.endS >= MAX_S;
  }
  await Promise.all(callers);
  return windows;
}

/** The relations with the most shared_buffers misses in a window, per op. */
function printTopReads(label: string, window: Window): void {
  const ops = window.opsPerSecond * WINDOW_S;
  const top = [...window.blocks].sort((a, b) => b.read - a.read).slice(0, 6);
  console.log(`\n${label} (${fixed(window.sizeMb)} MB): blocks read into shared_buffers per op (misses, and new pages a relation grew by), and hit share`);
  for (const b of top) console.log(`  ${b.relation.padEnd(40)} ${fixed(b.read / ops, 3).padStart(8)} reads/op  ${fixed((b.hit / Math.max(1, b.hit + b.read)) * 100, 1).padStart(6)} % hit  ${fixed(b.sizeBytes / MB)} MB`);
}

/** At the end of the drive: the growing tables' update and vacuum counts, and one hold + capture through the SQL functions with every statement's buffers. */
async function printDiagnosis(target: CreditsUnderTest): Promise<void> {
  console.log("\ntable activity over the run:");
  for (const line of await tableActivity(target.sql, GROWING_TABLES)) console.log(line);
  try {
    const lines = await explainHoldPair(target.sql, target.accounts[Math.floor(Math.random() * target.accounts.length)]!);
    console.log("one CreateHold + CaptureHold through credits_create_hold / credits_capture_hold (auto_explain, rolled back), per statement: time, shared buffers hit / read");
    for (const line of lines) console.log(`  ${line}`);
  } catch (error) {
    console.log(`auto_explain of a hold pair failed: ${(error as Error).message}`);
  }
}

/** pgbench on random accounts at CONCURRENCY clients, or undefined with a note when it cannot run. */
async function pgbenchRound(pg: { binary: string; url: string } | undefined): Promise<PgbenchResult | string> {
  if (!pg) return "pgbench not found: skipped";
  try {
    return await runPgbench(pg.binary, pg.url, "random", PGBENCH_ACCOUNTS, CONCURRENCY, PGBENCH_SECONDS);
  } catch (error) {
    return `failed: ${(error as Error).message.split("\n").slice(0, 2).join(" ")}`;
  }
}

const describePgbench = (result: PgbenchResult | string): string =>
  typeof result === "string" ? result : `${fixed(result.tps)} TPS, p50 ${fixed(result.p50Ms, 2)} ms, p99 ${fixed(result.p99Ms, 2)} ms`;

/** Prints the end of the run: ratio of the last window to the first, where reads came from, pgbench before and after. */
function report(windows: Window[], seeded: { pairs: number; mb: number }, pgStart: PgbenchResult | string, pgEnd: PgbenchResult | string, pgLedgerMb: number): void {
  const first = windows[0]!;
  const last = windows[windows.length - 1]!;
  console.log(`\ncredits-growth: concurrency ${CONCURRENCY}, ${ACCOUNTS} random accounts, windows of ${WINDOW_S} s; load average now ${loadAverage()}`);
  console.log(seeded.pairs > 0
    ? `seeded by SQL: ${seeded.pairs.toLocaleString("en-US")} captured holds (${fixed(seeded.mb)} MB) before the drive; driven over gRPC: ${fixed(last.sizeMb - seeded.mb)} MB in ${fixed(last.endS)} s`
    : `all driven over gRPC (nothing seeded): ${fixed(last.sizeMb)} MB in ${fixed(last.endS)} s`);
  console.log(`first window ${fixed(first.opsPerSecond)} ops/s at ${fixed(first.sizeMb)} MB; last ${fixed(last.opsPerSecond)} ops/s at ${fixed(last.sizeMb)} MB: ratio last / first ${fixed(last.opsPerSecond / first.opsPerSecond, 3)}`);
  if (windows.length > 2) {
    const second = windows[1]!;
    console.log(`after a warm-up window: second window ${fixed(second.opsPerSecond)} ops/s at ${fixed(second.sizeMb)} MB: ratio last / second ${fixed(last.opsPerSecond / second.opsPerSecond, 3)}`);
  }
  const p99s = `p99 ${fixed(first.p99Ms, 2)} → ${fixed(last.p99Ms, 2)} ms; credits CPU ${fixed(first.cpuMsPerOp, 2)} → ${fixed(last.cpuMsPerOp, 2)} ms/op`;
  console.log(`${p99s}; shared_buffers misses ${fixed(missShare(first.blocks) * 100, 2)} % → ${fixed(missShare(last.blocks) * 100, 2)} %`);
  printTopReads("first window", first);
  printTopReads("last window", last);
  console.log(`\npgbench minimal credit transaction (random of ${PGBENCH_ACCOUNTS} accounts, ${CONCURRENCY} clients, ${PGBENCH_SECONDS} s):`);
  console.log(`  before, empty ledger:               ${describePgbench(pgStart)}`);
  console.log(`  after, ledger grown to ${fixed(pgLedgerMb)} MB: ${describePgbench(pgEnd)}`);
  if (typeof pgStart !== "string" && typeof pgEnd !== "string") {
    console.log(`  ratio after / before ${fixed(pgEnd.tps / pgStart.tps, 3)}; service / pgbench: first window ${fixed(first.opsPerSecond / pgStart.tps, 3)}, last window ${fixed(last.opsPerSecond / pgEnd.tps, 3)}`);
  }
}

async function main(): Promise<void> {
  const binary = findPgbench();
  const pgDatabase = binary ? await createTestDatabase("bench_growth_pgbench") : undefined;
  const pg = binary && pgDatabase ? { binary, url: pgDatabase.url } : undefined;
  let target: CreditsUnderTest | undefined;
  try {
    if (pgDatabase) await preparePgbenchDatabase(pgDatabase.url, PGBENCH_ACCOUNTS, GRANT_CREDITS * 1000n);
    target = await startCredits();
    const sharedBuffers = await sharedBuffersBytes(target.sql);
    const targetBytes = TARGET_MB ? Number(TARGET_MB) * MB : 2 * sharedBuffers;
    console.log(`credits-growth: shared_buffers ${fixed(sharedBuffers / MB)} MB; target ${fixed(targetBytes / MB)} MB of ${GROWING_TABLES.join(", ")} (or ${MAX_S} s); load average ${loadAverage()}`);
    const pgStart = await pgbenchRound(pg);
    const seeded = { pairs: 0, mb: 0 };
    if (SEED_MB > 0) {
      const seedStarted = performance.now();
      seeded.pairs = await seedCredits(target.sql, SEED_MB * MB, SEED_CHUNK_PAIRS, (bytes, pairs) => console.log(`  seeded ${pairs.toLocaleString("en-US")} pairs: ${fixed(bytes / MB)} MB`));
      seeded.mb = (await totalSizeBytes(target.sql, GROWING_TABLES)) / MB;
      console.log(`seeded by SQL to ${fixed(seeded.mb)} MB in ${fixed((performance.now() - seedStarted) / 1000)} s (then VACUUM ANALYZE); the drive starts now`);
    }
    const windows = await drive(target, targetBytes);
    const finalBytes = await totalSizeBytes(target.sql, GROWING_TABLES);
    await printDiagnosis(target);
    let pgLedgerMb = 0;
    if (pg) {
      const pgClient = new Client({ connectionString: pg.url });
      await pgClient.connect();
      await growPgbenchLedger(pgClient, finalBytes, PGBENCH_ACCOUNTS);
      pgLedgerMb = (await totalSizeBytes(pgClient, ["accounts", "ledger"])) / MB;
      await pgClient.end();
    }
    report(windows, seeded, pgStart, await pgbenchRound(pg), pgLedgerMb);
  } finally {
    await target?.stop();
    await pgDatabase?.drop();
  }
}

void main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
