import assert from "node:assert";
import { PollingLoop, type Logger } from "@tally/platform";
import type { EventPublisher, GenerationsUnitOfWork } from "../domain/ports";

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
 * it goes again at once. Published rows are kept for `retentionMs` for replay.
 */
export class OutboxRelay {
  readonly stats: OutboxRelayStats = { published: 0, duplicates: 0, failures: 0 };
  private readonly loop: PollingLoop;
  private lastPruneAt = 0;

  constructor(
    private readonly uow: GenerationsUnitOfWork,
    private readonly publisher: EventPublisher,
    private readonly options: OutboxRelayOptions,
    private readonly logger: Logger,
  ) {
    const loopOptions = {
      name: "outbox relay",
      intervalMs: options.pollIntervalMs,
      backoffMaxMs: options.backoffMaxMs,
      passesInARowMax: RELAY_PASSES_IN_A_ROW_MAX,
    };
    this.loop = new PollingLoop(loopOptions, () => this.pass(), logger);
  }

  start(): void {
    this.loop.start();
  }

  /** Finishes the batch in hand and stops; unpublished rows wait for the next start. */
  stop(): Promise<void> {
    return this.loop.stop();
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
