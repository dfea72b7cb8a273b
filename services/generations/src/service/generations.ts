import {
  answerCodec,
  currentTraceCarrier,
  deterministicUuid,
  DomainError,
  notFound,
  runIdempotent,
  type Logger,
  type PlanCatalog,
} from "@tally/platform";
import {
  parseCancelGenerationInput,
  parseCreateGenerationInput,
  parseGenerationRef,
  parseAdoptGuestInput,
  parseListGenerationsInput,
  parseRecordDownloadInput,
  parseRetryGenerationInput,
  type GenerationRef,
  type InputLimits,
  type RawAdoptGuestInput,
  type RawCancelGenerationInput,
  type RawCreateGenerationInput,
  type RawListGenerationsInput,
  type RawRecordDownloadInput,
  type RawRetryGenerationInput,
} from "../domain/inputs";
import { checkRetryable, classifyRetry, retryBilling } from "../domain/retry";
import { generationDownloadedEventId } from "../domain/events";
import {
  type CreditsPort,
  type EventEncoder,
  type GenerationsStores,
  type GenerationsUnitOfWork,
  type UsagePort,
} from "../domain/ports";
import { creditCostOf, type Pricing } from "../domain/pricing";
import { settlementTermsOf } from "../domain/settlement-rules";
import {
  inputOf,
  ORIGINAL_BILLING,
  toGeneration,
  type Generation,
  type GenerationOutput,
  type GenerationPage,
} from "../domain/types";
import { JobStarter } from "./job-starter";
import type { HoldSettlement } from "./settlement";

export interface GenerationsServiceOptions {
  pricing: Pricing;
  inputLimits: InputLimits;
  /** Passed to CreateHold; 0 means the credits service's default, in milliseconds. */
  holdTtlMs: number;
  /** How long a cancel may take to release its hold before the worker's sweep does it, in milliseconds. */
  leaseMs: number;
  /** The plan catalogue (PLANS_FILE): each plan's `free_retries` per job. */
  plans: PlanCatalog;
}

/** The first answer of an idempotent create or cancel, as stored with its key (INV-4). */
const GENERATION_ANSWER = answerCodec<Generation>();

/** The other services a create talks to: credits (account, hold) and usage (quota reservation). */
export interface GenerationsDownstream {
  credits: CreditsPort;
  usage: UsagePort;
}

/**
 * The rules of generation jobs for the gRPC handlers: create (reserves quota, holds credits),
 * read, list, cancel (releases credits, announces the cancel), read outputs and adopt a
 * guest's generations. Throws only DomainErrors for expected cases.
 */
export class GenerationsService {
  private readonly credits: CreditsPort;
  private readonly starter: JobStarter;

  constructor(
    private readonly uow: GenerationsUnitOfWork,
    downstream: GenerationsDownstream,
    private readonly settlement: HoldSettlement,
    private readonly options: GenerationsServiceOptions,
    private readonly logger: Logger,
    private readonly encoder: EventEncoder,
  ) {
    this.credits = downstream.credits;
    this.starter = new JobStarter(uow, downstream.credits, downstream.usage, { holdTtlMs: options.holdTtlMs }, logger);
  }

  /**
   * Validates the input, then, in this order: derives the generation id from (user_id,
   * request_id); reads the account at credits (kind, plan, billing anchor), unless the caller
   * passed its own read of it in this request (`account`, the gateway does); reserves quota at
   * usage (CheckAndReserve, keyed by the generation id, for the job's price); holds the price
   * at credits (hold request id derived from the generation id, INV-3); stores the job
   * `pending`. Remote calls happen before the local transaction opens (INV-9).
   *
   * Why this order: a refusal by a limit (the common refusal) holds nothing at credits; every
   * remote step is idempotent on the generation id, so a retry after any failure lands on
   * the same reservation and hold; and a crash between any two steps leaves only things that
   * expire by themselves: a reservation with no job expires at usage (RESERVATION_TTL_MS), a
   * hold with no job at credits (HOLD_TTL_MS). Once the job is stored, its ending (completed,
   * failed, cancelled) settles the hold and, through its event, the reservation.
   *
   * When the hold fails, or the job cannot be stored (anything but a DomainError from the
   * transaction), what was taken for it is given back at once (best effort, see
   * giveBackUnstored) before the error is rethrown.
   * A retry returns the first answer; the same request_id with other parameters fails with
   * `idempotency_key_reused` (INV-4).
   * Errors: `validation` (naming the field); `not_found` (no such account, from credits);
   * `plan_limit_exceeded` (users) / `guest_limit_exceeded` (guests) from usage, reason and
   * details unchanged, nothing held; `insufficient_credits` (from credits, unchanged; nothing
   * stored, the reservation released); `idempotency_key_reused`; `unavailable` when credits
   * or usage is down.
   */
  async create(raw: RawCreateGenerationInput): Promise<Generation> {
    const { requestId, generation: input, account: callerAccount } = parseCreateGenerationInput(raw, this.options.inputLimits);
    const generationId = deterministicUuid("generation", input.userId, requestId);
    // The gateway passes the account it read from credits in this request: one GetAccount fewer.
    const account = callerAccount ?? (await this.credits.getAccount(input.userId));
    return this.starter.start({
      generationId,
      input,
      account,
      creditCost: creditCostOf(this.options.pricing, input.inputType),
      creditPriceMicros: settlementTermsOf(this.options.plans, account.plan).creditPriceMicros,
      billing: ORIGINAL_BILLING,
      // Keyed by the generation id (user + request_id): one user's key never blocks another's.
      call: { requestId: `create:${generationId}`, operation: "CreateGeneration", parameters: input, ...GENERATION_ANSWER },
    });
  }

  /**
   * Starts a new generation from the user's failed or completed generation `generationId`,
   * with its input, through the same steps as `create` (account, quota reservation, hold
   * unless free, job stored `pending`, run by the worker). Its id is derived from (user_id,
   * request_id); it names the parent and the job's original (root), and is classified by
   * `classifyRetry`: a retry of a failed job is a `free_retry` (0 credits: nothing reserved
   * against credits_per_period, nothing held or charged; it still takes a generation of the
   * plan's limits and a concurrent slot) while the free retries of its job, counted from the
   * original, are fewer than the plan's `free_retries`; else, and for a completed parent, a
   * `paid_regeneration` charged as usual.
   *
   * Concurrency: the count is taken again under the original's row lock in the transaction
   * that stores the retry, so two concurrent retries never both take the last free retry.
   * A retry that lost the last free one there rolls back, takes a hold outside any
   * transaction (INV-9) and is stored as `paid_regeneration` (its quota reservation keeps the
   * 0 credits it was made with; the usage log counts the credits charged when it completes).
   * A replay (same request_id) returns the first answer and calls no other service (INV-4);
   * the same request_id for another parent fails with `idempotency_key_reused`.
   * Errors: `validation` (request_id); `not_found` (missing, malformed or another user's
   * parent, INV-7); `generation_not_retryable` (a pending, processing or cancelled parent);
   * then as `create`: `plan_limit_exceeded` / `guest_limit_exceeded`, `insufficient_credits`,
   * `idempotency_key_reused`, `unavailable`.
   */
  async retry(raw: RawRetryGenerationInput): Promise<Generation> {
    const { requestId, ref } = parseRetryGenerationInput(raw);
    if (!ref) throw notFound(`generation ${raw.generationId} not found`);
    const generationId = deterministicUuid("generation.retry", ref.userId, requestId);
    const call = {
      requestId: `retry:${generationId}`,
      operation: "RetryGeneration",
      parameters: { userId: ref.userId, parentGenerationId: ref.generationId },
      ...GENERATION_ANSWER,
    };
    const stored = await this.uow.withoutTransaction((stores) => stores.generations.find(generationId));
    if (stored) {
      // A replay: the first answer (or idempotency_key_reused), with no reservation or hold taken again.
      return this.uow.inTransaction((stores) =>
        runIdempotent(stores.idempotency, call, async () => {
          throw new DomainError("idempotency_key_reused", "this request_id was already used with different parameters", { request_id: requestId });
        }),
      );
    }
    const parent = await this.uow.withoutTransaction((stores) => findOwned(stores, ref));
    checkRetryable(parent); // before any remote call
    const account = await this.credits.getAccount(ref.userId);
    const freeRetries = this.freeRetriesOf(account.plan);
    const rootId = parent.rootGenerationId ?? parent.id;
    const used = await this.uow.withoutTransaction((stores) => stores.generations.countFreeRetries(rootId));
    return this.starter.start({
      generationId,
      input: inputOf(parent),
      account,
      creditCost: creditCostOf(this.options.pricing, parent.inputType),
      creditPriceMicros: settlementTermsOf(this.options.plans, account.plan).creditPriceMicros,
      billing: retryBilling(parent, classifyRetry(parent, used, freeRetries)),
      call,
      decideUnderLock: async (stores) => {
        // The original's row lock serializes the free retries of one job (INV-9: one row, no remote call while held).
        await stores.generations.lock(rootId);
        return retryBilling(parent, classifyRetry(parent, await stores.generations.countFreeRetries(rootId), freeRetries));
      },
    });
  }

  /** The plan's free retries per job; 0 for a plan the catalogue does not know. */
  private freeRetriesOf(plan: string): number {
    return this.options.plans.plans[plan]?.freeRetries ?? 0;
  }


  /** The user's generation. Errors: `not_found` (missing, malformed id or another user's, INV-7). */
  async get(raw: GenerationRef): Promise<Generation> {
    return toGeneration(await this.uow.withoutTransaction((stores) => findOwned(stores, raw)));
  }

  /**
   * The user's generations, newest first: `limit` 1..100 (0 means 20), `offset` >= 0
   * (docs/api.md); the page and the user's total. Errors: `validation` on bad paging.
   */
  async list(raw: RawListGenerationsInput): Promise<GenerationPage> {
    const { userId, limit, offset } = parseListGenerationsInput(raw);
    if (userId === null) return { generations: [], totalSize: 0 };
    const page = await this.uow.withoutTransaction((stores) => stores.generations.listOfUser(userId, limit, offset));
    return { generations: page.generations.map(toGeneration), totalSize: page.totalSize };
  }

  /**
   * Cancels a pending or processing generation whose ending has not begun, then releases its
   * hold (INV-3). Idempotent by request_id (INV-4). The cancel transaction also appends a
   * GenerationCancelled event to the outbox (INV-5), so the usage service gives back the job's
   * quota reservation exactly when the cancel commits (a cancel is not counted as usage). If
   * the release call fails, the cancel still stands: the worker's sweep releases the hold once
   * the cancel's lease runs out.
   * Errors: `validation` (request_id); `not_found`; `already_finished` when it completed,
   * failed, was cancelled, or is already being ended by the worker.
   */
  async cancel(raw: RawCancelGenerationInput): Promise<Generation> {
    const { requestId, ref } = parseCancelGenerationInput(raw);
    if (!ref) throw notFound(`generation ${raw.generationId} not found`);
    const call = { requestId: `cancel:${ref.userId}:${requestId}`, operation: "CancelGeneration", parameters: ref, ...GENERATION_ANSWER };
    const cancelled = await this.uow.inTransaction((stores) => runIdempotent(stores.idempotency, call, () => this.cancelOwned(stores, ref)));
    await this.settlement
      .settleCancelledHold(cancelled)
      .catch((error: unknown) => this.logger.warn({ err: error, generation_id: cancelled.id }, "settling the hold after a cancel failed; the worker will retry it"));
    return cancelled;
  }

  private async cancelOwned(stores: GenerationsStores, ref: GenerationRef): Promise<Generation> {
    const existing = await findOwned(stores, ref);
    const record = await stores.generations.cancel(ref.userId, ref.generationId, this.options.leaseMs, (current) => this.settlement.decideCancellation(current));
    if (!record) {
      throw new DomainError("already_finished", `generation ${ref.generationId} is already ${existing.status === "processing" ? "finishing" : existing.status}`, {
        generation_id: ref.generationId,
        status: existing.status,
      });
    }
    const occurredAt = record.completedAt ?? new Date();
    await stores.outbox.append({ ...this.encoder.generationCancelled(record, occurredAt), traceparent: currentTraceCarrier().traceparent ?? null });
    return toGeneration(record);
  }

  /** The output of the user's completed generation. Errors: `not_found` otherwise (INV-7). */
  async output(raw: GenerationRef): Promise<GenerationOutput> {
    const ref = parseGenerationRef(raw);
    const output = ref && (await this.uow.withoutTransaction((stores) => stores.generations.findOutputOfUser(ref.userId, ref.generationId)));
    if (!output) throw notFound(`generation ${raw.generationId} has no output`);
    return output;
  }

  /**
   * Records one download of the user's completed generation: appends its GenerationDownloaded
   * event (id from the user, the generation and `requestId`, generationDownloadedEventId) to the
   * outbox, so the usage service counts it once per request (INV-5): a retry with the same
   * `requestId` appends nothing new (the outbox ignores a known event id, the stream and usage's
   * inbox drop a re-publish). Returns the event id and the output's size in bytes.
   * Errors: `validation` (request_id); `not_found` when the generation is missing, another
   * user's, or has no output (INV-7).
   */
  async recordDownload(raw: RawRecordDownloadInput): Promise<{ eventId: string; outputBytes: bigint }> {
    const { requestId, ref } = parseRecordDownloadInput(raw);
    if (!ref) throw notFound(`generation ${raw.generationId} has no output`);
    return this.uow.inTransaction(async (stores) => {
      const outputBytes = await stores.generations.outputBytesOfUser(ref.userId, ref.generationId);
      if (outputBytes === null) throw notFound(`generation ${ref.generationId} has no output`);
      const eventId = generationDownloadedEventId(ref.userId, ref.generationId, requestId);
      const event = this.encoder.generationDownloaded({ eventId, userId: ref.userId, generationId: ref.generationId, outputBytes }, new Date());
      await stores.outbox.append({ ...event, traceparent: currentTraceCarrier().traceparent ?? null });
      return { eventId, outputBytes };
    });
  }

  /**
   * Moves every generation of the guest `guestId` to the user `userId` (a sign-up adopted the
   * guest), in one UPDATE; returns how many moved (0 on a retry: idempotent). Running jobs
   * keep running; their events name their owner at the time they end.
   * Errors: `validation` when an id is not a UUID or both are the same.
   */
  async adoptGuest(raw: RawAdoptGuestInput): Promise<number> {
    const { guestId, userId } = parseAdoptGuestInput(raw);
    const moved = await this.uow.inTransaction((stores) => stores.generations.moveToUser(guestId, userId));
    if (moved > 0) this.logger.info({ guest_id: guestId, user_id: userId, moved }, "guest generations adopted");
    return moved;
  }
}

/** The user's generation; a malformed id and another user's generation answer like a missing one (INV-7). */
async function findOwned(stores: GenerationsStores, raw: GenerationRef) {
  const ref = parseGenerationRef(raw);
  const record = ref ? await stores.generations.findOfUser(ref.userId, ref.generationId) : null;
  if (!record) throw notFound(`generation ${raw.generationId} not found`);
  return record;
}
