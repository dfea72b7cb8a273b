import { context, trace } from "@opentelemetry/api";
import { contextFromCarrier, currentTraceCarrier, DomainError, newId, tracer, type Logger, type Orm } from "@tally/platform";
import type { GenerationJob, GenerationRecord, Settlement } from "../domain/generation";
import * as store from "../adapter/generation-store";
import { appendToOutbox } from "../adapter/outbox-store";
import { holdRequestIds, type CreditsPort } from "../service/credits-port";
import { generationEndedEvent } from "../service/events";
import { releaseCancelledHold } from "../service/generations-service";
import { ProviderError, type GenerationProvider } from "../providers/provider";

export interface GenerationWorkerOptions {
  /** Jobs run at once by this worker. */
  concurrency: number;
  /** Wait between claim attempts when there is no work, in milliseconds. */
  pollIntervalMs: number;
  /** How long a claim owns a job without renewal, in milliseconds. */
  leaseMs: number;
  /** How long stop() waits for running jobs before abandoning them to their lease. */
  shutdownTimeoutMs: number;
  /** Attempts at a capture/release call before the job is left for a later reclaim. */
  settlementAttempts: number;
  /** Progress is persisted (and the lease renewed) at most every this many percent. */
  progressStepPercent: number;
  /** Longest a provider may work on one job, in milliseconds. */
  providerTimeoutMs: number;
  /** Subject prefix of the events written to the outbox. */
  subjectPrefix: string;
}

/** Why a running provider was stopped. */
type AbortCause = "timeout" | "lost" | "shutdown";

interface RunningJob {
  controller: AbortController;
  abort(cause: AbortCause): void;
  done: Promise<void>;
}

/** What running the provider came to. */
type RunResult = { kind: "outcome"; outcome: store.JobOutcome } | { kind: "lost" } | { kind: "abandoned" };

/**
 * The in-process worker: claims jobs (`FOR UPDATE SKIP LOCKED`, so replicas never run one job
 * twice), runs them through the provider under a renewed lease, and ends each one with a
 * crash-safe, cancel-safe protocol:
 *   1. one transaction records the outcome and the settlement (capture or release), only if
 *      the job is still processing under this claim with no settlement (else it was cancelled
 *      or reclaimed: the result is dropped);
 *   2. credits captures or releases the hold, with request ids derived from the generation id
 *      (idempotent, so redoing it after a crash is safe);
 *   3. one transaction sets `completed`/`failed` and appends the event to the outbox.
 * A reclaimed job whose settlement is already set only redoes steps 2–3; a cancelled job
 * whose release was never confirmed gets its release redone.
 */
export class GenerationWorker {
  private readonly running = new Map<string, RunningJob>();
  private stopping = false;
  private loopDone: Promise<void> | undefined;
  private wakeUp: (() => void) | undefined;

  constructor(
    private readonly orm: Orm,
    private readonly credits: CreditsPort,
    private readonly provider: GenerationProvider,
    private readonly options: GenerationWorkerOptions,
    private readonly logger: Logger,
  ) {}

  /** Starts the claim loop. */
  start(): void {
    if (this.loopDone) return;
    this.loopDone = this.loop();
  }

  /**
   * Stops claiming, lets running jobs finish for up to `shutdownTimeoutMs`, then aborts the
   * rest and hands them back (their lease is expired so another replica reclaims them now).
   */
  async stop(): Promise<void> {
    this.stopping = true;
    this.wakeUp?.();
    await this.loopDone;
    const all = () => Promise.allSettled([...this.running.values()].map((job) => job.done));
    const finished = await Promise.race([all().then(() => true), sleep(this.options.shutdownTimeoutMs).then(() => false)]);
    if (!finished) {
      this.logger.warn({ jobs: [...this.running.keys()] }, "abandoning running jobs to their lease at shutdown");
      for (const job of this.running.values()) job.abort("shutdown");
      // A provider that ignores its signal, or a slow credits call, must not hold shutdown forever.
      await Promise.race([all(), sleep(this.options.shutdownTimeoutMs)]);
    }
  }

  /** Jobs this worker is running now. */
  get runningCount(): number {
    return this.running.size;
  }

  private async loop(): Promise<void> {
    while (!this.stopping) {
      const free = this.options.concurrency - this.running.size;
      if (free > 0) {
        try {
          const claimed = await this.orm.em
            .fork()
            .transactional((em) => store.claimJobs(em, free, this.options.leaseMs, newId(), this.provider.name));
          for (const job of claimed) this.launch(job);
        } catch (error) {
          this.logger.error({ err: error }, "claiming jobs failed; retrying after the poll interval");
        }
      }
      if (this.stopping) break;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, this.options.pollIntervalMs);
        this.wakeUp = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wakeUp = undefined;
    }
  }

  private launch(claimed: store.ClaimedJob): void {
    const id = claimed.generation.id;
    const controller = new AbortController();
    let cause: AbortCause | undefined;
    const job: RunningJob = {
      controller,
      abort(reason) {
        cause ??= reason;
        controller.abort();
      },
      done: Promise.resolve(),
    };
    const parent = contextFromCarrier({ traceparent: claimed.traceparent ?? undefined });
    const span = tracer("generations").startSpan("generation.run", { attributes: { "generation.id": id } }, parent);
    job.done = context
      .with(trace.setSpan(parent, span), () => this.runJob(claimed, job, () => cause))
      .catch((error: unknown) => this.logger.error({ err: error, generation_id: id }, "job handling failed; its lease will let it be retried"))
      .finally(() => {
        span.end();
        this.running.delete(id);
        this.wakeUp?.();
      });
    this.running.set(id, job);
  }

  private async runJob(claimed: store.ClaimedJob, job: RunningJob, causeOf: () => AbortCause | undefined): Promise<void> {
    const generation = claimed.generation;
    if (generation.status === "cancelled") {
      await releaseCancelledHold(this.orm, this.credits, generation, this.logger);
      return;
    }
    let settlement: Settlement | null = generation.settlement;
    if (settlement === null) {
      const result = await this.runProvider(claimed, job, causeOf);
      if (result.kind === "abandoned") {
        await store.expireLease(this.orm.em.fork(), generation.id, claimed.leaseToken);
        return;
      }
      if (result.kind === "lost") {
        this.logger.info({ generation_id: generation.id }, "job was cancelled or reclaimed while running; result dropped");
        return;
      }
      const recorded = await this.orm.em
        .fork()
        .transactional((em) => store.recordOutcome(em, generation.id, claimed.leaseToken, result.outcome));
      if (!recorded) {
        this.logger.info({ generation_id: generation.id }, "job was cancelled or reclaimed before it ended; result dropped");
        return;
      }
      settlement = result.outcome.kind === "completed" ? "capture" : "release";
    }
    await this.settle(generation, settlement, claimed.traceparent);
  }

  /** Runs the provider with progress persistence, lease renewal and a timeout. */
  private async runProvider(claimed: store.ClaimedJob, job: RunningJob, causeOf: () => AbortCause | undefined): Promise<RunResult> {
    const generation = claimed.generation;
    let renewals = Promise.resolve();
    const renew = (progressPercent?: number) => {
      renewals = renewals
        .then(async () => {
          const held = await store.renewLease(this.orm.em.fork(), generation.id, claimed.leaseToken, this.options.leaseMs, progressPercent);
          if (!held) job.abort("lost");
        })
        .catch((error: unknown) => this.logger.warn({ err: error, generation_id: generation.id }, "lease renewal failed"));
    };
    let persistedPercent = generation.progressPercent;
    const reportProgress = (percent: number) => {
      const clamped = Math.max(0, Math.min(100, Math.floor(percent)));
      // Persist at most every step (e.g. 10%): progress is for people, not worth a write per row.
      if (clamped - persistedPercent >= this.options.progressStepPercent && clamped < 100) {
        persistedPercent = clamped;
        renew(clamped);
      }
    };
    const renewTimer = setInterval(() => renew(), Math.max(1, Math.floor(this.options.leaseMs / 3)));
    const timeoutTimer = setTimeout(() => job.abort("timeout"), this.options.providerTimeoutMs);
    const startedAt = performance.now();
    const elapsedMs = () => BigInt(Math.max(0, Math.round(performance.now() - startedAt)));
    try {
      const output = await Promise.resolve().then(() =>
        this.provider.generate(toJob(generation), { reportProgress, signal: job.controller.signal }),
      );
      const cause = causeOf();
      if (cause === "shutdown") return { kind: "abandoned" };
      if (cause === "lost") return { kind: "lost" };
      return {
        kind: "outcome",
        outcome: { kind: "completed", content: output.content, contentType: output.contentType, costMicros: output.costMicros, processingTimeMs: elapsedMs() },
      };
    } catch (error) {
      const cause = causeOf();
      if (cause === "shutdown") return { kind: "abandoned" };
      if (cause === "lost") return { kind: "lost" };
      const timedOut = cause === "timeout";
      const errorCode = timedOut ? "provider_timeout" : error instanceof ProviderError ? error.code : "provider_error";
      const errorMessage = timedOut
        ? `the provider took longer than ${this.options.providerTimeoutMs} ms`
        : error instanceof Error
          ? error.message
          : String(error);
      this.logger.info({ generation_id: generation.id, error_code: errorCode, err: error }, "provider failed the job");
      return { kind: "outcome", outcome: { kind: "failed", errorMessage, errorCode, costMicros: 0n, processingTimeMs: elapsedMs() } };
    } finally {
      clearInterval(renewTimer);
      clearTimeout(timeoutTimer);
      await renewals;
    }
  }

  /**
   * Steps 2–3: capture (completed) or release (failed) the hold, then finish the job and write
   * its event in one transaction. A capture refused because the hold is no longer active
   * (e.g. it expired) fails the job cleanly: the event says failed and nothing is charged.
   * Any other credits error leaves the job as it is; its lease runs out and a worker redoes
   * these steps.
   */
  private async settle(generation: GenerationRecord, settlement: Settlement, traceparent: string | null): Promise<void> {
    const requestIds = holdRequestIds(generation.id);
    let result: { status: "completed" } | { status: "failed"; errorMessage?: string; errorCode?: string };
    try {
      if (settlement === "capture") {
        await this.withRetries(() => this.credits.captureHold({ requestId: requestIds.capture, holdId: generation.holdId }));
        result = { status: "completed" };
      } else {
        await this.withRetries(() =>
          this.credits.releaseHold({ requestId: requestIds.release, holdId: generation.holdId, reason: "generation_failed" }),
        );
        result = { status: "failed" };
      }
    } catch (error) {
      if (!(error instanceof DomainError) || (error.reason !== "hold_not_active" && error.reason !== "not_found")) throw error;
      if (settlement === "capture") {
        this.logger.warn({ generation_id: generation.id, reason: error.reason }, "hold not active at capture; failing the job");
        result = {
          status: "failed",
          errorMessage: `the credit hold was no longer active (${error.message}); no credits were charged`,
          errorCode: "hold_not_active",
        };
      } else {
        // Nothing left to give back (e.g. the hold expired and credits released it).
        this.logger.warn({ generation_id: generation.id, reason: error.reason }, "hold not active at release");
        result = { status: "failed" };
      }
    }
    await this.orm.em.fork().transactional(async (em) => {
      const finished = await store.finishJob(em, generation.id, result);
      if (!finished) return; // another worker finished it first
      const event = generationEndedEvent(finished, this.options.subjectPrefix, new Date());
      await appendToOutbox(em, { ...event, traceparent: currentTraceCarrier().traceparent ?? traceparent });
      this.logger.info({ generation_id: finished.id, status: finished.status, event_id: event.eventId }, "generation ended");
    });
  }

  /** Retries a credits call on transient errors (not on the callee's domain answers). */
  private async withRetries<T>(call: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await call();
      } catch (error) {
        const transient = error instanceof DomainError && (error.reason === "unavailable" || error.reason === "deadline_exceeded");
        if (!transient || attempt >= this.options.settlementAttempts || this.stopping) throw error;
        await sleep(this.options.pollIntervalMs * 2 ** (attempt - 1));
      }
    }
  }
}

function toJob(g: GenerationRecord): GenerationJob {
  return { id: g.id, userId: g.userId, inputType: g.inputType, prompt: g.prompt, photoUrl: g.photoUrl, address: g.address, style: g.style };
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms).unref());
