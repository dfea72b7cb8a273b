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
  parseAdoptGuestInput,
  parseListGenerationsInput,
  parseRecordDownloadInput,
  type GenerationRef,
  type InputLimits,
  type RawAdoptGuestInput,
  type RawCancelGenerationInput,
  type RawCreateGenerationInput,
  type RawListGenerationsInput,
  type RawRecordDownloadInput,
} from "../domain/inputs";
import { generationDownloadedEventId } from "../domain/events";
import {
  holdRequestIds,
  type CreditsPort,
  type EventEncoder,
  type GenerationsStores,
  type GenerationsUnitOfWork,
  type HoldView,
  type UsagePort,
} from "../domain/ports";
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
  private readonly usage: UsagePort;

  constructor(
    private readonly uow: GenerationsUnitOfWork,
    downstream: GenerationsDownstream,
    private readonly settlement: HoldSettlement,
    private readonly options: GenerationsServiceOptions,
    private readonly logger: Logger,
    private readonly encoder: EventEncoder,
  ) {
    this.credits = downstream.credits;
    this.usage = downstream.usage;
  }

  /**
   * Validates the input, then, in this order: derives the generation id from (user_id,
   * request_id); reads the account at credits (kind, plan, billing anchor); reserves quota at
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
    const { requestId, generation: input } = parseCreateGenerationInput(raw, this.options.inputLimits);
    const generationId = deterministicUuid("generation", input.userId, requestId);
    const creditCost = creditCostOf(this.options.pricing, input.inputType);

    const account = await this.credits.getAccount(input.userId);
    await this.usage.checkAndReserve(account, generationId, creditCost);
    let hold: HoldView;
    try {
      hold = await this.credits.createHold({
        requestId: holdRequestIds(generationId).create,
        accountId: input.userId,
        generationId,
        amount: creditCost,
        ttlMs: this.options.holdTtlMs,
      });
    } catch (error) {
      await this.giveBackUnstored(generationId, null, error);
      throw error;
    }

    try {
      return await this.uow.inTransaction((stores) => this.store(stores, generationId, input, creditCost, hold));
    } catch (error) {
      // A DomainError (e.g. idempotency_key_reused) is an answer about a job that exists or
      // whose hold belongs to the first request; anything else means the job was not stored
      // and a retry would not store it either: give back what was taken ("no job, no hold").
      if (!(error instanceof DomainError)) await this.giveBackUnstored(generationId, hold.id, error);
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
