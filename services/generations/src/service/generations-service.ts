import type { EntityManager } from "@mikro-orm/postgresql";
import { generations } from "@tally/contracts";
import {
  currentTraceCarrier,
  deterministicUuid,
  DomainError,
  isUuid,
  notFound,
  REQUEST_ID_LENGTH_MAX,
  runIdempotent,
  Sql,
  SqlIdempotencyStore,
  validationError,
  type Logger,
  type Orm,
} from "@tally/platform";
import { creditTypeOfHold } from "../domain/credit-type";
import { resolvePaging } from "../domain/paging";
import { creditCostOf, type Pricing } from "../domain/pricing";
import type { GenerationInput } from "../domain/generation";
import { hasForbiddenControlCharacter, validateGenerationInput, type InputLimits } from "../domain/validation";
import * as store from "../adapter/generation-store";
import { holdRequestIds, type CreditsPort, type HoldView } from "./credits-port";
import { inputTypeName, toProtoGeneration } from "./mapping";

export interface GenerationsServiceOptions {
  pricing: Pricing;
  inputLimits: InputLimits;
  /** Passed to CreateHold; 0 means the credits service's default. */
  holdTtlMs: number;
  /** How long a cancel may take to release its hold before the worker's sweep does it. */
  leaseMs: number;
}

/**
 * The rules of generation jobs for the gRPC handlers: create (holds credits), read, list,
 * cancel (releases credits) and read outputs. Throws only DomainErrors for expected cases.
 */
export class GenerationsService {
  constructor(
    private readonly orm: Orm,
    private readonly credits: CreditsPort,
    private readonly options: GenerationsServiceOptions,
    private readonly logger: Logger,
  ) {}

  /**
   * Validates the input, holds the job's price (PRICING_CREDITS by input type) at credits and
   * stores the job `pending`. The generation id is derived from (user_id, request_id) and
   * the hold's request id from the generation id, so a retry after any failure lands on the
   * same hold; credits is called before the local transaction opens (no lock is held across
   * the network call). A retry returns the first answer; the same request_id with other
   * parameters fails with `idempotency_key_reused`.
   * Errors: `validation` (naming the field), `insufficient_credits` (from credits, unchanged;
   * nothing is stored), `idempotency_key_reused`, `unavailable` when credits is down.
   * If the local transaction fails with anything but a DomainError, the hold is released
   * (best effort) before the error is rethrown. If the process dies between the hold and the
   * insert and the caller never retries, the hold expires at credits (HOLD_TTL_MS) and its
   * credits come back.
   */
  async createGeneration(request: generations.CreateGenerationRequest): Promise<generations.Generation> {
    checkRequestId(request.requestId);
    const input = validateGenerationInput(
      {
        userId: request.userId,
        inputType: inputTypeName(request.inputType),
        prompt: request.prompt,
        photoUrl: request.photoUrl,
        address: request.address,
        style: request.style,
      },
      this.options.inputLimits,
    );
    const generationId = deterministicUuid("generation", input.userId, request.requestId);
    const creditCost = creditCostOf(this.options.pricing, input.inputType);

    const hold = await this.credits.createHold({
      requestId: holdRequestIds(generationId).create,
      accountId: input.userId,
      generationId,
      amount: creditCost,
      ttlMs: this.options.holdTtlMs,
    });

    try {
      return await this.storeGeneration(generationId, input, creditCost, hold);
    } catch (error) {
      // A DomainError (e.g. idempotency_key_reused) is an answer about a job that exists or
      // whose hold belongs to the first request; anything else means the job was not stored
      // and a retry would not store it either: give the hold back ("no job, no hold").
      if (!(error instanceof DomainError)) await this.releaseUnstoredHold(generationId, hold.id, error);
      throw error;
    }
  }

  private storeGeneration(generationId: string, input: GenerationInput, creditCost: bigint, hold: HoldView): Promise<generations.Generation> {
    return this.orm.em.fork().transactional((em) =>
      runIdempotent(new SqlIdempotencyStore(new Sql(em)),
        {
          // Keyed by the generation id (user + request_id): one user's key never blocks another's.
          requestId: `create:${generationId}`,
          operation: "CreateGeneration",
          parameters: input,
          encode: (g) => generations.Generation.encode(g).finish(),
          decode: (bytes) => generations.Generation.decode(bytes),
        },
        async () => {
          const record = await store.insertGeneration(em, {
            id: generationId,
            ...input,
            creditCost,
            creditType: creditTypeOfHold(hold),
            holdId: hold.id,
            traceparent: currentTraceCarrier().traceparent ?? null,
          });
          this.logger.info({ generation_id: generationId, user_id: input.userId, credit_cost: creditCost.toString() }, "generation created");
          return toProtoGeneration(record);
        },
      ),
    );
  }

  /**
   * Best effort, after the local transaction failed: releases the hold unless the job turns out
   * to be stored after all (a concurrent retry of the same request committed it). If the
   * database cannot even be asked, the hold is released anyway: a stored job whose hold is gone
   * fails at capture without charge (invariant 4), while a hold with no job would keep the
   * user's credits until it expires. A failed release is only logged (the hold then expires).
   */
  private async releaseUnstoredHold(generationId: string, holdId: string, cause: unknown): Promise<void> {
    try {
      const stored = await store.findGeneration(this.orm.em.fork(), generationId).catch(() => null);
      if (stored) return;
      await this.credits.releaseHold({ requestId: holdRequestIds(generationId).release, holdId, reason: "generation_not_stored" });
      this.logger.warn({ err: cause, generation_id: generationId }, "generation could not be stored; its hold was released");
    } catch (error) {
      this.logger.error({ err: error, cause, generation_id: generationId }, "generation could not be stored and releasing its hold failed; it expires at credits");
    }
  }

  /** The user's generation. Errors: `not_found` (missing, malformed id or another user's). */
  async getGeneration(userId: string, generationId: string): Promise<generations.Generation> {
    return toProtoGeneration(await this.findOwned(this.orm.em.fork(), userId, generationId));
  }

  /**
   * The user's generations, newest first. `limit` 1..100 (0 means 20), `offset` >= 0
   * (API.md); returns the page and the user's total. Errors: `validation` on bad paging.
   */
  async listGenerations(userId: string, limit: number, offset: number): Promise<generations.ListGenerationsResponse> {
    const paging = resolvePaging(limit, offset);
    if (!isUuid(userId)) return { generations: [], totalSize: 0 };
    const page = await store.listGenerationsOfUser(this.orm.em.fork(), userId.toLowerCase(), paging.limit, paging.offset);
    return { generations: page.generations.map(toProtoGeneration), totalSize: page.totalSize };
  }

  /**
   * Cancels a pending or processing generation whose ending has not begun, then releases its
   * hold. Idempotent by request_id. A cancel is not a usage event (usage counts completions
   * and failures). If the release call fails, the cancel still stands: the worker's sweep
   * releases the hold once the cancel's lease runs out.
   * Errors: `not_found`; `already_finished` when it completed, failed, was cancelled, or is
   * already being ended by the worker.
   */
  async cancelGeneration(request: generations.CancelGenerationRequest): Promise<generations.Generation> {
    checkRequestId(request.requestId);
    if (!isUuid(request.userId) || !isUuid(request.generationId)) throw notFound(`generation ${request.generationId} not found`);
    const userId = request.userId.toLowerCase();
    const generationId = request.generationId.toLowerCase();
    const cancelled = await this.orm.em.fork().transactional((em) =>
      runIdempotent(new SqlIdempotencyStore(new Sql(em)),
        {
          requestId: `cancel:${userId}:${request.requestId}`,
          operation: "CancelGeneration",
          parameters: { userId, generationId },
          encode: (g) => generations.Generation.encode(g).finish(),
          decode: (bytes) => generations.Generation.decode(bytes),
        },
        async () => {
          const existing = await this.findOwned(em, userId, generationId);
          const record = await store.cancelGeneration(em, userId, generationId, this.options.leaseMs);
          if (!record) {
            throw new DomainError("already_finished", `generation ${generationId} is already ${existing.status === "processing" ? "finishing" : existing.status}`, {
              generation_id: generationId,
              status: existing.status,
            });
          }
          return toProtoGeneration(record);
        },
      ),
    );
    await releaseCancelledHold(this.orm, this.credits, { id: cancelled.id, holdId: cancelled.holdId }, this.logger).catch((error: unknown) =>
      this.logger.warn({ err: error, generation_id: cancelled.id }, "release after cancel failed; the worker will retry it"),
    );
    return cancelled;
  }

  /** The output of the user's completed generation. Errors: `not_found` otherwise. */
  async getGenerationOutput(userId: string, generationId: string): Promise<generations.GetGenerationOutputResponse> {
    if (!isUuid(userId) || !isUuid(generationId)) throw notFound(`generation ${generationId} has no output`);
    const output = await store.findOutputOfUser(this.orm.em.fork(), userId.toLowerCase(), generationId.toLowerCase());
    if (!output) throw notFound(`generation ${generationId} has no output`);
    return { content: Buffer.from(output.content), contentType: output.contentType };
  }

  private async findOwned(em: EntityManager, userId: string, generationId: string) {
    // A malformed id and another user's generation answer like a missing one (invariant 7).
    const record =
      isUuid(userId) && isUuid(generationId) ? await store.findGenerationOfUser(em, userId.toLowerCase(), generationId.toLowerCase()) : null;
    if (!record) throw notFound(`generation ${generationId} not found`);
    return record;
  }
}

/**
 * Releases the hold of a cancelled generation and records that it is settled. Idempotent (the
 * release's request id is derived from the generation id). A hold that is no longer active
 * (expired) or unknown has nothing left to give back, so it counts as settled too.
 */
export async function releaseCancelledHold(orm: Orm, credits: CreditsPort, generation: { id: string; holdId: string }, logger: Logger): Promise<void> {
  const em = orm.em.fork();
  if (await store.isSettled(em, generation.id)) return;
  try {
    await credits.releaseHold({ requestId: holdRequestIds(generation.id).release, holdId: generation.holdId, reason: "generation_cancelled" });
  } catch (error) {
    if (!(error instanceof DomainError && (error.reason === "hold_not_active" || error.reason === "not_found"))) throw error;
    logger.warn({ generation_id: generation.id, reason: error.reason }, "hold of a cancelled generation was no longer active");
  }
  await store.markCancelSettled(em, generation.id);
}

/**
 * Longest request_id accepted, in characters: the stored idempotency key prefixes it with the
 * operation and user id, and must stay within the platform's REQUEST_ID_LENGTH_MAX.
 */
export const CALLER_REQUEST_ID_LENGTH_MAX = REQUEST_ID_LENGTH_MAX - 50;

function checkRequestId(requestId: string): void {
  if (!requestId || requestId.length > CALLER_REQUEST_ID_LENGTH_MAX) {
    throw validationError(`request_id is required (1..${CALLER_REQUEST_ID_LENGTH_MAX} characters)`, { field: "request_id" });
  }
  // The request id is stored (in the idempotency key); PostgreSQL text cannot hold NUL.
  if (hasForbiddenControlCharacter(requestId)) {
    throw validationError("request_id must not contain control characters", { field: "request_id" });
  }
}
