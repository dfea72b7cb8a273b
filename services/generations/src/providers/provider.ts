import type { GenerationJob } from "../domain/types";

/** What a provider can do while it works on a job. */
export interface ProviderRunContext {
  /** Reports progress, 0..100 (the worker persists it at most every few percent). */
  reportProgress(percent: number): void;
  /**
   * Reports what the work has cost so far, in micro-units of the currency (a running total;
   * the highest reported counts). Persisted with the job's lease renewals: a job cancelled
   * while running is charged this spend under the `capture_spent` refund rule.
   */
  reportCost(spentMicros: bigint): void;
  /** Aborted when the job is cancelled, times out or the worker shuts down: stop working. */
  signal: AbortSignal;
}

/** A provider's finished work. */
export interface ProviderOutput {
  content: Uint8Array;
  /** Media type of `content`, e.g. "image/png". */
  contentType: string;
  /** What the work cost, in micro-units of the currency (an integer, never a float). */
  costMicros: bigint;
  /** True when the provider could deliver only part of the output (settled under the plan's `partial_output` rule). */
  partial?: boolean;
}

/** Does the actual generation behind a stable interface, so providers can be swapped. */
export interface GenerationProvider {
  /** Stable name stored with each job and carried in its events, e.g. "local-fractal". */
  readonly name: string;
  generate(job: GenerationJob, context: ProviderRunContext): Promise<ProviderOutput>;
  /** Releases what the provider holds (e.g. its worker threads) at shutdown, after the last job; optional. */
  close?(): Promise<void>;
}

/** A failure a provider reports on purpose, with a stable code for events (e.g. "provider_error"). */
export class ProviderError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "ProviderError";
  }
}
