import type { GenerationJob } from "../domain/types";
import { ProviderError, type GenerationProvider, type ProviderOutput, type ProviderRunContext } from "./provider";

/** Marker that makes FaultInjectionProvider fail a job with `provider_error`. */
export const PROVIDER_ERROR_FAULT_MARKER = "[fault:provider_error]";
/** Marker `[fault:slow_ms=N]` that makes FaultInjectionProvider work N milliseconds (reporting progress) before the real run. */
const SLOW_FAULT_PATTERN = /\[fault:slow_ms=(\d{1,7})\]/;
/** How often a slowed job reports progress, in milliseconds. */
const SLOW_STEP_MS = 100;

/**
 * A test facility (enabled only by `FAULT_INJECTION_ENABLED=true`): wraps a provider and fails
 * every job whose prompt, address or photo_url contains `[fault:provider_error]` with error
 * code `provider_error`, so tests can drive the failure path (job failed, hold released)
 * through the real service; and works N milliseconds before the real run on a job whose input
 * contains `[fault:slow_ms=N]` (a slow provider: progress rises meanwhile, and a cancel, timeout
 * or shutdown stops it). Other jobs go to the wrapped provider unchanged.
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
    const slowMs = inputs.map((value) => SLOW_FAULT_PATTERN.exec(value)).find((match) => match !== null)?.[1];
    if (slowMs === undefined) return this.inner.generate(job, context);
    return workFor(Number(slowMs), context).then(() => this.inner.generate(job, context));
  }
}

/** Waits `ms` in steps, reporting progress up to 90 %, and rejects as soon as the signal aborts. */
async function workFor(ms: number, context: ProviderRunContext): Promise<void> {
  const startedMs = Date.now();
  while (Date.now() - startedMs < ms) {
    if (context.signal.aborted) throw context.signal.reason ?? new Error("aborted");
    await new Promise((resolve) => setTimeout(resolve, Math.min(SLOW_STEP_MS, ms)));
    context.reportProgress(Math.min(90, ((Date.now() - startedMs) / ms) * 90));
  }
}
