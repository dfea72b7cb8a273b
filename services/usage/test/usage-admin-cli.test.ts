/**
 * `npm run usage-admin -- reconcile | rebuild-analytics`, run as an operator would (a child
 * process) against a usage database on real PostgreSQL: reconcile reports a difference planted
 * by hand (exit 3) and nothing once the rebuild has restored what the log says (exit 0).
 */
import { newId } from "@tally/platform";
import { runRepositoryScript } from "@tally/platform/src/testing";
import type { UsageService } from "../src/app";
import { usageLogEntryFromCompleted } from "../src/domain/usage-log";
import { completedEvent, createUsageTestBed, recordUsage, type UsageTestBed } from "./helpers";

/** Runs `npm run usage-admin -- <args>` as an operator would, on the usage database `databaseUrl`. */
const runUsageAdmin = (args: string[], databaseUrl: string) => runRepositoryScript("scripts/usage-admin.ts", args, { DATABASE_URL: databaseUrl });

describe("npm run usage-admin", () => {
  let bed: UsageTestBed;
  let service: UsageService;

  beforeAll(async () => {
    bed = await createUsageTestBed("usage_admin_cli");
    service = await bed.start();
  });
  afterAll(async () => {
    await bed?.close();
  });

  it("reconciles every derived table with the usage log, and rebuilds the monthly analytics", async () => {
    const userId = newId();
    await recordUsage(service.orm, bed.subjects.completed, usageLogEntryFromCompleted(completedEvent(userId, { occurredAt: new Date("2027-05-05T10:00:00Z") })));
    const clean = await runUsageAdmin(["reconcile"], bed.config.DATABASE_URL);
    expect([clean.code, JSON.parse(clean.stdout).differences, clean.stderr]).toEqual([0, 0, ""]);

    await service.orm.em.fork().execute("UPDATE monthly_analytics SET credits = credits + 7 WHERE subject_id = ?", [userId]);
    const dirty = await runUsageAdmin(["reconcile"], bed.config.DATABASE_URL);
    expect(dirty.code).toBe(3);
    expect(JSON.parse(dirty.stdout)).toMatchObject({ differences: 1, monthly_analytics: [{ subjectId: userId, month: "2027-05" }] });

    const rebuilt = await runUsageAdmin(["rebuild-analytics"], bed.config.DATABASE_URL);
    expect(rebuilt.code).toBe(0);
    expect(JSON.parse(rebuilt.stdout).monthly_analytics_rows).toBeGreaterThanOrEqual(1);
    expect((await runUsageAdmin(["reconcile"], bed.config.DATABASE_URL)).code).toBe(0);
    expect((await runUsageAdmin(["nonsense"], bed.config.DATABASE_URL)).code).toBe(1);
  }, 120_000);
});
