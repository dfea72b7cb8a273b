/**
 * The fault run's verdict, once the stack is quiet: each check reads the services' own
 * databases (and the usage service's reconciliation) and answers with a figure that must be 0.
 * A check is `{ name, figure, detail }`; the run fails when any figure is not 0. New checks
 * (e.g. credits' reconciliation RPC or `GET /v1/admin/reconciliation`) are one more entry of
 * `runChecks`.
 */
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { credits } from "@tally/contracts";
import { callUnary, createGrpcClient, createLogger, openDatabase } from "@tally/platform";
import { Client } from "pg";
import { usageMigrations } from "../services/usage/src/adapter/migrations";
import { buildUsageServices } from "../services/usage/src/app";
import type { LoadRecord } from "./chaos-load";

/** One check's outcome: `figure` is the count of what is wrong (0 = passed). */
export interface CheckResult {
  name: string;
  figure: number;
  detail: string;
}

/** Where the checks read: the three services' database URLs, NATS, and the usage consumer. */
export interface CheckTarget {
  databaseUrl: Record<"credits" | "generations" | "usage", string>;
  natsUrl: string;
  usageStream: string;
  usageConsumer: string;
  /** The credits service's gRPC address, for its Reconcile RPC. */
  creditsAddress: string;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function query<T = any>(url: string, sql: string): Promise<T[]> {
  const client = new Client({ connectionString: url, connectionTimeoutMillis: 5_000 });
  await client.connect();
  try {
    return (await client.query(sql)).rows as T[];
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** What still moves: unfinished jobs, unpublished outbox rows, unlogged outcomes, the consumer's backlog. */
export async function backlog(target: CheckTarget): Promise<Record<string, number>> {
  const [jobs] = await query(
    target.databaseUrl.generations,
    `SELECT count(*) FILTER (WHERE status IN ('pending', 'processing') OR settled_at IS NULL)::int AS unfinished,
            count(*) FILTER (WHERE status IN ('completed', 'failed'))::int AS ended
       FROM generations`,
  );
  const outbox = async (service: "credits" | "generations" | "usage") =>
    (await query(target.databaseUrl[service], "SELECT count(*)::int AS n FROM outbox WHERE published_at IS NULL"))[0].n as number;
  const [logged] = await query(target.databaseUrl.usage, "SELECT count(*)::int AS n FROM usage_log");
  const nc = await connect({ servers: target.natsUrl, timeout: 5_000 });
  let consumerPending = 0;
  try {
    const info = await (await jetstreamManager(nc)).consumers.info(target.usageStream, target.usageConsumer);
    consumerPending = info.num_pending + info.num_ack_pending;
  } finally {
    await nc.close();
  }
  return {
    unfinished_jobs: jobs.unfinished,
    generations_outbox: await outbox("generations"),
    credits_outbox: await outbox("credits"),
    usage_outbox: await outbox("usage"),
    outcomes_not_logged: Math.max(0, jobs.ended - logged.n),
    usage_consumer_pending: consumerPending,
  };
}

/** Waits until nothing moves (every figure of `backlog` is 0); returns the last backlog and whether it got there in `timeoutMs`. */
export async function waitForQuiet(target: CheckTarget, timeoutMs: number, log: (m: string) => void): Promise<{ quiet: boolean; last: Record<string, number> }> {
  const deadline = Date.now() + timeoutMs;
  let last: Record<string, number> = {};
  let lastPrinted = 0;
  while (Date.now() < deadline) {
    try {
      last = await backlog(target);
      if (Object.values(last).every((n) => n === 0)) return { quiet: true, last };
    } catch (error) {
      last = { error: 1 };
      log(`quiet: ${(error as Error).message}`);
    }
    if (Date.now() - lastPrinted > 10_000) {
      log(`waiting for quiet: ${JSON.stringify(last)}`);
      lastPrinted = Date.now();
    }
    await sleep(1_000);
  }
  return { quiet: false, last };
}

/** Every accepted job ended (completed, failed or cancelled, and settled with credits); every job the database holds was accepted. */
async function jobsEnded(target: CheckTarget, record: LoadRecord): Promise<CheckResult> {
  const rows = await query<{ id: string; status: string; settled: boolean }>(target.databaseUrl.generations, "SELECT id, status, settled_at IS NOT NULL AS settled FROM generations");
  const byId = new Map(rows.map((r) => [r.id, r]));
  const missing = [...record.accepted.keys()].filter((id) => !byId.has(id));
  const stuck = rows.filter((r) => !["completed", "failed", "cancelled"].includes(r.status) || !r.settled);
  const notCancelled = [...record.cancelled].filter((id) => byId.get(id)?.status !== "cancelled");
  const figure = missing.length + stuck.length + notCancelled.length;
  return {
    name: "every accepted job ended",
    figure,
    detail: `${record.accepted.size} accepted, ${rows.length} stored; ${stuck.length} stuck, ${missing.length} accepted but not stored, ${notCancelled.length} cancelled (200) but not cancelled${figure ? `: ${JSON.stringify([...stuck.slice(0, 5), ...missing.slice(0, 5), ...notCancelled.slice(0, 5)])}` : ""}`,
  };
}

/** The usage log holds exactly one entry per completed or failed job, with its outcome, and none for anything else. */
async function usageExactlyOnce(target: CheckTarget): Promise<CheckResult[]> {
  const jobs = await query<{ id: string; status: string; user_id: string; credit_cost: string }>(target.databaseUrl.generations, "SELECT id, status, user_id, credit_cost FROM generations");
  const entries = await query<{ generation_id: string; outcome: string; n: number }>(
    target.databaseUrl.usage,
    "SELECT generation_id, outcome, count(*)::int AS n FROM usage_log GROUP BY generation_id, outcome",
  );
  const logged = new Map<string, { outcome: string; n: number }[]>();
  for (const e of entries) logged.set(e.generation_id, [...(logged.get(e.generation_id) ?? []), e]);
  let lost = 0;
  let doubled = 0;
  let wrong = 0;
  const examples: string[] = [];
  for (const job of jobs) {
    const found = logged.get(job.id) ?? [];
    logged.delete(job.id);
    const count = found.reduce((sum, e) => sum + e.n, 0);
    const shouldLog = job.status === "completed" || job.status === "failed";
    if (shouldLog && count === 0) lost++;
    if (count > 1) doubled += count - 1;
    if ((!shouldLog && count > 0) || (shouldLog && found.some((e) => e.outcome !== job.status))) wrong++;
    if ((shouldLog && count !== 1) || (!shouldLog && count > 0)) examples.push(`${job.id} ${job.status} logged ${JSON.stringify(found)}`);
  }
  const unknown = [...logged.values()].reduce((sum, list) => sum + list.reduce((s, e) => s + e.n, 0), 0);
  const suffix = examples.length ? `: ${examples.slice(0, 5).join("; ")}` : "";
  return [
    { name: "usage log: 0 lost", figure: lost, detail: `${lost} completed/failed jobs without an entry${suffix}` },
    { name: "usage log: 0 double counted", figure: doubled, detail: `${doubled} extra entries` },
    { name: "usage log: no entry for anything else", figure: wrong + unknown, detail: `${wrong} entries with the wrong outcome or for a cancelled job, ${unknown} for unknown generations` },
  ];
}

/**
 * INV-2 per account, to the unit: granted = available + held + captured + expired + written
 * off; available = the grants' remaining credits; held = 0 and no active hold at quiet; the
 * ledger replays to the stored balances; and what each account was charged (captured) equals
 * what its jobs' settlements charged, each hold ended as its job's settlement says (INV-3).
 */
async function creditsConserved(target: CheckTarget): Promise<CheckResult> {
  const accounts = await query(
    target.databaseUrl.credits,
    `SELECT a.id, a.available_credits AS available, a.held_credits AS held, a.captured_credits AS captured,
            a.expired_credits AS expired, a.written_off_credits AS written_off,
            (SELECT coalesce(sum(amount), 0) FROM grants g WHERE g.account_id = a.id) AS granted,
            (SELECT coalesce(sum(remaining_amount), 0) FROM grants g WHERE g.account_id = a.id) AS remaining,
            (SELECT count(*) FROM holds h WHERE h.account_id = a.id AND h.status = 'active') AS active_holds,
            (SELECT coalesce(sum(amount), 0) FROM ledger_entries l WHERE l.account_id = a.id) AS l_available,
            (SELECT coalesce(sum(held_change), 0) FROM ledger_entries l WHERE l.account_id = a.id) AS l_held,
            (SELECT coalesce(sum(captured_change), 0) FROM ledger_entries l WHERE l.account_id = a.id) AS l_captured,
            (SELECT coalesce(sum(expired_change), 0) FROM ledger_entries l WHERE l.account_id = a.id) AS l_expired,
            (SELECT coalesce(sum(written_off_change), 0) FROM ledger_entries l WHERE l.account_id = a.id) AS l_written_off
       FROM accounts a`,
  );
  const holds = await query<{ generation_id: string; status: string; captured_amount: string }>(target.databaseUrl.credits, "SELECT generation_id, status, captured_amount FROM holds");
  const jobs = await query<{ id: string; user_id: string; status: string; credits_captured: string }>(
    target.databaseUrl.generations,
    "SELECT id, user_id, status, credits_captured FROM generations",
  );
  // What each job's settlement charged (the whole hold of a completed job; a cancelled one's spent share under the refund rules).
  const charged = new Map<string, bigint>();
  for (const job of jobs) charged.set(job.user_id, (charged.get(job.user_id) ?? 0n) + BigInt(job.credits_captured));
  const drifting: string[] = [];
  for (const a of accounts) {
    const n = (k: string) => BigInt(a[k] ?? 0);
    const ok =
      n("granted") === n("available") + n("held") + n("captured") + n("expired") + n("written_off") &&
      n("remaining") === n("available") &&
      n("held") === 0n &&
      n("active_holds") === 0n &&
      n("l_available") === n("available") &&
      n("l_held") === n("held") &&
      n("l_captured") === n("captured") &&
      n("l_expired") === n("expired") &&
      n("l_written_off") === n("written_off") &&
      n("captured") === (charged.get(a.id) ?? 0n);
    if (!ok) drifting.push(`${JSON.stringify(a)} charged by generations ${charged.get(a.id) ?? 0n}`);
  }
  const holdOf = new Map(holds.map((h) => [h.generation_id, h]));
  const badHolds = jobs.filter((job) => {
    const hold = holdOf.get(job.id);
    if (!hold) return true;
    const captured = BigInt(job.credits_captured);
    return captured > 0n ? hold.status !== "captured" || BigInt(hold.captured_amount) !== captured : hold.status !== "released";
  });
  const orphanHolds = holds.filter((h) => !jobs.some((j) => j.id === h.generation_id) && h.status !== "released" && h.status !== "expired");
  return {
    name: "credits conserved per account (0 drift)",
    figure: drifting.length + badHolds.length + orphanHolds.length,
    detail: `${accounts.length} accounts, ${drifting.length} drifting; ${holds.length} holds, ${badHolds.length} not ended as their job, ${orphanHolds.length} without a job and not released${drifting.length ? `: ${drifting.slice(0, 3).join("; ")}` : ""}${badHolds.length ? ` jobs: ${JSON.stringify(badHolds.slice(0, 3))}` : ""}`,
  };
}

/** INV-6 and INV-10: the usage service's three reconciliations find 0 differences, and no quota reservation is still active. */
async function usageReconciled(target: CheckTarget): Promise<CheckResult[]> {
  const orm = await openDatabase({ url: target.databaseUrl.usage, entities: [], migrations: usageMigrations, logger: createLogger("chaos", "silent"), migrate: false });
  try {
    const { stats } = buildUsageServices(orm);
    const [userStats, counters, analytics] = [await stats.reconcile(), await stats.reconcileCounters(), await stats.reconcileAnalytics()];
    // What the admin reconciliation's usage half answers: every derived table (the platform rollups too), field by field.
    const all = await stats.reconcileAll();
    const [active] = await query(target.databaseUrl.usage, "SELECT count(*)::int AS n FROM quota_reservations WHERE status = 'active'");
    const show = (list: unknown[]) => (list.length ? `: ${JSON.stringify(list.slice(0, 3), (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v))}` : "");
    return [
      { name: "user stats equal the log", figure: userStats.length, detail: `${userStats.length} differences${show(userStats)}` },
      { name: "period counters equal the log", figure: counters.length, detail: `${counters.length} differences${show(counters)}` },
      { name: "analytics equal the log", figure: analytics.length, detail: `${analytics.length} differences${show(analytics)}` },
      { name: "no quota reservation left active", figure: active.n, detail: `${active.n} active` },
      { name: "usage Reconcile (every derived table)", figure: all.differencesTotal, detail: `${all.differencesTotal} differences${show(all.differences)}` },
    ];
  } finally {
    await orm.close(true);
  }
}

/** The credits service's own Reconcile (the admin reconciliation's credits half): every INV-2 equality over every account and grant. */
async function creditsReconciled(target: CheckTarget): Promise<CheckResult> {
  const client = createGrpcClient(credits.CreditsServiceClient, target.creditsAddress);
  try {
    const answer = await callUnary(client.reconcile.bind(client), {}, { timeoutMs: 60_000 });
    const total = Number(answer.differencesTotal);
    return { name: "credits Reconcile (ledger, balances, grants, holds)", figure: total, detail: `${total} differences${total ? `: ${JSON.stringify(answer.differences.slice(0, 3))}` : ""}` };
  } finally {
    client.close();
  }
}

/** Every check, in order. */
export async function runChecks(target: CheckTarget, record: LoadRecord): Promise<CheckResult[]> {
  return [
    await jobsEnded(target, record),
    ...(await usageExactlyOnce(target)),
    await creditsConserved(target),
    await creditsReconciled(target),
    ...(await usageReconciled(target)),
    { name: "load contract (no anomaly)", figure: record.anomalies.length, detail: record.anomalies.slice(0, 5).join("; ") || "none" },
  ];
}
