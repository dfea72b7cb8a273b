/**
 * The full rebuild of every table derived from the usage log (`npm run usage-admin -- rebuild`,
 * StatsService.rebuild) and the Reconcile RPC, on real PostgreSQL and NATS: the rebuild
 * reproduces each derived table exactly (snapshot, corrupt, rebuild, compare), keeps the
 * reserved part that active reservations hold, and is safe while events are recorded
 * concurrently (reconciliation finds nothing afterwards).
 */
import { usage } from "@tally/contracts";
import { newId, parsePlanCatalog } from "@tally/platform";
import { runRepositoryScript } from "@tally/platform/src/testing";
import type { UsageService } from "../src/app";
import { usageLogEntryFromCompleted, usageLogEntryFromFailed } from "../src/domain/usage-log";
import { completedEvent, createUsageTestBed, failedEvent, recordUsage, usageClient, type UsageTestBed } from "./helpers";

const plans = parsePlanCatalog({
  default_plan: "free",
  guest_plan: "guest",
  plans: {
    guest: { trial_credits: 3, limits: { generations_per_day: 10_000, concurrent_generations: 10_000, requests_per_minute: 120 } },
    free: { trial_credits: 10, limits: { generations_per_period: 100_000, generations_per_day: 100_000, credits_per_period: 10_000_000, concurrent_generations: 10_000, requests_per_minute: 600 } },
  },
});
const USER = usage.SubjectKind.SUBJECT_KIND_USER;
const GUEST = usage.SubjectKind.SUBJECT_KIND_GUEST;
const ANCHOR = new Date("2026-01-15T00:00:00.000Z");

/** Every derived table in a stable order, without `updated_at` (a rebuild rewrites it). */
const SNAPSHOT_SQL = {
  user_stats: "SELECT user_id, total_generations, total_failed, total_cost_micros, total_credits_spent, last_activity_at, total_downloaded FROM user_stats ORDER BY user_id",
  period_usage: "SELECT subject_id, period_start, period_end, generations, credits, processing_ms, reserved_generations, reserved_credits FROM period_usage ORDER BY subject_id, period_start",
  daily_usage: "SELECT subject_id, day, generations, reserved_generations FROM daily_usage ORDER BY subject_id, day",
  subjects: "SELECT id, kind, plan, period_anchor, active_reservations, adopted_by FROM subjects ORDER BY id",
  monthly_analytics: "SELECT * FROM monthly_analytics ORDER BY subject_id, month",
};

describe("usage: full rebuild of the derived tables, and Reconcile", () => {
  let bed: UsageTestBed;
  let service: UsageService;
  let client: ReturnType<typeof usageClient>;

  beforeAll(async () => {
    bed = await createUsageTestBed("rebuild");
    service = await bed.start({ RESERVATION_TTL_MS: 3_600_000, RESERVATION_SWEEP_INTERVAL_MS: 600_000 }, { plans });
    client = usageClient(service.grpcPort);
  });
  afterAll(async () => {
    client?.close();
    await bed?.close();
  });

  const sql = <T>(statement: string, params: unknown[] = []) => service.orm.em.fork().execute<T[]>(statement, params as never[]);
  const snapshot = async () => Object.fromEntries(await Promise.all(Object.entries(SNAPSHOT_SQL).map(async ([table, q]) => [table, await sql(q)] as const)));
  const subject = (id: string, kind = USER): usage.Subject => ({ id, kind, plan: kind === USER ? "free" : "guest", periodAnchor: ANCHOR });

  /** One generation of `s`: reserved, then (by `outcome`) completed, failed or left running; a completion is downloaded `downloads` times. */
  const generation = async (s: usage.Subject, outcome: "completed" | "failed" | "running", downloads = 0) => {
    const generationId = newId();
    await client.checkAndReserve({ subject: s, generationId, credits: 5n });
    if (outcome === "completed") {
      await recordUsage(service.orm, bed.subjects.completed, usageLogEntryFromCompleted(completedEvent(s.id, { generationId, occurredAt: new Date() })));
    } else if (outcome === "failed") {
      await recordUsage(service.orm, bed.subjects.failed, usageLogEntryFromFailed(failedEvent(s.id, { generationId, occurredAt: new Date() })));
    }
    for (let i = 0; i < downloads; i += 1) {
      await service.services.usageLog.recordDownload(bed.subjects.downloaded, { eventId: newId(), userId: s.id, generationId, outputBytes: 2_048n, occurredAt: new Date() });
    }
  };

  /** A few users with completions, failures, downloads and running generations, and a guest adopted by a user. */
  const seed = async () => {
    const users = [newId(), newId(), newId()].map((id) => subject(id));
    for (const [i, s] of users.entries()) {
      await generation(s, "completed", i);
      await generation(s, "completed");
      await generation(s, "failed");
      await generation(s, "running");
    }
    // Completions of an older month (no reservation), as an older job's would be.
    await recordUsage(service.orm, bed.subjects.completed, usageLogEntryFromCompleted(completedEvent(users[0]!.id, { occurredAt: new Date("2026-02-03T10:00:00Z") })));
    const guest = subject(newId(), GUEST);
    await generation(guest, "completed");
    await generation(guest, "running");
    await client.adoptGuest(guest.id, users[1]!);
    return users;
  };

  it("reproduces every derived table exactly after they were corrupted (the CLI, rows written per table)", async () => {
    const users = await seed();
    expect(await client.reconcile()).toEqual({ differencesTotal: 0n, differences: [] });
    const before = await snapshot();
    const [a, b] = [users[0]!.id, users[1]!.id];
    await sql("UPDATE user_stats SET total_generations = total_generations + 3, total_downloaded = total_downloaded + 1 WHERE user_id = ?", [a]);
    await sql("DELETE FROM user_stats WHERE user_id = ?", [b]);
    await sql("UPDATE period_usage SET generations = generations + 1, reserved_credits = reserved_credits + 2 WHERE subject_id = ?", [a]);
    await sql("UPDATE daily_usage SET reserved_generations = reserved_generations + 1, generations = 0 WHERE subject_id = ?", [b]);
    await sql("UPDATE subjects SET active_reservations = active_reservations + 4 WHERE id = ?", [a]);
    await sql("DELETE FROM monthly_analytics WHERE subject_id = ? AND month = '2026-02-01'", [a]);
    await sql(`UPDATE monthly_analytics SET by_provider = '{"x": {"completed": 1, "failed": 0}}', credits = credits + 9 WHERE subject_id = ?`, [b]);
    expect(await snapshot()).not.toEqual(before);
    const dirty = await client.reconcile();
    expect(new Set(dirty.differences.map((d) => d.check))).toEqual(
      new Set([
        "user_stats.total_generations", "user_stats.total_downloaded", "user_stats.total_failed", "user_stats.total_cost_micros",
        "user_stats.total_credits_spent", "user_stats.last_activity_at", "period_usage.generations", "period_usage.reserved_credits",
        "daily_usage.generations", "daily_usage.reserved_generations", "subjects.active_reservations", "monthly_analytics",
        "monthly_analytics.by_provider", "monthly_analytics.credits",
      ]),
    );
    expect(dirty.differences).toContainEqual({ check: "subjects.active_reservations", subjectId: a, key: "", expected: "1", actual: "5" });

    const run = await runRepositoryScript("scripts/usage-admin.ts", ["rebuild"], { DATABASE_URL: bed.config.DATABASE_URL });
    expect([run.code, run.stderr]).toEqual([0, ""]);
    expect(JSON.parse(run.stdout)).toEqual({
      rows_written: {
        user_stats: before.user_stats!.length,
        period_usage: before.period_usage!.length,
        daily_usage: before.daily_usage!.length,
        subjects: before.subjects!.length,
        monthly_analytics: before.monthly_analytics!.length,
      },
    });
    expect(await snapshot()).toEqual(before);
    expect(await client.reconcile()).toEqual({ differencesTotal: 0n, differences: [] });
  }, 120_000);

  it("derives the months from the log set-based exactly as the per-entry contributions add up (Migration20261130000001)", async () => {
    await seed();
    // The view as Migration20261126000001 defined it: every entry's contribution folded by the merge aggregates.
    const folded = `SELECT c.subject_id, c.month, sum(c.generations)::bigint AS generations, sum(c.failed)::bigint AS failed,
         sum(c.credits)::bigint AS credits, sum(c.cost_micros)::bigint AS cost_micros, sum(c.processing_ms)::bigint AS processing_ms,
         sum(c.output_bytes)::bigint AS output_bytes, usage_counts_sum(c.by_input_type) AS by_input_type,
         usage_counts_sum(c.by_provider) AS by_provider, usage_counts_sum(c.by_classification) AS by_classification, usage_plans_sum(c.plans) AS plans
       FROM usage_log e CROSS JOIN LATERAL usage_month_contribution(e) c GROUP BY c.subject_id, c.month`;
    const [onlyFolded, onlyView, months] = await Promise.all([
      sql<{ n: number }>(`SELECT count(*)::int AS n FROM (${folded} EXCEPT SELECT * FROM monthly_analytics_from_log) x`),
      sql<{ n: number }>(`SELECT count(*)::int AS n FROM (SELECT * FROM monthly_analytics_from_log EXCEPT ${folded}) x`),
      sql<{ n: number }>("SELECT count(*)::int AS n FROM monthly_analytics_from_log"),
    ]);
    expect([onlyFolded[0]!.n, onlyView[0]!.n]).toEqual([0, 0]);
    expect(months[0]!.n).toBeGreaterThan(4);
  });

  it("is safe while events are recorded concurrently: nothing lost or counted twice", async () => {
    const users = Array.from({ length: 4 }, () => subject(newId()));
    const outcomes = ["completed", "failed", "running", "completed"] as const;
    const writer = async (s: usage.Subject, w: number) => {
      for (let i = 0; i < 12; i += 1) await generation(s, outcomes[(i + w) % outcomes.length]!, i % 3 === 0 ? 1 : 0);
    };
    const rebuilds: unknown[] = [];
    const rebuilder = async () => {
      for (let i = 0; i < 4; i += 1) {
        rebuilds.push(await service.services.stats.rebuild());
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
    };
    await Promise.all([...users.map((s, w) => writer(s, w)), rebuilder()]);
    expect(rebuilds).toHaveLength(4);
    expect(await client.reconcile()).toEqual({ differencesTotal: 0n, differences: [] });
    // Each user: 12 generations, 6 completed, 3 failed, 3 still running (active reservations).
    const stats = await sql<{ total_generations: string; total_failed: string; active: number }>(
      `SELECT s.total_generations, s.total_failed, j.active_reservations AS active FROM user_stats s JOIN subjects j ON j.id = s.user_id
        WHERE s.user_id = ANY(?::uuid[])`,
      [`{${users.map((u) => u.id).join(",")}}`],
    );
    expect(stats.map((r) => [String(r.total_generations), String(r.total_failed), Number(r.active)])).toEqual(Array(4).fill(["6", "3", 3]));
  }, 180_000);
});
