import assert from "node:assert";
import { context, propagation, SpanKind, SpanStatusCode, trace, type Span } from "@opentelemetry/api";
import { headers, type NatsConnection } from "@nats-io/transport-node";
import { jetstream, type JetStreamClient } from "@nats-io/jetstream";
import type { Sql } from "./db";
import type { Logger } from "./logger";
import { PgListener, PG_LISTENER_RECONNECT_INITIAL_MS, PG_LISTENER_RECONNECT_MAX_MS } from "./pg-listener";
import { PollingLoop } from "./polling-loop";
import { contextFromCarrier, tracer } from "./telemetry";
import type { UnitOfWork } from "./unit-of-work";

/*
 * The transactional outbox every producing service shares (INV-5, producer half): the store on
 * its `outbox` table, the JetStream publisher (Nats-Msg-Id = event id) and the relay runner.
 * An event row is written in the transaction of the change that caused it; the relay publishes
 * it afterwards with no transaction open (INV-9).
 */

/**
 * DDL of the outbox table `SqlOutboxStore` and `OutboxRelay` work on, one statement per
 * element: a migration of each service that publishes events runs them. `outbox_unpublished`
 * serves the relay's claims, `outbox_published_at` its pruning of published rows.
 */
export const OUTBOX_TABLE_SQL: readonly string[] = [
  `CREATE TABLE outbox (
  id bigserial PRIMARY KEY,
  event_id uuid NOT NULL UNIQUE,
  subject text NOT NULL,
  payload bytea NOT NULL,
  traceparent text,
  created_at timestamptz NOT NULL DEFAULT now(),
  claimed_until timestamptz,
  published_at timestamptz
)`,
  "CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL",
  "CREATE INDEX outbox_published_at ON outbox (published_at) WHERE published_at IS NOT NULL",
];

/** The channel the outbox trigger notifies at the commit of every transaction that appended a row. */
export const OUTBOX_NOTIFY_CHANNEL = "outbox_appended";

/**
 * DDL of the trigger that wakes the relays: after each INSERT statement on `outbox`,
 * `pg_notify('outbox_appended', '')`. PostgreSQL folds the identical notifications of one
 * transaction into one and delivers it at commit only (never for a rolled-back append), so
 * a relay LISTENing on the channel drains the row as soon as it is visible. A migration of
 * each service with an outbox runs these (after OUTBOX_TABLE_SQL).
 */
export const OUTBOX_NOTIFY_TRIGGER_SQL: readonly string[] = [
  `CREATE FUNCTION outbox_appended_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('${OUTBOX_NOTIFY_CHANNEL}', '');
  RETURN NULL;
END
$$`,
  "CREATE TRIGGER outbox_appended AFTER INSERT ON outbox FOR EACH STATEMENT EXECUTE FUNCTION outbox_appended_notify()",
];

/** One event in the contract's encoding, with the NATS subject it goes on. */
export interface EncodedEvent {
  eventId: string;
  subject: string;
  payload: Uint8Array;
}

/** An outbox row: the event and the trace context of the change that wrote it. */
export interface OutboxMessage extends EncodedEvent {
  id: bigint;
  traceparent: string | null;
}

/** The transactional outbox (INV-5, producer half). */
export interface OutboxStore {
  /** Appends an event in the caller's transaction; a second append of the same event id is ignored. */
  append(event: EncodedEvent & { traceparent: string | null }): Promise<void>;
  /** Claims up to `batchSize` unpublished rows, oldest first, for `leaseMs`; rows come back in id order. */
  claimUnpublished(batchSize: number, leaseMs: number): Promise<OutboxMessage[]>;
  /** Marks the acknowledged rows published and hands the others back at once. */
  finishClaim(acknowledged: bigint[], unacknowledged: bigint[]): Promise<void>;
  /** Deletes rows published more than `retentionMs` ago; returns how many. */
  prunePublished(retentionMs: number): Promise<number>;
}

/** What publishing one outbox row came to: acknowledged (perhaps as a duplicate the stream dropped), or not. */
export type PublishResult = { acknowledged: true; duplicate: boolean } | { acknowledged: false; error: unknown };

/** The event stream the outbox relay publishes to (INV-5). */
export interface EventPublisher {
  /** Publishes `messages` with their event id as de-duplication id and awaits every ack: one result per message, in order. */
  publishAll(messages: OutboxMessage[]): Promise<PublishResult[]>;
}

/**
 * OutboxStore on a service's `outbox` table (INV-5, producer half): columns id bigserial,
 * event_id uuid UNIQUE, subject, payload bytea, traceparent, claimed_until, published_at.
 */
export class SqlOutboxStore implements OutboxStore {
  constructor(private readonly sql: Sql) {}

  /**
   * A second append of the same event id is ignored (ON CONFLICT DO NOTHING), so a redo cannot
   * duplicate the row. The payload travels as a bind parameter, never inlined into the SQL text.
   */
  async append(event: EncodedEvent & { traceparent: string | null }): Promise<void> {
    await this.sql.bound(
      {
        name: "outbox_append",
        text: "INSERT INTO outbox (event_id, subject, payload, traceparent) VALUES ($1, $2, $3, $4) ON CONFLICT (event_id) DO NOTHING",
      },
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

/**
 * EventPublisher on NATS JetStream: `Nats-Msg-Id` = event id (the stream drops a re-publish
 * within its duplicate window, INV-5) and a `traceparent` header: each row is published in a
 * PRODUCER span continuing the row's trace, and the header carries that span. The whole batch is
 * published, then the PubAcks are awaited together: one round trip per batch, not per row.
 */
export class JetStreamEventPublisher implements EventPublisher {
  private readonly js: JetStreamClient;

  constructor(
    nc: NatsConnection,
    /** How long to wait for one PubAck, in milliseconds. */
    private readonly publishTimeoutMs: number,
  ) {
    this.js = jetstream(nc, { timeout: publishTimeoutMs });
  }

  async publishAll(messages: OutboxMessage[]): Promise<PublishResult[]> {
    const acks = messages.map((message) => {
      const span = startPublishSpan(message);
      const h = headers();
      for (const [key, value] of Object.entries(publishCarrier(message, span))) h.set(key, value);
      const ack = this.js.publish(message.subject, message.payload, { msgID: message.eventId, headers: h, timeout: this.publishTimeoutMs });
      return ack.then(
        (result) => {
          span.end();
          return result;
        },
        (error: unknown) => {
          span.setStatus({ code: SpanStatusCode.ERROR, message: String(error) });
          span.end();
          throw error;
        },
      );
    });
    const settled = await Promise.allSettled(acks);
    return settled.map((result) =>
      result.status === "fulfilled" ? { acknowledged: true, duplicate: result.value.duplicate } : { acknowledged: false, error: result.reason },
    );
  }
}

/**
 * A PRODUCER span `<subject> publish` for one outbox row, continuing the trace of the change
 * that wrote the row (its `traceparent`), from the publish until its PubAck.
 */
function startPublishSpan(message: OutboxMessage): Span {
  const parent = contextFromCarrier({ traceparent: message.traceparent ?? undefined });
  const attributes = { "messaging.system": "nats", "messaging.operation.type": "send", "messaging.destination.name": message.subject, "messaging.message.id": message.eventId };
  return tracer("outbox").startSpan(`${message.subject} publish`, { kind: SpanKind.PRODUCER, attributes }, parent);
}

/**
 * The trace headers of a published message: the publish span's context (so the consumer's
 * span is its child); with no SDK (nothing injected), the row's own `traceparent`.
 */
function publishCarrier(message: OutboxMessage, span: Span): Record<string, string> {
  const carrier: Record<string, string> = {};
  propagation.inject(trace.setSpan(context.active(), span), carrier);
  if (!carrier.traceparent && message.traceparent) carrier.traceparent = message.traceparent;
  return carrier;
}

export interface OutboxRelayOptions {
  /** The loop's name in logs (default "outbox relay"). */
  name?: string;
  /** Wait between polls when the outbox is empty, in milliseconds. */
  pollIntervalMs: number;
  /** Rows claimed per batch. */
  batchSize: number;
  /** Published rows are kept this long (for replay), in milliseconds. */
  retentionMs: number;
  /** How often published rows past retention are deleted, in milliseconds. */
  pruneIntervalMs: number;
  /** Longest wait between attempts while publishing fails, in milliseconds. */
  backoffMaxMs: number;
  /** How long to wait for one PubAck, in milliseconds. A batch's claim lasts twice this. */
  publishTimeoutMs: number;
  /**
   * Where to LISTEN for `outbox_appended` (OUTBOX_NOTIFY_TRIGGER_SQL): the outbox's database
   * and the reconnection backoff (default 250 doubling to 5000 ms). Unset: the relay only polls.
   */
  notifications?: { url: string; reconnectInitialMs?: number; reconnectMaxMs?: number };
}

/** A claimed batch stays claimed for this many PubAck timeouts (the acks are awaited together). */
export const CLAIM_LEASE_PUBLISH_TIMEOUTS = 2;

/** Full batches published in a row before the relay pauses one poll interval (so it never starves the event loop). */
export const RELAY_PASSES_IN_A_ROW_MAX = 20;

/** Counters for tests and metrics. */
export interface OutboxRelayStats {
  published: number;
  /** PubAcks JetStream flagged as duplicates (a row re-published within the duplicate window). */
  duplicates: number;
  failures: number;
}

/**
 * Publishes outbox rows to the event stream (INV-5, producer half), holding no transaction or
 * row lock while it talks to NATS (INV-9). Each batch (1) claims unpublished rows in id order
 * in a short transaction (`claimed_until` = now + 2 × the PubAck timeout; rows under another
 * relay's live claim are skipped), (2) publishes each with `Nats-Msg-Id` = event id and
 * awaits the PubAcks with no transaction open, (3) marks the acknowledged rows published and
 * hands the rest back in a second short transaction. A crash (or a stall past the lease)
 * between (1) and (3) leaves the rows claimed until the lease runs out; then they are claimed
 * and published again, which the stream de-duplicates by message id within its duplicate
 * window (and the consumer by event id). While publishing fails, nothing is marked, and the
 * relay backs off exponentially up to `backoffMaxMs`; a full batch means more is waiting, so
 * it goes again at once. Published rows are kept for `retentionMs` for replay. With
 * `notifications` it also LISTENs (a dedicated connection, reconnected when lost) for the
 * outbox trigger's `outbox_appended`, sent at the commit of each append, and drains at once;
 * the poll stays as the fallback for a lost or missed notification.
 */
export class OutboxRelay {
  readonly stats: OutboxRelayStats = { published: 0, duplicates: 0, failures: 0 };
  private readonly loop: PollingLoop;
  private readonly listener: PgListener | undefined;
  private lastPruneAt = 0;

  constructor(
    private readonly uow: UnitOfWork<{ outbox: OutboxStore }>,
    private readonly publisher: EventPublisher,
    private readonly options: OutboxRelayOptions,
    private readonly logger: Logger,
  ) {
    const loopOptions = {
      name: options.name ?? "outbox relay",
      intervalMs: options.pollIntervalMs,
      backoffMaxMs: options.backoffMaxMs,
      passesInARowMax: RELAY_PASSES_IN_A_ROW_MAX,
    };
    this.loop = new PollingLoop(loopOptions, () => this.pass(), logger);
    const notifications = options.notifications;
    if (notifications) {
      const listenerOptions = {
        url: notifications.url,
        channel: OUTBOX_NOTIFY_CHANNEL,
        reconnectInitialMs: notifications.reconnectInitialMs ?? PG_LISTENER_RECONNECT_INITIAL_MS,
        reconnectMaxMs: notifications.reconnectMaxMs ?? PG_LISTENER_RECONNECT_MAX_MS,
      };
      // A notification, or (re)connecting (what was appended meanwhile was not heard): drain now.
      const wake = () => this.loop.wakeUp();
      this.listener = new PgListener(listenerOptions, { onNotification: wake, onListening: wake }, logger);
    }
  }

  /** Starts the loop and, with `notifications`, the LISTEN connection that wakes it at each commit. */
  start(): void {
    this.loop.start();
    this.listener?.start();
  }

  /** True while the relay's LISTEN connection listens (false without `notifications`). */
  get listening(): boolean {
    return this.listener?.listening ?? false;
  }

  /** Finishes the batch in hand and stops (and stops listening); unpublished rows wait for the next start. */
  async stop(): Promise<void> {
    await this.loop.stop();
    await this.listener?.stop();
  }

  /**
   * Publishes one batch; returns how many rows it claimed (0 when the outbox is drained).
   * Throws when publishing fails (after marking the rows that were acknowledged).
   */
  async relayBatch(): Promise<number> {
    const leaseMs = CLAIM_LEASE_PUBLISH_TIMEOUTS * this.options.publishTimeoutMs;
    const rows = await this.uow.inTransaction((stores) => stores.outbox.claimUnpublished(this.options.batchSize, leaseMs));
    if (rows.length === 0) return 0;
    // No transaction is open from here to finishClaim.
    const results = await this.publisher.publishAll(rows);
    const acknowledged: bigint[] = [];
    const unacknowledged: bigint[] = [];
    let firstError: unknown;
    results.forEach((result, index) => {
      const row = rows[index];
      assert.ok(row, "INV-5: one publish result per claimed row");
      if (result.acknowledged) {
        acknowledged.push(row.id);
        if (result.duplicate) this.stats.duplicates++;
      } else {
        unacknowledged.push(row.id);
        firstError ??= result.error;
      }
    });
    assert.equal(acknowledged.length + unacknowledged.length, rows.length, "INV-5: every claimed row is either acknowledged or handed back");
    // Record what was acknowledged; the rest is retried (and de-duplicated if it did land).
    await this.uow.inTransaction((stores) => stores.outbox.finishClaim(acknowledged, unacknowledged));
    this.stats.published += acknowledged.length;
    if (firstError !== undefined) throw firstError;
    return rows.length;
  }

  /** One loop pass: a batch, then pruning when due. True (go again at once) after a full batch. */
  private async pass(): Promise<boolean> {
    try {
      const taken = await this.relayBatch();
      await this.pruneWhenDue();
      return taken >= this.options.batchSize;
    } catch (error) {
      this.stats.failures++;
      throw error;
    }
  }

  private async pruneWhenDue(): Promise<void> {
    if (Date.now() - this.lastPruneAt < this.options.pruneIntervalMs) return;
    this.lastPruneAt = Date.now();
    const pruned = await this.uow.withoutTransaction((stores) => stores.outbox.prunePublished(this.options.retentionMs));
    if (pruned > 0) this.logger.info({ pruned }, "pruned published outbox rows past retention");
  }
}
