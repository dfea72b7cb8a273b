import { requireUuidField } from "@tally/platform";
import type { GetUserStatsInput } from "../domain/inputs";
import type { UsageUnitOfWork } from "../domain/ports";
import type { CounterDifference, StatsDifference, UserStats } from "../domain/types";
import { emptyUserStats, statsDifferences } from "../domain/usage-log";

/** Users' lifetime stats: reading them, and checking them against the usage log (INV-6). */
export class StatsService {
  constructor(private readonly uow: UsageUnitOfWork) {}

  /** A user's lifetime stats; a user with no usage yet has zeros, not an error. */
  get(input: GetUserStatsInput): Promise<UserStats> {
    return this.uow.withoutTransaction(async (stores) => (await stores.userStats.find(input.userId)) ?? emptyUserStats(input.userId));
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
}
