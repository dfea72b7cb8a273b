import { context, trace } from "@opentelemetry/api";
import { contextFromCarrier, PollingLoop, tracer, type Logger } from "@tally/platform";
import { toJob, type ClaimedJob, type JobOutcome, type Settlement } from "../domain/types";
import { ProviderError, type GenerationProvider } from "../providers/provider";
import type { HoldKeeper } from "../service/hold-keeper";
import type { JobLeases } from "../service/job-leases";
import type { HoldSettlement, SettlementRetry } from "../service/settlement";

export interface GenerationWorkerOptions {
  /** Jobs run at once by this worker. */
  concurrency: number;
  /** Wait between claim attempts when there is no work (and between failed ones), in milliseconds. */
  pollIntervalMs: number;
  /** How long a claim owns a job without renewal, in milliseconds (renewed every third of it). */
  leaseMs: number;
  /** How long stop() waits for running jobs before abandoning them to their lease, in milliseconds. */
  shutdownTimeoutMs: number;
  /** Attempts at a capture/release call before the job is left for a later reclaim. */
  settlementAttempts: number;
  /** Progress is persisted (and the lease renewed) at most every this many percent. */
  progressStepPercent: number;
  /** Longest a provider may work on one job, in milliseconds. */
  providerTimeoutMs: number;
}

/** Why a running provider was stopped. */
type AbortCause = "timeout" | "lost" | "shutdown";

interface RunningJob {
  controller: AbortController;
  abort(cause: AbortCause): void;
  cause(): AbortCause | undefined;
  done: Promise<void>;
}

/** What running the provider came to. */
type RunResult = { kind: "outcome"; outcome: JobOutcome } | { kind: "lost" } | { kind: "abandoned" };

/**
 * The in-process worker: claims jobs through `JobLeases` (INV-3: one claim runs a job at a
 * time), runs them through the provider under a renewed lease and a timeout, and ends each one
 * with `HoldSettlement`'s crash-safe, cancel-safe protocol (record the outcome and settlement,
 * capture or release with derived request ids, finish and write the event). A reclaimed job
 * whose settlement is already set only redoes the capture/release and finish; a cancelled job
 * whose release was never confirmed gets its release redone. No transaction is open while it
 * calls the provider or credits (INV-9).
 */
export class GenerationWorker {
  private readonly running = new Map<string, RunningJob>();
  private readonly claims: PollingLoop;
  private stopping = false;

  constructor(
    private readonly leases: JobLeases,
    private readonly settlement: HoldSettlement,
    private readonly provider: GenerationProvider,
    private readonly options: GenerationWorkerOptions,
    private readonly logger: Logger,
    /** Extends each running job's hold at its lease renewals; none: holds are not extended. */
    private readonly holdKeeper?: HoldKeeper,
  ) {
    // A claim pass fills the free slots; the next one waits for the interval or a finished job
    // (wakeUp). A failed claim is retried after the poll interval, without growing back-off.
    const loopOptions = { name: "generation worker claims", intervalMs: options.pollIntervalMs, backoffMaxMs: options.pollIntervalMs, passesInARowMax: 1 };
    this.claims = new PollingLoop(loopOptions, () => this.claimPass(), logger);
  }

  /** Starts the claim loop. */
  start(): void {
    this.stopping = false;
    this.claims.start();
  }

  /**
   * Stops claiming, lets running jobs finish for up to `shutdownTimeoutMs`, then aborts the
   * rest and hands them back (their lease is expired so another replica reclaims them now).
   */
  async stop(): Promise<void> {
    this.stopping = true;
    await this.claims.stop();
    const all = () => Promise.allSettled([...this.running.values()].map((job) => job.done));
    const finished = await Promise.race([all().then(() => true), sleep(this.options.shutdownTimeoutMs).then(() => false)]);
    if (!finished) {
      this.logger.warn({ jobs: [...this.running.keys()] }, "abandoning running jobs to their lease at shutdown");
      for (const job of this.running.values()) job.abort("shutdown");
      // A provider that ignores its signal, or a slow credits call, must not hold shutdown forever.
      await Promise.race([all(), sleep(this.options.shutdownTimeoutMs)]);
    }
  }

  private async claimPass(): Promise<boolean> {
    const claimed = await this.leases.claim(this.options.concurrency - this.running.size, this.provider.name);
    for (const job of claimed) this.launch(job);
    // Free slots are filled; more work waits for a slot (wakeUp) or the interval.
    return false;
  }

  private launch(claimed: ClaimedJob): void {
    const id = claimed.generation.id;
    const controller = new AbortController();
    let cause: AbortCause | undefined;
    const job: RunningJob = {
      controller,
      abort(reason) {
        cause ??= reason;
        controller.abort();
      },
      cause: () => cause,
      done: Promise.resolve(),
    };
    const parent = contextFromCarrier({ traceparent: claimed.traceparent ?? undefined });
    const span = tracer("generations").startSpan("generation.run", { attributes: { "generation.id": id } }, parent);
    job.done = context
      .with(trace.setSpan(parent, span), () => this.runJob(claimed, job))
      .catch((error: unknown) => this.logger.error({ err: error, generation_id: id }, "job handling failed; its lease will let it be retried"))
      .finally(() => {
        span.end();
        this.running.delete(id);
        this.claims.wakeUp();
      });
    this.running.set(id, job);
  }

  private async runJob(claimed: ClaimedJob, job: RunningJob): Promise<void> {
    const generation = claimed.generation;
    if (generation.status === "cancelled") {
      await this.settlement.settleCancelledHold(generation);
      return;
    }
    let settlement: Settlement | null = generation.settlement;
    if (settlement === null) {
      const result = await this.runProvider(claimed, job);
      if (result.kind === "abandoned") {
        await this.leases.expire(claimed);
        return;
      }
      if (result.kind === "lost") {
        this.logger.info({ generation_id: generation.id }, "job was cancelled or reclaimed while running; result dropped");
        return;
      }
      settlement = await this.settlement.recordOutcome(claimed, result.outcome);
      if (settlement === null) {
        this.logger.info({ generation_id: generation.id }, "job was cancelled or reclaimed before it ended; result dropped");
        return;
      }
    }
    await this.settlement.settle(generation, settlement, claimed.traceparent, this.settlementRetry());
  }

  private settlementRetry(): SettlementRetry {
    return { attempts: this.options.settlementAttempts, delayMs: this.options.pollIntervalMs, stopping: () => this.stopping };
  }

  /** Runs the provider with progress persistence, lease renewal and a timeout. */
  private async runProvider(claimed: ClaimedJob, job: RunningJob): Promise<RunResult> {
    const renewals = this.keepLease(claimed, job);
    const timeoutTimer = setTimeout(() => job.abort("timeout"), this.options.providerTimeoutMs);
    const startedAt = performance.now();
    const elapsedMs = () => BigInt(Math.max(0, Math.round(performance.now() - startedAt)));
    try {
      const output = await Promise.resolve().then(() =>
        this.provider.generate(toJob(claimed.generation), { reportProgress: renewals.reportProgress, reportCost: renewals.reportCost, signal: job.controller.signal }),
      );
      const cause = job.cause();
      if (cause === "shutdown") return { kind: "abandoned" };
      if (cause === "lost") return { kind: "lost" };
      return {
        kind: "outcome",
        outcome: {
          kind: "completed",
          content: output.content,
          contentType: output.contentType,
          costMicros: output.costMicros,
          processingTimeMs: elapsedMs(),
          partial: output.partial === true,
        },
      };
    } catch (error) {
      const cause = job.cause();
      if (cause === "shutdown") return { kind: "abandoned" };
      if (cause === "lost") return { kind: "lost" };
      return { kind: "outcome", outcome: this.failureOf(claimed, error, cause === "timeout", elapsedMs(), renewals.spentMicros()) };
    } finally {
      clearTimeout(timeoutTimer);
      await renewals.stop();
    }
  }

  /**
   * A provider's failure as an outcome: `provider_timeout`, the ProviderError's code, or
   * `provider_error`; its cost is the spend the provider reported before failing.
   */
  private failureOf(claimed: ClaimedJob, error: unknown, timedOut: boolean, processingTimeMs: bigint, costMicros: bigint): JobOutcome {
    const errorCode = timedOut ? "provider_timeout" : error instanceof ProviderError ? error.code : "provider_error";
    const errorMessage = timedOut
      ? `the provider took longer than ${this.options.providerTimeoutMs} ms`
      : error instanceof Error
        ? error.message
        : String(error);
    this.logger.info({ generation_id: claimed.generation.id, error_code: errorCode, err: error }, "provider failed the job");
    return { kind: "failed", errorMessage, errorCode, costMicros, processingTimeMs };
  }

  /**
   * Renews the job's lease every third of it, and with its progress at most every
   * `progressStepPercent` (each renewal also persists the spend reported so far, for a cancel's
   * `capture_spent`); a renewal that finds the job no longer this claim's aborts it
   * ("lost"). Each timed renewal is also the hold's heartbeat (HoldKeeper: ExtendHold when its
   * deadline nears). Renewals run one at a time; `stop()` ends them and waits for the last one.
   */
  private keepLease(
    claimed: ClaimedJob,
    job: RunningJob,
  ): { reportProgress(percent: number): void; reportCost(spentMicros: bigint): void; spentMicros(): bigint; stop(): Promise<void> } {
    const generationId = claimed.generation.id;
    let renewals = Promise.resolve();
    let spentMicros = claimed.generation.spentMicros;
    const renew = (progressPercent?: number) => {
      renewals = renewals
        .then(async () => {
          if (!(await this.leases.renew(claimed, progressPercent, spentMicros))) job.abort("lost");
        })
        .catch((error: unknown) => this.logger.warn({ err: error, generation_id: generationId }, "lease renewal failed"));
    };
    let persistedPercent = claimed.generation.progressPercent;
    const reportProgress = (percent: number) => {
      const clamped = Math.max(0, Math.min(100, Math.floor(percent)));
      // Persist at most every step (e.g. 10%): progress is for people, not worth a write per row.
      if (clamped - persistedPercent >= this.options.progressStepPercent && clamped < 100) {
        persistedPercent = clamped;
        renew(clamped);
      }
    };
    const hold = { holdId: claimed.generation.holdId, deadlineMs: null };
    const heartbeat = () => {
      renew();
      if (this.holdKeeper) renewals = renewals.then(() => this.holdKeeper?.heartbeat(hold, generationId));
    };
    const renewTimer = setInterval(heartbeat, Math.max(1, Math.floor(this.options.leaseMs / 3)));
    return {
      reportProgress,
      reportCost(reported: bigint) {
        if (reported > spentMicros) spentMicros = reported;
      },
      spentMicros: () => spentMicros,
      async stop() {
        clearInterval(renewTimer);
        await renewals;
      },
    };
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms).unref());
