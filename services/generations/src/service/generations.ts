import {
  answerCodec,
  currentTraceCarrier,
  deterministicUuid,
  DomainError,
  notFound,
  runIdempotent,
  type Logger,
} from "@tally/platform";
import { creditTypeOfHold } from "../domain/credit-type";
import {
  parseCancelGenerationInput,
  parseCreateGenerationInput,
  parseGenerationRef,
  parseListGenerationsInput,
  type GenerationRef,
  type InputLimits,
  type RawCancelGenerationInput,
  type RawCreateGenerationInput,
  type RawListGenerationsInput,
} from "../domain/inputs";
import { holdRequestIds, type CreditsPort, type GenerationsStores, type GenerationsUnitOfWork, type HoldView } from "../domain/ports";
import { creditCostOf, type Pricing } from "../domain/pricing";
import { toGeneration, type Generation, type GenerationInput, type GenerationOutput, type GenerationPage } from "../domain/types";
import type { HoldSettlement } from "./settlement";

export interface GenerationsServiceOptions {
  pricing: Pricing;
  inputLimits: InputLimits;
  /** Passed to CreateHold; 0 means the credits service's default, in milliseconds. */
  holdTtlMs: number;
  /** How long a cancel may take to release its hold before the worker's sweep does it, in milliseconds. */
  leaseMs: number;
}

/** The first answer of an idempotent create or cancel, as stored with its key (INV-4). */
const GENERATION_ANSWER = answerCodec<Generation>();

/**
 * The rules of generation jobs for the gRPC handlers: create (holds credits), read, list,
 * cancel (releases credits) and read outputs. Throws only DomainErrors for expected cases.
 */
export class GenerationsService {
  constructor(
    private readonly uow: GenerationsUnitOfWork,
    private readonly credits: CreditsPort,
    private readonly settlement: HoldSettlement,
    private readonly options: GenerationsServiceOptions,
    private readonly logger: Logger,
  ) {}

  /**
   * Validates the input, holds the job's price (PRICING_CREDITS by input type) at credits and
   * stores the job `pending`. The generation id is derived from (user_id, request_id) and
   * the hold's request id from the generation id, so a retry after any failure lands on the
   * same hold (INV-3); credits is called before the local transaction opens (INV-9). A retry
   * returns the first answer; the same request_id with other parameters fails with
   * `idempotency_key_reused` (INV-4).
   * Errors: `validation` (naming the field), `insufficient_credits` (from credits, unchanged;
   * nothing is stored), `idempotency_key_reused`, `unavailable` when credits is down.
   * If the local transaction fails with anything but a DomainError, the hold is released
   * (best effort) before the error is rethrown. If the process dies between the hold and the
   * insert and the caller never retries, the hold expires at credits (HOLD_TTL_MS) and its
   * credits come back.
   */
  async create(raw: RawCreateGenerationInput): Promise<Generation> {
    const { requestId, generation: input } = parseCreateGenerationInput(raw, this.options.inputLimits);
    const generationId = deterministicUuid("generation", input.userId, requestId);
    const creditCost = creditCostOf(this.options.pricing, input.inputType);

    const hold = await this.credits.createHold({
      requestId: holdRequestIds(generationId).create,
      accountId: input.userId,
      generationId,
      amount: creditCost,
      ttlMs: this.options.holdTtlMs,
    });

    try {
      return await this.uow.inTransaction((stores) => this.store(stores, generationId, input, creditCost, hold));
    } catch (error) {
      // A DomainError (e.g. idempotency_key_reused) is an answer about a job that exists or
      // whose hold belongs to the first request; anything else means the job was not stored
      // and a retry would not store it either: give the hold back ("no job, no hold").
      if (!(error instanceof DomainError)) await this.releaseUnstoredHold(generationId, hold.id, error);
      throw error;
    }
  }

  private store(stores: GenerationsStores, generationId: string, input: GenerationInput, creditCost: bigint, hold: HoldView): Promise<Generation> {
    const call = {
      // Keyed by the generation id (user + request_id): one user's key never blocks another's.
      requestId: `create:${generationId}`,
      operation: "CreateGeneration",
      parameters: input,
      ...GENERATION_ANSWER,
    };
    return runIdempotent(stores.idempotency, call, async () => {
      const record = await stores.generations.insert({
        id: generationId,
        ...input,
        creditCost,
        creditType: creditTypeOfHold(hold),
        holdId: hold.id,
        traceparent: currentTraceCarrier().traceparent ?? null,
      });
      this.logger.info({ generation_id: generationId, user_id: input.userId, credit_cost: creditCost.toString() }, "generation created");
      return toGeneration(record);
    });
  }

  /**
   * Best effort, after the local transaction failed: releases the hold unless the job turns out
   * to be stored after all (a concurrent retry of the same request committed it). If the
   * database cannot even be asked, the hold is released anyway: a stored job whose hold is gone
   * fails at capture without charge, while a hold with no job would keep the user's credits
   * until it expires (INV-3). A failed release is only logged (the hold then expires).
   */
  private async releaseUnstoredHold(generationId: string, holdId: string, cause: unknown): Promise<void> {
    try {
      const stored = await this.uow.withoutTransaction((stores) => stores.generations.find(generationId)).catch(() => null);
      if (stored) return;
      await this.credits.releaseHold({ requestId: holdRequestIds(generationId).release, holdId, reason: "generation_not_stored" });
      this.logger.warn({ err: cause, generation_id: generationId }, "generation could not be stored; its hold was released");
    } catch (error) {
      this.logger.error({ err: error, cause, generation_id: generationId }, "generation could not be stored and releasing its hold failed; it expires at credits");
    }
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
   * hold (INV-3). Idempotent by request_id (INV-4). A cancel is not a usage event (usage
   * counts completions and failures). If the release call fails, the cancel still stands: the
   * worker's sweep releases the hold once the cancel's lease runs out.
   * Errors: `validation` (request_id); `not_found`; `already_finished` when it completed,
   * failed, was cancelled, or is already being ended by the worker.
   */
  async cancel(raw: RawCancelGenerationInput): Promise<Generation> {
    const { requestId, ref } = parseCancelGenerationInput(raw);
    if (!ref) throw notFound(`generation ${raw.generationId} not found`);
    const call = { requestId: `cancel:${ref.userId}:${requestId}`, operation: "CancelGeneration", parameters: ref, ...GENERATION_ANSWER };
    const cancelled = await this.uow.inTransaction((stores) => runIdempotent(stores.idempotency, call, () => this.cancelOwned(stores, ref)));
    await this.settlement
      .releaseCancelledHold(cancelled)
      .catch((error: unknown) => this.logger.warn({ err: error, generation_id: cancelled.id }, "release after cancel failed; the worker will retry it"));
    return cancelled;
  }

  private async cancelOwned(stores: GenerationsStores, ref: GenerationRef): Promise<Generation> {
    const existing = await findOwned(stores, ref);
    const record = await stores.generations.cancel(ref.userId, ref.generationId, this.options.leaseMs);
    if (!record) {
      throw new DomainError("already_finished", `generation ${ref.generationId} is already ${existing.status === "processing" ? "finishing" : existing.status}`, {
        generation_id: ref.generationId,
        status: existing.status,
      });
    }
    return toGeneration(record);
  }

  /** The output of the user's completed generation. Errors: `not_found` otherwise (INV-7). */
  async output(raw: GenerationRef): Promise<GenerationOutput> {
    const ref = parseGenerationRef(raw);
    const output = ref && (await this.uow.withoutTransaction((stores) => stores.generations.findOutputOfUser(ref.userId, ref.generationId)));
    if (!output) throw notFound(`generation ${raw.generationId} has no output`);
    return output;
  }
}

/** The user's generation; a malformed id and another user's generation answer like a missing one (INV-7). */
async function findOwned(stores: GenerationsStores, raw: GenerationRef) {
  const ref = parseGenerationRef(raw);
  const record = ref ? await stores.generations.findOfUser(ref.userId, ref.generationId) : null;
  if (!record) throw notFound(`generation ${raw.generationId} not found`);
  return record;
}
