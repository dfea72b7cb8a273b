import { headers, type NatsConnection } from "@nats-io/transport-node";
import { jetstream, type JetStreamClient } from "@nats-io/jetstream";
import type { Logger, Orm } from "@tally/platform";
import { lockUnpublished, markPublished, prunePublished } from "../adapter/outbox-store";

export interface OutboxRelayOptions {
  /** Wait between polls when the outbox is empty, in milliseconds. */
  pollIntervalMs: number;
  /** Rows taken per transaction. */
  batchSize: number;
  /** Published rows are kept this long (for replay), in milliseconds. */
  retentionMs: number;
  /** How often published rows past retention are deleted, in milliseconds. */
  pruneIntervalMs: number;
  /** Longest wait between attempts while publishing fails, in milliseconds. */
  backoffMaxMs: number;
  /** How long to wait for one PubAck, in milliseconds. */
  publishTimeoutMs: number;
}

/** Counters for tests and metrics. */
export interface OutboxRelayStats {
  published: number;
  /** PubAcks JetStream flagged as duplicates (a row re-published within the duplicate window). */
  duplicates: number;
  failures: number;
}

/**
 * Publishes outbox rows to JetStream (the producer half of invariant 5). Each poll locks a
 * batch of unpublished rows in id order (`FOR UPDATE SKIP LOCKED`, so relays on several
 * replicas never publish the same batch together), publishes each with `Nats-Msg-Id` = event
 * id and the row's `traceparent` header, awaits the PubAcks and marks the acknowledged rows
 * published in the same transaction. A crash between PubAck and commit re-publishes the row,
 * which the stream de-duplicates by message id (and the consumer by event id). While NATS is
 * down, publishing fails, nothing is marked, and the relay backs off exponentially up to
 * `backoffMaxMs`. Published rows are kept for `retentionMs` so they can be replayed.
 */
export class OutboxRelay {
  readonly stats: OutboxRelayStats = { published: 0, duplicates: 0, failures: 0 };
  private readonly js: JetStreamClient;
  private stopping = false;
  private loopDone: Promise<void> | undefined;
  private wakeUp: (() => void) | undefined;
  private lastPruneAt = 0;

  constructor(
    private readonly orm: Orm,
    nc: NatsConnection,
    private readonly options: OutboxRelayOptions,
    private readonly logger: Logger,
  ) {
    this.js = jetstream(nc, { timeout: options.publishTimeoutMs });
  }

  start(): void {
    if (this.loopDone) return;
    this.loopDone = this.loop();
  }

  /** Finishes the batch in hand and stops; unpublished rows wait for the next start. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.wakeUp?.();
    await this.loopDone;
  }

  /**
   * Publishes one batch; returns how many rows it took (0 when the outbox is drained).
   * Throws when publishing fails (after marking the rows that were acknowledged).
   */
  async relayBatch(): Promise<number> {
    const { taken, error } = await this.orm.em.fork().transactional(async (em) => {
      const rows = await lockUnpublished(em, this.options.batchSize);
      if (rows.length === 0) return { taken: 0, error: undefined };
      // Publish the whole batch, then await the acks: one round trip per batch, not per row.
      const acks = rows.map((row) => {
        const h = headers();
        if (row.traceparent) h.set("traceparent", row.traceparent);
        return this.js.publish(row.subject, row.payload, { msgID: row.eventId, headers: h, timeout: this.options.publishTimeoutMs });
      });
      const settled = await Promise.allSettled(acks);
      const acknowledged: bigint[] = [];
      let firstError: unknown;
      settled.forEach((result, index) => {
        if (result.status === "fulfilled") {
          acknowledged.push(rows[index]!.id);
          if (result.value.duplicate) this.stats.duplicates++;
        } else {
          firstError ??= result.reason;
        }
      });
      // Commit what was acknowledged; the rest is retried (and de-duplicated if it did land).
      await markPublished(em, acknowledged);
      this.stats.published += acknowledged.length;
      return { taken: rows.length, error: firstError };
    });
    if (error !== undefined) throw error;
    return taken;
  }

  private async loop(): Promise<void> {
    let backoffMs = this.options.pollIntervalMs;
    while (!this.stopping) {
      let delayMs = this.options.pollIntervalMs;
      try {
        const taken = await this.relayBatch();
        backoffMs = this.options.pollIntervalMs;
        // A full batch means more may be waiting: go again at once.
        if (taken >= this.options.batchSize) delayMs = 0;
        await this.pruneWhenDue();
      } catch (error) {
        this.stats.failures++;
        this.logger.warn({ err: error, retry_in_ms: backoffMs }, "outbox relay failed to publish; backing off");
        delayMs = backoffMs;
        backoffMs = Math.min(this.options.backoffMaxMs, backoffMs * 2);
      }
      if (this.stopping) break;
      if (delayMs > 0) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, delayMs);
          this.wakeUp = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        this.wakeUp = undefined;
      }
    }
  }

  private async pruneWhenDue(): Promise<void> {
    if (Date.now() - this.lastPruneAt < this.options.pruneIntervalMs) return;
    this.lastPruneAt = Date.now();
    const pruned = await prunePublished(this.orm.em.fork(), this.options.retentionMs);
    if (pruned > 0) this.logger.info({ pruned }, "pruned published outbox rows past retention");
  }
}
