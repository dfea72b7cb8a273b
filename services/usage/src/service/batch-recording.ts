import assert from "node:assert/strict";
import { billingPeriodAt, newId, type PlanCatalog } from "@tally/platform";
import type { GuestAdoption, UsageStores } from "../domain/ports";
import type { GenerationCancellation } from "../domain/generation-event";
import type { DayCounters, DayDelta, DownloadDraft, PeriodCounters, PeriodDelta, Reservation, StoredSubject, SubjectSnapshot, UsageLogEntryDraft } from "../domain/types";
import { subjectSnapshot, sumStatsDeltas } from "../domain/usage-log";
import { usedTargets, type UsedTargets } from "./quota-accounting";
import { announceThresholds, type CountersAfterEvent } from "./thresholds";

/*
 * Recording a batch of generation events in one transaction with a handful of statements
 * whatever its size (issue 7): every table moves by one set-based statement per batch, and the
 * per-event rules (which subject and window an event counts in, the thresholds it crosses, the
 * reservation it ends) are worked out in memory, in the batch's order, from rows read once.
 * The outcome is exactly what recording the events one by one, in order, would give.
 */

/** One decoded event for `UsageLogService.recordBatch`, with the NATS subject it came on. */
export type UsageEvent =
  | { kind: "generation"; subject: string; draft: UsageLogEntryDraft }
  | { kind: "cancellation"; subject: string; cancellation: GenerationCancellation }
  | { kind: "download"; subject: string; download: DownloadDraft };

/** What `recordBatch` did with one event: nothing (`duplicate`), or recorded it (`entryId`: the usage log entry appended, if any). */
export interface UsageEventOutcome {
  duplicate: boolean;
  entryId: string | null;
}

/** The event id of a batch's event. */
export const eventIdOf = (event: UsageEvent): string =>
  event.kind === "generation" ? event.draft.eventId : event.kind === "cancellation" ? event.cancellation.eventId : event.download.eventId;

/** A claimed generation event's entry: its id, its subject's snapshot and, for a completion, where it counts. */
interface PlannedEntry {
  id: string;
  draft: UsageLogEntryDraft;
  snapshot: SubjectSnapshot;
  targets: UsedTargets | null;
}

/** The batch's subjects: those locked (completions' users and adopters, reservations' subjects) and every entry's user as stored. */
interface BatchSubjects {
  locked: Map<string, StoredSubject>;
  stored(id: string): StoredSubject | null;
}

/**
 * Records `events` inside the caller's transaction (see `UsageLogService.recordBatch` for the
 * contract), in this order: the inbox claims every id in one statement (a duplicate records
 * nothing); the reservations of the claimed events are read; the subjects they lock are locked
 * in one statement, in id order (INV-9); the counter rows the completions count in are read, a
 * missing one counted from the log (before the entries exist, so each counts once; nothing
 * written yet); the entries are appended with their monthly analytics and rollups; the used
 * counters, thresholds and ended reservations move in memory, then each counter row is written
 * once (missing ones inserted, stored ones moved) with the active counts; cancellations and
 * downloads are appended; the stats move; last, the platform's daily rollup (rows every batch
 * shares, so their locks are held only while this commits) (INV-6). Answers one outcome per
 * event, in order. `now` is when reservations end.
 */
export async function recordEvents(stores: UsageStores, events: readonly UsageEvent[], plans: PlanCatalog | null, now: Date): Promise<UsageEventOutcome[]> {
  const claimed = await stores.inbox.claimMany(events.map((e) => ({ eventId: eventIdOf(e), subject: e.subject })));
  // Claimed by this batch, and this is the id's first event in it; null for a duplicate.
  const fresh = events.map((e) => (claimed.delete(eventIdOf(e)) ? e : null));
  const generations = fresh.flatMap((e) => (e?.kind === "generation" ? [e.draft] : []));
  const cancellations = fresh.flatMap((e) => (e?.kind === "cancellation" ? [e.cancellation] : []));
  const downloads = fresh.flatMap((e) => (e?.kind === "download" ? [e.download] : []));
  const reservations = await stores.reservations.findMany([...generations, ...cancellations].map((e) => e.generationId));
  const subjects = await batchSubjects(stores, generations, cancellations, reservations);
  const planned = await planEntries(stores, generations, subjects, plans);
  const counters = await BatchCounters.read(stores, planned);
  await stores.usageLog.appendMany(planned);
  await counters.countUsed(stores, planned, subjects.locked, plans);
  await counters.endReservations(stores, endingsInOrder(fresh, reservations), now);
  await counters.flush(stores);
  await stores.usageLog.appendCancellations(cancellations);
  await stores.usageLog.appendDownloads(downloads);
  await stores.userStats.addMany(sumStatsDeltas(generations));
  await stores.userStats.addDownloads(countsByUser(downloads));
  // Last: these rows are every batch's, so concurrent lanes wait on them only while this one commits.
  await stores.usageLog.addToPlatformDaily(planned);
  let next = 0;
  return fresh.map((e) => (e === null ? { duplicate: true, entryId: null } : { duplicate: false, entryId: e.kind === "generation" ? planned[next++]!.id : null }));
}

/**
 * Locks (creating bare rows for ids never seen) the users of the completions and the subjects of
 * the reservations the events end, in one statement in id order; then the adopters of adopted
 * guests among the users (rare; taken after, a deadlock is retried like any transient error);
 * and reads, without a lock, the other entries' users (a failure's user is not locked).
 */
async function batchSubjects(
  stores: UsageStores,
  generations: readonly UsageLogEntryDraft[],
  cancellations: readonly GenerationCancellation[],
  reservations: Map<string, Reservation>,
): Promise<BatchSubjects> {
  const reservationSubjects = [...generations, ...cancellations].flatMap((e) => reservations.get(e.generationId)?.subjectId ?? []);
  const completing = generations.filter((d) => d.outcome === "completed").map((d) => d.userId);
  const locked = new Map((await stores.subjects.lockOrCreate([...completing, ...reservationSubjects])).map((s) => [s.id, s]));
  const adopters = completing.flatMap((id) => {
    const adopter = locked.get(id)?.adoptedBy;
    return adopter && !locked.has(adopter) ? [adopter] : [];
  });
  if (adopters.length > 0) for (const row of await stores.subjects.lockOrCreate(adopters)) locked.set(row.id, row);
  const unlocked = generations.map((d) => d.userId).filter((id) => !locked.has(id));
  const read = new Map((await stores.subjects.findMany(unlocked)).map((s) => [s.id, s]));
  return { locked, stored: (id) => locked.get(id) ?? read.get(id) ?? null };
}

/**
 * Each claimed generation event's entry, in order: a completion counts where `usedTargets` says
 * (its period is the entry's; an adopted guest's may be its adopter's window), a failure records
 * its user's own period by the anchor; both snapshot their user (`subjectSnapshot`).
 */
async function planEntries(
  stores: UsageStores,
  generations: readonly UsageLogEntryDraft[],
  subjects: BatchSubjects,
  plans: PlanCatalog | null,
): Promise<PlannedEntry[]> {
  const adoptions = new Map<string, GuestAdoption | null>();
  const planned: PlannedEntry[] = [];
  for (const draft of generations) {
    let targets: UsedTargets | null = null;
    if (draft.outcome === "completed") {
      const subject = subjects.locked.get(draft.userId);
      assert.ok(subject, "INV-6: the entry's user is locked before its usage is counted");
      if (subject.adoptedBy && !adoptions.has(subject.id)) adoptions.set(subject.id, await stores.adoptions.find(subject.id));
      targets = usedTargets(subject, adoptions.get(subject.id) ?? null, draft.occurredAt);
    }
    const stored = subjects.stored(draft.userId);
    const period = targets ? (targets.period?.window ?? null) : stored?.periodAnchor ? billingPeriodAt(stored.periodAnchor, draft.occurredAt) : null;
    planned.push({ id: newId(), draft, snapshot: subjectSnapshot(stored, plans, period), targets });
  }
  return planned;
}

/**
 * The reservation each event ends, in the batch's order: a completion consumes its generation's,
 * a failure or a cancellation releases it. Only the first ending of a generation counts (as the
 * status guard would make it); `endMany` then ends only those still active.
 */
function endingsInOrder(fresh: readonly (UsageEvent | null)[], reservations: Map<string, Reservation>): { generationId: string; status: "consumed" | "released" }[] {
  const endings = new Map<string, { generationId: string; status: "consumed" | "released" }>();
  for (const event of fresh) {
    if (!event || event.kind === "download") continue;
    const generationId = event.kind === "generation" ? event.draft.generationId : event.cancellation.generationId;
    if (!reservations.has(generationId) || endings.has(generationId)) continue;
    endings.set(generationId, { generationId, status: event.kind === "generation" && event.draft.outcome === "completed" ? "consumed" : "released" });
  }
  return [...endings.values()];
}

/** Downloads counted per user (one row each). */
function countsByUser(downloads: readonly DownloadDraft[]): { userId: string; downloads: number }[] {
  const counts = new Map<string, number>();
  for (const d of downloads) counts.set(d.userId, (counts.get(d.userId) ?? 0) + 1);
  return [...counts].map(([userId, downloads]) => ({ userId, downloads }));
}

const keyOf = (subjectId: string, start: Date): string => `${subjectId}/${start.toISOString()}`;

/**
 * A batch's counter rows in hand and what it adds to them: the rows its completions count in
 * (read once; a missing one counted from the log, not yet written), moved in memory event by
 * event (so thresholds see the counters after each event, as recording one by one would), and
 * the deltas summed per row, written by `flush` in one statement per table: a missing row is
 * inserted once with its full values, a stored one moved by its deltas.
 */
class BatchCounters {
  private readonly periods = new Map<string, PeriodCounters>();
  private readonly days = new Map<string, DayCounters>();
  /** The rows read as missing, as counted from the log (before the batch moved them). */
  private readonly newPeriods = new Map<string, PeriodCounters>();
  private readonly newDays = new Map<string, DayCounters>();
  private readonly periodDeltas = new Map<string, { subjectId: string; periodStart: Date; delta: PeriodDelta }>();
  private readonly dayDeltas = new Map<string, { subjectId: string; day: Date; delta: DayDelta }>();
  private readonly activeDeltas = new Map<string, number>();

  /** Reads (counting from the log when missing, writing nothing) the period and day rows the completions of `planned` count in. */
  static async read(stores: UsageStores, planned: readonly PlannedEntry[]): Promise<BatchCounters> {
    const targets = planned.flatMap((p) => (p.targets ? [p.targets] : []));
    const counters = new BatchCounters();
    if (targets.length === 0) return counters;
    const rows = await stores.counters.readMany(targets.flatMap((t) => (t.period ? [t.period] : [])), targets.map((t) => t.day));
    for (const { row, stored } of rows.periods) {
      counters.periods.set(keyOf(row.subjectId, row.periodStart), { ...row });
      if (!stored) counters.newPeriods.set(keyOf(row.subjectId, row.periodStart), row);
    }
    for (const { row, stored } of rows.days) {
      counters.days.set(keyOf(row.subjectId, row.day), { ...row });
      if (!stored) counters.newDays.set(keyOf(row.subjectId, row.day), row);
    }
    return counters;
  }

  /** Counts each completion in turn (one generation, its credits and processing time), announcing the thresholds it makes its subjects reach. */
  async countUsed(stores: UsageStores, planned: readonly PlannedEntry[], locked: Map<string, StoredSubject>, plans: PlanCatalog | null): Promise<void> {
    const seen = new Set<string>();
    const after: CountersAfterEvent = { period: (id, window) => this.periodRow(id, window.start), day: (id, window) => this.dayRow(id, window.start) };
    for (const { draft, targets } of planned) {
      if (!targets) continue;
      if (targets.period) {
        const row = this.periodRow(targets.period.subjectId, targets.period.window.start);
        row.generations += 1n;
        row.credits += draft.credits;
        row.processingMs += draft.processingTimeMs;
        this.addToPeriod(row.subjectId, row.periodStart, { generations: 1n, credits: draft.credits, processingMs: draft.processingTimeMs, reservedGenerations: 0n, reservedCredits: 0n });
      }
      const day = this.dayRow(targets.day.subjectId, targets.day.window.start);
      day.generations += 1n;
      this.addToDay(day.subjectId, day.day, { generations: 1n, reservedGenerations: 0n });
      if (plans) await announceThresholds(stores, plans, locked, targets, draft.occurredAt, after, seen);
    }
  }

  /** Ends the reservations of `endings` that are still active and gives their reserved counters back (period, day, concurrent). */
  async endReservations(stores: UsageStores, endings: readonly { generationId: string; status: "consumed" | "released" }[], now: Date): Promise<void> {
    for (const ended of await stores.reservations.endMany(endings, now)) {
      this.addToPeriod(ended.subjectId, ended.periodStart, { generations: 0n, credits: 0n, processingMs: 0n, reservedGenerations: -1n, reservedCredits: -ended.credits });
      this.addToDay(ended.subjectId, ended.day, { generations: 0n, reservedGenerations: -1n });
      this.activeDeltas.set(ended.subjectId, (this.activeDeltas.get(ended.subjectId) ?? 0) - 1);
    }
  }

  /**
   * Writes the counter rows (one statement per table, in key order): each row read as missing
   * with its count from the log plus its deltas, each stored row moved by its deltas; then the
   * subjects' active reservations.
   */
  async flush(stores: UsageStores): Promise<void> {
    const zeroPeriod: PeriodDelta = { generations: 0n, credits: 0n, processingMs: 0n, reservedGenerations: 0n, reservedCredits: 0n };
    const periods = [...new Set([...this.newPeriods.keys(), ...this.periodDeltas.keys()])].map((key) => {
      const base = this.newPeriods.get(key);
      const moved = this.periodDeltas.get(key);
      const d = moved?.delta ?? zeroPeriod;
      // A stored row's period_end is not written (only its counters move).
      const row = base ?? { subjectId: moved!.subjectId, periodStart: moved!.periodStart, periodEnd: this.periods.get(key)?.periodEnd ?? moved!.periodStart,
        generations: 0n, credits: 0n, processingMs: 0n, reservedGenerations: 0n, reservedCredits: 0n };
      return { created: base !== undefined, row: { ...row, generations: row.generations + d.generations, credits: row.credits + d.credits, processingMs: row.processingMs + d.processingMs,
        reservedGenerations: row.reservedGenerations + d.reservedGenerations, reservedCredits: row.reservedCredits + d.reservedCredits } };
    });
    const days = [...new Set([...this.newDays.keys(), ...this.dayDeltas.keys()])].map((key) => {
      const base = this.newDays.get(key);
      const moved = this.dayDeltas.get(key);
      const row = base ?? { subjectId: moved!.subjectId, day: moved!.day, generations: 0n, reservedGenerations: 0n };
      const d = moved?.delta ?? { generations: 0n, reservedGenerations: 0n };
      return { created: base !== undefined, row: { ...row, generations: row.generations + d.generations, reservedGenerations: row.reservedGenerations + d.reservedGenerations } };
    });
    await stores.counters.writeMany(periods, days);
    await stores.subjects.addActiveReservationsMany([...this.activeDeltas].map(([id, delta]) => ({ id, delta })));
  }

  private periodRow(subjectId: string, start: Date): PeriodCounters {
    const row = this.periods.get(keyOf(subjectId, start));
    assert.ok(row, "INV-6: a period row is read (created) before its counters move");
    return row;
  }

  private dayRow(subjectId: string, start: Date): DayCounters {
    const row = this.days.get(keyOf(subjectId, start));
    assert.ok(row, "INV-6: a day row is read (created) before its counters move");
    return row;
  }

  private addToPeriod(subjectId: string, periodStart: Date, d: PeriodDelta): void {
    const key = keyOf(subjectId, periodStart);
    const sum = this.periodDeltas.get(key)?.delta;
    const delta = sum
      ? { generations: sum.generations + d.generations, credits: sum.credits + d.credits, processingMs: sum.processingMs + d.processingMs,
          reservedGenerations: sum.reservedGenerations + d.reservedGenerations, reservedCredits: sum.reservedCredits + d.reservedCredits }
      : d;
    this.periodDeltas.set(key, { subjectId, periodStart, delta });
  }

  private addToDay(subjectId: string, day: Date, d: DayDelta): void {
    const key = keyOf(subjectId, day);
    const sum = this.dayDeltas.get(key)?.delta;
    this.dayDeltas.set(key, { subjectId, day, delta: sum ? { generations: sum.generations + d.generations, reservedGenerations: sum.reservedGenerations + d.reservedGenerations } : d });
  }
}
