import type { GenerationJob } from "../domain/types";
import { ProviderError, type GenerationProvider, type ProviderOutput, type ProviderRunContext } from "./provider";

/** Marker that makes FaultInjectionProvider fail a job with `provider_error`. */
export const PROVIDER_ERROR_FAULT_MARKER = "[fault:provider_error]";
/** Marker `[fault:slow_ms=N]` that makes FaultInjectionProvider work N milliseconds (reporting progress) before the real run. */
const SLOW_FAULT_PATTERN = /\[fault:slow_ms=(\d{1,7})\]/;
/**
 * Marker `[fault:cost_micros=N]`: a slowed job reports a spend rising with its progress to N
 * micros over its slow part (what a metered provider bills while it works), and the finished
 * job costs at least N.
 */
const COST_FAULT_PATTERN = /\[fault:cost_micros=(\d{1,12})\]/;
/** Marker that makes FaultInjectionProvider deliver its output as partial (the provider says so). */
export const PARTIAL_OUTPUT_FAULT_MARKER = "[fault:partial_output]";
/** How often a slowed job reports progress, in milliseconds. */
const SLOW_STEP_MS = 100;

/**
 * A test facility (enabled only by `FAULT_INJECTION_ENABLED=true`): wraps a provider and fails
 * every job whose prompt, address or photo_url contains `[fault:provider_error]` with error
 * code `provider_error`, so tests can drive the failure path (job failed, hold released)
 * through the real service; and works N milliseconds before the real run on a job whose input
 * contains `[fault:slow_ms=N]` (a slow provider: progress rises meanwhile, and a cancel, timeout
 * or shutdown stops it); with `[fault:cost_micros=N]` the slow part reports a spend rising to N;
 * `[fault:partial_output]` marks the output partial. Other jobs go to the wrapped provider
 * unchanged.
 */
export class FaultInjectionProvider implements GenerationProvider {
  readonly name: string;

  constructor(private readonly inner: GenerationProvider) {
    this.name = inner.name;
  }

  generate(job: GenerationJob, context: ProviderRunContext): Promise<ProviderOutput> {
    const inputs = [job.prompt, job.address, job.photoUrl];
    if (inputs.some((value) => value.includes(PROVIDER_ERROR_FAULT_MARKER))) {
      return Promise.reject(new ProviderError("provider_error", "injected provider failure (fault injection)"));
    }
    const marker = (pattern: RegExp) => inputs.map((value) => pattern.exec(value)).find((match) => match !== null)?.[1];
    const slowMs = Number(marker(SLOW_FAULT_PATTERN) ?? 0);
    const costMicros = BigInt(marker(COST_FAULT_PATTERN) ?? 0);
    const partial = inputs.some((value) => value.includes(PARTIAL_OUTPUT_FAULT_MARKER));
    return workFor(slowMs, costMicros, context)
      .then(() => this.inner.generate(job, context))
      .then((output) => ({ ...output, costMicros: output.costMicros + costMicros, partial: partial || output.partial }));
  }

  /** Closes the wrapped provider. */
  async close(): Promise<void> {
    await this.inner.close?.();
  }
}

/**
 * Waits `ms` in steps, reporting progress up to 90 % and a spend rising to `costMicros`, and
 * rejects as soon as the signal aborts.
 */
async function workFor(ms: number, costMicros: bigint, context: ProviderRunContext): Promise<void> {
  const startedMs = Date.now();
  while (Date.now() - startedMs < ms) {
    if (context.signal.aborted) throw context.signal.reason ?? new Error("aborted");
    await new Promise((resolve) => setTimeout(resolve, Math.min(SLOW_STEP_MS, ms)));
    const done = Math.min(1, (Date.now() - startedMs) / ms);
    context.reportProgress(done * 90);
    context.reportCost((costMicros * BigInt(Math.round(done * 1000))) / 1000n);
  }
}
