import { DomainError, newId, type Logger } from "@tally/platform";
import type { CreditsPort } from "../domain/ports";

export interface HoldKeeperOptions {
  /** The time to live asked for at each extension, in milliseconds (HOLD_TTL_MS; 0: credits' default). */
  holdTtlMs: number;
  /** Extend once the hold's deadline is this close (or unknown), in milliseconds (2 × WORKER_LEASE_MS). */
  extendWithinMs: number;
}

/** What the keeper knows of one running job's hold. */
export interface KeptHold {
  /** "" for a free retry, which holds nothing. */
  holdId: string;
  /** The hold's deadline as last learnt, in epoch milliseconds; null before the first extension. */
  deadlineMs: number | null;
}

/**
 * Keeps a running job's hold alive (credits ExtendHold) as its worker renews the job's lease:
 * a job that runs longer than its hold's time to live is still charged when it completes, and
 * a job whose worker died stops being extended, so its hold expires and is released (INV-3:
 * every hold ends). It extends only when the deadline is unknown or within `extendWithinMs`,
 * so a short job writes no EXTENSION entry at all.
 */
export class HoldKeeper {
  constructor(
    private readonly credits: Pick<CreditsPort, "extendHold">,
    private readonly options: HoldKeeperOptions,
    private readonly logger: Logger,
  ) {}

  /**
   * One heartbeat for `hold` at `nowMs`: extends it when due and records the new deadline on
   * `hold`. Never throws: a failed extension is logged (a later heartbeat tries again), and a
   * hold that has ended (`hold_not_active`) is logged once as such; the job's settlement then
   * meets it and fails the job cleanly.
   */
  async heartbeat(hold: KeptHold, generationId: string, nowMs = Date.now()): Promise<void> {
    if (hold.holdId === "") return;
    if (hold.deadlineMs !== null && hold.deadlineMs - nowMs > this.options.extendWithinMs) return;
    try {
      const extended = await this.credits.extendHold({ requestId: newId(), holdId: hold.holdId, ttlMs: this.options.holdTtlMs });
      hold.deadlineMs = extended.expiresAt.getTime();
    } catch (error) {
      const ended = error instanceof DomainError && error.reason === "hold_not_active";
      this.logger.warn({ err: error, generation_id: generationId, hold_id: hold.holdId }, ended ? "the job's hold has ended; no longer extending it" : "extending the job's hold failed; retrying at the next heartbeat");
      // An ended hold is not extended again; the settlement decides what that means for the job.
      if (ended) hold.holdId = "";
    }
  }
}
