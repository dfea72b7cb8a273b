import { usage } from "@tally/contracts";
import { DomainError, newId, parsePlanCatalog } from "@tally/platform";
import type { UsageService } from "../src/app";
import { countedEntries, RESERVED_IN_PERIOD } from "../src/adapter/usage-counter-store";
import { USAGE_LOG_COLUMNS } from "../src/adapter/usage-log-store";
import { usageLogEntryFromCompleted, usageLogEntryFromFailed } from "../src/domain/usage-log";
import { completedEvent, createUsageTestBed, failedEvent, recordUsage, usageClient, type UsageTestBed } from "./helpers";

const plans = parsePlanCatalog({
  default_plan: "free",
  guest_plan: "guest",
  plans: {
    guest: { trial_credits: 3, limits: { generations_per_day: 10, concurrent_generations: 5 } },
    free: { trial_credits: 10, limits: { generations_per_period: 20, credits_per_period: 100, generations_per_day: 9, concurrent_generations: 5 } },
    pro: { trial_credits: 10, limits: { generations_per_period: 5000, concurrent_generations: 50 } },
  },
});

const USER = usage.SubjectKind.SUBJECT_KIND_USER;
const DAY_MS = 24 * 60 * 60 * 1000;

/**
 * GetUsageSummary answers, from one statement, exactly what ListLimits, GetUsageTotals (the
 * current period), GetUserStats and ListUsageLogEntries (the newest) answer separately.
 */
describe("usage summary: one RPC, one statement", () => {
  let bed: UsageTestBed;
  let service: UsageService;
  let client: ReturnType<typeof usageClient>;
  // The 20th of last month: the current period started on this month's 20th or last month's.
  const anchor = new Date(Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth() - 1, 20));

  beforeAll(async () => {
    bed = await createUsageTestBed("summary");
    service = await bed.start({ RESERVATION_SWEEP_INTERVAL_MS: 600_000 }, { plans });
    client = usageClient(service.grpcPort);
  });
  afterAll(async () => {
    client?.close();
    await bed?.close();
  });

  const sql = <T>(statement: string, params: unknown[] = []) => service.orm.em.fork().execute<T[]>(statement, params as never[]);
  const subject = (id: string, plan = "free"): usage.Subject => ({ id, kind: USER, plan, periodAnchor: anchor });
  /** What the separate RPCs answer, in the summary's shape. */
  const separately = async (s: usage.Subject, recent: number) => {
    const limits = await client.listLimits(s);
    const periodTotals = await client.getUsageTotals({ userId: s.id, occurredSince: limits.periodStart, occurredBefore: limits.periodEnd });
    const { stats } = await client.getUserStats(s.id);
    const { entries } = await client.listUsageLogEntries({ userId: s.id, pageSize: recent });
    return { limits, periodTotals, stats, recent: entries };
  };
  const record = async (userId: string, occurredAt: Date, outcome: "completed" | "failed" = "completed", credits = 3n) => {
    const draft = outcome === "completed"
      ? usageLogEntryFromCompleted(completedEvent(userId, { occurredAt, credits }))
      : usageLogEntryFromFailed(failedEvent(userId, { occurredAt, credits }));
    await recordUsage(service.orm, outcome === "completed" ? bed.subjects.completed : bed.subjects.failed, draft);
  };

  it("equals the separate reads: limits, the period's totals, lifetime stats and the newest entries", async () => {
    const s = subject(newId());
    await client.checkAndReserve({ subject: s, generationId: newId(), credits: 4n }); // stores the subject; one running
    const now = Date.now();
    for (let i = 0; i < 12; i++) await record(s.id, new Date(now - i * 60_000), i % 4 === 3 ? "failed" : "completed", BigInt(i + 1));
    for (let i = 0; i < 3; i++) await record(s.id, new Date(now - (40 + i) * DAY_MS)); // an earlier period
    const summary = await client.getUsageSummary(s, 10);
    expect(summary).toEqual(await separately(s, 10));
    expect(summary.recent).toHaveLength(10);
    expect(summary.periodTotals?.failed).toBe(3n);
    expect(summary.periodTotals?.generations).toBe(9n);
    expect(summary.stats?.totalGenerations).toBe(12n);
    expect(summary.stats?.running).toBe(1n);
    const byName = Object.fromEntries(summary.limits!.limits.map((l) => [l.name, l]));
    expect(byName.generations_per_period).toMatchObject({ used: 9n, reserved: 1n, remaining: 10n });
    expect(byName.concurrent_generations).toMatchObject({ used: 1n });
    expect((await client.getUsageSummary(s)).recent).toHaveLength(10); // 0 means 10
    expect((await client.getUsageSummary(s, 3)).recent).toEqual(summary.recent.slice(0, 3));
    // The newest entries across two months (12 this period, 3 earlier), and more than there are.
    for (const n of [14, 100]) expect((await client.getUsageSummary(s, n)).recent).toEqual((await client.listUsageLogEntries({ userId: s.id, pageSize: n })).entries);
  });

  it("counts a window without counter rows from the log, as ListLimits would create them, without writing them", async () => {
    const s = subject(newId());
    await client.listLimits(s);
    for (let i = 0; i < 5; i++) await record(s.id, new Date(Date.now() - i * 1000));
    await sql("DELETE FROM period_usage WHERE subject_id = ?", [s.id]);
    await sql("DELETE FROM daily_usage WHERE subject_id = ?", [s.id]);
    const summary = await client.getUsageSummary(s);
    const rows = await sql<{ n: number }>("SELECT (SELECT count(*) FROM period_usage WHERE subject_id = ?) + (SELECT count(*) FROM daily_usage WHERE subject_id = ?) AS n", [s.id, s.id]);
    expect(Number(rows[0]!.n)).toBe(0);
    const byName = Object.fromEntries(summary.limits!.limits.map((l) => [l.name, l]));
    expect(byName.generations_per_period?.used).toBe(5n);
    expect(byName.generations_per_day?.used).toBe(5n);
    expect(summary).toEqual(await separately(s, 10)); // ListLimits creates the rows with the same figures
  });

  it("stores a subject usage does not know yet, or whose plan changed, as ListLimits does", async () => {
    const s = subject(newId());
    const fresh = await client.getUsageSummary(s);
    expect(fresh.recent).toEqual([]);
    expect(fresh.stats?.totalGenerations).toBe(0n);
    expect(fresh.limits?.plan).toBe("free");
    const stored = async () => (await sql<{ plan: string }>("SELECT plan FROM subjects WHERE id = ?", [s.id]))[0]?.plan;
    expect(await stored()).toBe("free");
    const upgraded = await client.getUsageSummary({ ...s, plan: "pro" });
    expect(upgraded.limits?.plan).toBe("pro");
    expect(upgraded.limits?.limits.map((l) => l.name)).toEqual(["generations_per_period", "concurrent_generations"]);
    expect(await stored()).toBe("pro");
  });

  it("refuses a recent_count outside 0..100 and a malformed subject with validation", async () => {
    const s = subject(newId());
    await expect(client.getUsageSummary(s, 101)).rejects.toMatchObject({ reason: "validation" });
    await expect(client.getUsageSummary(s, -1)).rejects.toBeInstanceOf(DomainError);
    await expect(client.getUsageSummary({ ...s, id: "nope" })).rejects.toMatchObject({ reason: "validation" });
  });

  it("answers its head (subject, counters, stats, totals) on the first row only, then the newest entries", async () => {
    const s = subject(newId());
    await client.listLimits(s);
    const now = Date.now();
    for (const minutesAgo of [30, 20, 10]) await record(s.id, new Date(now - minutesAgo * 60_000));
    const read = (id: string) =>
      sql<{ sj_found: boolean | null; st_total_generations: string | null; t_generations: string | null; occurred_at: Date | null }>(
        `SELECT * FROM usage_summary_read(?::uuid, ?::timestamptz, ?::timestamptz, ?::timestamptz, ?::timestamptz, 10)`,
        [id, new Date(now - DAY_MS).toISOString(), new Date(now + DAY_MS).toISOString(), new Date(now - DAY_MS).toISOString(), new Date(now + DAY_MS).toISOString()],
      );
    const rows = await read(s.id);
    expect(rows.map((r) => new Date(r.occurred_at!).getTime())).toEqual([10, 20, 30].map((m) => now - m * 60_000));
    expect(rows.map((r) => [r.sj_found, r.st_total_generations, r.t_generations].map(String))).toEqual([["true", "3", "3"], ["null", "null", "null"], ["null", "null", "null"]]);
    // A subject with no entry: one row, the head with no entry.
    const [alone, ...more] = await read(newId());
    expect(more).toEqual([]);
    expect([alone?.sj_found, alone?.occurred_at]).toEqual([false, null]);
  });

  it("runs as one function with a generic plan that counts a window as ListLimits does (same SQL)", async () => {
    const [fn] = await sql<{ definition: string; config: string[] | null }>(
      "SELECT pg_get_functiondef(p.oid) AS definition, p.proconfig AS config FROM pg_proc p WHERE p.proname = 'usage_summary_read'",
    );
    // Planned once per connection: a custom plan per call costs more to plan than to run.
    expect(fn?.config).toEqual(["plan_cache_mode=force_generic_plan"]);
    const flat = (text: string) => text.replace(/\s+/g, " ");
    // The newest entries' columns too: a column added to the log needs a new version of the function.
    for (const part of [countedEntries("period"), countedEntries("day"), RESERVED_IN_PERIOD, USAGE_LOG_COLUMNS]) expect(flat(fn!.definition)).toContain(flat(part));
  });
});
