import { requireUuidField, type PlanCatalog } from "@tally/platform";
import { parseTimeWindow, type ListUsageLogEntriesInput } from "../domain/inputs";
import type { UsageUnitOfWork } from "../domain/ports";
import type { GenerationCancellation } from "../domain/generation-event";
import type { Clock, DownloadDraft, RecordOutcome, UsageLogEntryDraft, UsageLogPage, UsageTotals } from "../domain/types";
import { encodeUsageLogCursor } from "../domain/usage-log-cursor";
import { recordEvents, type UsageEvent, type UsageEventOutcome } from "./batch-recording";

export type { UsageEvent, UsageEventOutcome } from "./batch-recording";

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
   * `subject` is the NATS subject the event came on (kept in the inbox). `recordBatch` of one event.
   *
   * Errors: database errors propagate (the caller retries later); nothing is half-written.
   */
  async record(subject: string, draft: UsageLogEntryDraft): Promise<RecordOutcome> {
    const [outcome] = await this.recordBatch([{ kind: "generation", subject, draft }]);
    return outcome?.entryId ? { kind: "recorded", entryId: outcome.entryId } : { kind: "duplicate", eventId: draft.eventId };
  }

  /**
   * Records a batch of events (generations, cancellations, downloads) in ONE transaction, each
   * exactly as `record`, `recordCancellation` and `recordDownload` describe, as if one by one in
   * the batch's order, with a handful of set-based statements whatever the batch's size
   * (service/batch-recording.ts): the event ids are claimed in the inbox in one statement, so an
   * id already recorded, or met earlier in the same batch, records nothing and answers
   * `duplicate` (INV-5). The derived rows (stats, monthly analytics, rollups, counters) move
   * before the commit, so they are never behind the log (INV-6). The subjects are locked in one
   * statement, in id order (INV-9). Answers one outcome per event, in the batch's order, with the
   * appended entry's id (null for a duplicate, a cancellation or a download).
   *
   * Errors: database errors propagate and nothing of the batch is written; the caller retries
   * the batch (transient) or records its events one by one to isolate the one refused (permanent).
   */
  recordBatch(events: readonly UsageEvent[]): Promise<UsageEventOutcome[]> {
    if (events.length === 0) return Promise.resolve([]);
    return this.uow.inTransaction((stores) => recordEvents(stores, events, this.plans, this.clock()));
  }

  /**
   * Records a `GenerationCancelled` event: its id goes into the inbox and the generation's
   * reservation, if still active, is released, and the cancellation is appended to the
   * cancellation log (lifetime stats count it), in one transaction. Nothing goes into the usage
   * log (a cancelled job is neither a completion nor a failure) or the stats row. Answers
   * `duplicate` for an event id already in the inbox; a cancellation with no reservation does
   * nothing else. `recordBatch` of one event. Errors: database errors propagate.
   */
  async recordCancellation(subject: string, event: GenerationCancellation): Promise<"recorded" | "duplicate"> {
    const [outcome] = await this.recordBatch([{ kind: "cancellation", subject, cancellation: event }]);
    return outcome?.duplicate === false ? "recorded" : "duplicate";
  }

  /**
   * Records a `generation.downloaded` event in ONE transaction: its id goes into the inbox, the
   * download is appended to the immutable download log (INV-8) and the user's
   * `totalDownloaded` grows by one (INV-6). Not billable: no usage log entry, no limit counter,
   * no credits. Answers `duplicate` (and records nothing) for an event id already in the inbox,
   * so each download request counts once (INV-5). `recordBatch` of one event. Errors: database errors propagate.
   */
  async recordDownload(subject: string, download: DownloadDraft): Promise<"recorded" | "duplicate"> {
    const [outcome] = await this.recordBatch([{ kind: "download", subject, download }]);
    return outcome?.duplicate === false ? "recorded" : "duplicate";
  }

  /**
   * Totals of the user's usage log entries that occurred in [`since`, `before`) (completions
   * bring their credits, cost, processing time and output bytes; failures are counted).
   * Errors: `validation` for a user id that is not a UUID (`user_id`), or a window that is
   * missing a bound, outside the years 1 to 9999 or not after its start (`occurred_before`).
   */
  async totals(userId: string, since: Date | undefined, before: Date | undefined): Promise<UsageTotals> {
    const id = requireUuidField(userId, "user_id");
    const window = parseTimeWindow(since, before);
    return await this.uow.withoutTransaction((stores) => stores.usageLog.totals(id, window));
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
