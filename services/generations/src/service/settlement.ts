import { currentTraceCarrier, DomainError, type Logger, type PlanCatalog } from "@tally/platform";
import { holdRequestIds, type CreditsPort, type EventEncoder, type GenerationsUnitOfWork } from "../domain/ports";
import { decideSettlement, jobSettlementTerms } from "../domain/settlement-rules";
import { settlementOf, type ClaimedJob, type GenerationRecord, type JobEnding, type JobOutcome, type Settlement } from "../domain/types";

/** How a settlement call is retried on transient errors (`unavailable`, `deadline_exceeded`). */
export interface SettlementRetry {
  /** Attempts at one capture/release call before the job is left for a later reclaim. */
  attempts: number;
  /** Pause before the second attempt, doubled before each further one, in milliseconds. */
  delayMs: number;
  /** True when the caller is shutting down: no further attempt is made. */
  stopping(): boolean;
}

/**
 * The crash-safe ending of a generation's hold (INV-3), shared by the worker and cancel:
 *   1. `recordOutcome`: one transaction records the outcome and the settlement its plan's
 *      refund rules decide (how much of the hold is captured, how much released), only if the
 *      job is still processing under this claim with no settlement;
 *   2. `settle`: credits captures that share of the hold (releasing the rest) or releases it
 *      all, with request ids derived from the generation id (idempotent, so redoing it after a
 *      crash is safe), called with no transaction open (INV-9);
 *   3. then one transaction sets `completed`/`failed` and appends the event to the outbox
 *      (INV-5), once however many workers redo it.
 * A cancelled generation's hold is settled by `settleCancelledHold` (the cancel decided its
 * settlement, `decideCancellation`).
 */
export class HoldSettlement {
  constructor(
    private readonly uow: GenerationsUnitOfWork,
    private readonly credits: CreditsPort,
    private readonly events: EventEncoder,
    private readonly logger: Logger,
    /** The plan catalogue: each plan's refund rules. */
    private readonly plans: PlanCatalog,
  ) {}

  /**
   * The settlement of cancelling `generation` now: `cancelled_before_start` for a job no worker
   * started, else `cancelled_while_processing` with the provider's spend reported so far; under
   * the job's plan's refund rules.
   */
  decideCancellation(generation: GenerationRecord): Settlement {
    const outcome = generation.startedAt === null ? "cancelled_before_start" : "cancelled_while_processing";
    return decideSettlement(outcome, generation.creditCost, generation.spentMicros, jobSettlementTerms(this.plans, generation));
  }

  /**
   * Step 1: the settlement the outcome decides, or null when the job was cancelled or
   * reclaimed meanwhile (the caller drops the result).
   */
  async recordOutcome(claimed: ClaimedJob, outcome: JobOutcome): Promise<Settlement | null> {
    const settlement = settlementOf(claimed.generation, outcome, jobSettlementTerms(this.plans, claimed.generation));
    const recorded = await this.uow.inTransaction((stores) =>
      stores.generations.recordOutcome(claimed.generation.id, claimed.leaseToken, outcome, settlement),
    );
    return recorded ? settlement : null;
  }

  /**
   * Steps 2–3: capture the settlement's share of the hold (credits releases the rest) or
   * release it all, then finish the job (`completed` for a full or partial output, else
   * `failed`) and write its event in one transaction. A capture refused because the hold is no
   * longer active (e.g. it expired) fails the job cleanly: the event says failed and nothing is
   * charged. Any other credits error is thrown and leaves the job as it is; its lease runs out
   * and a worker redoes these steps.
   */
  async settle(generation: GenerationRecord, settlement: Settlement, traceparent: string | null, retry: SettlementRetry): Promise<void> {
    const ending = await this.callCredits(generation, settlement, retry);
    await this.uow.inTransaction(async (stores) => {
      const finished = await stores.generations.finishJob(generation.id, ending);
      if (!finished) return; // another worker finished it first
      const outputBytes = finished.status === "completed" ? await stores.generations.outputBytes(finished.id) : 0n;
      const event = this.events.generationEnded(finished, new Date(), outputBytes);
      await stores.outbox.append({ ...event, traceparent: currentTraceCarrier().traceparent ?? traceparent });
      this.logger.info({ generation_id: finished.id, status: finished.status, event_id: event.eventId }, "generation ended");
    });
  }

  private async callCredits(generation: GenerationRecord, settlement: Settlement, retry: SettlementRetry): Promise<JobEnding> {
    const status = settlement.outcome === "completed" || settlement.outcome === "partial_output" ? "completed" : "failed";
    // A free retry holds nothing: there is nothing to capture or release (INV-3 holds for charged jobs).
    if (!hasHold(generation)) return { status };
    const requestIds = holdRequestIds(generation.id);
    try {
      if (settlement.creditsCaptured > 0n) {
        await withRetries(retry, () => this.credits.captureHold({ requestId: requestIds.capture, holdId: generation.holdId, amount: captureAmount(generation, settlement) }));
        return { status };
      }
      await withRetries(retry, () =>
        this.credits.releaseHold({ requestId: requestIds.release, holdId: generation.holdId, reason: releaseReason(settlement) }),
      );
      return { status };
    } catch (error) {
      if (!isHoldGone(error)) throw error;
      if (settlement.creditsCaptured > 0n) {
        this.logger.warn({ generation_id: generation.id, reason: error.reason }, "hold not active at capture; failing the job uncharged");
        return {
          status: "failed",
          errorMessage: status === "completed" ? `the credit hold was no longer active (${error.message}); no credits were charged` : undefined,
          errorCode: status === "completed" ? "hold_not_active" : undefined,
          uncharged: true,
        };
      }
      // Nothing left to give back (e.g. the hold expired and credits released it).
      this.logger.warn({ generation_id: generation.id, reason: error.reason }, "hold not active at release");
      return { status };
    }
  }

  /**
   * Settles the hold of a cancelled generation as its cancel decided (capture the spent share,
   * releasing the rest, or release it all) and records that it is settled. Idempotent (the
   * request ids are derived from the generation id). A hold that is no longer active (expired)
   * or unknown has nothing left to give back, so it counts as settled too (a capture it refused
   * is recorded as uncharged). Holds no transaction while it calls credits (INV-9). Throws
   * credits' other errors (the worker's sweep then redoes it once the cancel's lease runs out).
   */
  async settleCancelledHold(generation: Pick<GenerationRecord, "id" | "holdId" | "settlement" | "creditCost">): Promise<void> {
    if (await this.uow.withoutTransaction((stores) => stores.generations.isSettled(generation.id))) return;
    if (!hasHold(generation)) {
      // A cancelled free retry held nothing: it is settled at once.
      await this.uow.withoutTransaction((stores) => stores.generations.markCancelSettled(generation.id, false));
      return;
    }
    const captured = generation.settlement?.creditsCaptured ?? 0n;
    const requestIds = holdRequestIds(generation.id);
    let uncharged = false;
    try {
      if (captured > 0n) await this.credits.captureHold({ requestId: requestIds.capture, holdId: generation.holdId, amount: captureAmount(generation, generation.settlement!) });
      else await this.credits.releaseHold({ requestId: requestIds.release, holdId: generation.holdId, reason: "generation_cancelled" });
    } catch (error) {
      if (!isHoldGone(error)) throw error;
      uncharged = captured > 0n;
      this.logger.warn({ generation_id: generation.id, reason: error.reason }, "hold of a cancelled generation was no longer active");
    }
    await this.uow.withoutTransaction((stores) => stores.generations.markCancelSettled(generation.id, uncharged));
  }
}

/**
 * The amount a capture names: none for the whole hold (the request a previous version made for
 * a completed job, so a capture it began and this version redoes is the same idempotent
 * request), else the settlement's share.
 */
const captureAmount = (generation: { creditCost: bigint }, settlement: Settlement): bigint | undefined =>
  settlement.creditsReleased === 0n && settlement.creditsCaptured === generation.creditCost ? undefined : settlement.creditsCaptured;

/** The ledger's reason for a release: why the job gave its credits back. */
const releaseReason = (settlement: Settlement): string => (settlement.outcome === "failed" ? "generation_failed" : `generation_${settlement.outcome}`);

/** False for a free retry, which holds no credits (its hold id is empty). */
const hasHold = (generation: { holdId: string }): boolean => generation.holdId !== "";

/** Credits' answer that the hold has nothing left to capture or release (expired, released or unknown). */
const isHoldGone = (error: unknown): error is DomainError =>
  error instanceof DomainError && (error.reason === "hold_not_active" || error.reason === "not_found");

/** Retries a credits call on transient errors (not on the callee's domain answers). */
async function withRetries<T>(retry: SettlementRetry, call: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await call();
    } catch (error) {
      const transient = error instanceof DomainError && (error.reason === "unavailable" || error.reason === "deadline_exceeded");
      if (!transient || attempt >= retry.attempts || retry.stopping()) throw error;
      await sleep(retry.delayMs * 2 ** (attempt - 1));
    }
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms).unref());
