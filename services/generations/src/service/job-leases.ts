import assert from "node:assert";
import { newId } from "@tally/platform";
import type { GenerationsUnitOfWork } from "../domain/ports";
import type { ClaimedJob } from "../domain/types";

/**
 * Who runs which job (INV-3: a job runs under one claim at a time). A claim takes jobs with
 * `FOR UPDATE SKIP LOCKED`, so replicas never run one job twice, and leases them: only the
 * claim's holder may renew the lease or record the outcome, and a job whose worker died is
 * claimed again once its lease runs out.
 */
export class JobLeases {
  constructor(
    private readonly uow: GenerationsUnitOfWork,
    /** How long a claim owns a job without renewal, in milliseconds. */
    private readonly leaseMs: number,
  ) {}

  /**
   * Claims up to `count` jobs under a new lease token for `providerName`: pending jobs (they
   * become processing), processing jobs whose lease ran out, and cancelled jobs whose release
   * was never confirmed. Empty when `count` is 0 or nothing is claimable.
   */
  async claim(count: number, providerName: string): Promise<ClaimedJob[]> {
    if (count <= 0) return [];
    const leaseToken = newId();
    const claimed = await this.uow.inTransaction((stores) => stores.generations.claimJobs(count, this.leaseMs, leaseToken, providerName));
    for (const job of claimed) {
      const { status } = job.generation;
      assert.ok(
        job.leaseToken === leaseToken && (status === "processing" || status === "cancelled"),
        `INV-3: a claimed job is processing (or cancelled, awaiting its release) under this claim (generation ${job.generation.id}, status ${status})`,
      );
    }
    return claimed;
  }

  /**
   * Extends the lease of a job this claim runs, with its progress (0..100) and the provider's
   * spend so far (micro-units) when given. False when the job is no longer this claim's
   * (cancelled or reclaimed): its runner must stop.
   */
  renew(job: ClaimedJob, progressPercent?: number, spentMicros?: bigint): Promise<boolean> {
    return this.uow.withoutTransaction((stores) =>
      stores.generations.renewLease(job.generation.id, job.leaseToken, this.leaseMs, progressPercent, spentMicros),
    );
  }

  /** Hands a job back at once (abandoned at shutdown): another worker may claim it now. */
  expire(job: ClaimedJob): Promise<void> {
    return this.uow.withoutTransaction((stores) => stores.generations.expireLease(job.generation.id, job.leaseToken));
  }
}
