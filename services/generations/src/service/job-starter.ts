import assert from "node:assert";
import { currentTraceCarrier, DomainError, runIdempotent, type IdempotentCall, type Logger } from "@tally/platform";
import { creditTypeOfHold } from "../domain/credit-type";
import { holdRequestIds, type AccountView, type CreditsPort, type GenerationsStores, type GenerationsUnitOfWork, type HoldView, type UsagePort } from "../domain/ports";
import { toGeneration, type Billing, type Generation, type GenerationInput } from "../domain/types";

/** A new generation on its way to being stored (create or retry). */
export interface StartingJob {
  generationId: string;
  input: GenerationInput;
  account: AccountView;
  /** The price of its input type, in credits (nothing is held for a free retry). */
  creditCost: bigint;
  /** The account's plan's price per credit, in micro-units of the currency (stored with the job). */
  creditPriceMicros: bigint;
  /** The billing decided before any remote call. */
  billing: Billing;
  call: IdempotentCall<Generation>;
  /** For a retry: the billing decided again in the storing transaction, under the original's row lock. */
  decideUnderLock?: (stores: GenerationsStores) => Promise<Billing>;
}

/** Thrown inside the storing transaction (rolling it back) when a retry can no longer be free and holds nothing yet. */
class FreeRetryTaken extends Error {
  /** The charged billing decided under the lock. */
  constructor(readonly billing: Billing) {
    super("the last free retry of this job was taken by a concurrent retry");
    this.name = "FreeRetryTaken";
  }
}

/** What starting a job needs: the hold's lifetime passed to CreateHold (0 = credits' default), in milliseconds. */
export interface JobStarterOptions {
  holdTtlMs: number;
}

/**
 * The steps shared by CreateGeneration and RetryGeneration to start a job: quota reservation at
 * usage, hold at credits (none for a free retry), the job stored `pending` under
 * `runIdempotent` (INV-3, INV-4, INV-9, INV-10), and the give-back of what was taken when the
 * job cannot be stored.
 */
export class JobStarter {
  constructor(
    private readonly uow: GenerationsUnitOfWork,
    private readonly credits: CreditsPort,
    private readonly usage: UsagePort,
    private readonly options: JobStarterOptions,
    private readonly logger: Logger,
  ) {}

  /**
   * The steps every new generation takes, remote ones before the local transaction (INV-9):
   * reserve quota (0 credits for a free retry), hold the price (not for a free retry), store
   * the job under `runIdempotent`. `decideUnderLock`, when given, decides the billing again
   * in the storing transaction; when it no longer is a free retry although none was held,
   * the transaction rolls back and the job is held for and stored as decided.
   */
  async start(job: StartingJob): Promise<Generation> {
    const { generationId, account, creditCost, billing } = job;
    const free = billing.billingClassification === "free_retry";
    await this.usage.checkAndReserve(account, generationId, free ? 0n : creditCost);
    let hold = free ? null : await this.takeHold(job);
    try {
      return await this.storeOrRedecide(job, hold);
    } catch (error) {
      if (error instanceof FreeRetryTaken) {
        // A concurrent retry took the last free one: this one is charged (a hold, taken with no transaction open).
        hold = await this.takeHold(job);
        return await this.storeOrRedecide({ ...job, billing: error.billing }, hold).catch(async (failure: unknown) => {
          if (!(failure instanceof DomainError)) await this.giveBackUnstored(generationId, hold?.id ?? null, failure);
          throw failure;
        });
      }
      // A DomainError (e.g. idempotency_key_reused) is an answer about a job that exists or
      // whose hold belongs to the first request; anything else means the job was not stored
      // and a retry would not store it either: give back what was taken ("no job, no hold").
      if (!(error instanceof DomainError)) await this.giveBackUnstored(generationId, hold?.id ?? null, error);
      throw error;
    }
  }

  /** Holds the job's price at credits (request id derived from the generation id, INV-3); gives back the reservation when that fails. */
  private async takeHold(job: StartingJob): Promise<HoldView> {
    try {
      return await this.credits.createHold({
        requestId: holdRequestIds(job.generationId).create,
        accountId: job.input.userId,
        generationId: job.generationId,
        amount: job.creditCost,
        ttlMs: this.options.holdTtlMs,
      });
    } catch (error) {
      await this.giveBackUnstored(job.generationId, null, error);
      throw error;
    }
  }

  /** The storing transaction: the billing decided under the lock when the job has one (FreeRetryTaken when it needs a hold it lacks). */
  private async storeOrRedecide(job: StartingJob, hold: HoldView | null): Promise<Generation> {
    const stored = await this.uow.inTransaction((stores) =>
      runIdempotent(stores.idempotency, job.call, async () => {
        let billing = job.decideUnderLock ? await job.decideUnderLock(stores) : job.billing;
        // A job held for stays charged (free retries of a job only ever get fewer, so the lock cannot make a charged one free).
        if (billing.billingClassification === "free_retry" && hold) billing = job.billing;
        if (billing.billingClassification !== "free_retry" && !hold) throw new FreeRetryTaken(billing);
        assert.equal(billing.billingClassification === "free_retry", hold === null, "a free retry holds nothing; every other job holds its price (INV-3)");
        return this.store(stores, job, billing, hold);
      }),
    );
    if (hold && stored.holdId !== hold.id) {
      // A concurrent request with the same key stored the job first (free): this hold has no job.
      await this.giveBackHold(job.generationId, hold.id);
    }
    return stored;
  }

  private async store(stores: GenerationsStores, job: StartingJob, billing: Billing, hold: HoldView | null): Promise<Generation> {
    const { generationId, input } = job;
    const record = await stores.generations.insert({
      id: generationId,
      ...input,
      ...billing,
      creditCost: hold ? job.creditCost : 0n,
      creditType: hold ? creditTypeOfHold(hold) : "none",
      holdId: hold?.id ?? "",
      traceparent: currentTraceCarrier().traceparent ?? null,
      plan: job.account.plan,
      creditPriceMicros: job.creditPriceMicros,
    });
    this.logger.info(
      { generation_id: generationId, user_id: input.userId, credit_cost: record.creditCost.toString(), billing_classification: billing.billingClassification },
      "generation created",
    );
    return toGeneration(record);
  }

  /** Best effort: releases a hold whose job was never stored under it (it would expire at credits otherwise). */
  private async giveBackHold(generationId: string, holdId: string): Promise<void> {
    await this.credits
      .releaseHold({ requestId: holdRequestIds(generationId).release, holdId, reason: "generation_not_stored" })
      .catch((error: unknown) => this.logger.warn({ err: error, generation_id: generationId }, "releasing an unneeded hold failed; it expires at credits"));
  }

  /**
   * Best effort, after a hold or the local transaction failed: releases the hold (when one
   * was taken) and the quota reservation, unless the job turns out to be stored after all (a
   * concurrent retry of the same request committed it; its ending settles both). If the
   * database cannot even be asked, both are released anyway: a stored job whose hold is gone
   * fails at capture without charge, and one whose reservation is gone is still counted as
   * used when it completes, while a hold or reservation with no job would keep the user's
   * credits or quota until it expires (INV-3). A failed release is only logged (it then
   * expires: the hold at credits, the reservation at usage).
   */
  private async giveBackUnstored(generationId: string, holdId: string | null, cause: unknown): Promise<void> {
    const stored = await this.uow.withoutTransaction((stores) => stores.generations.find(generationId)).catch(() => null);
    if (stored) return;
    const reason = holdId ? "generation_not_stored" : "hold_not_taken";
    if (holdId) {
      await this.credits
        .releaseHold({ requestId: holdRequestIds(generationId).release, holdId, reason })
        .then(() => this.logger.warn({ err: cause, generation_id: generationId }, "generation could not be stored; its hold was released"))
        .catch((error: unknown) =>
          this.logger.error({ err: error, cause, generation_id: generationId }, "generation could not be stored and releasing its hold failed; it expires at credits"),
        );
    }
    await this.usage
      .releaseReservation(generationId, reason)
      .catch((error: unknown) =>
        this.logger.error({ err: error, cause, generation_id: generationId }, "releasing the quota reservation of an unstored generation failed; it expires at usage"),
      );
  }
}
