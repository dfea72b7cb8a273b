import type { Logger } from "@tally/platform";
import { redactDatabaseError } from "../adapter/database-errors";
import type { CreditsService } from "./credits-service";

export interface HoldExpirySweeperOptions {
  /** Pause between sweeps, in milliseconds (HOLD_EXPIRY_SWEEP_INTERVAL_MS). */
  intervalMs: number;
  /** Most holds expired per transaction (HOLD_EXPIRY_BATCH_SIZE). */
  batchSize: number;
}

/**
 * Expires active holds past their deadline in the background: every `intervalMs` it runs
 * batches until a batch comes back short. A failed sweep is logged and retried on the next
 * tick; `stop()` cancels the timer and waits for a sweep in progress.
 */
export class HoldExpirySweeper {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;

  constructor(
    private readonly credits: CreditsService,
    private readonly options: HoldExpirySweeperOptions,
    private readonly logger: Logger,
  ) {}

  start(): void {
    this.stopped = false;
    this.schedule();
  }

  /** Runs batches until none is full; returns how many holds expired. */
  async sweep(): Promise<number> {
    let total = 0;
    for (;;) {
      const expired = await this.credits.expireDueHolds(this.options.batchSize);
      total += expired;
      if (expired < this.options.batchSize || this.stopped) return total;
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.running;
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.running = this.sweep()
        .then(
          () => undefined,
          (error: unknown) => this.logger.error({ err: redactDatabaseError(error) }, "hold expiry sweep failed; retrying on the next tick"),
        )
        .finally(() => {
          this.running = undefined;
          this.schedule();
        });
    }, this.options.intervalMs);
  }
}
