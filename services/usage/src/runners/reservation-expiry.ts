import { PollingLoop, type Logger } from "@tally/platform";
import type { QuotaService } from "../service/quota";

/** What the expiry runner needs from the config. */
export interface ReservationExpiryConfig {
  /** Pause after a sweep that left nothing due, in milliseconds. */
  intervalMs: number;
  /** Most reservations one sweep expires. */
  batchSize: number;
}

/** Longest pause while sweeps keep failing, in milliseconds. */
const SWEEP_BACKOFF_MAX_MS = 30_000;
/** Sweeps in a row before a pause, however many reservations are due. */
const SWEEPS_IN_A_ROW_MAX = 20;

/**
 * Expires quota reservations whose job never ended (no completion, failure or cancellation
 * came, e.g. a crash between the reservation and the job insert): each sweep, driven by a
 * platform `PollingLoop`, moves up to `batchSize` active reservations past `expires_at` to
 * `expired` and gives their quota back (QuotaService.expireDue: exactly once, under the
 * subjects' locks; replicas may sweep at once).
 */
export class ReservationExpiryRunner {
  private readonly loop: PollingLoop;

  constructor(quota: QuotaService, config: ReservationExpiryConfig, logger: Logger) {
    const log = logger.child({ component: "reservation-expiry" });
    const intervalMs = config.intervalMs;
    const options = { name: "reservation expiry", intervalMs, backoffMaxMs: Math.max(intervalMs, SWEEP_BACKOFF_MAX_MS), passesInARowMax: SWEEPS_IN_A_ROW_MAX };
    this.loop = new PollingLoop(
      options,
      async () => {
        const { expired, more } = await quota.expireDue(config.batchSize);
        if (expired > 0) log.info({ expired }, "quota reservations expired");
        return more;
      },
      log,
    );
  }

  start(): void {
    this.loop.start();
  }

  /** Runs a sweep now instead of after the pause (tests, after moving the clock). */
  wakeUp(): void {
    this.loop.wakeUp();
  }

  /** Stops after the sweep in progress. */
  stop(): Promise<void> {
    return this.loop.stop();
  }
}
