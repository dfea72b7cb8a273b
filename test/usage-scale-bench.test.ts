/**
 * The usage scale benchmark (bench/usage-scale.ts) on a tiny seed, so it never rots: it seeds,
 * fills the derived tables, measures every figure through a real usage service and ingests
 * through NATS, and the derived tables (as it fills them, then as the service moves them)
 * still equal the usage log.
 */
import pg from "pg";
import { createTestDatabase } from "@tally/platform/src/testing";
import { runUsageScale, usageScaleOptions } from "../bench/usage-scale";

describe("bench/usage-scale.ts", () => {
  it("runs end to end on 2,000 entries and leaves every derived table equal to the log", async () => {
    const lines: string[] = [];
    const options = usageScaleOptions(["--entries", "2000", "--subjects", "200", "--samples", "20", "--platform-runs", "2", "--ingest", "200", "--backlog", "150", "--reconcile"], {});
    const figures = await runUsageScale({ ...options, log: (line) => lines.push(line) });
    expect(figures).toMatchObject({ entries: 2_000, subjects: 200, reconcileDifferences: 0 });
    for (const figure of [figures.summary, figures.analytics, figures.history, figures.platform90Days, figures.platform12Months]) expect(figure.p50).toBeGreaterThan(0);
    expect(figures.ingestEventsPerSecond).toBeGreaterThan(0);
    expect(figures.backlog?.eventsPerSecond).toBeGreaterThan(0);
    expect(lines.join("\n")).toMatch(/\| ingest from a backlog \(150 events published while the service was stopped\) \| \d+ events\/s \|/);
    expect(lines.join("\n")).toMatch(/\| admin analytics 12 months, p50 \/ max of 2 \| .* \| <= 200 ms \|/);
  }, 180_000);

  it("seeds a named database once, then measures it again without seeding (--database)", async () => {
    const database = await createTestDatabase("bench_usage_reuse");
    try {
      const lines: string[] = [];
      const run = (entries: string) =>
        runUsageScale({ ...usageScaleOptions(["--entries", entries, "--subjects", "50", "--samples", "5", "--platform-runs", "1", "--ingest", "0", "--backlog", "0", "--database", database.url], {}), log: (line) => lines.push(line) });
      const first = await run("500");
      expect(first.seconds.seed).toBeGreaterThan(0);
      const again = await run("900"); // the seed's size wins over the flags
      expect(again).toMatchObject({ entries: 500, subjects: 50, seconds: { seed: 0, indexes: 0, derived: 0, analyze: 0 }, ingestEventsPerSecond: 0, backlog: null });
      expect(again.summary.p50).toBeGreaterThan(0);
      expect(lines.join("\n")).toMatch(/\(seeded earlier: reused\)/);
      const db = new pg.Client({ connectionString: database.url });
      await db.connect();
      const { rows } = await db.query<{ n: string }>("SELECT count(*) AS n FROM usage_log");
      await db.end();
      expect(Number(rows[0]!.n)).toBe(500); // seeded once, nothing ingested
    } finally {
      await database.drop();
    }
  }, 180_000);

  it("reads its options from flags before the environment and refuses nonsense", () => {
    expect(usageScaleOptions([], {})).toMatchObject({ entries: 10_000_000, subjects: 100_000, ingest: 20_000, reconcile: false });
    expect(usageScaleOptions(["--entries", "1_000"], { BENCH_USAGE_ENTRIES: "5", BENCH_USAGE_RECONCILE: "1" })).toMatchObject({ entries: 1_000, subjects: 1_000, reconcile: true });
    expect(() => usageScaleOptions(["--entries", "many"], {})).toThrow(/--entries must be a positive integer/);
    expect(usageScaleOptions(["--ingest", "0"], { BENCH_USAGE_DATABASE_URL: "postgres://x/y" })).toMatchObject({ ingest: 0, database: "postgres://x/y" });
    expect(usageScaleOptions(["--database", "postgres://a/b"], { BENCH_USAGE_DATABASE_URL: "postgres://x/y" }).database).toBe("postgres://a/b");
    expect(() => usageScaleOptions(["--ingest", "-1"], {})).toThrow(/--ingest must be a non-negative integer/);
  });
});
