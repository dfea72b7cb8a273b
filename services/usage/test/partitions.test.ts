import { createLogger, newId, openDatabase, type Orm } from "@tally/platform";
import { createTestDatabase } from "@tally/platform/src/testing";
import { buildUsageServices } from "../src/app";
import { usageMigrations } from "../src/adapter/migrations";
import { usageLogEntryFromCompleted } from "../src/domain/usage-log";
import { completedEvent } from "./helpers";

/**
 * The partitioned usage log (Migration20261128000001): the in-place conversion keeps every
 * entry, the maintenance creates partitions ahead and moves late entries out of the default
 * partition, immutability holds on the parent and on every partition (INV-8), and one event id
 * yields one entry (INV-5).
 */
describe("usage log partitions", () => {
  const logger = createLogger("usage-partitions-test", "silent");
  let database: { url: string; drop(): Promise<void> };
  let orm: Orm;
  let now = new Date("2026-11-22T10:00:00.000Z");
  const services = () => buildUsageServices(orm, { clock: () => now });
  const sql = <T>(query: string, params: unknown[] = []) => orm.em.fork().execute<T[]>(query, params);
  const partitionOf = async (eventId: string) => (await sql<{ p: string }>("SELECT tableoid::regclass::text AS p FROM usage_log WHERE event_id = ?", [eventId]))[0]?.p;
  const record = (overrides: Parameters<typeof completedEvent>[1]) => {
    const event = completedEvent(newId(), overrides);
    return services().usageLog.record("test.generation.completed", usageLogEntryFromCompleted(event)).then((outcome) => ({ event, outcome }));
  };

  beforeAll(async () => {
    database = await createTestDatabase("usage_partitions");
    // The schema as it was before the partitioning, with entries in two months.
    // Seeded in SQL as that schema stood (today's code writes tables later migrations add), with
    // the derived tables then computed from the log, so that the conversion must keep them equal.
    const before = await openDatabase({ url: database.url, entities: [], migrations: usageMigrations.slice(0, usageMigrations.findIndex((m) => m.name === "Migration20261128000001")), logger });
    const seed = (query: string, params: unknown[] = []) => before.em.fork().execute(query, params);
    for (const occurredAt of ["2026-09-30T23:59:59.999Z", "2026-10-01T00:00:00.000Z", "2026-10-15T12:00:00.000Z"]) {
      const event = completedEvent(newId(), { occurredAt: new Date(occurredAt) });
      await seed(
        `INSERT INTO usage_log (id, event_id, user_id, generation_id, outcome, billable, input_type, provider, credit_type, credits, cost_micros, processing_time_ms, occurred_at, output_bytes, subject_kind)
         VALUES (?, ?, ?, ?, 'completed', true, ?, ?, 'trial', ?::bigint, ?::bigint, ?::bigint, ?::timestamptz, ?::bigint, 'user')`,
        [newId(), event.eventId, event.userId, event.generationId, event.inputType, event.provider, event.credits, event.costMicros, event.processingTimeMs, event.occurredAt, event.outputBytes],
      );
      await seed("INSERT INTO processed_events (event_id, subject) VALUES (?, 'test.generation.completed')", [event.eventId]);
    }
    await seed("INSERT INTO monthly_analytics SELECT * FROM monthly_analytics_from_log");
    await seed(`INSERT INTO user_stats (user_id, total_generations, total_failed, total_cost_micros, total_credits_spent, last_activity_at)
      SELECT user_id, count(*), 0, sum(cost_micros), sum(credits), max(occurred_at) FROM usage_log GROUP BY user_id`);
    await before.close();
    orm = await openDatabase({ url: database.url, entities: [], migrations: usageMigrations, logger });
  });
  afterAll(async () => {
    await orm?.close();
    await database?.drop();
  });

  it("converts the log in place: entries kept in their UTC month's partition, derived tables still equal to the log", async () => {
    expect(await sql("SELECT relkind FROM pg_class WHERE relname = 'usage_log'")).toEqual([{ relkind: "p" }]);
    const partitions = await services().partitions.list();
    expect(partitions.filter((p) => p.entries > 0n)).toEqual([
      { partition: "usage_log_2026_09", entries: 1n },
      { partition: "usage_log_2026_10", entries: 2n },
    ]);
    // The migration also made the current month's (by the database's clock) and the three after it.
    const current = new Date();
    const currentName = `usage_log_${current.getUTCFullYear()}_${String(current.getUTCMonth() + 1).padStart(2, "0")}`;
    expect(partitions.map((p) => p.partition)).toEqual(expect.arrayContaining([currentName, "usage_log_default"]));
    const stats = services().stats;
    expect(await stats.reconcileAnalytics()).toEqual([]);
    expect(await stats.reconcile()).toEqual([]);
  });

  it("creates the current month's partition and the months ahead, once", async () => {
    now = new Date("2040-11-22T10:00:00.000Z");
    const created = await services().partitions.maintain(3);
    expect(created.map((p) => p.partition)).toEqual(["usage_log_2040_11", "usage_log_2040_12", "usage_log_2041_01", "usage_log_2041_02"]);
    expect(await services().partitions.maintain(3)).toEqual([]);
    // The bounds are UTC months.
    const [bound] = await sql<{ bound: string }>("SELECT pg_get_expr(relpartbound, oid) AS bound FROM pg_class WHERE relname = 'usage_log_2040_12'");
    expect(bound!.bound).toBe("FOR VALUES FROM ('2040-12-01 00:00:00+00') TO ('2041-01-01 00:00:00+00')");
    const { event } = await record({ occurredAt: new Date("2040-12-31T23:59:59.999Z") });
    expect(await partitionOf(event.eventId)).toBe("usage_log_2040_12");
  });

  it("records a late event in the default partition, counts it in its month, and moves it into its own partition", async () => {
    const { event } = await record({ occurredAt: new Date("2026-03-10T08:00:00.000Z"), credits: 9n });
    const farFuture = await record({ occurredAt: new Date("2051-05-01T00:00:00.000Z") });
    expect(await partitionOf(event.eventId)).toBe("usage_log_default");
    expect(await partitionOf(farFuture.event.eventId)).toBe("usage_log_default");
    const months = await services().stats.reconcileAnalytics();
    expect(months).toEqual([]);
    const [analytics] = await sql<{ generations: string; credits: string }>(
      "SELECT generations, credits FROM monthly_analytics WHERE subject_id = ? AND month = '2026-03-01'",
      [event.userId],
    );
    expect(analytics).toEqual({ generations: "1", credits: "9" });

    const created = await services().partitions.maintain(3);
    expect(created).toEqual([
      { partition: "usage_log_2026_03", rowsMoved: 1n },
      { partition: "usage_log_2051_05", rowsMoved: 1n },
    ]);
    expect(await partitionOf(event.eventId)).toBe("usage_log_2026_03");
    expect(await partitionOf(farFuture.event.eventId)).toBe("usage_log_2051_05");
    expect((await services().partitions.list()).find((p) => p.partition === "usage_log_default")).toEqual({ partition: "usage_log_default", entries: 0n });
    // Moved, not copied: the entry is there once, with its recorded_at, and every derived table still agrees.
    expect(await sql("SELECT count(*)::int AS n FROM usage_log WHERE event_id = ?", [event.eventId])).toEqual([{ n: 1 }]);
    expect(await services().stats.reconcileAnalytics()).toEqual([]);
    expect(await services().stats.reconcile()).toEqual([]);
    // The new default partition takes late entries again.
    const later = await record({ occurredAt: new Date("2025-01-02T00:00:00.000Z") });
    expect(await partitionOf(later.event.eventId)).toBe("usage_log_default");
  });

  it("refuses UPDATE, DELETE and TRUNCATE on the log, on each partition and on the default partition (INV-8)", async () => {
    const partitions = await services().partitions.list();
    expect(partitions.map((p) => p.partition)).toContain("usage_log_2026_03");
    for (const { partition, entries } of [{ partition: "usage_log", entries: 1n }, ...partitions]) {
      // A row trigger fires only on rows: an empty partition must still carry it (cloned from the parent).
      const triggers = await sql<{ tgname: string }>("SELECT tgname FROM pg_trigger WHERE tgrelid = ?::regclass ORDER BY tgname", [partition]);
      expect(triggers.map((t) => t.tgname)).toEqual(["usage_log_immutable", "usage_log_no_truncate"]);
      if (entries > 0n) {
        await expect(sql(`UPDATE ${partition} SET credits = credits + 1`)).rejects.toThrow(/immutable/);
        await expect(sql(`DELETE FROM ${partition}`)).rejects.toThrow(/immutable/);
      }
      await expect(sql(`TRUNCATE ${partition}`)).rejects.toThrow(/immutable/);
    }
    const [count] = await sql<{ n: number }>("SELECT count(*)::int AS n FROM usage_log");
    expect(count!.n).toBeGreaterThan(5);
  });

  it("keeps one entry per event id without a unique key on the log: the inbox decides, even for concurrent copies", async () => {
    const draft = usageLogEntryFromCompleted(completedEvent(newId(), { occurredAt: new Date("2026-11-02T00:00:00.000Z") }));
    const outcomes = await Promise.all(Array.from({ length: 5 }, () => services().usageLog.record("test.generation.completed", draft)));
    expect(outcomes.filter((o) => o.kind === "recorded")).toHaveLength(1);
    // Even with an occurred_at in another month (another partition), a copy records nothing.
    expect((await services().usageLog.record("test.generation.completed", { ...draft, occurredAt: new Date("2026-12-02T00:00:00.000Z") })).kind).toBe("duplicate");
    expect(await sql("SELECT count(*)::int AS n FROM usage_log WHERE event_id = ?", [draft.eventId])).toEqual([{ n: 1 }]);
  });
});
