import assert from "node:assert/strict";
import { DomainError, type PlanCatalog } from "@tally/platform";
import type { CheckAndReserveInput, ReleaseReservationInput, SubjectInput } from "../domain/inputs";
import { firstExceeded, limitExceededError, limitStatuses, planLimits, windowsAt, type CurrentUsage } from "../domain/limits";
import type { UsageStores, UsageUnitOfWork } from "../domain/ports";
import type { Clock, LimitsReport, Reservation, StoredSubject, Window } from "../domain/types";
import { endReservation, lockAndStoreSubject } from "./quota-accounting";

/** What the quota rules need besides the stores. */
export interface QuotaOptions {
  plans: PlanCatalog;
  /** The current time (tests set it). */
  clock: Clock;
  /** How long a reservation lives when its job never ends, in milliseconds. */
  reservationTtlMs: number;
}

/**
 * Plan limits: reserving quota for a generation (exact under concurrency), giving it back,
 * reporting where a subject stands, and expiring reservations whose job never ended. Every
 * change of a subject's counters happens under its row lock, in one transaction.
 */
export class QuotaService {
  constructor(
    private readonly uow: UsageUnitOfWork,
    private readonly options: QuotaOptions,
  ) {}

  /**
   * Reserves quota for one generation when EVERY limit of the subject's plan (period, day and
   * concurrent windows) allows it: used + reserved + amount <= limit (amount: 1 generation,
   * `credits` credits, 0 processing seconds, which refuse only once used >= limit). One
   * transaction under the subject's row lock, so concurrent calls cannot all slip past (INV-10):
   * usually the single statement `quota_check_and_reserve`, whose decision is checked against
   * `firstExceeded` on every answer. The
   * subject's kind, plan and anchor are stored as given (a plan change applies at once; usage
   * already counted stays counted). Idempotent on the generation id: a retry answers the
   * existing reservation, whatever its status, and reserves nothing.
   *
   * Errors: `plan_limit_exceeded` (user) / `guest_limit_exceeded` (guest) with details
   * limit_name, window, plan, used, reserved, limit, period_start, resets_at (domain/limits.ts).
   */
  async checkAndReserve(input: CheckAndReserveInput): Promise<Reservation> {
    const now = this.options.clock();
    const { period, day } = windowsAt(input.subject.periodAnchor, now);
    const draft = this.draftReservation(input, period, day.start, now);
    // Usually one round trip (the store's single statement); the subject's first call in a
    // period or a day takes the transactional path that creates those rows from the usage log.
    const quick = await this.uow.withoutTransaction((stores) => stores.reservations.checkAndReserve(draft, input.subject, planLimits(input.plan)));
    if (quick.outcome === "existing") return quick.reservation;
    if (quick.outcome === "setup_needed") return this.checkAndReserveCreatingWindows(input);
    const exceeded = firstExceeded(input.plan, { period: quick.period, day: quick.day, activeReservations: quick.activeReservations }, input.credits);
    assert.equal(quick.outcome === "refused", exceeded !== undefined, "INV-10: the database's limit check agrees with the domain rule (domain/limits.ts allows)");
    if (exceeded) throw limitExceededError(input.subject, exceeded, period);
    assert.ok(quick.reservation, "INV-10: a reserved answer carries its reservation");
    return quick.reservation;
  }

  /**
   * CheckAndReserve in one transaction under the subject's lock (taken first, so the earlier
   * reservation read after it sees every retry committed before), re-anchoring the subject
   * when its anchor changed and creating the period and day rows from the usage log when missing.
   */
  private checkAndReserveCreatingWindows(input: CheckAndReserveInput): Promise<Reservation> {
    return this.uow.inTransaction(async (stores) => {
      const stored = await lockAndStoreSubject(stores, input.subject);
      const existing = await stores.reservations.find(input.generationId);
      if (existing) return existing;
      const now = this.options.clock();
      const { usage, period } = await currentUsage(stores, stored, input.subject.periodAnchor, now);
      const exceeded = firstExceeded(input.plan, usage, input.credits);
      if (exceeded) throw limitExceededError(input.subject, exceeded, period);
      const reservation = this.draftReservation(input, period, usage.day.day, now);
      if (await stores.reservations.reserve(reservation)) return reservation;
      const raced = await stores.reservations.find(input.generationId);
      assert.ok(raced, "INV-10: a reservation that conflicted on its generation id exists");
      return raced;
    });
  }

  /** The active reservation `input` asks for, in `period` and on the UTC day starting at `day`, made at `now`. */
  private draftReservation(input: CheckAndReserveInput, period: Window, day: Date, now: Date): Reservation {
    return {
      generationId: input.generationId,
      subjectId: input.subject.id,
      kind: input.subject.kind,
      plan: input.subject.plan,
      periodStart: period.start,
      day,
      credits: input.credits,
      status: "active",
      expiresAt: new Date(now.getTime() + this.options.reservationTtlMs),
      createdAt: now,
      endedAt: null,
    };
  }

  /**
   * Gives back an active reservation (its job was never stored) and answers it as it now is;
   * one that already ended (consumed, released, expired) is answered unchanged.
   * Errors: `not_found` when no reservation has this generation id.
   */
  release(input: ReleaseReservationInput): Promise<Reservation> {
    return this.uow.inTransaction(async (stores) => {
      const found = await stores.reservations.find(input.generationId);
      if (!found) throw new DomainError("not_found", `no reservation for generation ${input.generationId}`);
      if (found.status !== "active") return found;
      await stores.subjects.lockOrCreate([found.subjectId]);
      return (await endReservation(stores, input.generationId, "released", this.options.clock())) ?? (await stores.reservations.find(input.generationId)) ?? found;
    });
  }

  /**
   * Where the subject stands against every limit of its plan except requests_per_minute (the
   * gateway's), in the current period and UTC day, with the current period. Stores the
   * subject's latest plan and anchor like CheckAndReserve.
   */
  listLimits(input: SubjectInput): Promise<LimitsReport> {
    return this.uow.inTransaction(async (stores) => {
      const stored = await lockAndStoreSubject(stores, input.subject);
      const { usage, period } = await currentUsage(stores, stored, input.subject.periodAnchor, this.options.clock());
      return { plan: input.plan.name, period, limits: limitStatuses(input.plan, usage) };
    });
  }

  /**
   * One sweep of the expiry runner: up to `batchSize` active reservations past their expiry
   * become `expired` and give their quota back (exactly once, under their subjects' locks).
   * Returns how many expired and whether more may be due.
   */
  expireDue(batchSize: number): Promise<{ expired: number; more: boolean }> {
    const now = this.options.clock();
    return this.uow.inTransaction(async (stores) => {
      const due = await stores.reservations.due(now, batchSize);
      if (due.length === 0) return { expired: 0, more: false };
      await stores.subjects.lockOrCreate(due.map((r) => r.subjectId));
      let expired = 0;
      for (const reservation of due) if (await endReservation(stores, reservation.generationId, "expired", now)) expired += 1;
      return { expired, more: due.length === batchSize };
    });
  }
}

/** The subject's counters in the period and day containing `now` (rows created from the log when new); the caller holds its lock. */
async function currentUsage(stores: UsageStores, stored: StoredSubject, anchor: Date, now: Date): Promise<{ usage: CurrentUsage; period: Window }> {
  const windows = windowsAt(anchor, now);
  const { period, day } = await stores.counters.windows(stored.id, windows.period, windows.day);
  return { usage: { period, day, activeReservations: stored.activeReservations }, period: windows.period };
}
