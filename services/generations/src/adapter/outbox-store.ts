import type { Sql } from "@tally/platform";
import type { EncodedEvent, OutboxMessage, OutboxStore } from "../domain/ports";

/** OutboxStore on the `outbox` table (INV-5, producer half). */
export class SqlOutboxStore implements OutboxStore {
  constructor(private readonly sql: Sql) {}

  /** The event id is derived from the generation, so a redo cannot duplicate the row (ON CONFLICT DO NOTHING). */
  async append(event: EncodedEvent & { traceparent: string | null }): Promise<void> {
    await this.sql.query(
      "INSERT INTO outbox (event_id, subject, payload, traceparent) VALUES (?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING",
      [event.eventId, event.subject, event.payload, event.traceparent],
    );
  }

  /**
   * Rows that are unclaimed or whose claim ran out get `claimed_until = now() + leaseMs`.
   * `FOR UPDATE SKIP LOCKED` only keeps two relays from claiming the same rows at the same
   * instant; the lease keeps them apart while the claimer publishes with no transaction open.
   */
  async claimUnpublished(batchSize: number, leaseMs: number): Promise<OutboxMessage[]> {
    const rows = await this.sql.query<{ id: string; event_id: string; subject: string; payload: Buffer; traceparent: string | null }>(
      `UPDATE outbox SET claimed_until = now() + (?::bigint * interval '1 millisecond')
       WHERE id IN (
         SELECT id FROM outbox
         WHERE published_at IS NULL AND (claimed_until IS NULL OR claimed_until < now())
         ORDER BY id LIMIT ? FOR UPDATE SKIP LOCKED)
       RETURNING id, event_id, subject, payload, traceparent`,
      [leaseMs, batchSize],
    );
    return rows
      .map((row) => ({
        id: BigInt(row.id),
        eventId: row.event_id,
        subject: row.subject,
        payload: new Uint8Array(row.payload),
        traceparent: row.traceparent,
      }))
      .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /**
   * Keeps the first `published_at` if a second relay got there too, and hands the
   * unacknowledged rows back (`claimed_until = NULL`) so the next attempt need not wait for
   * the lease. Should the lease have run out and another relay claimed a row meanwhile,
   * handing it back costs at most a re-publish, which the stream drops by message id.
   */
  async finishClaim(acknowledged: bigint[], unacknowledged: bigint[]): Promise<void> {
    if (acknowledged.length > 0) {
      await this.sql.query(
        `UPDATE outbox SET published_at = COALESCE(published_at, now()), claimed_until = NULL WHERE id IN (${placeholders(acknowledged)})`,
        acknowledged,
      );
    }
    if (unacknowledged.length > 0) {
      await this.sql.query(
        `UPDATE outbox SET claimed_until = NULL WHERE published_at IS NULL AND id IN (${placeholders(unacknowledged)})`,
        unacknowledged,
      );
    }
  }

  async prunePublished(retentionMs: number): Promise<number> {
    const rows = await this.sql.query<{ id: string }>(
      "DELETE FROM outbox WHERE published_at < now() - (?::bigint * interval '1 millisecond') RETURNING id",
      [retentionMs],
    );
    return rows.length;
  }
}

const placeholders = (ids: bigint[]) => ids.map(() => "?").join(", ");
