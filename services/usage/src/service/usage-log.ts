import { newId } from "@tally/platform";
import type { ListUsageLogEntriesInput } from "../domain/inputs";
import type { UsageUnitOfWork } from "../domain/ports";
import type { RecordOutcome, UsageLogEntryDraft, UsageLogPage } from "../domain/types";
import { encodeUsageLogCursor } from "../domain/usage-log-cursor";
import { statsDelta } from "../domain/usage-log";

/** The usage log: recording generation events into it exactly once, and reading it page by page. */
export class UsageLogService {
  constructor(private readonly uow: UsageUnitOfWork) {}

  /**
   * Records one generation event, in ONE transaction: the event id goes into the inbox, the
   * immutable usage log entry is appended (INV-8) and the user's stats move by the entry's
   * delta (INV-6). An event id already in the inbox records nothing and answers `duplicate`:
   * with the consumer acking only after this commits, each event counts exactly once in effect
   * (INV-5). `subject` is the NATS subject the event came on (kept in the inbox).
   *
   * Errors: database errors propagate (the caller retries later); nothing is half-written.
   */
  record(subject: string, draft: UsageLogEntryDraft): Promise<RecordOutcome> {
    return this.uow.inTransaction(async (stores) => {
      const first = await stores.inbox.claim(draft.eventId, subject);
      if (!first) return { kind: "duplicate", eventId: draft.eventId };
      const entry = await stores.usageLog.append(newId(), draft);
      await stores.userStats.add(draft.userId, statsDelta(draft), draft.occurredAt);
      return { kind: "recorded", entry };
    });
  }

  /**
   * One page of a user's usage log entries, newest first (`occurred_at`, then id), with keyset
   * pagination: entries recorded while paging never shift a page. `nextPageToken` is "" on the
   * last page. The input is checked by `parseListUsageLogEntriesInput` (INV-7).
   */
  list(input: ListUsageLogEntriesInput): Promise<UsageLogPage> {
    return this.uow.withoutTransaction(async (stores) => {
      // One row more than the page tells whether another page follows.
      const rows = await stores.usageLog.page(input.userId, input.pageSize + 1, input.after);
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
