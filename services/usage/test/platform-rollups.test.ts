/**
 * The platform rollups on real PostgreSQL: moved in the transaction of each usage log entry,
 * GetPlatformAnalytics over them gives exactly what a direct aggregate over the log gives (whole
 * UTC days, partial days at the edges, windows across a year's end, one plan, guests, entries
 * without a plan), the reconciliation finds a difference planted by hand, and the rebuild
 * restores what the log says.
 */
import { usage } from "@tally/contracts";
import { newId, parsePlanCatalog } from "@tally/platform";
import type { UsageService } from "../src/app";
import { createUsageUnitOfWork } from "../src/adapter/unit-of-work";
import { platformMoney } from "../src/domain/platform-analytics";
import { usageLogEntryFromCompleted, usageLogEntryFromFailed } from "../src/domain/usage-log";
import { completedEvent, createUsageTestBed, failedEvent, recordUsage, usageClient, type UsageTestBed } from "./helpers";

const plans = parsePlanCatalog({
  default_plan: "free",
  guest_plan: "guest",
  plans: {
    guest: { trial_credits: 1, limits: {} },
    free: { trial_credits: 10, credit_price_micros: 10_000, limits: {} },
    pro: { trial_credits: 10, credit_price_micros: 8_000, limits: {} },
  },
});

describe("platform rollups", () => {
  let bed: UsageTestBed;
  let service: UsageService;
  let client: ReturnType<typeof usageClient>;

  beforeAll(async () => {
    bed = await createUsageTestBed("rollups");
    service = await bed.start({}, { plans });
    client = usageClient(service.grpcPort);
  });
  afterAll(async () => {
    client?.close();
    await bed?.close();
  });

  const stats = () => service.services.stats;
  /** What a direct aggregate over the log gives, valued at the plans' prices. */
  const fromLog = async (since: Date, before: Date, plan: string | null) => {
    const { spend, ...figures } = await createUsageUnitOfWork(service.orm).withoutTransaction((stores) => stores.usageLog.platform({ start: since, end: before }, plan));
    return { ...figures, money: platformMoney(spend, (name) => plans.plans[name]?.creditPriceMicros ?? 0n) };
  };
  const onPlan = (id: string, plan: string, kind = usage.SubjectKind.SUBJECT_KIND_USER) =>
    client.listLimits({ id, kind, plan, periodAnchor: new Date("2032-01-01T00:00:00.000Z") });
  const record = (userId: string, at: string, i: number) => {
    const common = { occurredAt: new Date(at), inputType: ["text", "photo", "video"][i % 3]!, provider: ["p1", "p2"][i % 2]!, credits: BigInt(1 + (i % 5)), costMicros: BigInt(100 + i * 7) };
    return i % 4 === 3
      ? recordUsage(service.orm, bed.subjects.failed, usageLogEntryFromFailed(failedEvent(userId, common)))
      : recordUsage(service.orm, bed.subjects.completed, usageLogEntryFromCompleted(completedEvent(userId, common)));
  };

  it("answers every window exactly as a direct aggregate over the log", async () => {
    // Entries of 2032-12-30 .. 2033-01-03 at various hours: a user on free then pro, a guest, and a subject the service has no plan for.
    const [user, guest, unknown] = [newId(), newId(), newId()];
    await onPlan(user, "free");
    await onPlan(guest, "guest", usage.SubjectKind.SUBJECT_KIND_GUEST);
    const hours = ["2032-12-30T00:00:00.000Z", "2032-12-30T23:59:59.999Z", "2032-12-31T12:00:00.000Z", "2033-01-01T00:00:00.000Z", "2033-01-01T06:30:00.000Z", "2033-01-02T18:00:00.000Z", "2033-01-03T00:00:00.001Z"];
    let i = 0;
    for (const at of hours) {
      await record(user, at, i++);
      await record(guest, at, i++);
      if (i % 3 === 0) await record(unknown, at, i++);
    }
    await onPlan(user, "pro");
    for (const at of hours.slice(3)) await record(user, at, i++);
    // Recorded out of order, with gaps: each new day before, after or between the days already marked.
    const late = newId();
    for (const at of [hours[3]!, hours[6]!, hours[0]!, hours[2]!, hours[5]!]) await record(late, at, i++);
    // Active on the first and last days only: windows strictly between are not its.
    const gap = newId();
    for (const at of [hours[6]!, hours[0]!]) await record(gap, at, i++);

    const windows: [string, string][] = [
      ["2032-12-30T00:00:00.000Z", "2033-01-04T00:00:00.000Z"], // whole days across the year's end
      ["2032-12-30T12:00:00.000Z", "2033-01-03T00:00:00.001Z"], // partial days at both edges
      ["2032-12-31T00:00:00.000Z", "2033-01-01T00:00:00.000Z"], // one whole day
      ["2033-01-01T00:00:00.001Z", "2033-01-01T23:00:00.000Z"], // inside one day
      ["2032-12-30T23:59:59.999Z", "2033-01-01T00:00:00.001Z"], // one millisecond each side
      ["2033-01-05T00:00:00.000Z", "2033-02-01T00:00:00.000Z"], // nothing
    ];
    for (const [since, before] of windows) {
      for (const plan of [null, "free", "pro", "guest", "none"]) {
        const expected = await fromLog(new Date(since), new Date(before), plan);
        expect([since, before, plan, await stats().platformAnalytics(new Date(since), new Date(before), plan)]).toEqual([since, before, plan, expected]);
      }
    }
    const all = await stats().platformAnalytics(new Date(windows[0]![0]), new Date(windows[0]![1]), null);
    expect(all).toMatchObject({ uniqueUsers: 4n, uniqueGuests: 1n });
    expect((await stats().platformAnalytics(new Date("2032-12-31T00:00:00.000Z"), new Date("2033-01-01T00:00:00.000Z"), null)).uniqueUsers).toBe(3n);
    expect(Object.keys(all.byPlan).sort()).toEqual(["", "free", "guest", "pro"]);
    // Revenue: each plan's credits at its price (guest and unknown plans have none); margin = revenue - cost of every entry.
    const { byPlan, byProvider, total } = all.money;
    expect(byPlan.free!.revenueMicros).toBe(byPlan.free!.credits * 10_000n);
    expect(byPlan.pro!.revenueMicros).toBe(byPlan.pro!.credits * 8_000n);
    expect([byPlan.guest!.revenueMicros, byPlan[""]!.revenueMicros]).toEqual([0n, 0n]);
    expect(total.revenueMicros).toBe(byPlan.free!.revenueMicros + byPlan.pro!.revenueMicros);
    expect(total.credits).toBe(all.credits);
    expect(total.costMicros).toBeGreaterThan(all.costMicros); // failed entries cost too
    expect(total.marginMicros).toBe(total.revenueMicros - total.costMicros);
    expect(Object.values(byProvider).reduce((sum, m) => sum + m.marginMicros, 0n)).toBe(total.marginMicros);
    expect(await stats().reconcileRollups()).toEqual([]);
  });

  it("finds a difference planted by hand in either rollup, and the rebuild restores what the log says", async () => {
    const userId = newId();
    await record(userId, "2034-03-03T10:00:00.000Z", 0);
    await record(userId, "2034-03-04T10:00:00.000Z", 1);
    const window = [new Date("2034-03-01T00:00:00.000Z"), new Date("2034-04-01T00:00:00.000Z")] as const;
    const before = await stats().platformAnalytics(...window, null);
    const sql = service.orm.em.fork();
    await sql.execute("UPDATE platform_daily_usage SET entries = entries + 1 WHERE day = '2034-03-03'");
    await sql.execute("DELETE FROM subject_activity WHERE subject_id = ?", [userId]);
    const differences = await stats().reconcileRollups();
    expect(differences.map((d) => [d.rollup, d.side])).toEqual([
      ["platform_daily_usage", "log"],
      ["platform_daily_usage", "stored"],
      ["subject_activity", "log"],
      ["subject_activity", "log"],
    ]);
    // Its row for all plans and its row for the plan it had (none: the service never heard of its plan).
    expect(differences.slice(2).map((d) => d.row)).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ subject_id: userId, all_plans: true, plan: null, first_day: "2034-03-03", days: "11" }),
        expect.objectContaining({ subject_id: userId, all_plans: false, plan: null, first_day: "2034-03-03", days: "11" }),
      ]),
    );
    expect(await stats().platformAnalytics(...window, null)).not.toEqual(before);

    expect(await stats().rebuildRollups()).toBeGreaterThanOrEqual(3);
    expect(await stats().reconcileRollups()).toEqual([]);
    expect(await stats().platformAnalytics(...window, null)).toEqual(before);
  });
});
