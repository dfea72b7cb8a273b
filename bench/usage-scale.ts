/**
 * Benchmark: the usage service at scale (issue 7).
 *
 * Starts a real usage service (a child process, as ops would run it) on a throw-away database
 * (migrated by the service at start-up) and a throw-away JetStream stream, then:
 *   1. seeds `entries` usage log entries (default 10,000,000) for `subjects` subjects (default
 *      100,000; one in five a guest) over the 24 months before now, in SQL (INSERT … SELECT over
 *      generate_series, in chunks): skewed activity (a few heavy subjects, a long tail), plans
 *      by subject (free, pro, business; guests on guest; some users move to pro half-way),
 *      providers, input types, about 8 % failures, billing classifications, credits, cost,
 *      processing time, output bytes, billing periods and plan snapshots. Indexes on the log
 *      that are not constraints are dropped before and rebuilt after (faster than maintaining
 *      them row by row; the same indexes); each seeded month has its partition before (as the
 *      partition runner keeps them), so no entry waits in the default partition;
 *   2. fills what the service derives from the log with set-based SQL, as its rebuilds do:
 *      `user_stats` (the reconciliation's aggregate), `monthly_analytics` (the view
 *      `monthly_analytics_from_log`), the platform rollups (`platform_daily_usage_from_log`,
 *      `subject_activity_from_log`), and the usage counters a running service would hold
 *      (`period_usage` for every billing period with a completion, `daily_usage` for the seed's
 *      last day: without them every ingested completion and summary would count its window from
 *      the log, as a service does only once per window); then VACUUM ANALYZE;
 *   3. reads the whole database once so the OS page cache holds it (`warmPageCache`), then
 *      measures through the service's gRPC API, sequential calls for random subjects (p50 / p99):
 *      what the gateway calls for GET /v1/usage/summary (GetUsageSummary: limits, the current
 *      billing period's totals, lifetime stats and the 10 newest entries in one statement, as
 *      gateway/src/routes/usage-summary.ts does; the subjects are seeded as usage stores them
 *      once they have reserved quota), GET /v1/usage/analytics (GetMonthlyAnalytics,
 *      12 months) and GET /v1/usage/history (ListUsageLogEntries, first page of 100, months=3);
 *      GetPlatformAnalytics over the last 90 UTC days and the last 12 months (p50 / max of
 *      several runs);
 *   4. ingest: publishes `ingest` generation events (default 20,000; completions and failures
 *      of seeded subjects, occurring now) to the service's JetStream subjects as the generations
 *      outbox relay does, and times until all are in the usage log (events/s; watching the
 *      service's consumer, not scanning the log, while the clock runs), with the CPU each
 *      process spent per event; then the same events through JetStream alone, no recording
 *      (bench/lib/nats-transport.ts): what moving them costs on this machine; then ingest from a
 *      backlog: the service is stopped, `backlog` events (default 20,000) are published, the
 *      service starts again and the clock runs from its first delivered message until the last
 *      is acked (the publisher's work is over by then: what recording costs with the producer
 *      elsewhere, or a service catching up). A CHECKPOINT comes before each measured step, so
 *      an earlier step's dirty pages are not written out during it;
 *   5. optionally (`--reconcile`, BENCH_USAGE_RECONCILE=1) checks that user stats, monthly
 *      analytics, the platform rollups and the period counters still equal the log (reads the
 *      whole log).
 * Prints a table with each figure beside its goal: ingest >= 5,000 events/s; summary and
 * analytics p99 <= 10 ms; admin analytics <= 200 ms.
 *
 * Options (flag or environment): --entries / BENCH_USAGE_ENTRIES (10,000,000), --subjects /
 * BENCH_USAGE_SUBJECTS (100,000, at most entries), --samples / BENCH_USAGE_SAMPLES (calls per
 * user-facing figure, 1,000), --platform-runs / BENCH_USAGE_PLATFORM_RUNS (7), --ingest /
 * BENCH_USAGE_INGEST (20,000; 0 skips the live ingest and the transport), --backlog /
 * BENCH_USAGE_BACKLOG (20,000; 0 skips the backlog), --reconcile / BENCH_USAGE_RECONCILE, --keep (keep the
 * database and print its URL, for EXPLAIN ANALYZE), --database / BENCH_USAGE_DATABASE_URL (run on
 * that database instead of a throw-away one, never dropped: seeded as above when it holds no
 * seed yet; when an earlier run seeded it, steps 1-2 are skipped and its entries, subjects and
 * seed time come from its `bench_usage_seed` row, so a kept 10M seed is measured again and again),
 * BENCH_CPU_PROF_DIR (the usage service runs under `--cpu-prof` and writes its profile there).
 */
import { jetstreamManager } from "@nats-io/jetstream";
import path from "node:path";
import pg from "pg";
import { usage } from "@tally/contracts";
import { callUnary, connectNats, createGrpcClient, createLogger, getFreePort, spawnService, waitForGrpcServing } from "@tally/platform";
import { createTestDatabase, testNatsUrl, uniqueSuffix } from "@tally/platform/src/testing";
import { measureTransport, type TransportCost } from "./lib/nats-transport";
import { cpuLine, ingestEvent, measureBacklog, measureIngest, transportLine, type IngestFigures } from "./lib/usage-ingest";
import { settle, warmPageCache } from "./lib/database-state";
import { BULK_SESSION, countersSql, DERIVED_SQL, RECONCILE_SQL, seededSubject, seedSql, subjectsSql, subjectUuid } from "./lib/usage-scale-sql";

const TIMEOUT_MS = 30_000;
const DAY_MS = 24 * 60 * 60 * 1000;
/** Rows per seeding statement (progress is printed after each). */
const SEED_CHUNK = 1_000_000;
/** With BENCH_CPU_PROF_DIR the usage service runs under `--cpu-prof` and writes its profile there when it stops. */
const CPU_PROF_DIR = process.env.BENCH_CPU_PROF_DIR;

export interface UsageScaleOptions {
  entries: number;
  subjects: number;
  samples: number;
  platformRuns: number;
  ingest: number;
  /** Events published while the service is stopped, then timed into the log after it starts again (0: skipped). */
  backlog: number;
  reconcile: boolean;
  keep: boolean;
  /** A database to run on (kept; seeded only when it holds no seed yet); undefined: a throw-away one. */
  database?: string;
  /** Progress lines (default: stdout). */
  log?: (line: string) => void;
}

/** Latencies in milliseconds. */
export interface Distribution {
  p50: number;
  p99: number;
  max: number;
}

export interface UsageScaleFigures {
  entries: number;
  subjects: number;
  seconds: { seed: number; indexes: number; derived: number; analyze: number };
  summary: Distribution;
  analytics: Distribution;
  history: Distribution;
  platform90Days: Distribution;
  platform12Months: Distribution;
  ingestEventsPerSecond: number;
  /** CPU per ingested event by process (null: ingest not measured). */
  ingestCpuMicrosPerEvent: IngestFigures["cpuMicrosPerEvent"] | null;
  /** Ingest from a backlog (`measureBacklog`; null: not measured). */
  backlog: IngestFigures | null;
  /** The same events through JetStream alone, with no recording (null: ingest not measured). */
  transport: TransportCost | null;
  /** Rows of derived tables that differ from the log after the run (null: not checked). */
  reconcileDifferences: number | null;
}

async function seed(db: pg.Client, options: UsageScaleOptions, end: Date, log: (line: string) => void): Promise<{ seed: number; indexes: number }> {
  for (const statement of BULK_SESSION) await db.query(statement);
  // Every seeded month gets its partition first, as the partition runner keeps them in service:
  // otherwise the whole seed lands in the default partition (and the runner's next pass moves it).
  await db.query(
    `SELECT usage_log_ensure_partitions(ARRAY(SELECT generate_series(date_trunc('month', $1::timestamptz - interval '24 months'), $1::timestamptz, interval '1 month')::date))`,
    [end],
  );
  // Indexes that are not constraints: dropped for the load, rebuilt after, exactly as defined.
  const { rows: indexes } = await db.query<{ name: string; definition: string }>(
    `SELECT i.relname AS name, pg_get_indexdef(i.oid) AS definition FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
      WHERE x.indrelid = 'usage_log'::regclass AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.oid)`,
  );
  for (const index of indexes) await db.query(`DROP INDEX ${index.name}`);
  const seedStarted = Date.now();
  for (let lo = 0; lo < options.entries; lo += SEED_CHUNK) {
    const hi = Math.min(options.entries, lo + SEED_CHUNK);
    await db.query(seedSql(lo, hi, options.entries, options.subjects, end));
    log(`  seeded ${hi.toLocaleString("en")} entries (${((Date.now() - seedStarted) / 1000).toFixed(0)} s)`);
  }
  const seedSeconds = (Date.now() - seedStarted) / 1000;
  const indexStarted = Date.now();
  // pg_get_indexdef gives a partitioned table's index as `ON ONLY usage_log`, which would build it
  // on the parent alone (invalid, no partition gets it): build it on every partition.
  for (const index of indexes) await db.query(index.definition.replace(" ON ONLY ", " ON "));
  return { seed: seedSeconds, indexes: (Date.now() - indexStarted) / 1000 };
}

/** The p-th percentile (0..100) of `samples`. */
function percentile(samples: number[], p: number): number {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

const distribution = (samples: number[]): Distribution => ({ p50: percentile(samples, 50), p99: percentile(samples, 99), max: Math.max(...samples) });

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const started = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - started) / 1e6;
}

async function sample(calls: number, fn: (i: number) => Promise<unknown>): Promise<number[]> {
  for (let i = 0; i < Math.min(50, calls); i++) await fn(i); // warm-up
  const samples: number[] = [];
  for (let i = 0; i < calls; i++) samples.push(await timed(() => fn(i)));
  return samples;
}

type UsageClient = InstanceType<typeof usage.UsageServiceClient>;

/** The read figures, through gRPC, for random seeded subjects. */
export async function measureReads(client: UsageClient, options: UsageScaleOptions, seededTo: Date) {
  const call = { timeoutMs: TIMEOUT_MS };
  const now = new Date();
  const randomSubject = () => subjectUuid(Math.floor(Math.random() * options.subjects));
  const historySince = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - 2, 1));
  const summary = await sample(options.samples, () => {
    const s = seededSubject(Math.floor(Math.random() * options.subjects), seededTo);
    const kind = s.kind === "guest" ? usage.SubjectKind.SUBJECT_KIND_GUEST : usage.SubjectKind.SUBJECT_KIND_USER;
    return callUnary(client.getUsageSummary.bind(client), { subject: { id: s.id, kind, plan: s.plan, periodAnchor: s.periodAnchor }, recentCount: 10 }, call);
  });
  const analytics = await sample(options.samples, () => callUnary(client.getMonthlyAnalytics.bind(client), { subjectId: randomSubject(), months: 12 }, call));
  const history = await sample(options.samples, () =>
    callUnary(client.listUsageLogEntries.bind(client), { userId: randomSubject(), pageSize: 100, pageToken: "", occurredSince: historySince }, call),
  );
  // Admin analytics as the gateway asks: whole UTC days up to today's end.
  const before = new Date(Math.floor(now.getTime() / DAY_MS) * DAY_MS + DAY_MS);
  const platform = (since: Date) => () => callUnary(client.getPlatformAnalytics.bind(client), { occurredSince: since, occurredBefore: before, plan: "" }, call);
  const runs = async (fn: () => Promise<unknown>) => {
    await fn(); // warm-up
    const samples: number[] = [];
    for (let i = 0; i < options.platformRuns; i++) samples.push(await timed(fn));
    return samples;
  };
  const platform90Days = await runs(platform(new Date(before.getTime() - 90 * DAY_MS)));
  const platform12Months = await runs(platform(new Date(Date.UTC(before.getUTCFullYear() - 1, before.getUTCMonth(), before.getUTCDate()))));
  return { summary, analytics, history, platform90Days, platform12Months };
}

/** The seed an earlier run left in the database (its `bench_usage_seed` row), or null when it holds none. */
async function seedOf(db: pg.Client): Promise<{ entries: number; subjects: number; seededTo: Date } | null> {
  const { rows: [table] } = await db.query<{ found: boolean }>("SELECT to_regclass('bench_usage_seed') IS NOT NULL AS found");
  if (!table!.found) return null;
  const { rows } = await db.query<{ entries: string; subjects: number; seeded_to: Date }>("SELECT entries, subjects, seeded_to FROM bench_usage_seed");
  return rows[0] ? { entries: Number(rows[0].entries), subjects: rows[0].subjects, seededTo: rows[0].seeded_to } : null;
}

/** Steps 1-2: seeds the log, fills the derived tables, VACUUM ANALYZE, then records the seed in `bench_usage_seed` (for `--database`). */
async function seedAll(db: pg.Client, options: UsageScaleOptions, end: Date, log: (line: string) => void): Promise<UsageScaleFigures["seconds"]> {
  const seeded = await seed(db, options, end, log);
  const derivedStarted = Date.now();
  for (const statement of [subjectsSql(options.subjects, end), ...DERIVED_SQL, ...countersSql(end)]) {
    const started = Date.now();
    await db.query(statement);
    log(`  ${statement.trim().split(/\s+/).slice(0, 3).join(" ")}: ${((Date.now() - started) / 1000).toFixed(0)} s`);
  }
  const derived = (Date.now() - derivedStarted) / 1000;
  const analyzeStarted = Date.now();
  await db.query("VACUUM ANALYZE");
  const analyze = (Date.now() - analyzeStarted) / 1000;
  log(`  seed ${seeded.seed.toFixed(0)} s, indexes ${seeded.indexes.toFixed(0)} s, derived tables ${derived.toFixed(0)} s, vacuum analyze ${analyze.toFixed(0)} s`);
  await db.query("CREATE TABLE bench_usage_seed (entries bigint NOT NULL, subjects integer NOT NULL, seeded_to timestamptz NOT NULL)");
  await db.query("INSERT INTO bench_usage_seed VALUES ($1, $2, $3)", [options.entries, options.subjects, end]);
  return { ...seeded, derived, analyze };
}

/** Rows of user_stats, monthly_analytics, the platform rollups and the period counters that differ from the log (`RECONCILE_SQL`). */
async function reconcile(db: pg.Client): Promise<number> {
  const { rows } = await db.query<{ n: string }>(RECONCILE_SQL);
  return Number(rows[0]!.n);
}

/** Runs the whole benchmark (see the file's comment) and returns its figures; prints progress and the table. */
export async function runUsageScale(options: UsageScaleOptions): Promise<UsageScaleFigures> {
  const log = options.log ?? ((line: string) => console.log(line));
  const database = options.database ? { url: options.database, drop: async () => undefined } : await createTestDatabase("bench_usage_scale");
  const port = await getFreePort();
  const suffix = uniqueSuffix();
  const nats = { url: testNatsUrl(), stream: `BENCH_USAGE_${suffix.toUpperCase()}`, prefix: `benchusage${suffix}`, consumer: `bench-usage-${suffix}` };
  const startService = () => spawnService("usage", "services/usage/main.ts", {
    DATABASE_URL: database.url, GRPC_PORT: String(port), GRPC_HOST: "127.0.0.1", LOG_LEVEL: "warn", DATABASE_POOL_MAX: "10",
    NATS_URL: nats.url, NATS_STREAM: nats.stream, NATS_USAGE_STREAM: `${nats.stream}_OUT`, NATS_SUBJECT_PREFIX: nats.prefix, NATS_CONSUMER: nats.consumer,
    // The consumer as ops run it: CONSUMER_BATCH_SIZE and the rest at their defaults.
    DATABASE_STATEMENT_TIMEOUT_MS: "600000",
  }, { nodeArgs: CPU_PROF_DIR ? ["--cpu-prof", `--cpu-prof-dir=${path.resolve(CPU_PROF_DIR)}`] : [] });
  let service = startService();
  const db = new pg.Client({ connectionString: database.url });
  let client: UsageClient | undefined;
  try {
    await waitForGrpcServing(`127.0.0.1:${port}`, 120_000); // migrated by the service at start-up
    await db.connect();
    const earlier = await seedOf(db);
    const seededTo = earlier?.seededTo ?? new Date();
    if (earlier) Object.assign(options, { entries: earlier.entries, subjects: earlier.subjects });
    log(`usage scale benchmark: ${options.entries.toLocaleString("en")} entries, ${options.subjects.toLocaleString("en")} subjects, 24 months to ${seededTo.toISOString()}${earlier ? " (seeded earlier: reused)" : ""}`);
    const seconds = earlier ? { seed: 0, indexes: 0, derived: 0, analyze: 0 } : await seedAll(db, options, seededTo, log);

    client = createGrpcClient(usage.UsageServiceClient, `127.0.0.1:${port}`);
    await warmPageCache(db, log);
    await settle(db);
    const reads = await measureReads(client, options, seededTo);
    // Printed at once as well: the ingest and the reconciliation take long at 10M.
    const shown = (name: string, d: Distribution) => `${name} ${d.p50.toFixed(2)} / ${d.p99.toFixed(2)} / ${d.max.toFixed(2)} ms`;
    log(`  reads (p50 / p99 / max): ${[shown("summary", distribution(reads.summary)), shown("analytics", distribution(reads.analytics)), shown("history", distribution(reads.history))].join(", ")}`);
    const { ingest, transport, backlog } = await measureIngestSteps(db, nats, options, {
      pid: () => service.child.pid,
      restart: async (whileStopped) => {
        await service.stop();
        await whileStopped();
        service = startService();
      },
    }, log);
    const reconcileDifferences = options.reconcile ? await reconcile(db) : null;
    const figures: UsageScaleFigures = {
      entries: options.entries,
      subjects: options.subjects,
      seconds,
      summary: distribution(reads.summary),
      analytics: distribution(reads.analytics),
      history: distribution(reads.history),
      platform90Days: distribution(reads.platform90Days),
      platform12Months: distribution(reads.platform12Months),
      ingestEventsPerSecond: ingest?.eventsPerSecond ?? 0,
      ingestCpuMicrosPerEvent: ingest?.cpuMicrosPerEvent ?? null,
      backlog,
      transport,
      reconcileDifferences,
    };
    printTable(figures, options, log);
    if (options.keep || options.database) log(`  database kept: ${database.url}`);
    return figures;
  } finally {
    client?.close();
    await db.end().catch(() => undefined);
    await service.stop();
    const nc = await connectNats(nats.url, "bench-usage-cleanup", createLogger("bench", "warn"));
    const jsm = await jetstreamManager(nc);
    await jsm.streams.delete(nats.stream).catch(() => undefined);
    await jsm.streams.delete(`${nats.stream}_OUT`).catch(() => undefined);
    await nc.drain();
    if (!options.keep && !options.database) await database.drop();
  }
}

/**
 * Step 4: the live ingest and the transport alone (`--ingest`), then the backlog (`--backlog`:
 * `service.restart` stops the service, and starts it again once the events are published),
 * each after a CHECKPOINT; null for a step not run.
 */
async function measureIngestSteps(
  db: pg.Client,
  nats: { url: string; prefix: string; stream: string; consumer: string },
  options: UsageScaleOptions,
  service: { pid: () => number | undefined; restart: (whileStopped: () => Promise<void>) => Promise<void> },
  log: (line: string) => void,
): Promise<{ ingest: IngestFigures | null; transport: TransportCost | null; backlog: IngestFigures | null }> {
  let [ingest, transport, backlog]: [IngestFigures | null, TransportCost | null, IngestFigures | null] = [null, null, null];
  if (options.ingest > 0) {
    await settle(db);
    ingest = await measureIngest(db, nats, options, service.pid());
    log(`  ingest ${ingest.eventsPerSecond.toFixed(0)} events/s (${options.ingest.toLocaleString("en")} events); CPU per event: ${cpuLine(ingest.cpuMicrosPerEvent)}`);
    transport = await measureTransport(nats.url, options.ingest, (i, subjects) => ingestEvent(i, subjects, options.subjects));
    log(`  transport alone: ${transportLine(transport)}`);
  }
  if (options.backlog > 0) {
    await settle(db);
    backlog = await measureBacklog(db, nats, options, async (whileStopped) => {
      await service.restart(whileStopped);
      return service.pid();
    });
    log(`  backlog ${backlog.eventsPerSecond.toFixed(0)} events/s (${options.backlog.toLocaleString("en")} events); CPU per event: ${cpuLine(backlog.cpuMicrosPerEvent)}`);
  }
  return { ingest, transport, backlog };
}

function printTable(f: UsageScaleFigures, options: UsageScaleOptions, log: (line: string) => void): void {
  const ms = (value: number) => `${value.toFixed(2)} ms`;
  const rows: [string, string, string, boolean | null][] = [
    options.ingest === 0
      ? ["ingest through NATS into the log", "not measured (--ingest 0)", ">= 5,000 events/s", null]
      : ["ingest through NATS into the log", `${f.ingestEventsPerSecond.toFixed(0)} events/s (${options.ingest.toLocaleString("en")} events)`, ">= 5,000 events/s", f.ingestEventsPerSecond >= 5_000],
    ["summary (GetUsageSummary: limits, period totals, stats, 10 newest), p50 / p99", `${ms(f.summary.p50)} / ${ms(f.summary.p99)}`, "p99 <= 10 ms", f.summary.p99 <= 10],
    ["analytics (12 months), p50 / p99", `${ms(f.analytics.p50)} / ${ms(f.analytics.p99)}`, "p99 <= 10 ms", f.analytics.p99 <= 10],
    ["history (first page of 100, 3 months), p50 / p99", `${ms(f.history.p50)} / ${ms(f.history.p99)}`, "(none)", null],
    [`admin analytics 90 days, p50 / max of ${options.platformRuns}`, `${ms(f.platform90Days.p50)} / ${ms(f.platform90Days.max)}`, "<= 200 ms", f.platform90Days.max <= 200],
    [`admin analytics 12 months, p50 / max of ${options.platformRuns}`, `${ms(f.platform12Months.p50)} / ${ms(f.platform12Months.max)}`, "<= 200 ms", f.platform12Months.max <= 200],
  ];
  if (f.ingestCpuMicrosPerEvent) rows.push(["ingest, CPU per event by process", cpuLine(f.ingestCpuMicrosPerEvent), "(none)", null]);
  if (f.backlog) {
    rows.push([`ingest from a backlog (${options.backlog.toLocaleString("en")} events published while the service was stopped)`, `${f.backlog.eventsPerSecond.toFixed(0)} events/s`, "(none)", null]);
    rows.push(["ingest from a backlog, CPU per event by process", cpuLine(f.backlog.cpuMicrosPerEvent), "(none)", null]);
  }
  if (f.transport) rows.push(["the same events through JetStream alone (no recording)", transportLine(f.transport), "(none)", null]);
  if (f.reconcileDifferences !== null) rows.push(["derived rows differing from the log after the run", String(f.reconcileDifferences), "0", f.reconcileDifferences === 0]);
  log(`\n| figure (${f.entries.toLocaleString("en")} entries, ${f.subjects.toLocaleString("en")} subjects, ${options.samples} calls each) | value | goal | met |`);
  log("| --- | --- | --- | --- |");
  for (const [name, value, goal, met] of rows) log(`| ${name} | ${value} | ${goal} | ${met === null ? "" : met ? "yes" : "NO"} |`);
}

/** Options from flags (`--entries 1000000`) and the environment (`BENCH_USAGE_ENTRIES`), flags first. */
export function usageScaleOptions(argv: string[], env: NodeJS.ProcessEnv = process.env): UsageScaleOptions {
  const flag = (name: string) => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const number = (name: string, fallback: number, least = 1) => {
    const raw = flag(name) ?? env[`BENCH_USAGE_${name.toUpperCase().replace(/-/g, "_")}`];
    const value = raw === undefined ? fallback : Number(raw.replace(/_/g, ""));
    if (!Number.isInteger(value) || value < least) throw new Error(`--${name} must be ${least === 0 ? "a non-negative" : "a positive"} integer, got ${raw}`);
    return value;
  };
  const entries = number("entries", 10_000_000);
  return {
    entries,
    subjects: Math.min(entries, number("subjects", 100_000)),
    samples: number("samples", 1_000),
    platformRuns: number("platform-runs", 7),
    ingest: number("ingest", 20_000, 0),
    backlog: number("backlog", 20_000, 0),
    reconcile: argv.includes("--reconcile") || env.BENCH_USAGE_RECONCILE === "1",
    keep: argv.includes("--keep"),
    database: flag("database") ?? (env.BENCH_USAGE_DATABASE_URL || undefined),
  };
}

if (require.main === module) {
  runUsageScale(usageScaleOptions(process.argv.slice(2))).then(
    () => process.exit(0),
    (error: unknown) => {
      console.error(error);
      process.exit(1);
    },
  );
}
