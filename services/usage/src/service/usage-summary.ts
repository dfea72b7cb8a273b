import { DomainError } from "@tally/platform";
import type { SubjectInput } from "../domain/inputs";
import { limitStatuses, windowsAt } from "../domain/limits";
import type { UsageUnitOfWork } from "../domain/ports";
import type { Clock, Subject } from "../domain/types";
import type { UsageSummary, UsageSummaryRead } from "../domain/usage-summary";
import type { QuotaService } from "./quota";

/** Newest entries a summary answers when the caller names no count. */
export const SUMMARY_RECENT_DEFAULT = 10;
/** Most newest entries a summary answers. */
export const SUMMARY_RECENT_MAX = 100;

/** Whether usage's stored subject is the one the caller names (kind, plan and billing anchor). */
function storedAsNamed(stored: UsageSummaryRead["stored"], subject: Subject): boolean {
  return stored !== null && stored.kind === subject.kind && stored.plan === subject.plan && stored.periodAnchor?.getTime() === subject.periodAnchor.getTime();
}

/** The usage summary of a subject (GetUsageSummary): one read of everything GET /v1/usage/summary shows. */
export class UsageSummaryService {
  constructor(
    private readonly uow: UsageUnitOfWork,
    /** Stores a subject that usage does not know yet or that changed, as ListLimits does. */
    private readonly quota: QuotaService,
    private readonly clock: Clock = () => new Date(),
  ) {}

  /**
   * The subject's plan, current billing period (by its anchor and the clock) and limits (as
   * `QuotaService.listLimits` reports them: the same counters, INV-6, INV-10), the totals of its
   * entries in that period, its lifetime stats (as `StatsService.get`) and its `recent` newest
   * entries (newest first), all from ONE statement, hence one snapshot. When usage does not know
   * the subject yet, or its kind, plan or anchor changed, the subject is first stored as
   * ListLimits stores it (its transaction, re-anchoring the counters when needed) and the
   * statement runs after. Reads only otherwise: a window without a counter row is counted from
   * the log as the row would be created. Errors: `validation` (`recent_count` outside 0..100;
   * 0 means 10).
   */
  async summary(input: SubjectInput, recent: number): Promise<UsageSummary> {
    if (!Number.isInteger(recent) || recent < 0 || recent > SUMMARY_RECENT_MAX) {
      throw new DomainError("validation", `recent_count must be 0..${SUMMARY_RECENT_MAX}`, { field: "recent_count" });
    }
    const count = recent === 0 ? SUMMARY_RECENT_DEFAULT : recent;
    const { subject } = input;
    const windows = windowsAt(subject.periodAnchor, this.clock());
    const read = () => this.uow.withoutTransaction((stores) => stores.summaries.read(subject.id, windows.period, windows.day, count));
    let found = await read();
    if (!storedAsNamed(found.stored, subject)) {
      await this.quota.listLimits(input);
      found = await read();
    }
    const usage = { period: found.period, day: found.day, activeReservations: found.stored?.activeReservations ?? 0 };
    const { stats, detail } = found;
    return {
      limits: { plan: input.plan.name, period: windows.period, limits: limitStatuses(input.plan, usage) },
      totals: found.totals,
      stats: { ...stats, ...detail, created: stats.totalGenerations + stats.totalFailed + detail.cancelled + detail.running },
      recent: found.recent,
    };
  }
}
