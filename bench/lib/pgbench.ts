/**
 * pgbench's minimal credit transaction, the floor a credits service on the same PostgreSQL
 * can be compared with: one conditional debit of an account and one ledger row, committed.
 * `findPgbench` locates the binary, `preparePgbenchDatabase` makes its scratch tables, and
 * `runPgbench` runs one timed round and reads its per-transaction log for latencies.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { Client } from "pg";
import { percentile } from "./stats";

/** The path of a `pgbench` binary: on PATH, else the newest under /usr/lib/postgresql/<version>/bin; undefined when there is none. */
export function findPgbench(): string | undefined {
  for (const dir of (process.env.PATH ?? "").split(path.delimiter)) {
    if (dir && existsSync(path.join(dir, "pgbench"))) return path.join(dir, "pgbench");
  }
  const root = "/usr/lib/postgresql";
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root).sort((a, b) => Number(b) - Number(a));
  for (const version of versions) {
    const candidate = path.join(root, version, "bin", "pgbench");
    if (existsSync(candidate)) return candidate;
  }
  return undefined;
}

/** The two workload shapes: a random account of `accounts` per transaction, or one hot account. */
export type Shape = "random" | "hot";

/**
 * Creates the scratch tables in the (empty) database at `url`: `accounts` (`accounts` rows,
 * ids 1..accounts, each with `balance` credits) and an append-only `ledger`.
 */
export async function preparePgbenchDatabase(url: string, accounts: number, balance: bigint): Promise<void> {
  const client = new Client({ connectionString: url });
  await client.connect();
  try {
    await client.query("CREATE TABLE accounts (id integer PRIMARY KEY, balance bigint NOT NULL CHECK (balance >= 0))");
    await client.query(
      "CREATE TABLE ledger (id bigserial PRIMARY KEY, account_id integer NOT NULL, amount bigint NOT NULL, created_at timestamptz NOT NULL DEFAULT now())",
    );
    await client.query("INSERT INTO accounts (id, balance) SELECT g, $1 FROM generate_series(1, $2) AS g", [balance.toString(), accounts]);
    await client.query("VACUUM ANALYZE accounts");
  } finally {
    await client.end();
  }
}

/** The pgbench script of `shape`: a debit of one credit (never below zero) and its ledger row, in one transaction. */
export function pgbenchScript(shape: Shape, accounts: number): string {
  return [
    shape === "hot" ? "\\set id 1" : `\\set id random(1, ${accounts})`,
    "BEGIN;",
    "UPDATE accounts SET balance = balance - 1 WHERE id = :id AND balance >= 1;",
    "INSERT INTO ledger (account_id, amount) VALUES (:id, -1);",
    "COMMIT;",
    "",
  ].join("\n");
}

/** What one pgbench round measured. */
export interface PgbenchResult {
  /** Transactions per second as pgbench reports it (without connection time). */
  tps: number;
  /** Latency percentiles of its transactions, in milliseconds (from its per-transaction log). */
  p50Ms: number;
  p99Ms: number;
  transactions: number;
}

/**
 * Runs pgbench for `seconds` with `clients` connections (`-j` 2 threads, or 1 for one client),
 * prepared statements, on the database at `url`. Rejects with pgbench's own output when it
 * fails (e.g. too many connections on a busy server).
 */
export async function runPgbench(binary: string, url: string, shape: Shape, accounts: number, clients: number, seconds: number): Promise<PgbenchResult> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "bench-pgbench-"));
  try {
    const script = path.join(dir, "credit.sql");
    writeFileSync(script, pgbenchScript(shape, accounts));
    const args = ["-n", "-M", "prepared", "-f", script, "-c", String(clients), "-j", String(Math.min(2, clients)), "-T", String(seconds), "-l", "--log-prefix", path.join(dir, "tx"), url];
    const output = await run(binary, args);
    const tps = Number(/tps = ([\d.]+) \(without initial connection time\)/.exec(output)?.[1]);
    if (!Number.isFinite(tps)) throw new Error(`pgbench printed no tps:\n${output}`);
    const latenciesMs = readTransactionLog(dir);
    return { tps, p50Ms: percentile(latenciesMs, 50), p99Ms: percentile(latenciesMs, 99), transactions: latenciesMs.length };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Latencies in milliseconds from pgbench's `-l` logs (`client_id transaction_no time_us script_no epoch epoch_us` per line). */
function readTransactionLog(dir: string): number[] {
  const latenciesMs: number[] = [];
  for (const file of readdirSync(dir).filter((name) => name.startsWith("tx."))) {
    for (const line of readFileSync(path.join(dir, file), "utf8").split("\n")) {
      const fields = line.split(" ");
      if (fields.length >= 3) latenciesMs.push(Number(fields[2]) / 1000);
    }
  }
  return latenciesMs;
}

/** Runs `binary` to its end; resolves with stdout + stderr, rejects with them on a non-zero exit. */
function run(binary: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(binary, args, { stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.once("error", reject);
    child.once("exit", (code) => (code === 0 ? resolve(output) : reject(new Error(`pgbench exited ${code}: ${output.trim().slice(-1000)}`))));
  });
}
