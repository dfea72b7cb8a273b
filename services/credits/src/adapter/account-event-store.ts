/** Account events on credits' `outbox` (platform SqlOutboxStore), in the caller's transaction. */
import { events } from "@tally/contracts";
import { accountSubjects, newId, SqlOutboxStore, type Sql } from "@tally/platform";
import type { AccountEventStore } from "../domain/ports";

/** Encodes events.proto AccountDeleted onto `<subjectPrefix>.account.deleted`. */
export class SqlAccountEventStore implements AccountEventStore {
  private readonly outbox: SqlOutboxStore;

  constructor(
    sql: Sql,
    private readonly subjectPrefix: string,
  ) {
    this.outbox = new SqlOutboxStore(sql);
  }

  async appendAccountDeleted(event: { accountId: string; occurredAt: Date }): Promise<void> {
    const eventId = newId();
    const message: events.AccountDeleted = { eventId, occurredAt: event.occurredAt, accountId: event.accountId };
    const payload = events.AccountDeleted.encode(message).finish();
    await this.outbox.append({ eventId, subject: accountSubjects(this.subjectPrefix).deleted, payload, traceparent: null });
  }
}
