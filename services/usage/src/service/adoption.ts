import assert from "node:assert/strict";
import { billingPeriodAt } from "@tally/platform";
import type { AdoptGuestInput } from "../domain/inputs";
import { windowsAt } from "../domain/limits";
import type { UsageCounterStore, UsageUnitOfWork } from "../domain/ports";
import type { Clock, PeriodCounters } from "../domain/types";
import { lockAndStoreSubject } from "./quota-accounting";

/**
 * Guest adoption: when a guest signs up, its usage in its current period and day moves to the
 * user who adopted it, so signing up resets no limit.
 */
export class AdoptionService {
  constructor(
    private readonly uow: UsageUnitOfWork,
    private readonly clock: Clock,
  ) {}

  /**
   * Once per guest (a `guest_adoptions` row): under both subjects' locks, adds the guest's
   * used counters of its current period (by its anchor) and current UTC day into the user's
   * current period and day, zeroes the guest's, records the windows moved from and into, and
   * marks the guest adopted. Later events of the guest in those windows count for the user,
   * and reconciliation counts the guest's entries of those windows in the user's, so counters
   * still equal the usage log. Returns the generations moved: the guest's period count (its
   * day count when it has no anchor); 0 on a retry or when the guest was adopted already.
   */
  adoptGuest(input: AdoptGuestInput): Promise<bigint> {
    return this.uow.inTransaction(async (stores) => {
      await stores.subjects.lockOrCreate([input.guestId, input.user.id]);
      await lockAndStoreSubject(stores, input.user);
      if (await stores.adoptions.find(input.guestId)) return 0n;
      const [guest] = await stores.subjects.lockOrCreate([input.guestId]);
      assert.ok(guest, "INV-6: the guest's subject row was just locked");
      const now = this.clock();
      const user = windowsAt(input.user.periodAnchor, now);
      // The user's rows first, counted from the log before the adoption exists (the guest's entries not yet theirs).
      await stores.counters.period(input.user.id, user.period);
      await stores.counters.day(input.user.id, user.day);
      const guestPeriodWindow = guest.periodAnchor ? billingPeriodAt(guest.periodAnchor, now) : null;
      const guestPeriod = guestPeriodWindow ? await stores.counters.period(guest.id, guestPeriodWindow) : null;
      const guestDay = await stores.counters.day(guest.id, user.day);
      const moved = guestPeriod?.generations ?? guestDay.generations;
      await stores.adoptions.insert({
        guestId: guest.id,
        userId: input.user.id,
        guestPeriod: guestPeriodWindow,
        userPeriod: user.period,
        day: user.day.start,
        generationsMoved: moved,
        adoptedAt: now,
      });
      if (guestPeriod) await movePeriodUsage(stores.counters, guestPeriod, input.user.id, user.period.start);
      const dayMove = guestDay.generations;
      await stores.counters.addToDay(input.user.id, user.day.start, { generations: dayMove, reservedGenerations: 0n });
      await stores.counters.addToDay(guest.id, user.day.start, { generations: -dayMove, reservedGenerations: 0n });
      await stores.subjects.markAdopted(guest.id, input.user.id);
      return moved;
    });
  }
}

/** Moves the used counters of the guest's period row into the user's period starting at `userPeriodStart`. */
async function movePeriodUsage(
  counters: UsageCounterStore,
  guest: PeriodCounters,
  userId: string,
  userPeriodStart: Date,
): Promise<void> {
  const used = { generations: guest.generations, credits: guest.credits, processingMs: guest.processingMs, reservedGenerations: 0n, reservedCredits: 0n };
  await counters.addToPeriod(userId, userPeriodStart, used);
  await counters.addToPeriod(guest.subjectId, guest.periodStart, {
    generations: -used.generations,
    credits: -used.credits,
    processingMs: -used.processingMs,
    reservedGenerations: 0n,
    reservedCredits: 0n,
  });
}
