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
 * Locks up to `batchSize` unpublished rows, oldest first; rows another relay holds are skipped
 * (`FOR UPDATE SKIP LOCKED`), so replicas never publish the same batch side by side.
 */
export async function lockUnpublished(em: EntityManager, batchSize: number): Promise<OutboxMessage[]> {
  const rows = await em.execute<{ id: string; event_id: string; subject: string; payload: Buffer; traceparent: string | null }[]>(
    `SELECT id, event_id, subject, payload, traceparent FROM outbox WHERE published_at IS NULL
     ORDER BY id LIMIT ? FOR UPDATE SKIP LOCKED`,
    [batchSize],
  );
  return rows.map((row) => ({
    id: BigInt(row.id),
    eventId: row.event_id,
    subject: row.subject,
    payload: new Uint8Array(row.payload),
    traceparent: row.traceparent,
  }));
}

/** Marks rows as published (acknowledged by JetStream). */
export async function markPublished(em: EntityManager, ids: bigint[]): Promise<void> {
  if (ids.length === 0) return;
  await em.execute(
    `UPDATE outbox SET published_at = now() WHERE id IN (${ids.map(() => "?").join(", ")})`,
    ids.map((id) => id.toString()),
  );
}

/** Deletes rows published more than `retentionMs` ago; returns how many. */
export async function prunePublished(em: EntityManager, retentionMs: number): Promise<number> {
  const rows = await em.execute<{ id: string }[]>(
    "DELETE FROM outbox WHERE published_at < now() - (?::bigint * interval '1 millisecond') RETURNING id",
    [retentionMs],
  );
  return rows.length;
}
