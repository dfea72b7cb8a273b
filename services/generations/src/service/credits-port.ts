/** What the generations service needs to know about a hold. */
export interface HoldView {
  id: string;
  /** Credits held. */
  amount: bigint;
  /** Of amount, credits from trial grants. */
  trialAmount: bigint;
  /** Of amount, credits from purchased and promotional grants. */
  tokenAmount: bigint;
  capturedAmount: bigint;
}

/**
 * The credits service as the generations service uses it (hold, capture, release). Every
 * call is idempotent by its request_id, so redoing one after a crash or timeout is safe.
 * Calls reject with DomainErrors carrying credits' reasons.
 */
export interface CreditsPort {
  createHold(request: { requestId: string; accountId: string; generationId: string; amount: bigint; ttlMs: number }): Promise<HoldView>;
  captureHold(request: { requestId: string; holdId: string }): Promise<HoldView>;
  releaseHold(request: { requestId: string; holdId: string; reason: string }): Promise<HoldView>;
}

/** Request ids of the credits calls for one generation, derived so that any retry repeats them. */
export const holdRequestIds = (generationId: string) => ({
  create: `hold:${generationId}`,
  capture: `capture:${generationId}`,
  release: `release:${generationId}`,
});
