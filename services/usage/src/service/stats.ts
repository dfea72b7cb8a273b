import { DomainError, loadPlanCatalog, PLAN_NAME_LENGTH_MAX, requireText, requireUuidField, sqlStateOf, type PlanCatalog } from "@tally/platform";
import { parseTimeWindow, type GetUserStatsInput } from "../domain/inputs";
import type { UsageUnitOfWork } from "../domain/ports";
import type { Clock, CounterDifference, DerivedTablesRebuild, LifetimeStats, MonthlyAnalytics, PlatformAnalytics, MonthlyAnalyticsDifference, RollupDifference, StatsDifference, UserStats } from "../domain/types";
import { emptyMonth, lastMonths, MONTHS_MAX } from "../domain/monthly-analytics";
import { platformMoney } from "../domain/platform-analytics";
import { emptyUserStats, statsDifferences } from "../domain/usage-log";
import { usageReconciliation, type UsageReconciliation } from "../domain/reconciliation";


/** How many times a full rebuild is tried when PostgreSQL aborts it for a deadlock or a serialization failure. */
const REBUILD_ATTEMPTS = 3;
/** deadlock_detected, serialization_failure. */
const RETRIED_SQLSTATES = new Set(["40P01", "40001"]);

/** Users' lifetime stats: reading them, and checking them against the usage log (INV-6). */
export class StatsService {
  constructor(
    private readonly uow: UsageUnitOfWork,
    /** The current time, for "the last N months" (tests set it). */
    private readonly clock: Clock = () => new Date(),
    /** The plan catalogue: each plan's price per credit, what admin analytics values revenue at. */
    private readonly plans: PlanCatalog = loadPlanCatalog(undefined),
  ) {}

  /**
   * A user's lifetime stats: the stored row (INV-6) with what the facts add (LifetimeDetail:
   * cancelled, running, output bytes, processing time, breakdowns by input type and provider,
   * first activity); created = completed + failed + cancelled + running. A user with no usage
   * yet has zeros, not an error.
   */
  get(input: GetUserStatsInput): Promise<LifetimeStats> {
    return this.uow.withoutTransaction(async (stores) => {
      const [stored, detail] = await Promise.all([stores.userStats.find(input.userId), stores.monthlyAnalytics.lifetime(input.userId)]);
      const stats = stored ?? emptyUserStats(input.userId);
      return { ...stats, ...detail, created: stats.totalGenerations + stats.totalFailed + detail.cancelled + detail.running };
    });
  }

  /**
   * Recomputes lifetime stats from the usage log and compares them with the stored stats, for
   * every user or for `userId` (INV-6: stats equal what the usage log says, to the unit).
   * Returns the users whose stats differ; an empty list means they agree. Both sides are read
   * in one snapshot, so events recorded meanwhile cannot show up as a false difference.
   * Errors: `validation` when `userId` is given and is not a UUID.
   */
  async reconcile(userId?: string): Promise<StatsDifference[]> {
    const id = userId === undefined ? undefined : requireUuidField(userId, "user_id");
    return await this.uow.withoutTransaction(async (stores) => statsDifferences(await stores.userStats.besideUsageLog(id)));
  }

  /**
   * Checks the limit counters against their sources, for every subject or for `subjectId`, in
   * one snapshot: each period and day row's used counters (generations; credits and
   * processing time for periods) equal the completed usage log entries of that window (the
   * subject's own, less those of a guest's adopted windows, plus those of the guests it
   * adopted into that window), and its reserved counters, like each subject's active
   * reservations, equal its active reservations. Returns each counter that differs; an empty
   * list means they all agree. Errors: `validation` when `subjectId` is given and is not a UUID.
   */
  async reconcileCounters(subjectId?: string): Promise<CounterDifference[]> {
    const id = subjectId === undefined ? undefined : requireUuidField(subjectId, "subject_id");
    return await this.uow.withoutTransaction((stores) => stores.counters.differences(id));
  }

  /**
   * Checks the monthly analytics against the usage log (INV-6), for every subject or for
   * `subjectId`, in one statement (one snapshot): returns each month whose stored row differs
   * from what the log gives (or exists on one side only); an empty list means they agree.
   * Errors: `validation` when `subjectId` is given and is not a UUID.
   */
  async reconcileAnalytics(subjectId?: string): Promise<MonthlyAnalyticsDifference[]> {
    const id = subjectId === undefined ? undefined : requireUuidField(subjectId, "subject_id");
    return await this.uow.withoutTransaction((stores) => stores.monthlyAnalytics.differences(id));
  }

  /**
   * Every table derived from the usage log checked against it (INV-6; the Reconcile RPC): user
   * stats (with download totals), the limit counters and the monthly analytics, each in one
   * snapshot (`reconcile`, `reconcileCounters`, `reconcileAnalytics`), flattened into differing
   * figures (domain/reconciliation.ts): how many there are and the first 100. Read only.
   */
  async reconcileAll(): Promise<UsageReconciliation> {
    const [stats, counters, analytics, rollups] = await Promise.all([this.reconcile(), this.reconcileCounters(), this.reconcileAnalytics(), this.reconcileRollups()]);
    return usageReconciliation(stats, counters, analytics, rollups);
  }

  /**
   * Recomputes every month's analytics from the usage log, replacing what is stored (for a
   * migration, a backfill or a repair), in one transaction; safe while events are recorded
   * (they wait for it, then add themselves). Returns the rows written.
   */
  rebuildAnalytics(): Promise<number> {
    return this.uow.inTransaction((stores) => stores.monthlyAnalytics.rebuild());
  }

  /**
   * Recomputes EVERY table derived from the usage log from its sources, in one transaction (for
   * a repair, a backfill or after a migration; usage-admin `rebuild`): user stats with download
   * totals, the period and day counters (used from the log, reserved from the active
   * reservations), each subject's active reservation count, the monthly analytics and the
   * platform rollups (`platform_daily_usage`, `subject_activity`). It locks
   * those tables against writers first, in the order writers take them, so it is safe while
   * events flow: events recorded meanwhile wait, then apply on top of the rebuilt rows (INV-6,
   * INV-10 keep holding). Should a writer that takes the tables in another order still meet it
   * in a deadlock, PostgreSQL aborts one side and the rebuild starts over (at most
   * `REBUILD_ATTEMPTS` times). Returns the rows written per table. Errors: database errors.
   */
  async rebuild(): Promise<DerivedTablesRebuild> {
    for (let attempt = 1; ; attempt += 1) {
      try {
        return await this.uow.inTransaction(async (stores) => ({ ...(await stores.derivedTables.rebuild()), platformRollups: await stores.rollups.rebuild() }));
      } catch (error) {
        if (attempt >= REBUILD_ATTEMPTS || !RETRIED_SQLSTATES.has(sqlStateOf(error) ?? "")) throw error;
      }
    }
  }

  /**
   * Checks the platform rollups (`platform_daily_usage`, `subject_activity`) against the usage
   * log (INV-6), in one statement (one snapshot): returns each rollup row found on one side only
   * (a row whose values differ shows on both sides); an empty list means they agree.
   */
  reconcileRollups(): Promise<RollupDifference[]> {
    return this.uow.withoutTransaction((stores) => stores.rollups.differences());
  }

  /**
   * Recomputes the platform rollups from the usage log, replacing what is stored, in one
   * transaction; safe while events are recorded (they wait for it, then add themselves).
   * Returns the rows written.
   */
  rebuildRollups(): Promise<number> {
    return this.uow.inTransaction((stores) => stores.rollups.rebuild());
  }

  /**
   * Platform-wide figures of the usage log entries in [`since`, `before`), of `plan` only when
   * given (admin analytics): totals, breakdowns by plan, provider and input type, unique users
   * and guests, average cost per completed generation; and money (platformMoney): revenue (the
   * credits of completed generations at their plan's `credit_price_micros`), provider cost and
   * margin, in all, by plan and by provider. Exact, in one statement (one snapshot): the whole
   * UTC days from the platform rollups, the partial days at the edges from the log.
   * Errors: `validation` for a missing bound or one outside the years 1 to 9999
   * (`occurred_since`, `occurred_before`), a window not after its start (`occurred_before`), a
   * plan name over PLAN_NAME_LENGTH_MAX characters or with a control character (`plan`).
   */
  async platformAnalytics(since: Date | undefined, before: Date | undefined, plan: string | null): Promise<PlatformAnalytics> {
    if (plan !== null) requireText(plan, "plan", { lengthMax: PLAN_NAME_LENGTH_MAX, kind: "identifier" });
    const window = parseTimeWindow(since, before);
    const { spend, ...figures } = await this.uow.withoutTransaction((stores) => stores.rollups.platform(window, plan));
    return { ...figures, money: platformMoney(spend, (name) => this.plans.plans[name]?.creditPriceMicros ?? 0n) };
  }

  /**
   * The subject's last `months` UTC months up to the current one (by the clock), newest first, each
   * from its stored analytics or zeros when it had no usage (so a chart has every month).
   * Errors: `validation` for a subject id that is not a UUID or `months` outside 1..24.
   */
  async monthlyAnalytics(subjectId: string, months: number): Promise<MonthlyAnalytics[]> {
    const id = requireUuidField(subjectId, "subject_id");
    if (!Number.isInteger(months) || months < 1 || months > MONTHS_MAX) throw new DomainError("validation", `months must be 1..${MONTHS_MAX}`, { field: "months" });
    const wanted = lastMonths(this.clock(), months);
    const stored = await this.uow.withoutTransaction((stores) => stores.monthlyAnalytics.months(id, wanted[wanted.length - 1]!, wanted[0]!));
    const byMonth = new Map(stored.map((row) => [row.month, row]));
    return wanted.map((month) => byMonth.get(month) ?? emptyMonth(id, month));
  }
}
