/**
 * Monthly analytics on real PostgreSQL and NATS: written in the transaction of each usage log
 * entry (a late event lands in its own month), equal to what the usage log says, checked by the
 * reconciliation (which finds a difference planted by hand), and rebuilt from the log exactly,
 * also while events are being recorded.
 */
import { usage } from "@tally/contracts";
import { newId, parsePlanCatalog } from "@tally/platform";
import type { UsageService } from "../src/app";
import { usageLogEntryFromCompleted, usageLogEntryFromFailed } from "../src/domain/usage-log";
import { completedEvent, createUsageTestBed, failedEvent, recordUsage, usageClient, type UsageTestBed } from "./helpers";

const plans = parsePlanCatalog({
  default_plan: "free",
  guest_plan: "guest",
  plans: { guest: { trial_credits: 1, limits: {} }, free: { trial_credits: 10, limits: {} }, pro: { trial_credits: 10, limits: {} } },
});

describe("monthly analytics", () => {
  let bed: UsageTestBed;
  let service: UsageService;
  let client: ReturnType<typeof usageClient>;
  const now = new Date("2027-03-20T12:00:00.000Z");

  beforeAll(async () => {
    bed = await createUsageTestBed("analytics");
    service = await bed.start({}, { plans, clock: () => now });
    client = usageClient(service.grpcPort);
  });
  afterAll(async () => {
    client?.close();
    await bed?.close();
  });

  const stats = () => service.services.stats;
  const completed = (userId: string, at: string, overrides: Parameters<typeof completedEvent>[1] = {}) =>
    recordUsage(service.orm, bed.subjects.completed, usageLogEntryFromCompleted(completedEvent(userId, { occurredAt: new Date(at), ...overrides })));
  const failed = (userId: string, at: string) => recordUsage(service.orm, bed.subjects.failed, usageLogEntryFromFailed(failedEvent(userId, { occurredAt: new Date(at) })));
  /** Stores the subject's plan (as a limit check would), so the next entries snapshot it. */
  const onPlan = (userId: string, plan: string) =>
    client.listLimits({ id: userId, kind: usage.SubjectKind.SUBJECT_KIND_USER, plan, periodAnchor: new Date("2027-01-01T00:00:00.000Z") });

  it("adds each entry to its subject's UTC month in the entry's transaction, with breakdowns and the plans in force", async () => {
    const userId = newId();
    await onPlan(userId, "free");
    await completed(userId, "2027-03-02T10:00:00.000Z", { inputType: "photo", provider: "builtin-renderer", credits: 2n, costMicros: 100n, processingTimeMs: 1_500n, outputBytes: 1_000n });
    await completed(userId, "2027-03-03T10:00:00.000Z", { inputType: "text", provider: "builtin-renderer", credits: 1n, costMicros: 50n, processingTimeMs: 500n, outputBytes: 600n });
    await failed(userId, "2027-03-04T10:00:00.000Z");
    await onPlan(userId, "pro");
    await completed(userId, "2027-03-05T10:00:00.000Z", { inputType: "text", provider: "other-provider", credits: 1n, costMicros: 50n, processingTimeMs: 500n, outputBytes: 400n });
    // A late event of February lands in February, not in the month it arrived.
    await completed(userId, "2027-02-28T23:59:59.000Z", { inputType: "text", credits: 3n, costMicros: 10n, processingTimeMs: 100n, outputBytes: 10n });

    const [march, february, january] = await stats().monthlyAnalytics(userId, 3);
    expect(march).toMatchObject({
      month: "2027-03", generations: 3n, failed: 1n, credits: 4n, costMicros: 200n, processingMs: 2_500n, outputBytes: 2_000n,
      byInputType: { photo: { completed: 1n, failed: 0n }, text: { completed: 2n, failed: 1n } },
      byProvider: { "builtin-renderer": { completed: 2n, failed: 1n }, "other-provider": { completed: 1n, failed: 0n } },
      byClassification: { original: { completed: 3n, failed: 1n } },
      plans: ["free", "pro"], planChanged: true,
    });
    expect(february).toMatchObject({ month: "2027-02", generations: 1n, credits: 3n, plans: ["pro"], planChanged: false });
    expect(january).toMatchObject({ month: "2027-01", generations: 0n, failed: 0n, plans: [] });
    expect(await stats().reconcileAnalytics(userId)).toEqual([]);
    await expect(stats().monthlyAnalytics(userId, 25)).rejects.toMatchObject({ reason: "validation" });
  });

  it("totals a user's entries in a window [since, before), and refuses a window that is not one", async () => {
    const userId = newId();
    await completed(userId, "2027-03-01T00:00:00.000Z", { credits: 2n, costMicros: 30n, processingTimeMs: 700n, outputBytes: 5n });
    await failed(userId, "2027-03-15T00:00:00.000Z");
    await completed(userId, "2027-04-01T00:00:00.000Z", { credits: 9n });
    const log = service.services.usageLog;
    expect(await log.totals(userId, new Date("2027-03-01T00:00:00.000Z"), new Date("2027-04-01T00:00:00.000Z"))).toEqual({
      generations: 1n, failed: 1n, credits: 2n, costMicros: 30n, processingMs: 700n, outputBytes: 5n,
    });
    await expect(log.totals(userId, new Date("2027-04-01T00:00:00.000Z"), new Date("2027-03-01T00:00:00.000Z"))).rejects.toMatchObject({ reason: "validation" });
    await expect(log.totals("not-a-uuid", new Date(0), new Date())).rejects.toMatchObject({ reason: "validation" });
  });

  it("gives platform-wide figures of a window, by plan, provider and input type, optionally of one plan", async () => {
    // A window of its own (2031), so the other tests' entries stay out.
    const [user, guest] = [newId(), newId()];
    await onPlan(user, "free");
    await completed(user, "2031-05-01T00:00:00.000Z", { inputType: "text", provider: "p1", credits: 2n, costMicros: 100n });
    await onPlan(user, "pro");
    await completed(user, "2031-05-02T00:00:00.000Z", { inputType: "photo", provider: "p2", credits: 3n, costMicros: 201n });
    await failed(user, "2031-05-03T00:00:00.000Z");
    await client.listLimits({ id: guest, kind: usage.SubjectKind.SUBJECT_KIND_GUEST, plan: "guest", periodAnchor: new Date("2031-01-01T00:00:00.000Z") });
    await completed(guest, "2031-05-04T00:00:00.000Z", { inputType: "text", provider: "p1", credits: 1n, costMicros: 30n });
    await completed(user, "2031-06-01T00:00:00.000Z"); // after the window
    const [since, before] = [new Date("2031-05-01T00:00:00.000Z"), new Date("2031-06-01T00:00:00.000Z")];
    const all = await stats().platformAnalytics(since, before, null);
    expect(all).toMatchObject({
      generations: 3n, failed: 1n, credits: 6n, costMicros: 331n, averageCostMicros: 110n, uniqueUsers: 1n, uniqueGuests: 1n,
      byPlan: { free: { completed: 1n, failed: 0n }, pro: { completed: 1n, failed: 1n }, guest: { completed: 1n, failed: 0n } },
      byProvider: { p1: { completed: 2n, failed: 0n }, p2: { completed: 1n, failed: 0n } },
      byInputType: { text: { completed: 2n, failed: 1n }, photo: { completed: 1n, failed: 0n } },
    });
    expect(await stats().platformAnalytics(since, before, "pro")).toMatchObject({ generations: 1n, failed: 1n, credits: 3n, uniqueUsers: 1n, uniqueGuests: 0n, byPlan: { pro: { completed: 1n, failed: 1n } } });
    expect(await stats().platformAnalytics(new Date("2040-01-01T00:00:00.000Z"), new Date("2040-02-01T00:00:00.000Z"), null)).toMatchObject({ generations: 0n, averageCostMicros: 0n, byPlan: {} });
    await expect(stats().platformAnalytics(before, since, null)).rejects.toMatchObject({ reason: "validation" });
    // Times PostgreSQL cannot read (year 0, a year past 9999) and a plan text cannot hold are the caller's mistake, never a database error.
    await expect(stats().platformAnalytics(new Date("0000-06-01T00:00:00.000Z"), since, null)).rejects.toMatchObject({ reason: "validation", details: { field: "occurred_since" } });
    await expect(stats().platformAnalytics(since, new Date("+010000-01-01T00:00:00.000Z"), null)).rejects.toMatchObject({ reason: "validation", details: { field: "occurred_before" } });
    await expect(stats().platformAnalytics(since, before, "free\u0000")).rejects.toMatchObject({ reason: "validation", details: { field: "plan" } });
    expect(await stats().platformAnalytics(new Date("0001-01-01T00:00:00.000Z"), new Date("9999-12-31T23:59:59.999Z"), "nobody")).toMatchObject({ generations: 0n });
  });

  it("merges breakdown maps as the per-key sums, for null, empty, disjoint and shared keys (usage_counts_merge and usage_counts_sum)", async () => {
    const map = (entries: [string, number, number][]) => Object.fromEntries(entries.map(([k, completed, failed]) => [k, { completed, failed }]));
    const sum = (maps: (Record<string, { completed: number; failed: number }> | null)[]) => {
      const out: Record<string, { completed: number; failed: number }> = {};
      for (const m of maps) for (const [k, c] of Object.entries(m ?? {})) out[k] = { completed: (out[k]?.completed ?? 0) + c.completed, failed: (out[k]?.failed ?? 0) + c.failed };
      return out;
    };
    const cases: [ReturnType<typeof map> | null, ReturnType<typeof map> | null][] = [
      [null, null], [null, map([["text", 1, 0]])], [map([["text", 1, 0]]), null], [map([]), map([])],
      [map([["text", 2, 1]]), map([["photo", 3, 0]])], [map([["text", 2, 1], ["photo", 1, 1]]), map([["text", 5, 2], ["a \"quoted\" key", 1, 0]])],
      [map([["x", 9_000_000_000, 0]]), map([["x", 1, 4], ["y", 0, 0]])],
    ];
    const db = service.orm.em.fork();
    for (const [a, b] of cases) {
      const [row] = await db.execute<{ merged: unknown }[]>("SELECT usage_counts_merge(?::jsonb, ?::jsonb) AS merged", [a && JSON.stringify(a), b && JSON.stringify(b)]);
      expect(row!.merged).toEqual(sum([a, b]));
    }
    const maps = cases.flat();
    const [summed] = await db.execute<{ total: unknown }[]>("SELECT usage_counts_sum(m::jsonb) AS total FROM unnest(?::text[]) m", [`{${maps.map((m) => (m ? JSON.stringify(JSON.stringify(m)) : "NULL")).join(",")}}`]);
    expect(summed!.total).toEqual(sum(maps));
  });

  it("finds a difference planted by hand, and the rebuild restores what the log says", async () => {
    const userId = newId();
    await completed(userId, "2027-03-06T10:00:00.000Z");
    await failed(userId, "2027-03-07T10:00:00.000Z");
    const before = await stats().monthlyAnalytics(userId, 1);
    await service.orm.em.fork().execute("UPDATE monthly_analytics SET generations = generations + 1 WHERE subject_id = ?", [userId]);
    const differences = await stats().reconcileAnalytics(userId);
    expect(differences).toHaveLength(1);
    expect(differences[0]).toMatchObject({ subjectId: userId, month: "2027-03", stored: { generations: 2n }, expected: { generations: 1n } });
    // A month missing from the table is a difference too.
    const other = newId();
    await completed(other, "2027-03-08T10:00:00.000Z");
    await service.orm.em.fork().execute("DELETE FROM monthly_analytics WHERE subject_id = ?", [other]);
    expect(await stats().reconcileAnalytics(other)).toMatchObject([{ subjectId: other, stored: null, expected: { generations: 1n } }]);

    expect(await stats().rebuildAnalytics()).toBeGreaterThanOrEqual(2);
    expect(await stats().reconcileAnalytics()).toEqual([]);
    expect(await stats().monthlyAnalytics(userId, 1)).toEqual(before);
  });

  it("rebuilds while events are being recorded, losing none and counting none twice", async () => {
    const userId = newId();
    const recording = Promise.all(Array.from({ length: 40 }, (_, i) => completed(userId, `2027-03-10T10:${String(i).padStart(2, "0")}:00.000Z`)));
    const rebuilds = Promise.all([stats().rebuildAnalytics(), stats().rebuildAnalytics()]);
    await Promise.all([recording, rebuilds]);
    expect((await stats().monthlyAnalytics(userId, 1))[0]).toMatchObject({ generations: 40n });
    expect(await stats().reconcileAnalytics()).toEqual([]);
  });
});
