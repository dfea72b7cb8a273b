import { headers, type NatsConnection } from "@nats-io/transport-node";
import { jetstream, type JetStreamClient } from "@nats-io/jetstream";
import type { Logger, Orm } from "@tally/platform";
import { claimUnpublished, finishClaim, prunePublished } from "../adapter/outbox-store";

export interface OutboxRelayOptions {
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
}

/** A claimed batch stays claimed for this many PubAck timeouts (the acks are awaited together). */
export const CLAIM_LEASE_PUBLISH_TIMEOUTS = 2;

/** Counters for tests and metrics. */
export interface OutboxRelayStats {
  published: number;
  /** PubAcks JetStream flagged as duplicates (a row re-published within the duplicate window). */
  duplicates: number;
  failures: number;
}

/**
 * Publishes outbox rows to JetStream (the producer half of invariant 6), holding no
 * transaction or row lock while it talks to NATS. Each poll (1) claims a batch of unpublished
 * rows in id order in a short transaction (`claimed_until` = now + 2 × the PubAck timeout;
 * rows under another relay's live claim are skipped), (2) publishes each with `Nats-Msg-Id` =
 * event id and the row's `traceparent` header and awaits the PubAcks with no transaction open,
 * (3) marks the acknowledged rows published and hands the rest back in a second short
 * transaction. A crash (or a stall past the lease) between (1) and (3) leaves the rows claimed
 * until the lease runs out; then they are claimed and published again, which the stream
 * de-duplicates by message id within its duplicate window (and the consumer by event id).
 * While NATS is down, publishing fails, nothing is marked, and the relay backs off
 * exponentially up to `backoffMaxMs`. Published rows are kept for `retentionMs` for replay.
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
   * Publishes one batch; returns how many rows it claimed (0 when the outbox is drained).
   * Throws when publishing fails (after marking the rows that were acknowledged).
   */
  async relayBatch(): Promise<number> {
    const leaseMs = CLAIM_LEASE_PUBLISH_TIMEOUTS * this.options.publishTimeoutMs;
    const rows = await this.orm.em.fork().transactional((em) => claimUnpublished(em, this.options.batchSize, leaseMs));
    if (rows.length === 0) return 0;
    // No transaction is open from here to finishClaim. Publish the whole batch, then await
    // the acks: one round trip per batch, not per row.
    const acks = rows.map((row) => {
      const h = headers();
      if (row.traceparent) h.set("traceparent", row.traceparent);
      return this.js.publish(row.subject, row.payload, { msgID: row.eventId, headers: h, timeout: this.options.publishTimeoutMs });
    });
    const settled = await Promise.allSettled(acks);
    const acknowledged: bigint[] = [];
    const unacknowledged: bigint[] = [];
    let firstError: unknown;
    settled.forEach((result, index) => {
      const id = rows[index]!.id;
      if (result.status === "fulfilled") {
        acknowledged.push(id);
        if (result.value.duplicate) this.stats.duplicates++;
      } else {
        unacknowledged.push(id);
        firstError ??= result.reason;
      }
    });
    // Record what was acknowledged; the rest is retried (and de-duplicated if it did land).
    await this.orm.em.fork().transactional((em) => finishClaim(em, acknowledged, unacknowledged));
    this.stats.published += acknowledged.length;
    if (firstError !== undefined) throw firstError;
    return rows.length;
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
