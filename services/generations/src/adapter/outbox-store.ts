import type { EntityManager } from "@mikro-orm/postgresql";

/** An event waiting in (or kept in) the outbox. */
export interface OutboxMessage {
  id: bigint;
  eventId: string;
  subject: string;
  payload: Uint8Array;
  traceparent: string | null;
}

/**
 * Appends an event to the outbox inside the caller's transaction, so the event exists if and
 * only if the state change that caused it commits. A second append of the same `eventId`
 * is ignored (the event id is derived from the generation, so a redo cannot duplicate it).
 */
export async function appendToOutbox(
  em: EntityManager,
  event: { eventId: string; subject: string; payload: Uint8Array; traceparent: string | null },
): Promise<void> {
  await em.execute(
    "INSERT INTO outbox (event_id, subject, payload, traceparent) VALUES (?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING",
    [event.eventId, event.subject, Buffer.from(event.payload), event.traceparent],
  );
}

/**
 * Claims up to `batchSize` unpublished rows, oldest first, for `leaseMs`: rows that are
 * unclaimed or whose claim ran out get `claimed_until = now() + leaseMs`. Meant to run in a
 * short transaction of its own: `FOR UPDATE SKIP LOCKED` only keeps two relays from claiming
 * the same rows at the same instant; the lease keeps them apart while the claimer publishes
 * with no transaction open. Rows come back in id order.
 */
export async function claimUnpublished(em: EntityManager, batchSize: number, leaseMs: number): Promise<OutboxMessage[]> {
  const rows = await em.execute<{ id: string; event_id: string; subject: string; payload: Buffer; traceparent: string | null }[]>(
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
 * Ends a claim: marks the acknowledged rows published (keeping the first `published_at` if a
 * second relay got there too) and hands the others back at once (`claimed_until = NULL`), so
 * the next attempt need not wait for the lease. Should the lease have run out and another
 * relay claimed a row meanwhile, handing it back costs at most a re-publish, which the stream
 * drops by message id.
 */
export async function finishClaim(em: EntityManager, acknowledged: bigint[], unacknowledged: bigint[]): Promise<void> {
  if (acknowledged.length > 0) {
    await em.execute(
      `UPDATE outbox SET published_at = COALESCE(published_at, now()), claimed_until = NULL WHERE id IN (${placeholders(acknowledged)})`,
      acknowledged.map((id) => id.toString()),
    );
  }
  if (unacknowledged.length > 0) {
    await em.execute(
      `UPDATE outbox SET claimed_until = NULL WHERE published_at IS NULL AND id IN (${placeholders(unacknowledged)})`,
      unacknowledged.map((id) => id.toString()),
    );
  }
}

const placeholders = (ids: bigint[]) => ids.map(() => "?").join(", ");

/** Deletes rows published more than `retentionMs` ago; returns how many. */
export async function prunePublished(em: EntityManager, retentionMs: number): Promise<number> {
  const rows = await em.execute<{ id: string }[]>(
    "DELETE FROM outbox WHERE published_at < now() - (?::bigint * interval '1 millisecond') RETURNING id",
    [retentionMs],
  );
  return rows.length;
}
