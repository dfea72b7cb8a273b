/**
 * The usage log survives the usage service's outage: with the usage service stopped, 200 jobs
 * complete and 50 fail (their events wait in the generations outbox and in JetStream); after
 * the usage service restarts, every figure of every usage route (summary, history as JSON
 * pages and as CSV, analytics, the admin's user usage and platform analytics) equals what a
 * query over the usage log gives, every log entry is there exactly once, credits are conserved
 * to the unit, and the reconciliation of every derived table with the log finds no difference.
 *
 * Real services (each its own process, as ops run them) on real PostgreSQL and NATS; the
 * gateway in-process. The generations worker starts only once the jobs are accepted, so that
 * every job ends while the usage service is down.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import type { AddressInfo } from "node:net";
import { jetstreamManager } from "@nats-io/jetstream";
import { Client } from "pg";
import { connectNats, createLogger, getFreePort, newId, openDatabase, spawnService, waitForGrpcServing, type ServiceProcess } from "@tally/platform";
import { createTestDatabase, eventually, testNatsUrl, uniqueSuffix } from "@tally/platform/src/testing";
import { startTestGateway, type TestGateway } from "../gateway/test/helpers";
import { usageMigrations } from "../services/usage/src/adapter/migrations";
import { buildUsageServices } from "../services/usage/src/app";

type Json = any; // eslint-disable-line @typescript-eslint/no-explicit-any

const FAULT_MARKER = "[fault:provider_error]";
const TRIAL_CREDITS = 100;
const COMPLETING_JOBS = 200;
const FAILING_JOBS = 50;
const START_TIMEOUT_MS = 45_000;
/** Limits high enough that none bites: this test is about the outage, not the limits. */
const PLANS_YAML = [
  "default_plan: free",
  "guest_plan: guest",
  "plans:",
  `  guest: { trial_credits: ${TRIAL_CREDITS}, limits: { generations_per_day: 1000, concurrent_generations: 1000, requests_per_minute: 100000 } }`,
  `  free: { trial_credits: ${TRIAL_CREDITS}, limits: { generations_per_period: 1000, concurrent_generations: 1000, requests_per_minute: 100000 } }`,
].join("\n");

const suffix = uniqueSuffix();
const adminEmail = `admin-${suffix}@example.com`;
const nats = { NATS_URL: testNatsUrl(), NATS_STREAM: `OUTAGE_${suffix}`.toUpperCase(), NATS_SUBJECT_PREFIX: `outage_${suffix}` };
const databases: { url: string; drop(): Promise<void> }[] = [];
const running = new Map<string, ServiceProcess>();
let gateway: TestGateway;
let base: string;
let usageEnv: Record<string, string>;
let generationsEnv: Record<string, string>;
let usageAddress: string;
let generationsAddress: string;

function start(name: "credits" | "usage" | "generations", env: Record<string, string>): void {
  running.set(name, spawnService(name, `services/${name}/main.ts`, env));
}

beforeAll(async () => {
  const plansFile = path.join(mkdtempSync(path.join(os.tmpdir(), "outage-plans-")), "plans.yaml");
  writeFileSync(plansFile, PLANS_YAML);
  const [creditsDb, generationsDb, usageDb] = await Promise.all([createTestDatabase("out_credits"), createTestDatabase("out_generations"), createTestDatabase("out_usage")]);
  databases.push(creditsDb, generationsDb, usageDb);
  const [creditsPort, generationsPort, usagePort] = [await getFreePort(), await getFreePort(), await getFreePort()];
  const creditsAddress = `127.0.0.1:${creditsPort}`;
  generationsAddress = `127.0.0.1:${generationsPort}`;
  usageAddress = `127.0.0.1:${usagePort}`;
  start("credits", { DATABASE_URL: creditsDb.url, GRPC_PORT: String(creditsPort), PLANS_FILE: plansFile, TALLY_ADMIN_EMAILS: adminEmail, ...nats });
  usageEnv = { ...nats, DATABASE_URL: usageDb.url, GRPC_PORT: String(usagePort), NATS_CONSUMER: `usage_outage_${suffix}`, PLANS_FILE: plansFile };
  start("usage", usageEnv);
  generationsEnv = {
    ...nats, DATABASE_URL: generationsDb.url, GRPC_PORT: String(generationsPort), CREDITS_GRPC_ADDRESS: creditsAddress, USAGE_GRPC_ADDRESS: usageAddress,
    FAULT_INJECTION_ENABLED: "true", PROVIDER_IMAGE_SIZE_PX: "32", WORKER_POLL_INTERVAL_MS: "50", WORKER_ENABLED: "false",
  };
  start("generations", generationsEnv);
  await Promise.all([creditsAddress, usageAddress, generationsAddress].map((address) => waitForGrpcServing(address, START_TIMEOUT_MS)));
  gateway = await startTestGateway({
    CREDITS_GRPC_ADDRESS: creditsAddress, GENERATIONS_GRPC_ADDRESS: generationsAddress, USAGE_GRPC_ADDRESS: usageAddress, DOWNSTREAM_TIMEOUT_MS: "5000", PLANS_FILE: plansFile,
  });
  await gateway.app.listen({ port: 0, host: "127.0.0.1" });
  base = `http://127.0.0.1:${(gateway.app.server.address() as AddressInfo).port}`;
}, 120_000);

afterAll(async () => {
  await gateway?.close();
  await Promise.all([...running.values()].map((service) => service.stop()));
  await Promise.all(databases.map((database) => database.drop().catch(() => undefined)));
  const nc = await connectNats(nats.NATS_URL, "outage-test-cleanup", createLogger("outage-test", "silent"));
  await (await jetstreamManager(nc)).streams.delete(nats.NATS_STREAM).catch(() => undefined);
  await nc.close();
}, 90_000);

interface Subject {
  label: string;
  headers: Record<string, string>;
  id: string;
}

async function call(method: string, route: string, subject?: Subject | { headers: Record<string, string> }, body?: unknown, accept?: string) {
  const response = await fetch(`${base}${route}`, {
    method,
    headers: { ...subject?.headers, ...(body !== undefined ? { "content-type": "application/json" } : {}), ...(accept ? { accept } : {}) },
    body: body !== undefined ? JSON.stringify(body) : undefined,
  });
  const text = await response.text();
  const contentType = response.headers.get("content-type") ?? "";
  return { status: response.status, contentType, body: (text && contentType.includes("json") ? JSON.parse(text) : text) as Json };
}

async function query<T = Json>(url: string, sql: string, values: unknown[] = []): Promise<T[]> {
  const db = new Client({ connectionString: url });
  await db.connect();
  try {
    return (await db.query(sql, values)).rows as T[];
  } finally {
    await db.end();
  }
}

const usageDatabase = () => databases[2].url;
const generationsDatabase = () => databases[1].url;

/** What the usage log says of one subject (or of everyone): the figures every route must show. */
async function logTotals(subjectId: string | null, since?: Date) {
  const [row] = await query(
    usageDatabase(),
    `SELECT count(*) FILTER (WHERE outcome = 'completed')::int AS generations,
            count(*) FILTER (WHERE outcome = 'failed')::int AS failed,
            coalesce(sum(credits) FILTER (WHERE outcome = 'completed'), 0)::int AS credits,
            coalesce(sum(cost_micros) FILTER (WHERE outcome = 'completed'), 0)::int AS cost_micros,
            coalesce(sum(processing_time_ms) FILTER (WHERE outcome = 'completed'), 0)::int AS processing_time_ms,
            coalesce(sum(output_bytes) FILTER (WHERE outcome = 'completed'), 0)::int AS output_bytes,
            count(DISTINCT user_id) FILTER (WHERE subject_kind = 'user')::int AS unique_users,
            count(DISTINCT user_id) FILTER (WHERE subject_kind = 'guest')::int AS unique_guests
       FROM usage_log WHERE ($1::uuid IS NULL OR user_id = $1) AND ($2::timestamptz IS NULL OR occurred_at >= $2)`,
    [subjectId, since ?? null],
  );
  return row;
}

it("records every job that ended while the usage service was down, and every route agrees with the log after it restarts", async () => {
  const report: string[] = [];
  // Four users and two guests; an admin for the admin routes.
  const subjects: Subject[] = [];
  for (let i = 0; i < 4; i++) {
    const registered = await call("POST", "/v1/auth/register", undefined, { email: `user${i}-${suffix}@example.com`, password: "correct horse battery" });
    expect(registered.status).toBe(201);
    subjects.push({ label: `user ${i}`, headers: { authorization: `Bearer ${registered.body.access_token}` }, id: registered.body.user.id });
  }
  for (let i = 0; i < 2; i++) {
    const guestId = newId();
    subjects.push({ label: `guest ${i}`, headers: { "x-guest-id": guestId }, id: guestId });
  }
  const adminRegistered = await call("POST", "/v1/auth/register", undefined, { email: adminEmail, password: "correct horse battery" });
  const admin = { headers: { authorization: `Bearer ${adminRegistered.body.access_token}` } };

  // 250 jobs accepted while every service runs (the worker is off): 200 to complete, 50 to fail.
  const jobs = Array.from({ length: COMPLETING_JOBS + FAILING_JOBS }, (_, i) => ({ subject: subjects[i % subjects.length], fails: i % 5 === 4 }));
  for (let i = 0; i < jobs.length; i += 10) {
    await Promise.all(
      jobs.slice(i, i + 10).map(async ({ subject, fails }, j) => {
        const response = await call("POST", "/v1/generations", subject, { input_type: "text", prompt: `a quiet bay ${i + j}${fails ? ` ${FAULT_MARKER}` : ""}` });
        expect(response.status).toBe(201);
      }),
    );
  }
  report.push(`${jobs.length} jobs accepted for ${subjects.length} subjects`);

  // The usage service stops; then the worker runs every job to its end.
  await running.get("usage")!.stop();
  expect((await call("GET", "/v1/usage/summary", subjects[0])).status).toBe(503);
  await running.get("generations")!.stop();
  start("generations", { ...generationsEnv, WORKER_ENABLED: "true", WORKER_CONCURRENCY: "4" });
  await waitForGrpcServing(generationsAddress, START_TIMEOUT_MS);
  const outcomes = await eventually(async () => {
    const rows = await query(generationsDatabase(), "SELECT status, count(*)::int AS n FROM generations GROUP BY status");
    const byStatus = Object.fromEntries(rows.map((row) => [row.status, row.n]));
    const [unpublished] = await query(generationsDatabase(), "SELECT count(*)::int AS n FROM outbox WHERE published_at IS NULL");
    return byStatus.completed + byStatus.failed === jobs.length && unpublished.n === 0 ? byStatus : undefined;
  }, 180_000, 500);
  expect(outcomes).toEqual({ completed: COMPLETING_JOBS, failed: FAILING_JOBS });
  expect(await query(usageDatabase(), "SELECT 1 FROM usage_log")).toHaveLength(0);
  report.push(`with the usage service down: ${outcomes.completed} completed, ${outcomes.failed} failed, every event published, the usage log still empty`);

  // The usage service comes back and catches up from JetStream.
  start("usage", usageEnv);
  await waitForGrpcServing(usageAddress, START_TIMEOUT_MS);
  const recorded = await eventually(async () => {
    const [row] = await query(usageDatabase(), "SELECT count(*)::int AS n, count(DISTINCT generation_id)::int AS generations FROM usage_log");
    return row.n >= jobs.length ? row : undefined;
  }, 60_000, 250);
  expect(recorded).toEqual({ n: jobs.length, generations: jobs.length });
  report.push(`after the restart the usage log holds ${recorded.n} entries, one per job`);
  // The gateway's channel to usage reconnects within its backoff (at most RECONNECT_BACKOFF_MS_MAX): the log may be whole before that.
  await eventually(async () => ((await call("GET", "/v1/usage/summary", subjects[0])).status === 200 ? true : undefined), 10_000, 100);

  for (const subject of subjects) await expectRoutesEqualTheLog(subject, admin);
  report.push("summary, history (JSON and CSV), analytics and the admin's user usage equal the log for every subject");

  // The platform's analytics equal the whole log.
  const platform = await call("GET", "/v1/admin/usage/analytics", admin);
  const everyone = await logTotals(null);
  expect(platform.body).toMatchObject({
    generations: everyone.generations, failed: everyone.failed, credits: everyone.credits, cost_micros: everyone.cost_micros,
    unique_users: everyone.unique_users, unique_guests: everyone.unique_guests,
  });
  expect(everyone).toMatchObject({ generations: COMPLETING_JOBS, failed: FAILING_JOBS, unique_users: 4, unique_guests: 2 });
  report.push(`admin analytics: ${platform.body.generations} generations, ${platform.body.failed} failed, ${platform.body.credits} credits`);

  // Credits are conserved to the unit: each subject's trial credits less what its completed jobs cost (guests have no balance route: read their accounts).
  for (const subject of subjects) {
    const completed = jobs.filter((job) => job.subject === subject && !job.fails).length;
    const [account] = await query(databases[0].url, "SELECT available_credits::int AS available, held_credits::int AS held, captured_credits::int AS captured FROM accounts WHERE id = $1", [subject.id]);
    expect({ subject: subject.label, ...account }).toEqual({ subject: subject.label, available: TRIAL_CREDITS - completed, held: 0, captured: completed });
    if (subject.label.startsWith("user")) expect((await call("GET", "/v1/credits/balance", subject)).body).toMatchObject({ held: 0, total_available: TRIAL_CREDITS - completed });
  }

  // Every table derived from the log equals it, and the credits ledger its balances: the admin's reconciliation finds nothing.
  const reconciliation = await call("GET", "/v1/admin/reconciliation", admin);
  expect(reconciliation.status).toBe(200);
  expect(reconciliation.body).toMatchObject({ differences: 0, credits: { differences: 0, items: [] }, usage: { differences: 0, items: [] } });
  const orm = await openDatabase({ url: usageDatabase(), entities: [], migrations: usageMigrations, logger: createLogger("outage-test", "silent"), migrate: false });
  try {
    const { stats } = buildUsageServices(orm);
    expect({ stats: await stats.reconcile(), counters: await stats.reconcileCounters(), analytics: await stats.reconcileAnalytics() }).toEqual({ stats: [], counters: [], analytics: [] });
  } finally {
    await orm.close(true);
  }
  report.push("credits conserved for every subject; the reconciliation found no difference");
  // eslint-disable-next-line no-console
  console.log(`usage outage:\n  ${report.join("\n  ")}`);
}, 600_000);

/** Summary, history (every JSON page and the CSV), analytics and, for users, the admin's view equal the usage log of `subject`. */
async function expectRoutesEqualTheLog(subject: Subject, admin: { headers: Record<string, string> }): Promise<void> {
  const summary = await call("GET", "/v1/usage/summary", subject);
  expect(summary.status).toBe(200);
  const period = await logTotals(subject.id, new Date(summary.body.period.start));
  const lifetime = await logTotals(subject.id);
  expect({ subject: subject.label, ...summary.body.period }).toMatchObject({
    subject: subject.label, generations: period.generations, failed: period.failed, credits: period.credits, cost_micros: period.cost_micros,
    processing_time_ms: period.processing_time_ms, output_bytes: period.output_bytes,
  });
  expect(summary.body.lifetime).toMatchObject({ total_generations: lifetime.generations, total_failed: lifetime.failed, total_cost_micros: lifetime.cost_micros, total_credits_spent: lifetime.credits });
  const newest = await query(usageDatabase(), "SELECT generation_id FROM usage_log WHERE user_id = $1 ORDER BY occurred_at DESC, id DESC LIMIT 10", [subject.id]);
  expect(summary.body.recent.map((entry: Json) => entry.generation_id)).toEqual(newest.map((row) => row.generation_id));

  const all = await query(usageDatabase(), "SELECT generation_id FROM usage_log WHERE user_id = $1 ORDER BY occurred_at DESC, id DESC", [subject.id]);
  const pages: string[] = [];
  let cursor: string | null = null;
  do {
    const page: Json = await call("GET", `/v1/usage/history?months=1&limit=17${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`, subject);
    expect(page.status).toBe(200);
    pages.push(...page.body.entries.map((entry: Json) => entry.generation_id));
    cursor = page.body.next_cursor;
  } while (cursor);
  expect(pages).toEqual(all.map((row) => row.generation_id));
  const csv = await call("GET", "/v1/usage/history?months=1", subject, undefined, "text/csv");
  const [header, ...rows] = (csv.body as string).trim().split("\n");
  const column = header.split(",").indexOf("generation_id");
  expect(rows.map((row) => row.split(",")[column])).toEqual(all.map((row) => row.generation_id));

  const analytics = await call("GET", "/v1/usage/analytics", subject);
  const month = analytics.body.months[0];
  expect(month.month).toBe(new Date().toISOString().slice(0, 7));
  expect(month).toMatchObject({ generations: lifetime.generations, failed: lifetime.failed, credits: lifetime.credits, cost_micros: lifetime.cost_micros, output_bytes: lifetime.output_bytes });

  if (subject.label.startsWith("user")) {
    const support = await call("GET", `/v1/admin/users/${subject.id}/usage`, admin);
    expect(support.status).toBe(200);
    expect(support.body.summary.lifetime).toEqual(summary.body.lifetime);
    expect(support.body.summary.period).toEqual(summary.body.period);
  }
}
