import assert from "node:assert/strict";
import { billingPeriodAt, utcDayAt } from "@tally/platform";
import type { GuestAdoption, UsageStores } from "../domain/ports";
import type { Reservation, ReservationStatus, StoredSubject, Subject, Window } from "../domain/types";

/*
 * The counter moves the usage log, the reservations and the expiry share, each run inside the
 * caller's transaction while it holds the locks of the subjects it touches. Every entry of a
 * subject is appended under that subject's lock, so a counter row created from the log (see
 * UsageCounterStore.period) and the moves after it add up to exactly what the log says.
 */

/**
 * Locks `subject`'s row (creating it when new) and stores the kind, plan and anchor the caller
 * names. When the stored anchor is another (an admin re-anchored the billing period), first
 * rebuilds what depends on it, under the same lock: the subject's period rows are dropped (and
 * created again from the usage log when next read), and its active reservations and the guests
 * it adopted move to the new anchor's periods containing the moments they were made; so the
 * counters still equal the log (INV-6) and no check reads a period of the old anchor (INV-10).
 */
export async function lockAndStoreSubject(stores: UsageStores, subject: Subject): Promise<StoredSubject> {
  const [current] = await stores.subjects.lockOrCreate([subject.id]);
  assert.ok(current, "INV-10: the subject's row was just locked");
  if (current.periodAnchor && current.periodAnchor.getTime() !== subject.periodAnchor.getTime()) {
    await stores.counters.dropPeriods(subject.id);
    for (const reservation of await stores.reservations.activeOf(subject.id)) {
      await stores.reservations.movePeriod(reservation.generationId, billingPeriodAt(subject.periodAnchor, reservation.createdAt).start);
    }
    for (const adoption of await stores.adoptions.adoptedBy(subject.id)) {
      await stores.adoptions.moveUserPeriod(adoption.guestId, billingPeriodAt(subject.periodAnchor, adoption.adoptedAt));
    }
  }
  return stores.subjects.upsertAndLock(subject);
}

/** Where a completion's used counters go: the period (null when the subject has no anchor yet) and the UTC day. */
export interface UsedTargets {
  period: { subjectId: string; window: Window } | null;
  day: { subjectId: string; window: Window };
}

/**
 * Where a completion of `subject` at `occurredAt` counts: the subject's period (by its anchor;
 * none without one) and UTC day of `occurredAt`, or, for an adopted guest's event inside the
 * windows its usage moved from (`adoption`, the guest's adoption row), the adopter's. Pure.
 */
export function usedTargets(subject: StoredSubject, adoption: GuestAdoption | null, occurredAt: Date): UsedTargets {
  const period = subject.periodAnchor ? billingPeriodAt(subject.periodAnchor, occurredAt) : null;
  const day = utcDayAt(occurredAt);
  const targets: UsedTargets = { period: period ? { subjectId: subject.id, window: period } : null, day: { subjectId: subject.id, window: day } };
  if (adoption) {
    if (period && adoption.guestPeriod?.start.getTime() === period.start.getTime()) {
      targets.period = { subjectId: adoption.userId, window: adoption.userPeriod };
    }
    if (adoption.day.getTime() === day.start.getTime()) targets.day = { subjectId: adoption.userId, window: day };
  }
  return targets;
}

/**
 * Ends an ACTIVE reservation as `status` and gives its reserved counters back (period, day,
 * concurrent), exactly once: the status moves from active under the subject's lock, so a
 * second ending (event redelivered under another id, release after expiry…) finds it ended and
 * does nothing. Returns the ended reservation, or null when it was not active.
 */
export async function endReservation(
  stores: UsageStores,
  generationId: string,
  status: Exclude<ReservationStatus, "active">,
  at: Date,
): Promise<Reservation | null> {
  const ended = await stores.reservations.end(generationId, status, at);
  if (!ended) return null;
  const back = { generations: 0n, credits: 0n, processingMs: 0n, reservedGenerations: -1n, reservedCredits: -ended.credits };
  await stores.counters.addToPeriod(ended.subjectId, ended.periodStart, back);
  await stores.counters.addToDay(ended.subjectId, ended.day, { generations: 0n, reservedGenerations: -1n });
  await stores.subjects.addActiveReservations(ended.subjectId, -1);
  return ended;
}
