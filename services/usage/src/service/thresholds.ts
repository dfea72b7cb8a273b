import { newId, type PlanCatalog } from "@tally/platform";
import type { UsageStores } from "../domain/ports";
import { hasThresholds, reachedThresholds } from "../domain/thresholds";
import type { DayCounters, PeriodCounters, StoredSubject, Window } from "../domain/types";
import type { UsedTargets } from "./quota-accounting";

/** Where `announceThresholds` reads a subject's counters after the event (the stores, or a batch's counters in hand). */
export interface CountersAfterEvent {
  period(subjectId: string, period: Window): Promise<PeriodCounters> | PeriodCounters;
  day(subjectId: string, day: Window): Promise<DayCounters> | DayCounters;
}

/**
 * After a completion was counted (same transaction, subjects still locked): every soft
 * threshold its subjects' plans set that the counters now reach is recorded once per
 * (subject, limit, threshold, window start), with its UsageThresholdCrossed event in the
 * outbox, so the event exists if and only if the usage that crossed it commits (INV-5).
 * A subject with no plan or a plan not in `plans` announces nothing. `counters` gives the
 * counters after the event (default: read from the stores); a crossing whose key is in `seen`
 * was already recorded in this transaction and is skipped (the keys tried are added to it).
 */
export async function announceThresholds(
  stores: UsageStores,
  plans: PlanCatalog,
  locked: Map<string, StoredSubject>,
  targets: UsedTargets,
  occurredAt: Date,
  counters: CountersAfterEvent = stores.counters,
  seen: Set<string> = new Set(),
): Promise<number> {
  let announced = 0;
  const ids = new Set([targets.day.subjectId, ...(targets.period ? [targets.period.subjectId] : [])]);
  for (const id of ids) {
    const subject = locked.get(id);
    const plan = subject?.plan ? plans.plans[subject.plan] : undefined;
    if (!subject || !plan || !hasThresholds(plan)) continue;
    const period = targets.period?.subjectId === id ? await counters.period(id, targets.period.window) : null;
    const day = targets.day.subjectId === id ? await counters.day(id, targets.day.window) : null;
    for (const reached of reachedThresholds(plan, period, day)) {
      const key = `${id}/${reached.limitName}/${reached.thresholdPerMille}/${reached.windowStart.toISOString()}`;
      if (seen.has(key)) continue;
      seen.add(key);
      const crossing = { ...reached, eventId: newId(), occurredAt, subjectId: id, subjectKind: subject.kind, plan: plan.name };
      if (await stores.thresholds.record(crossing)) announced += 1;
    }
  }
  return announced;
}
