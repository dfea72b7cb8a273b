import { billingPeriodAt, newId, requireUuidField, validationError, type PlanCatalog } from "@tally/platform";
import type { ListUsageLogEntriesInput } from "../domain/inputs";
import type { UsageStores, UsageUnitOfWork } from "../domain/ports";
import type { GenerationCancellation } from "../domain/generation-event";
import type { Clock, DownloadDraft, RecordOutcome, UsageLogEntry, UsageLogEntryDraft, UsageLogPage, UsageTotals } from "../domain/types";
import { encodeUsageLogCursor } from "../domain/usage-log-cursor";
import { subjectSnapshot, sumStatsDeltas } from "../domain/usage-log";
import { countUsed, endReservation, lockEventSubjects, prepareUsedCounting } from "./quota-accounting";
import { announceThresholds } from "./thresholds";

/** One decoded event for `UsageLogService.recordBatch`, with the NATS subject it came on. */
export type UsageEvent =
  | { kind: "generation"; subject: string; draft: UsageLogEntryDraft }
  | { kind: "cancellation"; subject: string; cancellation: GenerationCancellation }
  | { kind: "download"; subject: string; download: DownloadDraft };

/** The event id of a batch's event. */
const eventIdOf = (event: UsageEvent): string =>
  event.kind === "generation" ? event.draft.eventId : event.kind === "cancellation" ? event.cancellation.eventId : event.download.eventId;

/** What `recordBatch` did with one event: nothing (`duplicate`), or recorded it (`entryId`: the usage log entry appended, if any). */
export interface UsageEventOutcome {
  duplicate: boolean;
  entryId: string | null;
}

/**
 * The usage log entries appended in one transaction, whose derived rows (user stats, monthly
 * analytics) move together, one set-based statement each, before the transaction commits (INV-6).
 */
class AppendedEntries {
  private readonly drafts: UsageLogEntryDraft[] = [];
  private readonly entries: { id: string; occurredAt: Date }[] = [];

  add(draft: UsageLogEntryDraft, entry: UsageLogEntry): void {
    this.drafts.push(draft);
    this.entries.push({ id: entry.id, occurredAt: entry.occurredAt });
  }

  async flush(stores: UsageStores): Promise<void> {
    await stores.userStats.addMany(sumStatsDeltas(this.drafts));
    await stores.monthlyAnalytics.addEntries(this.entries);
    if (this.entries.length > 0) await stores.rollups.addEntries(this.entries.map((entry) => entry.id));
  }
}

/** The usage log: recording generation events into it exactly once, and reading it page by page. */
export class UsageLogService {
  constructor(
    private readonly uow: UsageUnitOfWork,
    private readonly clock: Clock = () => new Date(),
    /** The plans whose soft thresholds a completion may cross (none announced without it) and whose limits entries snapshot (null without it). */
    private readonly plans: PlanCatalog | null = null,
  ) {}

  /**
   * Records one generation event, in ONE transaction: the event id goes into the inbox, the
   * immutable usage log entry is appended (INV-8) with a snapshot of its subject (plan and
   * limits, billing period, kind: `subjectSnapshot`), the user's stats, its month's analytics and
   * the platform rollups move by the entry (INV-6), and the limits follow: a completion counts as used in the period (by the
   * subject's anchor) and UTC day of its `occurred_at`, and its reservation, if still active,
   * is consumed (and a soft threshold it reaches is announced once, service/thresholds.ts); a
   * failure releases its reservation. An event with no reservation (an older
   * job, or one whose reservation expired) still counts. An event id already in the inbox
   * records nothing and answers `duplicate`: with the consumer acking only after this
   * commits, each event counts exactly once in effect (INV-5), and the inbox is what keeps one
   * event id to one usage log entry (the partitioned log has no unique key on `event_id`).
   * `subject` is the NATS subject the event came on (kept in the inbox).
   *
   * Errors: database errors propagate (the caller retries later); nothing is half-written.
   */
  record(subject: string, draft: UsageLogEntryDraft): Promise<RecordOutcome> {
    return this.uow.inTransaction(async (stores) => {
      if (!(await stores.inbox.claim(draft.eventId, subject))) return { kind: "duplicate", eventId: draft.eventId };
      const appended = new AppendedEntries();
      const entry = await this.appendGeneration(stores, draft, appended);
      await appended.flush(stores);
      return { kind: "recorded", entry };
    });
  }

  /**
   * Records a batch of events (generations, cancellations, downloads) in ONE transaction, each
   * exactly as `record`, `recordCancellation` and `recordDownload` would, in order: the event ids
   * are claimed in the inbox in one statement, so an id already recorded, or met earlier in the
   * same batch, records nothing and answers `duplicate` (INV-5). The stats and monthly analytics of the appended
   * entries move in one set-based statement each before the commit, so they are never behind the
   * log (INV-6). The completions' subjects are locked first, in id order (INV-9). Answers one
   * outcome per event, in the batch's order, with the appended entry's id (null for a duplicate,
   * a cancellation or a download).
   *
   * Errors: database errors propagate and nothing of the batch is written; the caller retries
   * the batch (transient) or records its events one by one to isolate the one refused (permanent).
   */
  recordBatch(events: readonly UsageEvent[]): Promise<UsageEventOutcome[]> {
    return this.uow.inTransaction(async (stores) => {
      const completing = events.flatMap((e) => (e.kind === "generation" && e.draft.outcome === "completed" ? [e.draft.userId] : []));
      const subjects = [...new Set(completing)];
      if (subjects.length > 1) await stores.subjects.lockOrCreate(subjects);
      const claimed = await stores.inbox.claimMany(events.map((e) => ({ eventId: eventIdOf(e), subject: e.subject })));
      const appended = new AppendedEntries();
      const outcomes: UsageEventOutcome[] = [];
      for (const event of events) {
        // Claimed by this batch, and this is the id's first event in it.
        if (!claimed.delete(eventIdOf(event))) {
          outcomes.push({ duplicate: true, entryId: null });
        } else if (event.kind === "generation") {
          outcomes.push({ duplicate: false, entryId: (await this.appendGeneration(stores, event.draft, appended)).id });
        } else {
          if (event.kind === "cancellation") await this.cancelIn(stores, event.cancellation);
          else await this.downloadIn(stores, event.download);
          outcomes.push({ duplicate: false, entryId: null });
        }
      }
      await appended.flush(stores);
      return outcomes;
    });
  }

  /** `record`'s work, its event id claimed, inside the caller's transaction; the stats and analytics move when `appended` is flushed. */
  private async appendGeneration(stores: UsageStores, draft: UsageLogEntryDraft, appended: AppendedEntries): Promise<UsageLogEntry> {
    const completed = draft.outcome === "completed";
    const reservation = await stores.reservations.find(draft.generationId);
    const locked = await lockEventSubjects(stores, draft.userId, completed, reservation);
    // The counter rows exist (counted from the log) BEFORE the entry is appended, so the entry counts once.
    const targets = completed ? await prepareUsedCounting(stores, locked, draft.userId, draft.occurredAt) : null;
    const stored = locked.get(draft.userId) ?? (await stores.subjects.find(draft.userId));
    // The period the entry counts in: where a completion was counted (an adopted guest's may be
    // its adopter's window), else the subject's own period by its anchor.
    const period = targets ? (targets.period?.window ?? null) : stored?.periodAnchor ? billingPeriodAt(stored.periodAnchor, draft.occurredAt) : null;
    const entry = await stores.usageLog.append(newId(), draft, subjectSnapshot(stored, this.plans, period));
    appended.add(draft, entry);
    if (targets) await countUsed(stores, targets, draft);
    if (targets && this.plans) await announceThresholds(stores, this.plans, locked, targets, draft.occurredAt);
    if (reservation) await endReservation(stores, draft.generationId, completed ? "consumed" : "released", this.clock());
    return entry;
  }

  /**
   * Records a `GenerationCancelled` event: its id goes into the inbox and the generation's
   * reservation, if still active, is released, and the cancellation is appended to the
   * cancellation log (lifetime stats count it), in one transaction. Nothing goes into the usage
   * log (a cancelled job is neither a completion nor a failure) or the stats row. Answers
   * `duplicate` for an event id already in the inbox; a cancellation with no reservation does
   * nothing else. Errors: database errors propagate.
   */
  recordCancellation(subject: string, event: GenerationCancellation): Promise<"recorded" | "duplicate"> {
    return this.uow.inTransaction(async (stores) => {
      if (!(await stores.inbox.claim(event.eventId, subject))) return "duplicate";
      await this.cancelIn(stores, event);
      return "recorded";
    });
  }

  /** `recordCancellation`'s work, its event id claimed, inside the caller's transaction. */
  private async cancelIn(stores: UsageStores, event: GenerationCancellation): Promise<void> {
    await stores.usageLog.appendCancellation(event);
    const reservation = await stores.reservations.find(event.generationId);
    if (!reservation) return;
    await lockEventSubjects(stores, event.userId, false, reservation);
    await endReservation(stores, event.generationId, "released", this.clock());
  }

  /**
   * Records a `generation.downloaded` event in ONE transaction: its id goes into the inbox, the
   * download is appended to the immutable download log (INV-8) and the user's
   * `totalDownloaded` grows by one (INV-6). Not billable: no usage log entry, no limit counter,
   * no credits. Answers `duplicate` (and records nothing) for an event id already in the inbox,
   * so each download request counts once (INV-5). Errors: database errors propagate.
   */
  recordDownload(subject: string, download: DownloadDraft): Promise<"recorded" | "duplicate"> {
    return this.uow.inTransaction(async (stores) => {
      if (!(await stores.inbox.claim(download.eventId, subject))) return "duplicate";
      await this.downloadIn(stores, download);
      return "recorded";
    });
  }

  /** `recordDownload`'s work, its event id claimed, inside the caller's transaction. */
  private async downloadIn(stores: UsageStores, download: DownloadDraft): Promise<void> {
    await stores.usageLog.appendDownload(download);
    await stores.userStats.addDownload(download.userId);
  }

  /**
   * Totals of the user's usage log entries that occurred in [`since`, `before`) (completions
   * bring their credits, cost, processing time and output bytes; failures are counted).
   * Errors: `validation` for a user id that is not a UUID (`user_id`), or a window that is
   * missing a bound or not after its start (`occurred_before`).
   */
  async totals(userId: string, since: Date | undefined, before: Date | undefined): Promise<UsageTotals> {
    const id = requireUuidField(userId, "user_id");
    if (!since || Number.isNaN(since.getTime())) throw validationError("occurred_since is required", { field: "occurred_since" });
    if (!before || Number.isNaN(before.getTime()) || before <= since) {
      throw validationError("occurred_before is required and must be after occurred_since", { field: "occurred_before" });
    }
    return await this.uow.withoutTransaction((stores) => stores.usageLog.totals(id, { start: since, end: before }));
  }

  /**
   * One page of a user's usage log entries, newest first (`occurred_at`, then id), with keyset
   * pagination: entries recorded while paging never shift a page. `nextPageToken` is "" on the
   * last page. The input is checked by `parseListUsageLogEntriesInput` (INV-7).
   */
  list(input: ListUsageLogEntriesInput): Promise<UsageLogPage> {
    return this.uow.withoutTransaction(async (stores) => {
      // One row more than the page tells whether another page follows.
      const rows = await stores.usageLog.page(input.userId, input.pageSize + 1, input.after, input.occurredSince);
      const page = rows.slice(0, input.pageSize);
      const last = page[page.length - 1];
      const nextPageToken =
        rows.length > input.pageSize && last
          ? encodeUsageLogCursor({ userId: input.userId, occurredAtMicros: last.occurredAtMicros, id: last.entry.id })
          : "";
      return { entries: page.map((row) => row.entry), nextPageToken };
    });
  }
}
