import type { GenerationJob } from "../domain/types";
import { ProviderError, type GenerationProvider, type ProviderOutput, type ProviderRunContext } from "./provider";

/** Marker that makes FaultInjectionProvider fail a job with `provider_error`. */
export const PROVIDER_ERROR_FAULT_MARKER = "[fault:provider_error]";

/**
 * A test facility (enabled only by `FAULT_INJECTION_ENABLED=true`): wraps a provider and fails
 * every job whose prompt, address or photo_url contains `[fault:provider_error]` with error
 * code `provider_error`, so tests can drive the failure path (job failed, hold released)
 * through the real service. Other jobs go to the wrapped provider unchanged.
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
    return this.inner.generate(job, context);
  }
}
