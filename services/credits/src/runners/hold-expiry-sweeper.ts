import { PollingLoop, type Logger } from "@tally/platform";

/** What the sweeper drives: HoldsService.expireDueHolds (or a stand-in in tests). */
export interface ExpiresDueHolds {
  /** Expires up to `batchSize` due holds in one transaction; returns how many expired. */
  expireDueHolds(batchSize: number): Promise<number>;
}

export interface HoldExpirySweeperOptions {
  /** Pause between sweeps when none is due, in milliseconds (HOLD_EXPIRY_SWEEP_INTERVAL_MS). */
  intervalMs: number;
  /** Most holds expired per transaction (HOLD_EXPIRY_BATCH_SIZE). */
  batchSize: number;
}

/**
 * Most batches in a row, both for one `sweep()` and for the background loop before it pauses:
 * a backlog of expired holds is worked off in bounded bursts, never starving the database.
 */
export const SWEEP_BATCHES_MAX = 100;
/** Longest pause after sweeps that failed in a row (the pause doubles up to this), in milliseconds. */
export const SWEEP_BACKOFF_MAX_MS = 60_000;

/**
 * Expires active holds past their deadline in the background (INV-3: every hold ends), on
 * platform `PollingLoop` "hold expiry sweep": a pass expires one batch and goes again at once
 * while batches come back full. A failed pass is logged ("hold expiry sweep failed; retrying",
 * the error redacted by the platform logger) and retried after a back-off.
 */
export class HoldExpirySweeper {
  private readonly loop: PollingLoop;

  constructor(
    private readonly holds: ExpiresDueHolds,
    private readonly options: HoldExpirySweeperOptions,
    private readonly logger: Logger,
  ) {
    this.loop = new PollingLoop(
      {
        name: "hold expiry sweep",
        intervalMs: options.intervalMs,
        backoffMaxMs: Math.max(options.intervalMs, SWEEP_BACKOFF_MAX_MS),
        passesInARowMax: SWEEP_BATCHES_MAX,
      },
      async () => (await this.expireBatch()) === options.batchSize,
      logger,
    );
  }

  /** Starts the background loop; its first pass runs at once. */
  start(): void {
    this.loop.start();
  }

  /** Stops the loop after the batch in progress, if any. */
  stop(): Promise<void> {
    return this.loop.stop();
  }

  /**
   * Runs batches now until one comes back short (or SWEEP_BATCHES_MAX ran), for tests and ops;
   * the background loop keeps running. Returns how many holds expired.
   */
  async sweep(): Promise<number> {
    let total = 0;
    for (let batch = 0; batch < SWEEP_BATCHES_MAX; batch++) {
      const expired = await this.expireBatch();
      total += expired;
      if (expired < this.options.batchSize) break;
    }
    return total;
  }

  private async expireBatch(): Promise<number> {
    const expired = await this.holds.expireDueHolds(this.options.batchSize);
    if (expired > 0) this.logger.info({ expired }, "expired holds (and grants) past their deadline");
    return expired;
  }
}
